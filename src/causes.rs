//! SIP response codes → FreeSWITCH hangup causes, and the compilation of a leg's failover SIP
//! codes into the cause *names* `continue_on_fail` and `transfer_on_fail` understand.
//!
//! Both variables match cause names or FreeSWITCH cause numbers only, never SIP codes
//! (FREESWITCH.md §0.8, §4.3), and sofia maps SIP codes to causes many-to-one (§4.4: 486 and
//! 600 are both USER_BUSY). [`compile`] therefore puts a cause in `continue_on_fail` only when
//! *every* SIP code that reaches it is a failover code; a cause shared with a code that must not
//! fail over is *ambiguous* and goes back to trunkline, which decides on the real SIP code.
//! Nothing outside the configured codes ever fails over, in either form.
//!
//! Pure data and functions: no I/O. Output carries cause names only, never numbers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Serialize, Serializer};

use crate::model::FailoverCodes;

/// A FreeSWITCH hangup cause (switch_types.h `switch_call_cause_t`), as named by
/// `switch_channel_cause2str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cause {
    pub name: &'static str,
    pub number: u16,
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Declares the known causes as associated constants plus the lookup table behind
/// [`cause_by_name`].
macro_rules! causes {
    ($($name:ident = $number:literal),+ $(,)?) => {
        impl Cause {
            $(pub const $name: Cause = Cause { name: stringify!($name), number: $number };)+
        }

        /// Every cause FreeSWITCH can report (switch_types.h), so a posted cause can be checked
        /// before we echo it into `hangup`.
        const ALL_CAUSES: &[Cause] = &[$(Cause::$name),+];
    };
}

causes! {
    UNALLOCATED_NUMBER = 1,
    NO_ROUTE_TRANSIT_NET = 2,
    NO_ROUTE_DESTINATION = 3,
    CHANNEL_UNACCEPTABLE = 6,
    CALL_AWARDED_DELIVERED = 7,
    NORMAL_CLEARING = 16,
    USER_BUSY = 17,
    NO_USER_RESPONSE = 18,
    NO_ANSWER = 19,
    SUBSCRIBER_ABSENT = 20,
    CALL_REJECTED = 21,
    NUMBER_CHANGED = 22,
    REDIRECTION_TO_NEW_DESTINATION = 23,
    EXCHANGE_ROUTING_ERROR = 25,
    DESTINATION_OUT_OF_ORDER = 27,
    INVALID_NUMBER_FORMAT = 28,
    FACILITY_REJECTED = 29,
    RESPONSE_TO_STATUS_ENQUIRY = 30,
    NORMAL_UNSPECIFIED = 31,
    NORMAL_CIRCUIT_CONGESTION = 34,
    NETWORK_OUT_OF_ORDER = 38,
    NORMAL_TEMPORARY_FAILURE = 41,
    SWITCH_CONGESTION = 42,
    ACCESS_INFO_DISCARDED = 43,
    REQUESTED_CHAN_UNAVAIL = 44,
    PRE_EMPTED = 45,
    FACILITY_NOT_SUBSCRIBED = 50,
    OUTGOING_CALL_BARRED = 52,
    INCOMING_CALL_BARRED = 54,
    BEARERCAPABILITY_NOTAUTH = 57,
    BEARERCAPABILITY_NOTAVAIL = 58,
    SERVICE_UNAVAILABLE = 63,
    BEARERCAPABILITY_NOTIMPL = 65,
    CHAN_NOT_IMPLEMENTED = 66,
    FACILITY_NOT_IMPLEMENTED = 69,
    SERVICE_NOT_IMPLEMENTED = 79,
    INVALID_CALL_REFERENCE = 81,
    INCOMPATIBLE_DESTINATION = 88,
    INVALID_MSG_UNSPECIFIED = 95,
    MANDATORY_IE_MISSING = 96,
    MESSAGE_TYPE_NONEXIST = 97,
    WRONG_MESSAGE = 98,
    IE_NONEXIST = 99,
    INVALID_IE_CONTENTS = 100,
    WRONG_CALL_STATE = 101,
    RECOVERY_ON_TIMER_EXPIRE = 102,
    MANDATORY_IE_LENGTH_ERROR = 103,
    PROTOCOL_ERROR = 111,
    INTERWORKING = 127,
    SUCCESS = 142,
    ORIGINATOR_CANCEL = 487,
    CRASH = 700,
    SYSTEM_SHUTDOWN = 701,
    LOSE_RACE = 702,
    MANAGER_REQUEST = 703,
    BLIND_TRANSFER = 800,
    ATTENDED_TRANSFER = 801,
    ALLOTTED_TIMEOUT = 802,
    USER_CHALLENGE = 803,
    MEDIA_TIMEOUT = 804,
    PICKED_OFF = 805,
    USER_NOT_REGISTERED = 806,
    PROGRESS_TIMEOUT = 807,
    INVALID_GATEWAY = 808,
    GATEWAY_DOWN = 809,
    INVALID_URL = 810,
    INVALID_PROFILE = 811,
    NO_PICKUP = 812,
    SRTP_READ_ERROR = 813,
    BOWOUT = 814,
    BUSY_EVERYWHERE = 815,
    DECLINE = 816,
    DOES_NOT_EXIST_ANYWHERE = 817,
    NOT_ACCEPTABLE = 818,
    UNWANTED = 819,
    NO_IDENTITY = 820,
    BAD_IDENTITY_INFO = 821,
    UNSUPPORTED_CERTIFICATE = 822,
    INVALID_IDENTITY = 823,
    STALE_DATE = 824,
    REJECT_ALL = 825,
}

