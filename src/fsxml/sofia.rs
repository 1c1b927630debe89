//! sofia.conf served over mod_xml_curl (FREESWITCH.md §2): operator profile templates plus one
//! `<gateway>` per carrier.
//!
//! Templates (`templates/sofia/<profile>.xml`) hold the inner parts of a `<profile>`:
//! `<settings>` (required: without it FreeSWITCH ignores the profile's gateways even on rescan,
//! §2.1), optional `<aliases>` and `<domains>`. They are rendered once, at load, with minijinja
//! (every printed value XML-escaped with `$` as `&#36;`, whatever the template asks; strict
//! undefined; a fuel limit), then parsed against an allow-list of elements and attributes and
//! kept as a small tree that the [`XmlWriter`] re-emits. Nothing an operator writes reaches
//! FreeSWITCH as raw text.
//!
//! Pure: no I/O. The caller reads the template files and passes their text.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{
    Environment, Error as JinjaError, ErrorKind, Output, State, UndefinedBehavior, Value,
};
use serde::Serialize;
use uuid::Uuid;

use crate::model::{Carrier, GatewayName, ProfileName, Transport};

use super::NOT_FOUND;
use super::fragment::{self, FragmentError, Node, Rule};
use super::writer::{self, RenderError, XmlWriter};

/// Template instructions allowed per render; a runaway loop fails the load instead of hanging.
const TEMPLATE_FUEL: u64 = 50_000;

/// What a profile template may contain (FREESWITCH.md §2.1). `<gateways>` is ours, so it is not
/// here.
const PROFILE_RULES: &[Rule] = &[
    Rule {
        name: "settings",
        parent: None,
        attrs: &[],
    },
    Rule {
        name: "param",
        parent: Some("settings"),
        attrs: &["name", "value"],
    },
    Rule {
        name: "aliases",
        parent: None,
        attrs: &[],
    },
    Rule {
        name: "alias",
        parent: Some("aliases"),
        attrs: &["name"],
    },
    Rule {
        name: "domains",
        parent: None,
        attrs: &[],
    },
    Rule {
        name: "domain",
        parent: Some("domains"),
        attrs: &["name", "alias", "parse"],
    },
];

/// Why the templates could not be loaded. Operator-facing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {0:?}: a profile name must match ^[a-z0-9][a-z0-9_.-]{{0,62}}$")]
    ProfileName(String),
    #[error("profile {0}: more than one template")]
    DuplicateProfile(String),
    #[error("profile {profile}: {message}")]
    Render { profile: String, message: String },
    #[error("profile {profile}: {source}")]
    Structure {
        profile: String,
        source: FragmentError,
    },
    #[error("profile {profile}: {message}")]
    Refused { profile: String, message: String },
}

/// The rendered, checked profile templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileTemplates {
    /// Sorted by name.
    profiles: Vec<Profile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Profile {
    name: ProfileName,
    aliases: Option<Node>,
    settings: Node,
    domains: Option<Node>,
}

impl ProfileTemplates {
    /// Renders and checks every template once, with the operator variables (`sip_ip`,
    /// `ext_sip_ip`, …). `sources` are `(profile name, template text)`.
    pub fn load(
        sources: Vec<(String, String)>,
        vars: &BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let env = environment();
        let ctx = Value::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut profiles: Vec<Profile> = Vec::with_capacity(sources.len());
        for (name, source) in sources {
            let profile_name =
                ProfileName::parse(&name).map_err(|_| TemplateError::ProfileName(name.clone()))?;
            if profiles.iter().any(|p| p.name == profile_name) {
                return Err(TemplateError::DuplicateProfile(name));
            }
            let refused = |message: &str| TemplateError::Refused {
                profile: name.clone(),
                message: message.to_string(),
            };
            // `$${…}` would be neutralised by the writer and reach FreeSWITCH as literal text,
            // which is never what the operator meant (FREESWITCH.md §0.2).
            if source.contains("$${") {
                return Err(refused(
                    "FreeSWITCH pre-processor variables ($${...}) are not available here; use a template variable",
                ));
            }
            let rendered = env
                .render_named_str(&name, &source, ctx.clone())
                .map_err(|e| TemplateError::Render {
                    profile: name.clone(),
                    message: render_message(&e),
                })?;
            let nodes = fragment::parse(&rendered, PROFILE_RULES).map_err(|source| {
                TemplateError::Structure {
                    profile: name.clone(),
                    source,
                }
            })?;
            let profile = profile_from_nodes(profile_name, nodes).map_err(|m| refused(&m))?;
            profiles.push(profile);
        }
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { profiles })
    }

    /// The profiles, sorted by name.
    pub fn names(&self) -> impl Iterator<Item = &ProfileName> {
        self.profiles.iter().map(|p| &p.name)
    }

    /// Whether a template exists for this profile.
    pub fn contains(&self, profile: &ProfileName) -> bool {
        self.profiles.iter().any(|p| &p.name == profile)
    }

    /// Whether this profile's template turns TLS on (`<param name="tls" value="true"/>`):
    /// sofia skips a gateway whose transport is TLS on a profile without it ("unsupported
    /// transport", sofia.c parse_gateways, FREESWITCH.md §2.2).
    pub fn has_tls(&self, profile: &ProfileName) -> bool {
        self.profiles
            .iter()
            .find(|p| &p.name == profile)
            .is_some_and(|p| {
                p.settings.children.iter().any(|param| {
                    param
                        .attr("name")
                        .is_some_and(|n| n.eq_ignore_ascii_case("tls"))
                        && param.attr("value").is_some_and(switch_true)
                })
            })
    }
}

