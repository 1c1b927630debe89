//! The xml_curl decision, top to bottom: form body → request → routing decision → legs → XML.
//! Pure (no I/O): the HTTP handler and route explain both call it, so explain shows exactly
//! what FreeSWITCH receives.
//!
//! Every answer is a document FreeSWITCH understands. Contexts trunkline does not own, other
//! sections and other configuration files get the "not found" document (FreeSWITCH then tries
//! its next binding or its static XML, FREESWITCH.md §1.4). In a context trunkline owns, a call
//! that cannot be routed gets an extension that refuses it — never "not found", which would
//! hand the call to the static dialplan.

use std::borrow::Cow;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::fsxml::dialplan::{
    ExactStep, NOT_FOUND, RefuseReason, bridge_document, exact_document, exact_step,
    refuse_document,
};
use crate::fsxml::request::{self, ConfigFetch, DialplanFetch, FetchRequest};
use crate::model::{
    Attestation, CallerNumber, ContextName, Destination, FailoverMode, Rate, TriedCarriers,
};
use crate::publish::Published;
use crate::quality::health::{HealthView, LegHealth};
use crate::routing::{CallerIdOutcome, Decision, PresentedName, RouteRequest};

/// The caller ID number of a call that withholds its number (sofia's `anonymous` From user).
const WITHHELD: &str = "anonymous";

/// What a fetch asked for, as the handler's logs and metric labels name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dialplan,
    SofiaConf,
    AclConf,
    /// Anything trunkline does not serve.
    Other,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dialplan => "dialplan",
            Self::SofiaConf => "sofia.conf",
            Self::AclConf => "acl.conf",
            Self::Other => "other",
        }
    }
}

/// What an answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Bridges in the default failover form.
    Bridge,
    /// Bridges one leg in the exact failover form.
    Exact,
    /// Refuses the call, or passes a carrier's answer to the caller.
    Refused,
    /// A configuration document.
    Document,
    /// FreeSWITCH's "not found": it falls back to its static files.
    NotFound,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Exact => "exact",
            Self::Refused => "refused",
            Self::Document => "document",
            Self::NotFound => "not_found",
        }
    }
}

/// One answer to one fetch, with what the handler logs and counts.
#[derive(Debug)]
pub struct Answer {
    pub xml: Bytes,
    pub section: Section,
    pub outcome: Outcome,
    /// Why, for the log line (never caller data beyond validated values). Mostly a fixed
    /// text, which then costs no allocation.
    pub reason: Option<Cow<'static, str>>,
    /// Carrier health moved at least one leg of this call later (counted on `/metrics`).
    pub health_moved: bool,
}

impl Answer {
    fn not_found(section: Section, reason: impl Into<Cow<'static, str>>) -> Self {
        Answer {
            xml: Bytes::from_static(NOT_FOUND.as_bytes()),
            section,
            outcome: Outcome::NotFound,
            reason: Some(reason.into()),
            health_moved: false,
        }
    }
}

/// Answers one mod_xml_curl POST body; `health` is the carriers' health as last published.
pub fn answer(
    published: &Published,
    health: &HealthView,
    body: &[u8],
    now: DateTime<Utc>,
) -> Answer {
    match request::parse(body) {
        FetchRequest::Dialplan(fetch) => {
            dialplan_answer(published, health, &fetch, now, false).answer
        }
        FetchRequest::Configuration(fetch) => configuration(published, &fetch),
        FetchRequest::Other { .. } => {
            Answer::not_found(Section::Other, "section not served by trunkline")
        }
    }
}

fn configuration(published: &Published, fetch: &ConfigFetch) -> Answer {
    let document = |xml: Option<Bytes>, section: Section| match xml {
        Some(xml) => Answer {
            xml,
            section,
            outcome: Outcome::Document,
            reason: None,
            health_moved: false,
        },
        None => Answer::not_found(section, "no template for the profile asked for"),
    };
    match fetch.file.as_str() {
        "sofia.conf" => document(
            published.sofia(fetch.profile.as_deref()),
            Section::SofiaConf,
        ),
        "acl.conf" => document(Some(published.acl()), Section::AclConf),
        _ => Answer::not_found(Section::Other, "configuration file not served by trunkline"),
    }
}

/// A dialplan answer together with the routing decision behind it (for route explain).
pub struct DialplanAnswer<'s> {
    pub answer: Answer,
    pub decision: Option<Decision<'s>>,
    pub tenant_id: Option<Uuid>,
    pub mode: FailoverMode,
    /// Each leg's health and configured place, in the decision's (health-ordered) order; only
    /// when asked for (`explain`).
    pub health: Vec<LegHealth>,
}

