//! The output of `sofia xmlstatus gateway [<name>]` (FREESWITCH.md §3.2) as plain values.
//!
//! FreeSWITCH builds that XML with `printf`: only `from`, `contact` and `exten` are escaped;
//! `realm`, `username`, `to` and `proxy` are written raw (mod_sofia.c:3240-3284), so the output
//! is not always well-formed XML. This parser therefore does not use an XML parser: it cuts the
//! text at `<gateway>` … `</gateway>` and reads each known child by its tags, leniently. It never
//! panics; a field it cannot find is empty (or `None` for numbers).
//!
//! The list form (no name) wraps every gateway in `<gateways>` and **also lists gateways marked
//! for deletion by `killgw` that sofia has not reaped yet**; the named form answers
//! `Invalid Gateway!` for those. Pure: no I/O.

use serde::Serialize;

use crate::model::{GatewayState, PingStatus};

/// One gateway as sofia reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GatewayStatus {
    pub name: String,
    pub profile: String,
    pub scheme: String,
    pub realm: String,
    pub username: String,
    pub from: String,
    pub contact: String,
    pub to: String,
    /// `sip:<proxy param>` as FreeSWITCH prefixes it.
    pub proxy: String,
    pub context: String,
    /// Registration state: `REGED`, `NOREG`, `FAILED`, `UNREGISTER`, … (mod_sofia.c:2783-2796).
    pub state: GatewayState,
    /// `UP` or `DOWN`.
    pub status: PingStatus,
    /// Last OPTIONS round trip in milliseconds (a float in FreeSWITCH's output).
    pub ping_time_ms: Option<f64>,
    pub calls_in: Option<u64>,
    pub calls_out: Option<u64>,
    pub failed_calls_in: Option<u64>,
    pub failed_calls_out: Option<u64>,
}

/// What a named `sofia xmlstatus gateway <g>` answered.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedStatus {
    /// The gateway runs (not marked for deletion).
    Running(Box<GatewayStatus>),
    /// `Invalid Gateway!`: absent, or marked for deletion.
    Absent,
    /// Anything else (an error text, garbage): the caller treats it as "not verified".
    Unreadable(String),
}

/// Every `<gateway>` block in `output` (the list or the named form), in order. Duplicates are
/// kept: right after `killgw` + `rescan` the list can hold the deleted and the new gateway.
pub fn parse_gateways(output: &str) -> Vec<GatewayStatus> {
    let mut out = Vec::new();
    let mut rest = output;
    while let Some(start) = rest.find("<gateway>") {
        let after = &rest[start + "<gateway>".len()..];
        let (block, next) = match after.find("</gateway>") {
            Some(end) => (&after[..end], &after[end + "</gateway>".len()..]),
            None => (after, ""),
        };
        if let Some(g) = parse_block(block) {
            out.push(g);
        }
        rest = next;
    }
    out
}

/// The named form: one gateway, `Invalid Gateway!`, or something unexpected.
pub fn parse_named(output: &str) -> NamedStatus {
    if output.trim_start().starts_with("Invalid Gateway") {
        return NamedStatus::Absent;
    }
    match parse_gateways(output).into_iter().next() {
        Some(g) => NamedStatus::Running(Box::new(g)),
        None => NamedStatus::Unreadable(output.chars().take(200).collect()),
    }
}

fn parse_block(block: &str) -> Option<GatewayStatus> {
    let text = |tag: &str| field(block, tag).map(decode).unwrap_or_default();
    let raw = |tag: &str| {
        field(block, tag)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let number = |tag: &str| field(block, tag).and_then(|s| s.trim().parse::<u64>().ok());
    let name = raw("name");
    if name.is_empty() {
        return None;
    }
    Some(GatewayStatus {
        name,
        profile: raw("profile"),
        scheme: raw("scheme"),
        realm: raw("realm"),
        username: raw("username"),
        from: text("from"),
        contact: text("contact"),
        to: raw("to"),
        proxy: raw("proxy"),
        context: raw("context"),
        state: GatewayState::parse(&raw("state")),
        status: PingStatus::parse(&raw("status")),
        ping_time_ms: field(block, "pingtime")
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite()),
        calls_in: number("calls-in"),
        calls_out: number("calls-out"),
        failed_calls_in: number("failed-calls-in"),
        failed_calls_out: number("failed-calls-out"),
    })
}