/// sofia_glue.c `sofia_glue_sip_cause_to_freeswitch` (FREESWITCH.md §4.4). Every code not
/// listed maps to NORMAL_UNSPECIFIED.
const SIP_TO_CAUSE: &[(&[u16], Cause)] = &[
    (&[200], Cause::NORMAL_CLEARING),
    (&[401, 402, 403, 407, 603, 608], Cause::CALL_REJECTED),
    (&[404], Cause::UNALLOCATED_NUMBER),
    (&[485, 604], Cause::NO_ROUTE_DESTINATION),
    (&[408, 504], Cause::RECOVERY_ON_TIMER_EXPIRE),
    (&[410], Cause::NUMBER_CHANGED),
    (
        &[413, 414, 416, 420, 421, 423, 505, 513],
        Cause::INTERWORKING,
    ),
    (&[480], Cause::NO_USER_RESPONSE),
    (&[400, 481, 500, 503], Cause::NORMAL_TEMPORARY_FAILURE),
    (&[486, 600], Cause::USER_BUSY),
    (&[484], Cause::INVALID_NUMBER_FORMAT),
    (&[488, 606], Cause::INCOMPATIBLE_DESTINATION),
    (&[502], Cause::NETWORK_OUT_OF_ORDER),
    (&[405], Cause::SERVICE_UNAVAILABLE),
    (&[406, 415, 501], Cause::SERVICE_NOT_IMPLEMENTED),
    (&[482, 483], Cause::EXCHANGE_ROUTING_ERROR),
    (&[487], Cause::ORIGINATOR_CANCEL),
    (&[607], Cause::UNWANTED),
    (&[428], Cause::NO_IDENTITY),
    (&[429], Cause::BAD_IDENTITY_INFO),
    (&[437], Cause::UNSUPPORTED_CERTIFICATE),
    (&[438], Cause::INVALID_IDENTITY),
];

/// The cause sofia gives a failed outbound leg that received this SIP final response
/// (ignoring a `Reason: Q.850` header, which overrides the table, §4.4).
pub fn cause_for_sip(code: u16) -> Cause {
    SIP_TO_CAUSE
        .iter()
        .find(|(codes, _)| codes.contains(&code))
        .map_or(Cause::NORMAL_UNSPECIFIED, |(_, cause)| *cause)
}

