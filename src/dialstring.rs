//! Legs → `bridge` data, and the strict parser of exactly that grammar.
//!
//! Everything in a dial string is live syntax for FreeSWITCH's originate parser: `| , [ ] { }`
//! split legs and variables, `\r \n` become control characters, `:_:` starts an enterprise
//! originate, `@` in the number picks the target host, `^` overrides the To URI (FREESWITCH.md
//! §0.4, §4.1). So a dial string is built only from validated newtypes and never from caller
//! data; [`parse_bridge_data`] accepts only what [`bridge_data`] can produce, which lets tests
//! and the hostile-input suites assert that a document carries nothing else.
//!
//! Pure: no I/O.

use uuid::Uuid;

use crate::model::{
    CallerName, CallerNumber, DialNumber, GatewayName, HeaderName, HeaderValue, UNDEF,
};
use crate::routing::Leg;

const GATEWAY_PREFIX: &str = "sofia/gateway/";
const HEADER_VAR_PREFIX: &str = "sip_h_";
const PROGRESS_TIMEOUT_VAR: &str = "leg_progress_timeout";
/// The leg's caller ID number (switch_ivr_originate.c reads `origination_caller_id_number` into
/// the new channel's caller profile; with `caller-id-in-from` it is the From user).
const CALLER_ID_VAR: &str = "origination_caller_id_number";
/// The leg's caller-ID name, set on every leg (issue 36): switch_ivr_originate.c reads
/// `origination_caller_id_name` into the new channel's caller profile, and sofia_glue.c
/// `sofia_glue_do_invite` writes that between the From header's quotes, unescaped. Left unset,
/// it would be the caller's own name as sofia holds it (quotes, `<`, `%22` decoded again by
/// `check_decode`…). `_undef_` is sofia's "no display name": the From is then `<sip:…>` alone
/// (sofia_glue.c:1346, and the same test for P-Asserted-Identity at :1475).
const CALLER_NAME_VAR: &str = "origination_caller_id_name";
/// sofia_glue.c `sofia_glue_do_invite`: `sip_cid_type=pid` makes the INVITE carry the caller ID
/// as P-Asserted-Identity when the caller profile has the `screen` flag (else as
/// P-Preferred-Identity), and `Privacy: id` with `hide_number`, else `Privacy: none`.
const ASSERTED_IDENTITY: &str = "sip_cid_type=pid,origination_privacy=screen";
const ASSERTED_PRIVATE_IDENTITY: &str = "sip_cid_type=pid,origination_privacy=screen+hide_number";

/// On every leg: the carrier's SIP code, never a `Reason: Q.850;cause=N` header, decides the
/// leg's hangup cause (sofia.c `sofia_handle_sip_i_state`, FREESWITCH.md §4.4). Failover is
/// configured in SIP codes; with the header honoured, a carrier's `486` carrying `cause=1`
/// would reach UNALLOCATED_NUMBER and fail over on a callee's busy, and a `503` carrying
/// `cause=17` would stop at USER_BUSY.
const SIP_CODE_DECIDES: &str = "ignore_q850_reason=true";

/// The leg's own tags, read back from its `CHANNEL_HANGUP_COMPLETE` (`esl::hangup`): the
/// carrier, the leg's 1-based place in the call's order, and, when there is one, the route and
/// the call's tenant. The variables live on the B-leg only (`[]` is per leg), so an A-leg's
/// hangup never looks like one of our legs.
pub const LEG_CARRIER: &str = "trunkline_leg_carrier";
pub const LEG_ATTEMPT: &str = "trunkline_leg_attempt";
pub const LEG_ROUTE: &str = "trunkline_leg_route";
pub const LEG_TENANT: &str = "trunkline_leg_tenant";