/// The dialplan answer: the routing decision, its legs ordered by health (a sick carrier goes
/// after the healthy ones, never out), then the document.
pub fn dialplan_answer<'s>(
    published: &'s Published,
    health: &HealthView,
    fetch: &DialplanFetch,
    now: DateTime<Utc>,
    explain: bool,
) -> DialplanAnswer<'s> {
    let mut out = DialplanAnswer {
        answer: Answer::not_found(Section::Dialplan, "no context in the request"),
        decision: None,
        tenant_id: None,
        mode: published.failover_mode,
        health: Vec::new(),
    };
    let Some(context) = fetch
        .context
        .as_deref()
        .filter(|c| published.owns_context(c))
        .and_then(|c| ContextName::parse(c).ok())
    else {
        out.answer.reason = Some("context not owned by trunkline".into());
        return out;
    };
    let snapshot = &published.snapshot;
    let refuse = |reason: RefuseReason, why: Cow<'static, str>| refused(&context, reason, why);

    let Some(destination) = fetch
        .destination
        .as_deref()
        .and_then(|d| Destination::parse(d).ok())
    else {
        out.answer = refuse(
            RefuseReason::InvalidDestination,
            "invalid destination".into(),
        );
        return out;
    };
    // Tenant: the channel variable, else the tenant owning the context, else platform scope.
    let context_tenant = snapshot.tenant_by_context(context.as_str());
    let tenant = match fetch.tenant_id.as_deref() {
        Some(raw) => match Uuid::try_parse(raw.trim())
            .ok()
            .and_then(|id| snapshot.tenant(id))
        {
            Some(t) => Some(t),
            None => {
                out.answer = refuse(RefuseReason::NoRoute, "unknown trunkline_tenant_id".into());
                return out;
            }
        },
        None => context_tenant,
    };
    out.tenant_id = tenant.map(|t| t.id);
    out.mode = tenant
        .and_then(|t| t.failover_mode)
        .unwrap_or(published.failover_mode);

    let caller = fetch
        .caller_number
        .as_deref()
        .and_then(|c| CallerNumber::parse(c).ok());
    let caller_withheld = fetch
        .caller_number
        .as_deref()
        .is_some_and(|c| c.trim().eq_ignore_ascii_case(WITHHELD));
    let mut decision = snapshot.resolve(&RouteRequest {
        tenant_id: out.tenant_id,
        destination: &destination,
        forced_carrier: fetch
            .forced_carrier
            .as_deref()
            .and_then(|c| Uuid::try_parse(c.trim()).ok()),
        caller: caller.as_ref(),
        caller_withheld,
        caller_name: PresentedName::parse(fetch.caller_name.as_deref()),
        attestation: fetch
            .attestation
            .as_deref()
            .and_then(|a| Attestation::parse(a).ok()),
        now,
        // Any valid UUID seeds the draw; FreeSWITCH always posts one.
        call_id: fetch
            .call_uuid
            .as_deref()
            .and_then(|u| Uuid::try_parse(u.trim()).ok()),
        max_cost: fetch.max_cost.as_deref().map(|m| Rate::parse(m.trim())),
    });
    // A follow-up fetch keeps the carriers this call already tried first, in that order, so
    // its attempt number still names the leg that failed.
    let tried = TriedCarriers::parse(fetch.tried.as_deref(), fetch.attempt.as_deref());
    let ordered = health.order(
        &mut decision.legs,
        fetch.core_uuid.as_deref(),
        tried.as_slice(),
        now,
        explain,
    );
    out.health = ordered.notes;
    let legs = &decision.legs;
    out.answer = if decision.caller_id.outcome == CallerIdOutcome::Refused {
        refuse(
            RefuseReason::CallerIdRefused,
            format!("caller ID refused: {}", decision.caller_id.detail).into(),
        )
    } else if legs.is_empty() {
        let (reason, why) = if decision.considered.is_empty() {
            (RefuseReason::NoRoute, "no route matches")
        } else {
            (
                RefuseReason::NoUsableCarrier,
                "no usable carrier on the matching routes",
            )
        };
        refuse(reason, format!("{why} {destination}").into())
    } else {
        // A fetch that carries our attempt number is a failed leg coming back: both forms
        // decide on its real SIP code. Only the documents differ.
        let step = exact_step(
            legs,
            fetch.attempt.as_deref(),
            fetch.last_sip_cause.as_deref(),
            fetch.originate_disposition.as_deref(),
        );
        let rendered = match (out.mode, step) {
            (FailoverMode::Default, ExactStep::Bridge { leg }) => {
                bridge_document(&context, &destination, legs, leg).map(|xml| (xml, Outcome::Bridge))
            }
            (FailoverMode::Exact, ExactStep::Bridge { .. }) => {
                exact_document(&context, &destination, legs, &step).map(|xml| (xml, Outcome::Exact))
            }
            (_, step) => exact_document(&context, &destination, legs, &step)
                .map(|xml| (xml, Outcome::Refused)),
        };
        match rendered {
            Ok((xml, outcome)) => Answer {
                xml: Bytes::from(xml),
                section: Section::Dialplan,
                outcome,
                reason: None,
                health_moved: ordered.moved,
            },
            Err(e) => refuse(
                RefuseReason::NoUsableCarrier,
                format!("render failed: {e}").into(),
            ),
        }
    };
    out.decision = Some(decision);
    out
}

