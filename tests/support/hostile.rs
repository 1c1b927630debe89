//! The hostile-input corpus of issue 6 (FREESWITCH.md §0, §6) and the strict checks of what a
//! document trunkline serves may contain: only the grammar trunkline itself generates.
//!
//! The corpus is a list of base payloads, each tried raw, percent-encoded, with control
//! characters written as the two-character escapes the dial-string splitter decodes, and
//! embedded at the start, middle and end of a value that is otherwise valid for the field it is
//! aimed at; plus every C0 control and DEL, very long strings and non-ASCII text.

#![allow(dead_code)]

use std::collections::BTreeSet;

use quick_xml::events::Event;
use trunkline::dialstring::parse_bridge_data;
use trunkline::fsxml::testdata::assert_document_is_safe;
use trunkline::model::{
    Cidr, ContextName, Destination, GatewayName, Host, Password, ProfileName, SipUser,
};

use super::app::fs_encode;

/// Where a payload goes in the field's valid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The payload replaces the value.
    Alone,
    Start,
    Middle,
    End,
}

/// One hostile input: a payload and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostile {
    pub payload: String,
    pub place: Place,
}

impl Hostile {
    /// The value to send for a field whose valid value is `valid`.
    pub fn apply(&self, valid: &str) -> String {
        let p = &self.payload;
        match self.place {
            Place::Alone => p.clone(),
            Place::Start => format!("{p}{valid}"),
            Place::End => format!("{valid}{p}"),
            Place::Middle => {
                let mut mid = valid.len() / 2;
                while !valid.is_char_boundary(mid) {
                    mid += 1;
                }
                format!("{}{p}{}", &valid[..mid], &valid[mid..])
            }
        }
    }

    /// A short printable description for failure reports.
    pub fn describe(&self, valid: &str) -> String {
        let value = self.apply(valid);
        let shown: String = value.chars().take(80).collect();
        let more = if value.chars().count() > 80 {
            format!("…({} bytes)", value.len())
        } else {
            String::new()
        };
        format!("{shown:?}{more}")
    }
}

/// The base payloads: XML metacharacters and entities, runtime and pre-processor expansion,
/// pre-processor line droppers, dial-string metacharacters, SIP URI tricks, quotes and
/// backslashes, CR LF raw, escaped and percent-encoded, NUL, bidi overrides.
pub const BASE_PAYLOADS: &[&str] = &[
    "<",
    ">",
    "&",
    "\"",
    "'",
    "&#13;&#10;X-Evil: 1",
    "&#36;{system id}",
    "&#x24;{system id}",
    "&lt;evil&gt;",
    "&amp;lt;",
    "<![CDATA[evil]]>",
    "<!DOCTYPE d [<!ENTITY e \"evil\">]>",
    "${system id}",
    "$${hostname}",
    "${api(system id)}",
    "${evil}",
    "\\${system id}",
    "<X-PRE-PROCESS cmd=\"exec\" data=\"id\"/>",
    "x-pre-process",
    "X-Pre-Process",
    "<?xml version=\"1.0\"?>",
    "<include>",
    "</include>",
    "<!--#exec cmd=\"id\"-->",
    "|sofia/gateway/evil/1",
    ",api_on_answer=system id",
    "[execute_on_answer=system id]",
    "]",
    "{ignore_early_media=true}",
    "}",
    "^^:sip_h_X-Evil=1:x",
    ":_:sofia/gateway/evil/1",
    "@evil.example",
    ";transport=tcp",
    "^evil",
    "\"'\\",
    "\\",
    "\r\nX-Evil: 1",
    "\\r\\nX-Evil: 1",
    "%0D%0AX-Evil: 1",
    "%7Csofia/gateway/evil/1",
    "%24%7Bsystem%20id%7D",
    "\0",
    "\u{202e}evil",
    "\t",
    " ",
    "$",
    "%",
    "/",
    "sip:evil@evil.example",
];

/// Non-ASCII and mixed encodings: full-width and Arabic-Indic digits, zero-width and bidi
/// characters, a BOM, combining marks, an emoji, the replacement character, Latin-1 as `%E9`.
const NON_ASCII: &[&str] = &[
    "caf\u{e9}",
    "cafe\u{301}",
    "\u{ff0b}\u{ff11}\u{ff15}\u{ff15}\u{ff15}",
    "\u{661}\u{662}\u{663}",
    "\u{200b}",
    "\u{feff}",
    "\u{202e}",
    "\u{1f389}",
    "\u{fffd}",
    "%E9%FF",
    "\u{2028}",
    "\u{85}",
];