/// `[ignore_q850_reason=true,trunkline_leg_carrier=<id>,trunkline_leg_attempt=<n>,sip_h_X-A=v,
/// leg_progress_timeout=30]sofia/gateway/<gw>/<number>` for the leg tried `attempt`-th (1-based).
///
/// Per-leg variables go in `[]` unquoted. That is safe only because every piece is a validated
/// newtype (FREESWITCH.md §6.4.3): `HeaderValue` excludes `, [ ] { } | ' " \ ^ < > & $` and
/// `:_:`, so a value can neither split the variable list or the leg list, nor switch the
/// separator (`^^`), nor carry the `\r`/`\n` escapes the splitter decodes, nor start a
/// `${…}` expansion; `HeaderName` is `X-[A-Za-z0-9-]`; `GatewayName` is `[a-z0-9_.-]`; and
/// `DialNumber` is `+?[0-9*#]`, so it has no `@` (host override), `^` (To override) or `;`
/// (URI params); `CallerName` is ASCII letters, digits, inner spaces and `+ . _ -`. Quoting
/// would not help in `[]` anyway: the `|` split strips quotes first (§4.1 step 6).
pub fn bridge_data(leg: &Leg, attempt: usize) -> String {
    let mut vars = String::with_capacity(256);
    vars.push_str(SIP_CODE_DECIDES);
    // UUIDs are hex and `-`; the attempt is digits: nothing the splitter reads.
    vars.push_str(&format!(
        ",{LEG_CARRIER}={},{LEG_ATTEMPT}={attempt}",
        leg.carrier_id.hyphenated()
    ));
    if let Some(route) = leg.route_id {
        vars.push_str(&format!(",{LEG_ROUTE}={}", route.hyphenated()));
    }
    if let Some(tenant) = leg.tenant_id {
        vars.push_str(&format!(",{LEG_TENANT}={}", tenant.hyphenated()));
    }
    for (name, value) in &leg.headers {
        vars.push(',');
        vars.push_str(HEADER_VAR_PREFIX);
        vars.push_str(name.as_str());
        vars.push('=');
        vars.push_str(value.as_str());
    }
    if let Some(seconds) = leg.progress_timeout_seconds {
        vars.push_str(&format!(",{PROGRESS_TIMEOUT_VAR}={seconds}"));
    }
    if let Some(caller) = &leg.caller_id {
        vars.push_str(&format!(",{CALLER_ID_VAR}={caller}"));
    }
    let name = leg.caller_name.as_ref().map_or(UNDEF, CallerName::as_str);
    vars.push_str(&format!(",{CALLER_NAME_VAR}={name}"));
    match (leg.asserted_identity, leg.privacy) {
        (true, false) => vars.push_str(&format!(",{ASSERTED_IDENTITY}")),
        (true, true) => vars.push_str(&format!(",{ASSERTED_PRIVATE_IDENTITY}")),
        (false, _) => {}
    }
    let (gateway, number) = (leg.gateway_name.as_str(), leg.number.as_str());
    // Sized once: this is built for every leg of every call.
    let mut data = String::with_capacity(
        vars.len() + 2 + GATEWAY_PREFIX.len() + gateway.len() + 1 + number.len(),
    );
    data.push('[');
    data.push_str(&vars);
    data.push(']');
    data.push_str(GATEWAY_PREFIX);
    data.push_str(gateway);
    data.push('/');
    data.push_str(number);
    data
}

/// What [`parse_bridge_data`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBridge {
    pub carrier_id: Uuid,
    pub attempt: u32,
    pub route_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub progress_timeout_seconds: Option<u32>,
    pub caller_id: Option<CallerNumber>,
    /// `Some(name)` when the leg sets `origination_caller_id_name`: `Some(None)` is `_undef_`,
    /// no display name.
    pub caller_name: Option<Option<CallerName>>,
    pub asserted_identity: bool,
    pub privacy: bool,
    pub gateway: GatewayName,
    pub number: DialNumber,
}

