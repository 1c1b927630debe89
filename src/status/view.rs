//! What the status pages show, built from what the handlers read, and rendered with the
//! templates in `assets/` (minijinja, HTML auto-escaping on: every value a tenant or a node
//! wrote is text on the page, never markup).

use std::sync::OnceLock;

use chrono::{SecondsFormat, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::{PreviewQuery, Principal};
use crate::esl::live::{ConnectionState, LiveState};
use crate::model::{Carrier, CarrierStatus, Switch};
use crate::publish::Published;
use crate::xmlcurl::explain::Explanation;

/// Carriers a page.
pub const PAGE_SIZE: usize = 50;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` names: minijinja escapes every `{{ }}` for HTML.
        for (name, source) in [
            ("layout.html", include_str!("assets/layout.html")),
            ("login.html", include_str!("assets/login.html")),
            ("message.html", include_str!("assets/message.html")),
            ("status.html", include_str!("assets/status.html")),
            ("explain.html", include_str!("assets/explain.html")),
        ] {
            env.add_template(name, source)
                .expect("the status templates are valid");
        }
        env
    })
}

fn render(name: &str, ctx: Value) -> Result<String, minijinja::Error> {
    templates().get_template(name)?.render(ctx)
}

/// Who is logged in, for the header.
fn who(principal: &Principal) -> String {
    match principal.tenant_id {
        None => "platform admin".into(),
        Some(tenant) => format!("tenant {tenant}"),
    }
}

pub fn login(error: Option<&str>) -> Result<String, minijinja::Error> {
    render("login.html", context! { error })
}

pub fn message(principal: &Principal, message: &str) -> Result<String, minijinja::Error> {
    render("message.html", context! { who => who(principal), message })
}

#[derive(Debug, Serialize)]
struct NodeRow {
    name: String,
    esl: String,
    connection: ConnectionState,
    core_uuid: Option<String>,
    last_sync_at: Option<String>,
    pending: usize,
    last_error: Option<String>,
}

/// A carrier's gateway on one node.
#[derive(Debug, Serialize)]
struct GatewayCell {
    /// `up`, `down`, `missing` (the node runs no such gateway), `none` (not a gateway).
    class: &'static str,
    text: String,
    title: String,
}

#[derive(Debug, Serialize)]
struct CarrierRow {
    name: String,
    gateway: String,
    owner: String,
    status: &'static str,
    gateways: Vec<GatewayCell>,
}

#[derive(Debug, Serialize)]
struct CarrierPage {
    rows: Vec<CarrierRow>,
    total: usize,
    /// Carriers among `total` with a gateway down on some node.
    down: usize,
    page: usize,
    pages: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

fn timestamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The overview: the nodes table (platform admins only) and the carriers the principal may see
/// whose name or gateway contains `q`, one page of them, with their gateway on every node.
pub fn overview(
    principal: &Principal,
    published: &Published,
    nodes: &[Switch],
    live: &LiveState,
    q: &str,
    page: usize,
) -> Result<String, minijinja::Error> {
    let switches: Vec<(&Switch, crate::esl::live::SwitchLive)> = nodes
        .iter()
        .map(|s| (s, live.get(s.id).unwrap_or_default()))
        .collect();
    let node_rows: Option<Vec<NodeRow>> = principal.is_platform_admin().then(|| {
        switches
            .iter()
            .map(|(s, l)| NodeRow {
                name: s.name.to_string(),
                esl: format!("{}:{}", s.esl_host, s.esl_port),
                connection: l.connection_of(s),
                core_uuid: l.core_uuid.clone(),
                last_sync_at: l.last_sync_at.map(timestamp),
                pending: l.pending_operations,
                last_error: l.last_error.clone(),
            })
            .collect()
    });
    let needle = q.trim().to_lowercase();
    let mut visible: Vec<&Carrier> = published
        .snapshot
        .carriers()
        .filter(|c| c.status != CarrierStatus::Archived)
        .filter(|c| {
            principal.is_platform_admin()
                || c.tenant_id.is_some() && c.tenant_id == principal.tenant_id
        })
        .filter(|c| {
            needle.is_empty()
                || c.name.as_str().to_lowercase().contains(&needle)
                || c.gateway_name.as_str().contains(&needle)
        })
        .collect();
    visible.sort_by(|a, b| a.gateway_name.cmp(&b.gateway_name).then(a.id.cmp(&b.id)));
    let cells = |c: &Carrier| -> Vec<GatewayCell> {
        switches
            .iter()
            .map(|(s, l)| gateway_cell(c, s, l))
            .collect()
    };
    // Counted over every match, not only the page shown: the down set is small, so only the
    // status is looked at here, and cells are built for the page alone.
    let down = visible
        .iter()
        .filter(|c| {
            switches
                .iter()
                .any(|(_, l)| l.down_since.contains_key(c.gateway_name.as_str()))
        })
        .count();
    let pages = visible.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let rows = visible
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|c| CarrierRow {
            name: c.name.to_string(),
            gateway: c.gateway_name.to_string(),
            owner: owner(published, c.tenant_id),
            status: c.status.as_str(),
            gateways: cells(c),
        })
        .collect();
    let carriers = CarrierPage {
        rows,
        total: visible.len(),
        down,
        page,
        pages,
        prev: (page > 1).then(|| page - 1),
        next: (page < pages).then(|| page + 1),
    };
    let switch_names: Vec<String> = switches.iter().map(|(s, _)| s.name.to_string()).collect();
    render(
        "status.html",
        context! {
            who => who(principal),
            now => timestamp(Utc::now()),
            nodes => Value::from(Serde(&node_rows)),
            switches => switch_names,
            carriers => Value::from(Serde(&carriers)),
            q => q,
            q_url => form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>(),
        },
    )
}

fn owner(published: &Published, tenant: Option<Uuid>) -> String {
    match tenant {
        None => "platform".into(),
        Some(id) => published
            .snapshot
            .tenant(id)
            .map_or_else(|| id.to_string(), |t| t.name.to_string()),
    }
}

fn gateway_cell(
    carrier: &Carrier,
    switch: &Switch,
    live: &crate::esl::live::SwitchLive,
) -> GatewayCell {
    if !carrier.is_gateway() || !switch.profiles.contains(&carrier.profile) {
        return GatewayCell {
            class: "none",
            text: "—".into(),
            title: "not a gateway on this node".into(),
        };
    }
    let name = carrier.gateway_name.as_str();
    match live.gateways.get(name) {
        Some(g) => GatewayCell {
            class: if g.status.is_down() { "down" } else { "up" },
            text: match live.down_since.get(name) {
                Some(since) => format!("{} {} since {}", g.status, g.state, timestamp(*since)),
                None => format!("{} {}", g.status, g.state),
            },
            title: g
                .ping_time_ms
                .map_or_else(|| "no ping time".into(), |ms| format!("ping {ms:.1} ms")),
        },
        None => GatewayCell {
            class: "missing",
            text: "not running".into(),
            title: "the node does not run this gateway (yet)".into(),
        },
    }
}

/// The explain form as typed: empty fields are absent.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ExplainForm {
    #[serde(default)]
    pub destination: String,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub caller: String,
    #[serde(default)]
    pub at: String,
}

impl ExplainForm {
    /// The route-preview query this form asks, `None` before a number is typed, or what is
    /// wrong with a field.
    pub fn query(&self) -> Option<Result<PreviewQuery, String>> {
        let destination = self.destination.trim();
        if destination.is_empty() {
            return None;
        }
        let given = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string);
        let tenant_id = match given(&self.tenant_id) {
            None => None,
            Some(t) => match Uuid::parse_str(&t) {
                Ok(id) => Some(id),
                Err(_) => return Some(Err("tenant id: not a UUID".into())),
            },
        };
        let at = match given(&self.at) {
            None => None,
            Some(t) => match chrono::DateTime::parse_from_rfc3339(&t) {
                Ok(at) => Some(at),
                Err(_) => {
                    return Some(Err(
                        "at: an RFC 3339 time such as 2026-12-01T09:30:00Z".into()
                    ));
                }
            },
        };
        Some(Ok(PreviewQuery {
            destination: destination.to_string(),
            tenant_id,
            carrier_id: None,
            caller: given(&self.caller),
            caller_name: None,
            attestation: None,
            at,
            call_id: None,
            max_cost: None,
            switch_id: None,
        }))
    }
}

pub fn explain(
    principal: &Principal,
    form: &ExplainForm,
    explanation: Option<&Explanation<'_>>,
    error: Option<&str>,
) -> Result<String, minijinja::Error> {
    let e = explanation.map(|e| {
        let mut json = serde_json::to_value(e).unwrap_or_default();
        // A route's outcome is an object in the JSON; one line of it here.
        if let Some(considered) = json.get_mut("considered").and_then(|c| c.as_array_mut()) {
            for c in considered {
                let outcome = c.get("outcome").map_or_else(String::new, |o| {
                    o.as_str().map_or_else(|| o.to_string(), str::to_string)
                });
                c["outcome"] = serde_json::Value::String(outcome);
            }
        }
        json
    });
    render(
        "explain.html",
        context! {
            who => who(principal),
            platform => principal.is_platform_admin(),
            form => Value::from(Serde(form)),
            e => Value::from(Serde(&e)),
            error,
        },
    )
}