/// Control characters written as the two-character escapes FreeSWITCH's dial-string splitter
/// turns back into them (`unescape_char`, FREESWITCH.md §0.3).
fn two_char_escapes(s: &str) -> String {
    s.replace('\r', "\\r")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\0', "\\0")
}

/// The whole corpus, de-duplicated, in a fixed order.
pub fn corpus() -> Vec<Hostile> {
    let mut out: Vec<Hostile> = Vec::new();
    let mut push = |payload: String, place: Place| {
        let h = Hostile { payload, place };
        if !out.contains(&h) {
            out.push(h);
        }
    };
    for base in BASE_PAYLOADS {
        push(base.to_string(), Place::Alone);
        push(fs_encode(base), Place::Alone);
        push(two_char_escapes(base), Place::Alone);
        for place in [Place::Start, Place::Middle, Place::End] {
            push(base.to_string(), place);
        }
    }
    for b in (0u8..0x20).chain([0x7f]) {
        push(char::from(b).to_string(), Place::Middle);
    }
    for s in NON_ASCII {
        push(s.to_string(), Place::Alone);
        push(s.to_string(), Place::Middle);
    }
    push("A".repeat(10 * 1024), Place::Alone);
    push("1".repeat(10 * 1024), Place::Alone);
    push("9".repeat(10 * 1024), Place::End);
    push(format!("+{}", "5".repeat(10 * 1024)), Place::Alone);
    push("a.".repeat(5 * 1024), Place::Start);
    push("${system id}".repeat(850), Place::Middle);
    out
}

/// One element of a parsed document: its ancestors' names, its name and decoded attributes.
#[derive(Debug)]
pub struct Element {
    pub ancestors: Vec<String>,
    pub name: String,
    pub attrs: Vec<(String, String)>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// `assert_document_is_safe` as a result (parses, no pre-processor trigger, no control
/// character, no `${` in dialplan data, every bridge in the strict grammar), then every
/// element with its decoded attributes.
pub fn safe_elements(xml: &str) -> Result<Vec<Element>, String> {
    std::panic::catch_unwind(|| assert_document_is_safe(xml)).map_err(panic_message)?;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let (e, opened) = match &event {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = AsRef::<str>::as_ref(&e.name()).to_string();
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?
                .into_owned();
            attrs.push((AsRef::<str>::as_ref(&a.key).to_string(), value));
        }
        out.push(Element {
            ancestors: stack.clone(),
            name: name.clone(),
            attrs,
        });
        if opened {
            stack.push(name);
        }
    }
    Ok(out)
}

fn is_not_found(elements: &[Element]) -> bool {
    elements
        .iter()
        .any(|e| e.name == "result" && e.attr("status") == Some("not found"))
}

/// The only `set` variables trunkline writes, with the alphabet of their values.
fn set_is_ours(data: &str) -> bool {
    let Some((var, value)) = data.split_once('=') else {
        return false;
    };
    let upper = |v: &str| {
        !v.is_empty()
            && v.split(',')
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
    };
    match var {
        "hangup_after_bridge" => value == "true",
        "sip_copy_custom_headers" => value == "false",
        "continue_on_fail" => value == "true" || upper(value),
        // `<CAUSES> <destination> XML <context>`: back into the same context, nothing else.
        "transfer_on_fail" => value
            .split_once(' ')
            .is_some_and(|(causes, target)| upper(causes) && is_transfer_back(target)),
        "trunkline_attempt" => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        // The carriers tried so far: our own simple UUIDs, comma-separated.
        "trunkline_tried" => value
            .split(',')
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())),
        _ => false,
    }
}

/// `<validated destination literal> XML <context>`: where the exact form's `transfer` and the
/// default form's `transfer_on_fail` send a failed leg back to trunkline.
fn is_transfer_back(target: &str) -> bool {
    target.split_once(" XML ").is_some_and(|(dest, ctx)| {
        Destination::parse(dest).is_ok_and(|d| d.as_str() == dest)
            && ContextName::parse(ctx).is_ok()
    })
}