/// Parses `^\[ignore_q850_reason=true,<tags>(,var)*\]sofia/gateway/<GatewayName>/<DialNumber>$`
/// where the tags are `trunkline_leg_carrier=<uuid>,trunkline_leg_attempt=<n>` then, in this
/// order and each at most once, `trunkline_leg_route=<uuid>`, `trunkline_leg_tenant=<uuid>`;
/// and a var is `sip_h_<HeaderName>=<HeaderValue>`, or at most once each
/// `leg_progress_timeout=<digits>`, `origination_caller_id_number=<CallerNumber>`,
/// `origination_caller_id_name=<CallerName or _undef_>` and
/// `sip_cid_type=pid,origination_privacy=screen[+hide_number]`. Anything else — another leg,
/// `{}` globals, other variables, escapes — is `None`.
pub fn parse_bridge_data(s: &str) -> Option<ParsedBridge> {
    let rest = s.strip_prefix('[')?.strip_prefix(SIP_CODE_DECIDES)?;
    // No validated value contains `]`, so the first one closes the block.
    let end = rest.find(']')?;
    let (vars, target) = (&rest[..end], &rest[end + 1..]);
    if !vars.is_empty() && !vars.starts_with(',') {
        return None;
    }
    let mut list = vars.split(',').skip(1).peekable();
    let mut tag = |name: &str, required: bool| -> Option<Option<&str>> {
        match list
            .peek()
            .and_then(|v| v.strip_prefix(name)?.strip_prefix('='))
        {
            Some(value) => {
                list.next();
                Some(Some(value))
            }
            None if required => None,
            None => Some(None),
        }
    };
    // Our own hyphenated UUIDs only: 36 characters of hex and `-`.
    let id = |v: &str| Uuid::try_parse(v).ok().filter(|_| v.len() == 36);
    let carrier_id = id(tag(LEG_CARRIER, true)??)?;
    let attempt = tag(LEG_ATTEMPT, true)??;
    if attempt.is_empty()
        || attempt.starts_with('0')
        || !attempt.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let attempt = attempt.parse().ok()?;
    let route_id = tag(LEG_ROUTE, false)?
        .map(id)
        .map_or(Some(None), |r| r.map(Some))?;
    let tenant_id = tag(LEG_TENANT, false)?
        .map(id)
        .map_or(Some(None), |t| t.map(Some))?;
    let mut headers = Vec::new();
    let mut progress_timeout_seconds = None;
    let mut caller_id = None;
    let mut caller_name = None;
    let mut identity = None;
    while let Some(var) = list.next() {
        let (name, value) = var.split_once('=')?;
        if var == "sip_cid_type=pid" && identity.is_none() {
            let pair = format!("{var},{}", list.next()?);
            identity = Some(match pair.as_str() {
                ASSERTED_IDENTITY => false,
                ASSERTED_PRIVATE_IDENTITY => true,
                _ => return None,
            });
        } else if name == CALLER_ID_VAR && caller_id.is_none() {
            caller_id = Some(
                CallerNumber::parse(value)
                    .ok()
                    .filter(|c| c.as_str() == value)?,
            );
        } else if name == CALLER_NAME_VAR && caller_name.is_none() {
            caller_name = Some(match value {
                UNDEF => None,
                _ => Some(
                    CallerName::parse(value)
                        .ok()
                        .filter(|c| c.as_str() == value)?,
                ),
            });
        } else if let Some(header) = name.strip_prefix(HEADER_VAR_PREFIX) {
            headers.push((
                HeaderName::parse(header).ok()?,
                HeaderValue::parse(value).ok()?,
            ));
        } else if name == PROGRESS_TIMEOUT_VAR && progress_timeout_seconds.is_none() {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            progress_timeout_seconds = Some(value.parse().ok()?);
        } else {
            return None;
        }
    }
    let (gateway, number) = target.strip_prefix(GATEWAY_PREFIX)?.split_once('/')?;
    Some(ParsedBridge {
        carrier_id,
        attempt,
        route_id,
        tenant_id,
        headers,
        progress_timeout_seconds,
        caller_id,
        caller_name,
        asserted_identity: identity.is_some(),
        privacy: identity == Some(true),
        gateway: GatewayName::parse(gateway).ok()?,
        number: DialNumber::parse(number).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(headers: &[(&str, &str)], timeout: Option<u32>) -> Leg {
        let mut leg = Leg::plain(Uuid::nil(), "alpha", "9915551234567");
        leg.headers = headers
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::parse(n).unwrap(),
                    HeaderValue::parse(v).unwrap(),
                )
            })
            .collect();
        leg.progress_timeout_seconds = timeout;
        leg
    }

    #[test]
    fn every_leg_lets_the_sip_code_decide_its_cause() {
        assert_eq!(
            bridge_data(&leg(&[], None), 1),
            "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000000,trunkline_leg_attempt=1,origination_caller_id_name=_undef_]sofia/gateway/alpha/9915551234567"
        );
    }

    #[test]
    fn headers_come_after_that_then_the_progress_timeout() {
        assert_eq!(
            bridge_data(
                &leg(&[("X-Account", "42"), ("X-Tier", "gold; a=b")], Some(30)),
                1
            ),
            "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000000,trunkline_leg_attempt=1,sip_h_X-Account=42,sip_h_X-Tier=gold; a=b,leg_progress_timeout=30,origination_caller_id_name=_undef_]sofia/gateway/alpha/9915551234567"
        );
    }

    #[test]
    fn every_leg_sets_its_caller_name_or_none() {
        let mut named = leg(&[], None);
        named.caller_name = Some(CallerName::parse("Front Desk").unwrap());
        let data = bridge_data(&named, 1);
        assert!(
            data.ends_with(
                ",origination_caller_id_name=Front Desk]sofia/gateway/alpha/9915551234567"
            ),
            "{data}"
        );
        assert_eq!(
            parse_bridge_data(&data).unwrap().caller_name,
            Some(named.caller_name.clone())
        );
        let unnamed = bridge_data(&leg(&[], None), 1);
        assert!(
            unnamed.contains(",origination_caller_id_name=_undef_]"),
            "{unnamed}"
        );
        assert_eq!(parse_bridge_data(&unnamed).unwrap().caller_name, Some(None));
    }

    #[test]
    fn a_caller_name_that_is_not_a_valid_one_is_refused_by_the_parser() {
        let ours = format!(
            "[{SIP_CODE_DECIDES},{LEG_CARRIER}={},{LEG_ATTEMPT}=1",
            Uuid::nil()
        );
        for name in [
            "Evil\" <sip:x@evil>",
            "${system id}",
            "a\\r\\nX-Evil: 1",
            " Alice",
            "_UNDEF_",
            "",
        ] {
            let s = format!("{ours},origination_caller_id_name={name}]sofia/gateway/alpha/1");
            assert_eq!(parse_bridge_data(&s), None, "{s:?}");
        }
        let twice = format!(
            "{ours},origination_caller_id_name=A,origination_caller_id_name=B]sofia/gateway/alpha/1"
        );
        assert_eq!(parse_bridge_data(&twice), None);
    }

    #[test]
    fn what_we_generate_parses_back_to_the_same_pieces() {
        for l in [
            leg(&[], None),
            leg(&[("X-Account", "42")], None),
            leg(&[], Some(8)),
            leg(&[("X-A", "1"), ("X-B", "x:y=z")], Some(45)),
        ] {
            let parsed = parse_bridge_data(&bridge_data(&l, 2)).expect("own output parses");
            assert_eq!((parsed.carrier_id, parsed.attempt), (l.carrier_id, 2));
            assert_eq!(parsed.gateway, l.gateway_name);
            assert_eq!(parsed.number, l.number);
            assert_eq!(parsed.headers, l.headers);
            assert_eq!(parsed.progress_timeout_seconds, l.progress_timeout_seconds);
        }
    }

    proptest::proptest! {
        #[test]
        fn every_leg_of_valid_pieces_round_trips(
            headers in proptest::collection::vec(
                ("X-[A-Za-z0-9-]{1,20}", "[!#%()*+./0-9:;=?@A-Z_`a-z~-]([ !#%()*+./0-9:;=?@A-Z_`a-z~-]{0,30}[!#%()*+./0-9:;=?@A-Z_`a-z~-])?"),
                0..4,
            ),
            timeout in proptest::option::of(1u32..600),
            number in "\\+?[0-9*#]{1,30}",
        ) {
            let headers: Vec<(HeaderName, HeaderValue)> = headers
                .iter()
                .filter_map(|(n, v)| Some((HeaderName::parse(n).ok()?, HeaderValue::parse(v).ok()?)))
                .collect();
            let mut l = leg(&[], timeout);
            l.headers = headers;
            l.number = DialNumber::parse(&number).unwrap();
            let parsed = parse_bridge_data(&bridge_data(&l, 2)).expect("own output parses");
            proptest::prop_assert_eq!(parsed.headers, l.headers);
            proptest::prop_assert_eq!(parsed.number, l.number);
            proptest::prop_assert_eq!(parsed.progress_timeout_seconds, timeout);
        }

        #[test]
        fn the_parser_never_panics(s in ".{0,200}") {
            let _ = parse_bridge_data(&s);
        }

        /// The fuzz target's path: pieces from arbitrary text, kept only where the newtype
        /// parsers accept them.
        #[test]
        fn legs_from_whatever_the_parsers_accept_round_trip(
            s in "([a-z0-9._-]{0,12}|[+0-9*#]{0,12}|X-[A-Za-z0-9-]{1,8}|[ -~]{0,12}|.{0,12})(\n([a-z0-9._-]{0,12}|[+0-9*#]{0,12}|X-[A-Za-z0-9-]{1,8}|[ -~]{0,12}|.{0,12})){0,8}"
        ) {
            crate::fuzzing::dialstring(s.as_bytes());
        }
    }

    #[test]
    fn anything_beyond_the_grammar_is_refused() {
        for hostile in [
            "",
            "[]sofia/gateway/alpha/1",
            "{sip_h_X-A=1}sofia/gateway/alpha/1",
            "[sip_h_X-A=1]sofia/gateway/alpha/1|sofia/gateway/evil/1",
            "sofia/gateway/alpha/1,sofia/gateway/evil/1",
            "sofia/gateway/alpha/1@evil.example",
            "sofia/gateway/alpha/1^evil",
            "sofia/gateway/alpha/1;transport=tcp",
            "sofia/gateway/alpha/1:_:sofia/gateway/evil/1",
            "sofia/gateway/alpha/${destination_number}",
            "sofia/gateway/alpha/$1",
            "sofia/gateway/Alpha/1",
            "sofia/gateway/alpha/1/2",
            "sofia/internal/1@host",
            "[api_on_answer=system id]sofia/gateway/alpha/1",
            "[sip_h_X-A=1,api_on_answer=system id]sofia/gateway/alpha/1",
            "[sip_h_X-A=a\\r\\nX-Evil: 1]sofia/gateway/alpha/1",
            "[sip_h_X-A=${system id}]sofia/gateway/alpha/1",
            "[^^:sip_h_X-A=1]sofia/gateway/alpha/1",
            "[sip_h_X-FS-Evil=1]sofia/gateway/alpha/1",
            "[leg_progress_timeout=]sofia/gateway/alpha/1",
            "[leg_progress_timeout=+5]sofia/gateway/alpha/1",
            "[leg_progress_timeout=5,leg_progress_timeout=6]sofia/gateway/alpha/1",
            "[leg_progress_timeout=99999999999]sofia/gateway/alpha/1",
            "[sip_h_X-A]sofia/gateway/alpha/1",
            "[sip_h_X-A=1]]sofia/gateway/alpha/1",
            " sofia/gateway/alpha/1",
            "sofia/gateway/alpha/1 ",
            "sofia/gateway/alpha/1\n",
        ] {
            // Refused as it stands, and with our leading variables in front of it.
            let ours = format!(
                "{SIP_CODE_DECIDES},{LEG_CARRIER}={},{LEG_ATTEMPT}=1",
                Uuid::nil()
            );
            let with_ours = match hostile.strip_prefix('[') {
                Some(rest) => format!("[{ours},{rest}"),
                None => format!("[{ours}]{hostile}"),
            };
            for s in [hostile, with_ours.as_str()] {
                assert_eq!(parse_bridge_data(s), None, "{s:?}");
            }
        }
        for ours_changed in [
            "sofia/gateway/alpha/1",
            "[ignore_q850_reason=false]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true,ignore_q850_reason=true]sofia/gateway/alpha/1",
            "[ignore_q850_reason=trueX]sofia/gateway/alpha/1",
            "[sip_h_X-A=1,ignore_q850_reason=true]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000000]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true,trunkline_leg_carrier=00000000000000000000000000000000,trunkline_leg_attempt=1]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000000,trunkline_leg_attempt=01]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000000,trunkline_leg_attempt=1,trunkline_leg_tenant=00000000-0000-0000-0000-000000000000,trunkline_leg_route=00000000-0000-0000-0000-000000000000]sofia/gateway/alpha/1",
            "[ignore_q850_reason=true,trunkline_leg_attempt=1,trunkline_leg_carrier=00000000-0000-0000-0000-000000000000]sofia/gateway/alpha/1",
        ] {
            assert_eq!(parse_bridge_data(ours_changed), None, "{ours_changed:?}");
        }
    }
}