/// The text between `<tag>` and the next `</tag>` (not nested: sofia writes flat children).
fn field<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = block.find(&open)? + open.len();
    let len = block[start..].find(&close)?;
    Some(&block[start..start + len])
}

/// Undoes the escaping FreeSWITCH applies to `from`/`contact`/`exten`; unknown entities stay.
fn decode(s: &str) -> String {
    s.trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `proxy` param as FreeSWITCH reports it back, reduced to what trunkline wrote: without
/// the `sip:`/`sips:` prefix sofia adds and any `;params`, lower case.
pub fn proxy_host_port(reported: &str) -> String {
    let s = reported.trim();
    let s = s
        .strip_prefix("sips:")
        .or_else(|| s.strip_prefix("sip:"))
        .unwrap_or(s);
    s.split(';').next().unwrap_or("").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of mod_sofia.c:3296-3328 for two gateways, the second with a raw `&` in its
    /// realm (not escaped by FreeSWITCH) and an escaped `from`.
    const LIST: &str = r#"<?xml version="1.0" encoding="ISO-8859-1"?>
<gateways>
  <gateway>
    <name>alpha</name>
    <profile>external</profile>
    <scheme>Digest</scheme>
    <realm>sip.alpha.example:5060</realm>
    <username>FreeSWITCH</username>
    <password>no</password>
    <from>&lt;sip:FreeSWITCH@sip.alpha.example:5060&gt;</from>
    <contact>&lt;sip:gw+alpha@192.0.2.1:5080;transport=udp;gw=alpha&gt;</contact>
    <exten>FreeSWITCH</exten>
    <to>sip:FreeSWITCH@sip.alpha.example:5060</to>
    <proxy>sip:sip.alpha.example:5060</proxy>
    <context>public</context>
    <expires>3600</expires>
    <freq>3600</freq>
    <ping>0</ping>
    <pingfreq>0</pingfreq>
    <pingmin>1</pingmin>
    <pingcount>0</pingcount>
    <pingmax>1</pingmax>
    <pingtime>0.00</pingtime>
    <pinging>0</pinging>
    <state>NOREG</state>
    <status>UP</status>
    <uptime-usec>123456789</uptime-usec>
    <calls-in>3</calls-in>
    <calls-out>17</calls-out>
    <failed-calls-in>0</failed-calls-in>
    <failed-calls-out>2</failed-calls-out>
  </gateway>
  <gateway>
    <name>charlie</name>
    <profile>external</profile>
    <scheme>Digest</scheme>
    <realm>a&b<example</realm>
    <username>acct7</username>
    <password>yes</password>
    <from>&lt;sip:acct7@charlie.example&gt;</from>
    <contact>&lt;sip:gw+charlie@192.0.2.1:5080;transport=tls;gw=charlie&gt;</contact>
    <exten>acct7</exten>
    <to>sip:acct7@charlie.example</to>
    <proxy>sip:sip.charlie.example:5061;transport=tls</proxy>
    <context>public</context>
    <pingtime>12.57</pingtime>
    <state>REGED</state>
    <status>UP</status>
    <calls-in>0</calls-in>
    <calls-out>0</calls-out>
    <failed-calls-in>0</failed-calls-in>
    <failed-calls-out>0</failed-calls-out>
    <retry>NEVER</retry>
  </gateway>
</gateways>
"#;

    #[test]
    fn the_list_form_gives_every_gateway_with_its_figures() {
        let all = parse_gateways(LIST);
        assert_eq!(all.len(), 2);
        let alpha = &all[0];
        assert_eq!(alpha.name, "alpha");
        assert_eq!(alpha.profile, "external");
        assert_eq!(alpha.realm, "sip.alpha.example:5060");
        assert_eq!(alpha.username, "FreeSWITCH");
        assert_eq!(alpha.from, "<sip:FreeSWITCH@sip.alpha.example:5060>");
        assert_eq!(alpha.proxy, "sip:sip.alpha.example:5060");
        assert_eq!(alpha.state, GatewayState::Noreg);
        assert_eq!(alpha.status, PingStatus::Up);
        assert_eq!(alpha.ping_time_ms, Some(0.0));
        assert_eq!(
            (
                alpha.calls_in,
                alpha.calls_out,
                alpha.failed_calls_in,
                alpha.failed_calls_out
            ),
            (Some(3), Some(17), Some(0), Some(2))
        );
        let charlie = &all[1];
        assert_eq!(
            charlie.realm, "a&b<example",
            "raw realm kept as FreeSWITCH wrote it"
        );
        assert_eq!(charlie.state, GatewayState::Reged);
        assert_eq!(charlie.ping_time_ms, Some(12.57));
    }

    #[test]
    fn the_named_form_distinguishes_running_absent_and_garbage() {
        let one = LIST.replace("<gateways>", "").replace("</gateways>", "");
        match parse_named(&one) {
            NamedStatus::Running(g) => assert_eq!(g.name, "alpha"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_named("Invalid Gateway!\n"), NamedStatus::Absent);
        assert!(matches!(
            parse_named("-ERR Command not found!\n"),
            NamedStatus::Unreadable(_)
        ));
        assert!(matches!(parse_named(""), NamedStatus::Unreadable(_)));
    }

    #[test]
    fn an_empty_list_and_a_truncated_output_do_not_panic() {
        assert!(parse_gateways("<?xml version=\"1.0\"?>\n<gateways>\n</gateways>\n").is_empty());
        let truncated = &LIST[..LIST.find("<state>REGED").unwrap()];
        let all = parse_gateways(truncated);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].state, GatewayState::default());
        assert_eq!(all[1].calls_in, None);
        for cut in 0..LIST.len() {
            if LIST.is_char_boundary(cut) {
                let _ = parse_gateways(&LIST[..cut]);
                let _ = parse_named(&LIST[cut..]);
            }
        }
    }

    #[test]
    fn duplicates_after_killgw_and_rescan_are_kept() {
        let doubled = format!("{LIST}{LIST}");
        let names: Vec<String> = parse_gateways(&doubled)
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, ["alpha", "charlie", "alpha", "charlie"]);
    }

    #[test]
    fn a_block_without_a_name_is_skipped_and_bad_numbers_are_none() {
        let odd = "<gateways><gateway><profile>x</profile></gateway><gateway><name>g</name><calls-in>-1</calls-in><pingtime>nan</pingtime></gateway></gateways>";
        let all = parse_gateways(odd);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].calls_in, None);
        assert_eq!(all[0].ping_time_ms, None);
    }

    #[test]
    fn proxy_is_reduced_to_host_and_port() {
        assert_eq!(
            proxy_host_port("sip:sip.alpha.example:5060"),
            "sip.alpha.example:5060"
        );
        assert_eq!(
            proxy_host_port("sips:H.example:5061;transport=tls"),
            "h.example:5061"
        );
        assert_eq!(proxy_host_port("192.0.2.1:5060"), "192.0.2.1:5060");
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn any_output_is_handled_without_panicking(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)
        ) {
            crate::fuzzing::esl_reply(&bytes);
        }

        /// Random text rarely forms tags; this alphabet makes blocks, truncations, nesting and
        /// entities common.
        #[test]
        fn tag_soup_is_handled_without_panicking(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "<gateway>", "</gateway>", "<gateways>", "<name>", "</name>", "alpha",
                        "<profile>", "</profile>", "external", "<proxy>", "</proxy>",
                        "sip:sip.example.net:5060", "<realm>", "</realm>", "<username>",
                        "</username>", "<pingtime>", "</pingtime>", "NaN", "1e309", "-1",
                        "<calls-in>", "</calls-in>", "&amp;", "&lt;", "Invalid Gateway!",
                        "+OK", "-ERR", "\0", "\n", "é",
                    ]).prop_map(str::to_string),
                    ".{0,8}",
                ],
                0..64,
            )
        ) {
            crate::fuzzing::esl_reply(pieces.concat().as_bytes());
        }
    }
}