/// A cause FreeSWITCH may report (`originate_disposition`, `last_bridge_hangup_cause`…), looked
/// up by its exact upper-case name. The returned name is our static string, never the input.
pub fn cause_by_name(s: &str) -> Option<Cause> {
    ALL_CAUSES.iter().find(|c| c.name == s).copied()
}

/// `sip:NNN` as in `variable_last_bridge_proto_specific_hangup_cause=sip:503`, strictly
/// `^sip:[1-6][0-9][0-9]$`.
pub fn parse_sip_cause(s: &str) -> Option<u16> {
    let digits = s.strip_prefix("sip:")?.as_bytes();
    match digits {
        [a @ b'1'..=b'6', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// A cause that a failover code and a non-failover code both map to (e.g. 600 listed, 486
/// not: both are USER_BUSY). `continue_on_fail` cannot tell them apart, so the default form
/// never lists such a cause there: it sends it back to trunkline (`transfer_on_fail`), which
/// decides on the real SIP code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collision {
    pub cause: &'static str,
    /// The failover SIP codes that reach this cause, compactly (`500, 503`, `506–512`).
    #[serde(serialize_with = "serialize_ranges")]
    pub failover_codes: Vec<u16>,
    /// The SIP codes (400-699) that are *not* failover codes but reach this cause as well.
    #[serde(serialize_with = "serialize_ranges")]
    pub other_codes: Vec<u16>,
}

/// Sorted codes as runs: `[400, 481, 506, 507, 508]` → `400, 481, 506–508`.
pub fn code_ranges(codes: &[u16]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < codes.len() {
        let start = codes[i];
        while i + 1 < codes.len() && codes[i + 1] == codes[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&start.to_string());
        if codes[i] != start {
            out.push('–');
            out.push_str(&codes[i].to_string());
        }
        i += 1;
    }
    out
}

fn serialize_ranges<S: Serializer>(codes: &[u16], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&code_ranges(codes))
}

/// How a leg's failover codes are expressed in the default (cause-name) form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledFailover {
    /// `continue_on_fail`: causes reached *only* by failover codes, so FreeSWITCH may move on
    /// by itself. Ordered by the lowest failover SIP code that reaches each.
    pub causes: Vec<&'static str>,
    /// `transfer_on_fail`: causes reached by failover codes and by other codes too. FreeSWITCH
    /// hands these back to trunkline, which decides on the real SIP code
    /// (`last_bridge_proto_specific_hangup_cause`). Never in `causes`: that would fail over on
    /// the other codes as well (a callee's 486 through 600's USER_BUSY).
    pub ambiguous: Vec<&'static str>,
    /// One entry per ambiguous cause, with the codes on both sides.
    pub collisions: Vec<Collision>,
}

/// The SIP codes a failover list can name (`FailoverCode` accepts 4xx–6xx only).
const FAILURE_CODES: std::ops::RangeInclusive<u16> = 400..=699;

/// The cause of every code in [`FAILURE_CODES`], looked up in the table once: every dialplan
/// fetch compiles the failover codes of each leg, so this is on the hot path.
fn failure_causes() -> impl Iterator<Item = (u16, Cause)> {
    static TABLE: OnceLock<Vec<(u16, Cause)>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            FAILURE_CODES
                .map(|code| (code, cause_for_sip(code)))
                .collect()
        })
        .iter()
        .copied()
}