/// FreeSWITCH's `switch_true` (switch_utils.h): yes, on, true, t, enabled, active, allow, or a
/// number other than 0.
fn switch_true(value: &str) -> bool {
    let v = value.trim();
    ["yes", "on", "true", "t", "enabled", "active", "allow"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
        || v.parse::<i64>().is_ok_and(|n| n != 0)
}

fn render_message(e: &JinjaError) -> String {
    match e.line() {
        Some(line) => format!(
            "line {line}: {}",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        None => e.to_string(),
    }
}

/// A minijinja environment whose every printed value is XML-escaped for FreeSWITCH. The
/// formatter ignores minijinja's "safe" marker and `autoescape` blocks on purpose: nothing
/// printed from a variable may become markup.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_formatter(xml_formatter);
    env
}

fn xml_formatter(out: &mut Output, _state: &mut State, value: &Value) -> Result<(), JinjaError> {
    let escaped = writer::escape_value(&value.to_string()).map_err(|_| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            "a template value contains a control character",
        )
    })?;
    out.write_str(&escaped)?;
    Ok(())
}

/// Checks the top-level structure and settings that must never be served.
fn profile_from_nodes(name: ProfileName, nodes: Vec<Node>) -> Result<Profile, String> {
    let mut aliases = None;
    let mut settings = None;
    let mut domains = None;
    for node in nodes {
        let slot = match node.name {
            "aliases" => &mut aliases,
            "settings" => &mut settings,
            _ => &mut domains,
        };
        if slot.is_some() {
            return Err(format!("<{}> appears more than once", node.name));
        }
        for child in &node.children {
            let required: &[&str] = if child.name == "param" {
                &["name", "value"]
            } else {
                &["name"]
            };
            if let Some(missing) = required.iter().find(|a| child.attr(a).is_none()) {
                return Err(format!("<{}> needs a {missing} attribute", child.name));
            }
        }
        *slot = Some(node);
    }
    let settings = settings
        .ok_or("<settings> is required (FreeSWITCH ignores the profile's gateways without it)")?;
    for param in &settings.children {
        let (Some(pname), Some(value)) = (param.attr("name"), param.attr("value")) else {
            continue;
        };
        // sip_i_* variables are stored without FreeSWITCH's `${` check: referencing one from
        // any dialplan would be remote code execution (FREESWITCH.md §0.1, §6.2).
        if pname.eq_ignore_ascii_case("parse-all-invite-headers")
            && !value.eq_ignore_ascii_case("false")
        {
            return Err("parse-all-invite-headers must not be enabled (FREESWITCH.md §6.2)".into());
        }
    }
    Ok(Profile {
        name,
        aliases,
        settings,
        domains,
    })
}

/// A carrier left out of sofia.conf, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedGateway {
    pub carrier_id: Uuid,
    pub gateway: GatewayName,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its profile has no template, so FreeSWITCH would never run it.
    NoProfileTemplate,
    /// Not active, not SIP, or not outbound-capable.
    NotAGateway,
    /// `register=true` without username and password: FreeSWITCH skips such a gateway
    /// (sofia.c parse_gateways, FREESWITCH.md §2.2).
    MissingRegisterCredentials,
    /// Another carrier already uses this gateway name (names are global, §2.2).
    DuplicateGatewayName,
    /// Its transport is TLS and its profile does not turn TLS on: sofia would skip it.
    TlsWithoutProfileTls,
}