/// Checks a dialplan document against exactly what trunkline generates and returns the bridged
/// gateways in order. Every gateway must be one trunkline created (`gateways`).
pub fn check_dialplan(xml: &str, gateways: &BTreeSet<String>) -> Result<Vec<String>, String> {
    let elements = safe_elements(xml)?;
    if is_not_found(&elements) {
        return Ok(Vec::new());
    }
    let mut bridged = Vec::new();
    for e in &elements {
        match e.name.as_str() {
            "document" | "section" | "extension" => {}
            "context" => {
                let name = e.attr("name").unwrap_or_default();
                ContextName::parse(name).map_err(|_| format!("context name {name:?}"))?;
            }
            "condition" => {
                let expression = e.attr("expression").unwrap_or_default();
                if e.attr("field") != Some("destination_number")
                    || !expression
                        .chars()
                        .all(|c| c.is_ascii_digit() || "^$\\+*#".contains(c))
                {
                    return Err(format!("condition outside the grammar: {:?}", e.attrs));
                }
            }
            "action" => {
                let app = e.attr("application").unwrap_or_default();
                let data = e.attr("data").unwrap_or_default();
                let ok = match app {
                    "set" => set_is_ours(data),
                    "unset" => matches!(
                        data,
                        "last_bridge_proto_specific_hangup_cause"
                            | "originate_disposition"
                            | "transfer_on_fail"
                    ),
                    "respond" => data.len() == 3 && data.bytes().all(|b| b.is_ascii_digit()),
                    "hangup" => {
                        !data.is_empty()
                            && data.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    }
                    "transfer" => is_transfer_back(data),
                    "bridge" => match parse_bridge_data(data) {
                        Some(b) if gateways.contains(b.gateway.as_str()) => {
                            bridged.push(b.gateway.to_string());
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !ok {
                    return Err(format!("action outside the grammar: {app} {data:?}"));
                }
            }
            other => return Err(format!("unexpected element <{other}> in a dialplan")),
        }
    }
    Ok(bridged)
}

fn bool_text(v: &str) -> bool {
    v == "true" || v == "false"
}

/// The grammar of each gateway param trunkline writes (`gateway_params`, FREESWITCH.md §2.2).
fn gateway_param_ok(name: &str, value: &str) -> bool {
    match name {
        "proxy" => value.rsplit_once(':').is_some_and(|(host, port)| {
            Host::parse(host).is_ok_and(|h| h.as_str() == host)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }),
        "register" | "caller-id-in-from" => bool_text(value),
        "username" | "auth-username" | "from-user" => SipUser::parse(value).is_ok(),
        "password" => Password::parse(value).is_ok(),
        "realm" | "from-domain" => Host::parse(value).is_ok_and(|h| h.as_str() == value),
        "ping" => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        "register-transport" => matches!(value, "udp" | "tcp" | "tls"),
        _ => false,
    }
}

/// Checks sofia.conf: profile names, gateway names (only gateways trunkline created) and every
/// gateway param against its newtype grammar. Returns the gateways served.
pub fn check_sofia(xml: &str, gateways: &BTreeSet<String>) -> Result<Vec<String>, String> {
    let elements = safe_elements(xml)?;
    let mut served = Vec::new();
    for e in &elements {
        let in_gateway = e.ancestors.last().map(String::as_str) == Some("gateway");
        match e.name.as_str() {
            "profile" if e.ancestors.last().map(String::as_str) == Some("profiles") => {
                let name = e.attr("name").unwrap_or_default();
                ProfileName::parse(name).map_err(|_| format!("profile name {name:?}"))?;
            }
            "gateway" => {
                let name = e.attr("name").unwrap_or_default();
                if GatewayName::parse(name).is_err() || !gateways.contains(name) {
                    return Err(format!("gateway {name:?} is not one trunkline created"));
                }
                served.push(name.to_string());
            }
            "param" if in_gateway => {
                let (name, value) = (
                    e.attr("name").unwrap_or_default(),
                    e.attr("value").unwrap_or_default(),
                );
                if !gateway_param_ok(name, value) || e.attrs.len() != 2 {
                    return Err(format!("gateway param outside the grammar: {:?}", e.attrs));
                }
            }
            _ if in_gateway => {
                return Err(format!("unexpected <{}> in a gateway", e.name));
            }
            _ => {}
        }
    }
    Ok(served)
}

/// Checks acl.conf: trunkline's own list holds only `allow` nodes with a valid, normalised CIDR.
pub fn check_acl(xml: &str) -> Result<(), String> {
    let elements = safe_elements(xml)?;
    let mut in_ours = false;
    for e in &elements {
        if e.name == "list" {
            in_ours = e.attr("name") == Some("trunkline_carriers");
            if in_ours && e.attr("default") != Some("deny") {
                return Err("trunkline_carriers is not default deny".into());
            }
        }
        if e.name == "node" && in_ours {
            let cidr = e.attr("cidr").unwrap_or_default();
            let ok = e.attr("type") == Some("allow")
                && e.attrs.len() == 2
                && Cidr::parse(cidr).is_ok_and(|c| c.to_string() == cidr);
            if !ok {
                return Err(format!("acl node outside the grammar: {:?}", e.attrs));
            }
        }
    }
    Ok(())
}

/// Whether an error field names `field` itself or an element or member of it
/// (`inbound_ips[0]`, `tech_headers.X-A`).
pub fn names_field(reported: &str, field: &str) -> bool {
    reported == field
        || reported
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
}