fn refused(context: &ContextName, reason: RefuseReason, why: Cow<'static, str>) -> Answer {
    match refuse_document(context, reason) {
        Ok(xml) => Answer {
            xml: Bytes::from(xml),
            section: Section::Dialplan,
            outcome: Outcome::Refused,
            reason: Some(why),
            health_moved: false,
        },
        Err(e) => Answer::not_found(
            Section::Dialplan,
            format!("{why}; refusal failed to render: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fsxml::testdata::SAMPLE_DIALPLAN_FETCH;
    use crate::fuzzing::{self, EXACT_TENANT, TENANT};

    /// The fields trunkline reads from a dialplan fetch; a caller or a tenant's dialplan can
    /// set every one of them.
    const FIELDS: &[&str] = &[
        "section",
        "Hunt-Context",
        "Caller-Context",
        "Hunt-Destination-Number",
        "Caller-Destination-Number",
        "Hunt-Caller-ID-Number",
        "Caller-Caller-ID-Number",
        "Unique-ID",
        "variable_trunkline_tenant_id",
        "variable_trunkline_carrier_id",
        "variable_trunkline_attestation",
        "variable_trunkline_max_cost",
        "variable_trunkline_attempt",
        "variable_last_bridge_proto_specific_hangup_cause",
        "variable_originate_disposition",
    ];

    /// FreeSWITCH's value encoding: every byte outside the unreserved set as `%XX`.
    fn encode(value: &str) -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// The sample fetch with fields set (`Some`) or removed (`None`), by index into [`FIELDS`].
    fn realistic(changes: &[(usize, Option<String>)]) -> String {
        let mut pairs: Vec<(String, String)> = SAMPLE_DIALPLAN_FETCH
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        for (field, value) in changes {
            let name = FIELDS[*field];
            pairs.retain(|(k, _)| k != name);
            if let Some(v) = value {
                pairs.push((name.to_string(), encode(v)));
            }
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Values that reach every branch: plausible ones (owned contexts, known tenants and
    /// carriers, numbers, causes), hostile ones, and anything at all.
    fn value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            prop::sample::select(vec![
                "dialplan".to_string(),
                "trunkline".to_string(),
                "acme".to_string(),
                "exacttel".to_string(),
                TENANT.to_string(),
                EXACT_TENANT.to_string(),
                Uuid::from_u128(0x2000).to_string(),
                "sip:503".to_string(),
                "GATEWAY_DOWN".to_string(),
                "A".to_string(),
            ])
            .prop_map(Some),
            "\\+?[0-9]{1,16}".prop_map(Some),
            "[0-9]{1,2}|0\\.[0-9]{1,4}".prop_map(Some),
            "(\\$\\{system id\\}|\\$\\$\\{x\\}|[|,\\[\\]{}^:_@;&<>\"'\\\\ ]|&#13;|%0D%0A|X-PRE-PROCESS|<\\?|\\r|\\n|\\x00|[0-9+])*"
                .prop_map(Some),
            any::<String>().prop_map(Some),
        ]
    }

    fn now() -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 23, 12, 0, 0).unwrap()
    }

    #[test]
    fn the_fixture_bridges_a_realistic_call_in_both_failover_modes() {
        for (context, tenant, outcome) in [
            ("acme", TENANT, Outcome::Bridge),
            ("exacttel", EXACT_TENANT, Outcome::Exact),
        ] {
            let body = realistic(&[
                (1, Some(context.to_string())),
                (8, Some(tenant.to_string())),
            ]);
            let reply = answer(
                fuzzing::published(),
                &HealthView::default(),
                body.as_bytes(),
                now(),
            );
            assert_eq!(reply.outcome, outcome, "{:?}", reply.reason);
            fuzzing::xmlcurl_request(body.as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_body_is_answered_with_a_safe_document(
            body in prop::collection::vec(any::<u8>(), 0..2048)
        ) {
            fuzzing::xmlcurl_request(&body);
        }

        #[test]
        fn a_realistic_fetch_with_any_field_values_is_answered_with_a_safe_document(
            changes in prop::collection::vec((0..FIELDS.len(), value()), 0..8)
        ) {
            fuzzing::xmlcurl_request(realistic(&changes).as_bytes());
        }
    }
}