/// A rendered sofia.conf and the carriers that are not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SofiaDocument {
    pub xml: String,
    pub skipped: Vec<SkippedGateway>,
}

/// The gateway params of a carrier (FREESWITCH.md §2.2), in document order. Public so the
/// Event Socket reconciler can compare them with `sofia xmlstatus gateway`.
pub fn gateway_params(c: &Carrier) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("proxy", format!("{}:{}", c.remote_host, c.remote_port)),
        ("register", c.register.to_string()),
    ];
    if let Some(user) = &c.auth_username {
        params.push(("username", user.to_string()));
    }
    if let Some(password) = &c.auth_password {
        params.push(("password", password.expose().to_string()));
    }
    if let Some(user) = &c.auth_username {
        params.push(("auth-username", user.to_string()));
    }
    if let Some(realm) = &c.realm {
        params.push(("realm", realm.to_string()));
    }
    if let Some(user) = &c.from_user {
        params.push(("from-user", user.to_string()));
    }
    if let Some(domain) = &c.from_domain {
        params.push(("from-domain", domain.to_string()));
    }
    params.push(("caller-id-in-from", c.caller_id_in_from.to_string()));
    if let Some(seconds) = c.ping_seconds {
        params.push(("ping", seconds.to_string()));
    }
    params.push(("register-transport", c.transport.as_str().to_string()));
    params
}

/// sofia.conf with every template profile (or only `only_profile`, matched case-insensitively
/// as FreeSWITCH does, §2.1), each with its settings and one `<gateway>` per carrier of that
/// profile. Asked for a profile without a template, it answers "not found".
pub fn sofia_document(
    profiles: &ProfileTemplates,
    gateways: &[&Carrier],
    only_profile: Option<&str>,
) -> Result<SofiaDocument, RenderError> {
    let (serve, skipped) = partition(profiles, gateways);
    let selected: Vec<&Profile> = match only_profile {
        Some(asked) => match profiles
            .profiles
            .iter()
            .find(|p| p.name.as_str().eq_ignore_ascii_case(asked))
        {
            Some(p) => vec![p],
            None => {
                return Ok(SofiaDocument {
                    xml: NOT_FOUND.to_string(),
                    skipped,
                });
            }
        },
        None => profiles.profiles.iter().collect(),
    };
    let mut w = XmlWriter::new();
    w.open("document", &[("type", "freeswitch/xml")])
        .open("section", &[("name", "configuration")])
        .open("configuration", &[("name", "sofia.conf")])
        .open("profiles", &[]);
    for profile in selected {
        w.open("profile", &[("name", profile.name.as_str())]);
        if let Some(aliases) = &profile.aliases {
            aliases.emit(&mut w);
        }
        profile.settings.emit(&mut w);
        let mine: Vec<&&Carrier> = serve.iter().filter(|c| c.profile == profile.name).collect();
        if mine.is_empty() {
            w.empty("gateways", &[]);
        } else {
            w.open("gateways", &[]);
            for carrier in mine {
                w.open("gateway", &[("name", carrier.gateway_name.as_str())]);
                for (name, value) in gateway_params(carrier) {
                    w.empty("param", &[("name", name), ("value", &value)]);
                }
                w.close();
            }
            w.close();
        }
        if let Some(domains) = &profile.domains {
            domains.emit(&mut w);
        }
        w.close();
    }
    w.close().close().close().close();
    Ok(SofiaDocument {
        xml: w.finish()?,
        skipped,
    })
}