/// Splits the causes reached by these failover codes into those every one of whose SIP codes
/// is a failover code (`causes`) and the rest (`ambiguous`, with their collisions), each
/// ordered by the lowest failover SIP code that reaches it.
pub fn compile(codes: &FailoverCodes) -> CompiledFailover {
    // cause → (failover codes, other codes), in order of first failover code.
    let mut reached: Vec<(&'static str, Vec<u16>, Vec<u16>)> = Vec::new();
    let mut others: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    for (code, cause) in failure_causes() {
        if codes.matches(code) {
            match reached.iter_mut().find(|(name, ..)| *name == cause.name) {
                Some(entry) => entry.1.push(code),
                None => reached.push((cause.name, vec![code], Vec::new())),
            }
        } else {
            others.entry(cause.name).or_default().push(code);
        }
    }
    let mut compiled = CompiledFailover {
        causes: Vec::new(),
        ambiguous: Vec::new(),
        collisions: Vec::new(),
    };
    for (cause, failover_codes, _) in reached {
        match others.remove(cause) {
            None => compiled.causes.push(cause),
            Some(other_codes) => {
                compiled.ambiguous.push(cause);
                compiled.collisions.push(Collision {
                    cause,
                    failover_codes,
                    other_codes,
                });
            }
        }
    }
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FailoverCode;

    fn codes(list: &[&str]) -> FailoverCodes {
        FailoverCodes::new(
            list.iter()
                .map(|s| FailoverCode::parse(s).unwrap())
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_sofia_table_maps_known_codes() {
        assert_eq!(cause_for_sip(404), Cause::UNALLOCATED_NUMBER);
        assert_eq!(cause_for_sip(503), Cause::NORMAL_TEMPORARY_FAILURE);
        assert_eq!(cause_for_sip(486), Cause::USER_BUSY);
        assert_eq!(cause_for_sip(600), Cause::USER_BUSY);
        assert_eq!(cause_for_sip(603).name, "CALL_REJECTED");
        assert_eq!(cause_for_sip(607).number, 819);
        assert_eq!(cause_for_sip(438), Cause::INVALID_IDENTITY);
        assert_eq!(cause_for_sip(487).number, 487);
    }

    #[test]
    fn unlisted_codes_are_normal_unspecified() {
        for code in [580, 599, 605, 499, 0, 999] {
            assert_eq!(cause_for_sip(code), Cause::NORMAL_UNSPECIFIED, "{code}");
        }
    }

    #[test]
    fn sip_causes_parse_strictly() {
        assert_eq!(parse_sip_cause("sip:503"), Some(503));
        assert_eq!(parse_sip_cause("sip:100"), Some(100));
        assert_eq!(parse_sip_cause("sip:699"), Some(699));
        for bad in [
            "sip:700", "sip:099", "sip:50", "sip:5031", "SIP:503", "sip: 503", "503", "sip:5a3",
            " sip:503", "sip:503 ", "sip:+03", "",
        ] {
            assert_eq!(parse_sip_cause(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cause_names_are_looked_up_exactly() {
        for name in [
            "NO_ANSWER",
            "ALLOTTED_TIMEOUT",
            "PROGRESS_TIMEOUT",
            "INVALID_GATEWAY",
            "GATEWAY_DOWN",
            "ORIGINATOR_CANCEL",
            "NORMAL_CLEARING",
            "USER_BUSY",
        ] {
            assert_eq!(cause_by_name(name).map(|c| c.name), Some(name));
        }
        assert_eq!(cause_by_name("GATEWAY_DOWN").unwrap().number, 809);
        for bad in [
            "user_busy",
            "USER_BUSY ",
            "",
            "sip:486",
            "17",
            "call accepted",
        ] {
            assert_eq!(cause_by_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_table_cause_is_known_by_name() {
        for (_, cause) in SIP_TO_CAUSE {
            assert_eq!(cause_by_name(cause.name), Some(*cause));
        }
    }

    #[test]
    fn an_exact_code_compiles_to_its_cause_without_collision() {
        let c = compile(&codes(&["404"]));
        assert_eq!(c.causes, vec!["UNALLOCATED_NUMBER"]);
        assert!(c.ambiguous.is_empty() && c.collisions.is_empty());
    }

    #[test]
    fn a_cause_shared_with_a_callee_answer_is_ambiguous_never_continued() {
        // 600 listed, 486 not: USER_BUSY must come back for a decision on the real code.
        let c = compile(&codes(&["6xx"]));
        assert!(!c.causes.contains(&"USER_BUSY"));
        assert!(c.ambiguous.contains(&"USER_BUSY"));
        let busy = c
            .collisions
            .iter()
            .find(|x| x.cause == "USER_BUSY")
            .unwrap();
        assert_eq!(busy.failover_codes, vec![600]);
        assert_eq!(busy.other_codes, vec![486]);
    }

    #[test]
    fn the_platform_default_continues_only_on_causes_no_callee_answer_reaches() {
        let c = compile(&FailoverCodes::platform_default());
        assert_eq!(
            &c.causes[..],
            &[
                "UNALLOCATED_NUMBER",
                "RECOVERY_ON_TIMER_EXPIRE",
                "NETWORK_OUT_OF_ORDER",
            ]
        );
        // 500/503 share NORMAL_TEMPORARY_FAILURE with 400/481; 604 shares
        // NO_ROUTE_DESTINATION with 485; 606 INCOMPATIBLE_DESTINATION with 488; 608
        // CALL_REJECTED with 603 and the 40x challenges.
        for cause in [
            "NORMAL_TEMPORARY_FAILURE",
            "SERVICE_NOT_IMPLEMENTED",
            "INTERWORKING",
            "NORMAL_UNSPECIFIED",
            "NO_ROUTE_DESTINATION",
            "INCOMPATIBLE_DESTINATION",
            "CALL_REJECTED",
        ] {
            assert!(c.ambiguous.contains(&cause), "{cause}");
        }
        for callee in ["USER_BUSY", "UNWANTED", "ORIGINATOR_CANCEL"] {
            assert!(!c.causes.contains(&callee) && !c.ambiguous.contains(&callee));
        }
        let ntf = c
            .collisions
            .iter()
            .find(|x| x.cause == "NORMAL_TEMPORARY_FAILURE")
            .unwrap();
        assert_eq!(ntf.failover_codes, vec![500, 503]);
        assert_eq!(ntf.other_codes, vec![400, 481]);
    }

    #[test]
    fn every_code_400_to_699_reaches_one_side_only() {
        // For any list: a code's cause is in `causes` only if the code fails over, and every
        // failover code's cause is in `causes` or `ambiguous`.
        for list in [
            vec!["404"],
            vec!["4xx"],
            vec!["5xx", "6xx"],
            vec!["503", "600"],
            vec!["404", "408", "5xx", "604", "606", "608"],
            vec!["4xx", "5xx", "6xx"],
        ] {
            let configured = codes(&list);
            let c = compile(&configured);
            for code in 400..=699 {
                let cause = cause_for_sip(code).name;
                if c.causes.contains(&cause) {
                    assert!(configured.matches(code), "{list:?}: {code} via {cause}");
                }
                if configured.matches(code) {
                    assert!(
                        c.causes.contains(&cause) || c.ambiguous.contains(&cause),
                        "{list:?}: {code} via {cause} is lost"
                    );
                }
            }
        }
    }

    #[test]
    fn covering_every_class_leaves_no_collision() {
        let c = compile(&codes(&["4xx", "5xx", "6xx"]));
        assert!(c.collisions.is_empty() && c.ambiguous.is_empty());
        assert!(c.causes.contains(&"NORMAL_UNSPECIFIED"));
        let mut sorted = c.causes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), c.causes.len(), "no duplicates");
    }

    #[test]
    fn collisions_serialize_with_names_and_compact_code_ranges() {
        let c = compile(&codes(&["600"]));
        let json = serde_json::to_string(&c.collisions).unwrap();
        assert_eq!(
            json,
            r#"[{"cause":"USER_BUSY","failover_codes":"600","other_codes":"486"}]"#
        );
        assert_eq!(
            serde_json::to_string(&Cause::USER_BUSY).unwrap(),
            "\"USER_BUSY\""
        );
        assert_eq!(
            code_ranges(&[400, 481, 506, 507, 508, 510]),
            "400, 481, 506–508, 510"
        );
        assert_eq!(code_ranges(&[]), "");
    }
}