/// Splits carriers into those to serve (sorted by gateway name) and those skipped.
fn partition<'a>(
    profiles: &ProfileTemplates,
    carriers: &[&'a Carrier],
) -> (Vec<&'a Carrier>, Vec<SkippedGateway>) {
    let mut sorted: Vec<&Carrier> = carriers.to_vec();
    sorted.sort_by(|a, b| a.gateway_name.cmp(&b.gateway_name).then(a.id.cmp(&b.id)));
    let mut seen = BTreeSet::new();
    let mut serve = Vec::new();
    let mut skipped = Vec::new();
    for c in sorted {
        let reason = if !c.is_gateway() {
            Some(SkipReason::NotAGateway)
        } else if !profiles.contains(&c.profile) {
            Some(SkipReason::NoProfileTemplate)
        } else if c.transport == Transport::Tls && !profiles.has_tls(&c.profile) {
            Some(SkipReason::TlsWithoutProfileTls)
        } else if c.register && (c.auth_username.is_none() || c.auth_password.is_none()) {
            Some(SkipReason::MissingRegisterCredentials)
        } else if !seen.insert(&c.gateway_name) {
            Some(SkipReason::DuplicateGatewayName)
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(SkippedGateway {
                carrier_id: c.id,
                gateway: c.gateway_name.clone(),
                reason,
            }),
            None => serve.push(c),
        }
    }
    (serve, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsxml::testdata::assert_document_is_safe;
    use crate::model::fixtures::carrier;
    use crate::model::*;

    const EXTERNAL: &str = include_str!("../../templates/sofia/external.xml");

    fn vars() -> BTreeMap<String, String> {
        [
            ("sip_ip", "10.0.0.5"),
            ("rtp_ip", "10.0.0.5"),
            ("ext_sip_ip", "203.0.113.5"),
            ("ext_rtp_ip", "203.0.113.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn load(sources: &[(&str, &str)]) -> Result<ProfileTemplates, TemplateError> {
        ProfileTemplates::load(
            sources
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            &vars(),
        )
    }

    fn shipped() -> ProfileTemplates {
        load(&[
            ("external", EXTERNAL),
            (
                "internal",
                "<aliases>\n<alias name=\"lan\"/>\n</aliases>\n<settings>\n<param name=\"sip-ip\" value=\"{{ sip_ip }}\"/>\n<param name=\"sip-port\" value=\"5060\"/>\n</settings>\n<domains>\n<domain name=\"all\" alias=\"false\" parse=\"false\"/>\n</domains>\n",
            ),
        ])
        .unwrap()
    }

    fn registering(gw: &str, n: u128) -> Carrier {
        let mut c = carrier(gw, n);
        c.register = true;
        c.transport = Transport::Tls;
        c.remote_host = Host::parse("[2001:db8::10]").unwrap();
        c.remote_port = 5061;
        c.auth_username = Some(SipUser::parse("acct-991").unwrap());
        c.auth_password = Some(Password::parse("s3cr$t&<x>'\"${y}").unwrap());
        c.realm = Some(Host::parse("voice.example.org").unwrap());
        c.from_user = Some(SipUser::parse("+14155550100").unwrap());
        c.from_domain = Some(Host::parse("voice.example.org").unwrap());
        c.caller_id_in_from = true;
        c.ping_seconds = Some(30);
        c
    }

    #[test]
    fn gateway_params_follow_the_sofia_names() {
        let params = gateway_params(&registering("bravo", 2));
        let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "proxy",
                "register",
                "username",
                "password",
                "auth-username",
                "realm",
                "from-user",
                "from-domain",
                "caller-id-in-from",
                "ping",
                "register-transport"
            ]
        );
        assert_eq!(params[0].1, "[2001:db8::10]:5061");
        assert_eq!(params[3].1, "s3cr$t&<x>'\"${y}");
        assert_eq!(params[10].1, "tls");
        let plain = gateway_params(&carrier("alpha", 1));
        assert_eq!(
            plain,
            vec![
                ("proxy", "sip.example.net:5060".to_string()),
                ("register", "false".to_string()),
                ("caller-id-in-from", "false".to_string()),
                ("register-transport", "udp".to_string()),
            ]
        );
    }

    #[test]
    fn full_sofia_conf_snapshot() {
        let alpha = carrier("alpha", 1);
        let mut bravo = registering("bravo", 2);
        // The shipped profile has no TLS (see the next test).
        bravo.transport = Transport::Tcp;
        let tls = registering("golf", 7);
        let mut elsewhere = carrier("delta", 4);
        elsewhere.profile = ProfileName::parse("nosuch").unwrap();
        let mut disabled = carrier("echo", 5);
        disabled.status = CarrierStatus::Disabled;
        let mut no_creds = carrier("foxtrot", 6);
        no_creds.register = true;
        let doc = sofia_document(
            &shipped(),
            &[&bravo, &elsewhere, &alpha, &disabled, &no_creds, &tls],
            None,
        )
        .unwrap();
        assert_document_is_safe(&doc.xml);
        assert!(!doc.xml.contains("${y}"));
        assert!(doc.xml.contains("&#36;{y}"));
        assert_eq!(
            doc.skipped
                .iter()
                .map(|s| (s.gateway.as_str(), s.reason))
                .collect::<Vec<_>>(),
            vec![
                ("delta", SkipReason::NoProfileTemplate),
                ("echo", SkipReason::NotAGateway),
                ("foxtrot", SkipReason::MissingRegisterCredentials),
                ("golf", SkipReason::TlsWithoutProfileTls),
            ]
        );
        insta::assert_snapshot!(doc.xml);
    }

    #[test]
    fn a_profile_fetch_returns_only_that_profile_snapshot() {
        let alpha = carrier("alpha", 1);
        let doc = sofia_document(&shipped(), &[&alpha], Some("external")).unwrap();
        assert_document_is_safe(&doc.xml);
        assert!(doc.xml.contains("<profile name=\"external\">"));
        assert!(!doc.xml.contains("<profile name=\"internal\">"));
        insta::assert_snapshot!(doc.xml);
    }

    #[test]
    fn a_profile_is_matched_case_insensitively_like_freeswitch() {
        let doc = sofia_document(&shipped(), &[], Some("EXTERNAL")).unwrap();
        assert!(doc.xml.contains("<profile name=\"external\">"));
        assert!(doc.xml.contains("<gateways/>"));
    }

    #[test]
    fn an_unknown_profile_is_not_found() {
        let doc = sofia_document(&shipped(), &[], Some("nosuch")).unwrap();
        assert_eq!(doc.xml, NOT_FOUND);
    }

    #[test]
    fn a_tls_gateway_is_served_only_on_a_profile_that_turns_tls_on() {
        let with_tls = EXTERNAL.replace(
            "<settings>",
            "<settings>\n  <param name=\"tls\" value=\"true\"/>",
        );
        let t = load(&[("external", EXTERNAL), ("secure", &with_tls)]).unwrap();
        assert!(!t.has_tls(&ProfileName::external()));
        assert!(t.has_tls(&ProfileName::parse("secure").unwrap()));
        assert!(!t.has_tls(&ProfileName::parse("nosuch").unwrap()));
        let on_external = registering("golf", 1);
        let mut on_secure = registering("hotel", 2);
        on_secure.profile = ProfileName::parse("secure").unwrap();
        let doc = sofia_document(&t, &[&on_external, &on_secure], None).unwrap();
        assert!(doc.xml.contains("<gateway name=\"hotel\">"));
        assert!(!doc.xml.contains("<gateway name=\"golf\">"));
        assert_eq!(doc.skipped[0].reason, SkipReason::TlsWithoutProfileTls);
        for (value, on) in [
            ("yes", true),
            ("1", true),
            ("on", true),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(switch_true(value), on, "{value}");
        }
    }

    #[test]
    fn duplicate_gateway_names_are_served_once() {
        let a = carrier("alpha", 1);
        let b = carrier("alpha", 2);
        let doc = sofia_document(&shipped(), &[&b, &a], Some("external")).unwrap();
        assert_eq!(doc.xml.matches("<gateway name=\"alpha\">").count(), 1);
        assert_eq!(doc.skipped[0].reason, SkipReason::DuplicateGatewayName);
        assert_eq!(doc.skipped[0].carrier_id, Uuid::from_u128(2));
    }

    #[test]
    fn the_shipped_external_profile_is_locked_down() {
        let t = shipped();
        let external = t
            .profiles
            .iter()
            .find(|p| p.name == ProfileName::external())
            .unwrap();
        let setting = |n: &str| {
            external
                .settings
                .children
                .iter()
                .find(|p| p.attr("name") == Some(n))
                .and_then(|p| p.attr("value"))
                .map(str::to_string)
        };
        assert_eq!(
            setting("apply-inbound-acl").as_deref(),
            Some("trunkline_carriers")
        );
        assert_eq!(setting("auth-calls").as_deref(), Some("true"));
        assert_eq!(setting("auth-messages").as_deref(), Some("true"));
        assert_eq!(setting("sip-port").as_deref(), Some("5080"));
        assert_eq!(setting("sip-ip").as_deref(), Some("10.0.0.5"));
        assert_eq!(setting("ext-sip-ip").as_deref(), Some("203.0.113.5"));
        assert_eq!(setting("parse-all-invite-headers"), None);
        assert!(!EXTERNAL.contains("parse-all-invite-headers\" value=\"true"));
    }

    #[test]
    fn operator_variables_are_escaped_and_neutralised() {
        let mut v = vars();
        v.insert(
            "sip_ip".into(),
            "\"/><X-PRE-PROCESS cmd=\"exec\" data=\"id\"/><param name=\"a\" value=\"$${x}".into(),
        );
        let t = ProfileTemplates::load(vec![("external".into(), EXTERNAL.into())], &v).unwrap();
        let doc = sofia_document(&t, &[], None).unwrap();
        assert_document_is_safe(&doc.xml);
        assert!(!doc.xml.to_ascii_lowercase().contains("<x-pre-process"));
        assert_eq!(doc.xml.matches("<param name=\"a\"").count(), 0);
    }

    #[test]
    fn safe_filters_and_autoescape_blocks_cannot_emit_markup() {
        let mut v = vars();
        v.insert("evil".into(), "<gateway name=\"x\"/>".into());
        for template in [
            "<settings><param name=\"a\" value=\"{{ evil|safe }}\"/></settings>",
            "{% autoescape false %}<settings><param name=\"a\" value=\"{{ evil }}\"/></settings>{% endautoescape %}",
        ] {
            let t = ProfileTemplates::load(vec![("p".into(), template.into())], &v).unwrap();
            let doc = sofia_document(&t, &[], None).unwrap();
            assert_document_is_safe(&doc.xml);
            assert!(
                doc.xml
                    .contains("<param name=\"a\" value=\"&lt;gateway name=&quot;x&quot;/&gt;\"/>"),
                "{template}\n{}",
                doc.xml
            );
        }
        // Printed between elements, the escaped value is text, which a template may not hold.
        assert!(matches!(
            ProfileTemplates::load(
                vec![("p".into(), "<settings>{{ evil }}</settings>".into())],
                &v
            ),
            Err(TemplateError::Structure { .. })
        ));
    }

    #[test]
    fn hostile_templates_are_refused() {
        for (template, what) in [
            (
                "<settings/><gateways><gateway name=\"x\"/></gateways>",
                "gateways",
            ),
            (
                "<settings><X-PRE-PROCESS cmd=\"exec\" data=\"id\"/></settings>",
                "x-pre-process",
            ),
            (
                "<settings><param name=\"a\" value=\"$${x}\"/></settings>",
                "$${",
            ),
            (
                "<settings><param name=\"a\" value=\"&#13;&#10;\"/></settings>",
                "control",
            ),
            ("<?xml version=\"1.0\"?>\n<settings/>", "prolog"),
            ("<settings><include/></settings>", "include"),
            ("<aliases/>", "no settings"),
            ("<settings/><settings/>", "two settings"),
            (
                "<settings><param name=\"parse-all-invite-headers\" value=\"true\"/></settings>",
                "sip_i",
            ),
            (
                "<settings><param name=\"a\"/></settings>",
                "param without value",
            ),
            (
                "<settings><param name=\"a\" value=\"{{ undefined_var }}\"/></settings>",
                "undefined",
            ),
            (
                "{% for i in range(100000) %}{% endfor %}<settings/>",
                "fuel",
            ),
            (
                "<settings><param name=\"a\" value=\"{{ '\\n' }}\"/></settings>",
                "control via template",
            ),
        ] {
            assert!(load(&[("p", template)]).is_err(), "{what}: {template}");
        }
        assert!(matches!(
            load(&[("Bad Name", "<settings/>")]),
            Err(TemplateError::ProfileName(_))
        ));
        assert!(matches!(
            load(&[("p", "<settings/>"), ("p", "<settings/>")]),
            Err(TemplateError::DuplicateProfile(_))
        ));
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let template = "{% for i in range(60) %}{% for j in range(60) %}{% for k in range(60) %}{% endfor %}{% endfor %}{% endfor %}<settings/>";
        match load(&[("p", template)]) {
            Err(TemplateError::Render { message, .. }) => {
                assert!(message.contains("fuel"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn template_defaults_apply_under_strict_undefined() {
        let mut v = vars();
        v.insert("sip_port".into(), "5090".into());
        let t = ProfileTemplates::load(vec![("external".into(), EXTERNAL.into())], &v).unwrap();
        let doc = sofia_document(&t, &[], None).unwrap();
        assert!(
            doc.xml
                .contains("<param name=\"sip-port\" value=\"5090\"/>")
        );
    }
}
