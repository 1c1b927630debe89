//! Parsing the form body mod_xml_curl POSTs (FREESWITCH.md §1.2).
//!
//! A dialplan POST carries every channel variable (~160 fields, ~5.6 KB on FreeSWITCH 1.10);
//! we make one pass over it and keep only the raw slices of the fields we use, decoding those
//! at the end. Parsing never fails: a malformed body gives `Other` or empty values, and the
//! caller answers with a refusal or "not found".
//!
//! The values returned are *raw, untrusted strings*. FreeSWITCH does not re-encode an existing
//! `%XX` (`switch_url_encode` with `double_encode = FALSE`), so we see values decoded one level
//! more than FreeSWITCH holds them (§1.2): the caller must parse them with the `crate::model`
//! newtypes, and documents never echo them.
//!
//! Pure: no I/O.

use std::borrow::Cow;

/// What FreeSWITCH asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
// One per request, built on the stack and matched at once: boxing the dialplan variant would
// cost the hot path an allocation to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
pub enum FetchRequest {
    Dialplan(DialplanFetch),
    Configuration(ConfigFetch),
    /// Any other section (`directory`, `languages`, `chatplan`, …) or a body without one: we
    /// answer "not found" (a binding without `bindings=` serves every section, §1.3).
    Other {
        section: String,
    },
}

/// `section=configuration` (§1.2): `key_value` names the file, e.g. `sofia.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFetch {
    /// `key_value`, e.g. `sofia.conf` or `acl.conf`.
    pub file: String,
    /// Set when a profile worker starts, on `rescan`, `restart` and `startgw`.
    pub profile: Option<String>,
    /// Set by `startgw` (may be `_all_`).
    pub gateway: Option<String>,
    /// `reconfig=true`: a rescan/start of a running profile.
    pub reconfig: bool,
}

/// `section=dialplan`. Raw strings: the caller validates them with the `crate::model` parsers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialplanFetch {
    /// `Hunt-Context`, else `Caller-Context`.
    pub context: Option<String>,
    /// `Hunt-Destination-Number`, else `Caller-Destination-Number`.
    pub destination: Option<String>,
    /// `Hunt-Caller-ID-Number`, else `Caller-Caller-ID-Number`.
    pub caller_number: Option<String>,
    /// `Hunt-Caller-ID-Name`, else `Caller-Caller-ID-Name`: whatever the caller put in its
    /// From display name, as sofia holds it.
    pub caller_name: Option<String>,
    /// `Unique-ID`.
    pub call_uuid: Option<String>,
    /// `variable_trunkline_tenant_id`.
    pub tenant_id: Option<String>,
    /// `variable_trunkline_carrier_id`.
    pub forced_carrier: Option<String>,
    /// `variable_trunkline_attestation`.
    pub attestation: Option<String>,
    /// `variable_trunkline_max_cost`: the per-minute cost ceiling of this call.
    pub max_cost: Option<String>,
    /// `variable_trunkline_attempt` (exact failover mode: the leg just tried, 1-based).
    pub attempt: Option<String>,
    /// `variable_last_bridge_proto_specific_hangup_cause`, e.g. `sip:503`.
    pub last_sip_cause: Option<String>,
    /// `variable_originate_disposition`, e.g. `GATEWAY_DOWN`.
    pub originate_disposition: Option<String>,
    /// `variable_trunkline_tried`: the carriers this call tried so far, as our document set it.
    pub tried: Option<String>,
    /// `Core-UUID`: which node asked (its gateways' health is its own).
    pub core_uuid: Option<String>,
}

/// The raw slices of the fields we use. Indexes into `Raw::slots`.
#[derive(Clone, Copy)]
enum Field {
    Section,
    KeyValue,
    Profile,
    Gateway,
    Reconfig,
    HuntContext,
    CallerContext,
    HuntDestination,
    CallerDestination,
    HuntCallerNumber,
    CallerCallerNumber,
    HuntCallerName,
    CallerCallerName,
    UniqueId,
    TenantId,
    ForcedCarrier,
    Attestation,
    MaxCost,
    Attempt,
    LastSipCause,
    OriginateDisposition,
    Tried,
    CoreUuid,
}

const FIELD_COUNT: usize = Field::CoreUuid as usize + 1;

/// Our fields by name. Names are matched byte for byte and never decoded: FreeSWITCH does not
/// encode header names (§1.2), and decoding them would let a caller-chosen name (an inbound
/// `X-` header becomes `variable_sip_h_X-…`, and `%` is a legal SIP token character) alias
/// one of ours.
const NAMES: [(&[u8], Field); FIELD_COUNT] = [
    (b"section", Field::Section),
    (b"key_value", Field::KeyValue),
    (b"profile", Field::Profile),
    (b"gateway", Field::Gateway),
    (b"reconfig", Field::Reconfig),
    (b"Hunt-Context", Field::HuntContext),
    (b"Caller-Context", Field::CallerContext),
    (b"Hunt-Destination-Number", Field::HuntDestination),
    (b"Caller-Destination-Number", Field::CallerDestination),
    (b"Hunt-Caller-ID-Number", Field::HuntCallerNumber),
    (b"Caller-Caller-ID-Number", Field::CallerCallerNumber),
    (b"Hunt-Caller-ID-Name", Field::HuntCallerName),
    (b"Caller-Caller-ID-Name", Field::CallerCallerName),
    (b"Unique-ID", Field::UniqueId),
    (b"variable_trunkline_tenant_id", Field::TenantId),
    (b"variable_trunkline_carrier_id", Field::ForcedCarrier),
    (b"variable_trunkline_attestation", Field::Attestation),
    (b"variable_trunkline_max_cost", Field::MaxCost),
    (b"variable_trunkline_attempt", Field::Attempt),
    (
        b"variable_last_bridge_proto_specific_hangup_cause",
        Field::LastSipCause,
    ),
    (
        b"variable_originate_disposition",
        Field::OriginateDisposition,
    ),
    (b"variable_trunkline_tried", Field::Tried),
    (b"Core-UUID", Field::CoreUuid),
];

/// Every form field trunkline reads, by the name FreeSWITCH posts it under: what the
/// bindings' `enable-post-var` lists must name (besides `section` and `key_value`, which
/// mod_xml_curl always sends), so the node encodes and posts nothing else
/// (`freeswitch-conf/autoload_configs/xml_curl.conf.xml`; tests/freeswitch_conf.rs).
pub fn field_names() -> impl Iterator<Item = &'static str> {
    NAMES
        .iter()
        .map(|(name, _)| std::str::from_utf8(name).expect("field names are ASCII"))
}

/// Where a pair's name is told apart: its first byte, and its tenth (after `variable_`).
const TELLING_BYTE: usize = 9;

/// For each byte value, the [`NAMES`] (as bits) whose byte at `at` it is; a name too short to
/// have a byte there is in every entry (the pair's byte there is `=` or part of the value).
const fn names_by_byte(at: usize) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut i = 0;
        while i < FIELD_COUNT {
            let name = NAMES[i].0;
            if name.len() <= at || name[at] as usize == byte {
                table[byte] |= 1 << i;
            }
            i += 1;
        }
        byte += 1;
    }
    table
}

const BY_FIRST_BYTE: [u32; 256] = names_by_byte(0);
const BY_TELLING_BYTE: [u32; 256] = names_by_byte(TELLING_BYTE);

/// The field `pair` (`name=value`, or a bare `name`) belongs to if it is one of ours, and its
/// raw value. Two table lookups leave at most a couple of names to compare, and none for most
/// of FreeSWITCH's ~160 pairs (`variable_sip_…`, `Channel-…`, `Caller-Channel-…`).
fn our_field(pair: &[u8]) -> Option<(Field, &[u8])> {
    let first = *pair.first()?;
    let telling = pair.get(TELLING_BYTE).copied().unwrap_or(b'=');
    let mut candidates = BY_FIRST_BYTE[usize::from(first)] & BY_TELLING_BYTE[usize::from(telling)];
    while candidates != 0 {
        let (name, field) = NAMES[candidates.trailing_zeros() as usize];
        candidates &= candidates - 1;
        match pair.strip_prefix(name).map(<[u8]>::split_first) {
            Some(None) => return Some((field, &[])),
            Some(Some((b'=', value))) => return Some((field, value)),
            _ => {}
        }
    }
    None
}

struct Raw<'a> {
    slots: [Option<&'a [u8]>; FIELD_COUNT],
}

impl<'a> Raw<'a> {
    /// The decoded value; an empty value counts as absent (FreeSWITCH leaves empty profile
    /// fields out, so an empty one carries no information).
    fn get(&self, f: Field) -> Option<String> {
        self.get_borrowed(f).map(Cow::into_owned)
    }

    /// As [`Raw::get`], borrowing from the body where nothing is decoded.
    fn get_borrowed(&self, f: Field) -> Option<Cow<'a, str>> {
        let value = percent_decode(self.slots[f as usize]?);
        (!value.is_empty()).then_some(value)
    }

    fn either(&self, first: Field, second: Field) -> Option<String> {
        self.get(first).or_else(|| self.get(second))
    }
}

/// Parses a mod_xml_curl form body. Never fails.
pub fn parse(body: &[u8]) -> FetchRequest {
    let raw = raw_fields(body);
    let section = raw.get_borrowed(Field::Section).unwrap_or_default();
    match &*section {
        "dialplan" => FetchRequest::Dialplan(DialplanFetch {
            context: raw.either(Field::HuntContext, Field::CallerContext),
            destination: raw.either(Field::HuntDestination, Field::CallerDestination),
            caller_number: raw.either(Field::HuntCallerNumber, Field::CallerCallerNumber),
            caller_name: raw.either(Field::HuntCallerName, Field::CallerCallerName),
            call_uuid: raw.get(Field::UniqueId),
            tenant_id: raw.get(Field::TenantId),
            forced_carrier: raw.get(Field::ForcedCarrier),
            attestation: raw.get(Field::Attestation),
            max_cost: raw.get(Field::MaxCost),
            attempt: raw.get(Field::Attempt),
            last_sip_cause: raw.get(Field::LastSipCause),
            originate_disposition: raw.get(Field::OriginateDisposition),
            tried: raw.get(Field::Tried),
            core_uuid: raw.get(Field::CoreUuid),
        }),
        "configuration" => FetchRequest::Configuration(ConfigFetch {
            file: raw.get(Field::KeyValue).unwrap_or_default(),
            profile: raw.get(Field::Profile),
            gateway: raw.get(Field::Gateway),
            reconfig: raw.get(Field::Reconfig).as_deref() == Some("true"),
        }),
        _ => FetchRequest::Other {
            section: section.into_owned(),
        },
    }
}

/// The raw (undecoded) value of each field we use.
fn raw_fields(body: &[u8]) -> Raw<'_> {
    let mut raw = Raw {
        slots: [None; FIELD_COUNT],
    };
    // Every fetch scans ~6 KB to keep a dozen of its ~160 pairs: one SIMD pass (memchr) finds
    // each `&`, and each pair's name is told from ours by two table lookups (`our_field`).
    let mut start = 0;
    for end in memchr::memchr_iter(b'&', body).chain([body.len()]) {
        if let Some((f, value)) = our_field(&body[start..end]) {
            // The first occurrence wins, as in FreeSWITCH's own `switch_event_get_header`.
            raw.slots[f as usize].get_or_insert(value);
        }
        start = end + 1;
    }
    raw
}

/// Decodes `%XX`; an invalid escape is kept as it is, invalid UTF-8 is replaced (lossy).
///
/// `+` is kept as `+`, not read as a space: FreeSWITCH encodes both space (`%20`) and `+`
/// (`%2B`) in values, so a raw `+` only appears in the unencoded first five fields or from a
/// non-FreeSWITCH client, and reading it as a space would turn `+1555…` into ` 1555…`.
fn percent_decode(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'%') {
        return String::from_utf8_lossy(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).and_then(|b| hex(*b)),
                raw.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(match String::from_utf8(out) {
        Ok(decoded) => decoded,
        Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsxml::testdata::SAMPLE_DIALPLAN_FETCH;

    fn dialplan(body: &str) -> DialplanFetch {
        match parse(body.as_bytes()) {
            FetchRequest::Dialplan(d) => d,
            other => panic!("not a dialplan fetch: {other:?}"),
        }
    }

    proptest::proptest! {
        /// The SIMD scan keeps exactly the first value of each field that splitting the body
        /// on `&`, then each pair on its first `=`, keeps.
        #[test]
        fn the_scan_finds_what_splitting_finds(
            body in "([&=]|section|dialplan|Unique-ID|Hunt-Context|Hunt-|Caller-Caller-ID-Number|variable_trunkline_tenant_id|variable_originate_disposition|variable_|[a-z%]){0,64}"
        ) {
            let mut expected: [Option<&[u8]>; FIELD_COUNT] = [None; FIELD_COUNT];
            for pair in body.as_bytes().split(|&b| b == b'&') {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                if let Some((_, f)) = NAMES.iter().find(|(ours, _)| *ours == name) {
                    expected[*f as usize].get_or_insert(value);
                }
            }
            proptest::prop_assert_eq!(raw_fields(body.as_bytes()).slots, expected);
        }
    }

    #[test]
    fn every_field_has_one_name_and_each_name_finds_its_field() {
        let fields: std::collections::HashSet<usize> =
            NAMES.iter().map(|(_, f)| *f as usize).collect();
        assert_eq!(fields.len(), FIELD_COUNT);
        for (name, f) in NAMES {
            let name = std::str::from_utf8(name).unwrap();
            for (pair, value) in [
                (format!("{name}=x"), &b"x"[..]),
                (format!("{name}="), b""),
                (name.to_string(), b""),
            ] {
                let found = our_field(pair.as_bytes()).map(|(f, v)| (f as usize, v));
                assert_eq!(found, Some((f as usize, value)), "{pair}");
            }
            for other in [
                format!("{name}x=1"),
                format!("x{name}=1"),
                name[1..].to_string(),
            ] {
                assert!(our_field(other.as_bytes()).is_none(), "{other}");
            }
        }
    }

    #[test]
    fn the_sample_is_a_realistic_freeswitch_post() {
        assert_eq!(SAMPLE_DIALPLAN_FETCH.split('&').count(), 162);
        assert!(
            SAMPLE_DIALPLAN_FETCH
                .starts_with("hostname=fs1&section=dialplan&tag_name=&key_name=&key_value=&")
        );
        assert!(!SAMPLE_DIALPLAN_FETCH.ends_with('\n'));
    }

    #[test]
    fn a_real_dialplan_post_yields_the_fields_we_use() {
        let d = dialplan(SAMPLE_DIALPLAN_FETCH);
        assert_eq!(
            d,
            DialplanFetch {
                context: Some("trunkline".into()),
                destination: Some("+15551234567".into()),
                caller_number: Some("+14155550100".into()),
                caller_name: Some("Front Desk".into()),
                call_uuid: Some("5b7c2d1e-8f3a-4b6c-9d0e-1f2a3b4c5d6e".into()),
                tenant_id: Some("7d6f1c2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f".into()),
                forced_carrier: None,
                attestation: Some("A".into()),
                max_cost: None,
                attempt: None,
                last_sip_cause: None,
                originate_disposition: None,
                tried: None,
                core_uuid: Some("d2c6a4f0-9b1e-4e3d-8c7b-6a5f4e3d2c1b".into()),
            }
        );
    }

    #[test]
    fn a_follow_up_after_transfer_carries_the_attempt_and_the_sip_cause() {
        let body = format!(
            "{SAMPLE_DIALPLAN_FETCH}&variable_trunkline_attempt=1&variable_last_bridge_proto_specific_hangup_cause=sip%3A503&variable_originate_disposition=NORMAL_TEMPORARY_FAILURE"
        );
        let d = dialplan(&body);
        assert_eq!(d.attempt.as_deref(), Some("1"));
        assert_eq!(d.last_sip_cause.as_deref(), Some("sip:503"));
        assert_eq!(
            d.originate_disposition.as_deref(),
            Some("NORMAL_TEMPORARY_FAILURE")
        );
    }

    #[test]
    fn hunt_fields_win_over_caller_fields() {
        let d = dialplan(
            "section=dialplan&Caller-Context=public&Caller-Destination-Number=1&Hunt-Context=trunkline&Hunt-Destination-Number=2",
        );
        assert_eq!(d.context.as_deref(), Some("trunkline"));
        assert_eq!(d.destination.as_deref(), Some("2"));
        let d = dialplan("section=dialplan&Caller-Context=public&Hunt-Context=");
        assert_eq!(d.context.as_deref(), Some("public"));
    }

    #[test]
    fn the_first_occurrence_of_a_field_wins() {
        let d = dialplan(
            "section=dialplan&variable_trunkline_tenant_id=a&variable_trunkline_tenant_id=b",
        );
        assert_eq!(d.tenant_id.as_deref(), Some("a"));
    }

    #[test]
    fn encoded_field_names_do_not_alias_ours() {
        let d = dialplan(
            "section=dialplan&variable_trunkline%5Ftenant_id=evil&variable_sip_h_X-a%26variable_trunkline_tenant_id=evil",
        );
        assert_eq!(d.tenant_id, None);
    }

    #[test]
    fn an_encoded_separator_stays_inside_its_value() {
        let d = dialplan("section=dialplan&Hunt-Destination-Number=1%26Hunt-Context%3Devil");
        assert_eq!(d.destination.as_deref(), Some("1&Hunt-Context=evil"));
        assert_eq!(d.context, None);
    }

    #[test]
    fn values_are_decoded_once_and_plus_is_literal() {
        let d = dialplan(
            "section=dialplan&Hunt-Destination-Number=%2B1555&Hunt-Caller-ID-Number=+1444&Unique-ID=%257C",
        );
        assert_eq!(d.destination.as_deref(), Some("+1555"));
        assert_eq!(d.caller_number.as_deref(), Some("+1444"));
        assert_eq!(d.call_uuid.as_deref(), Some("%7C"));
    }

    #[test]
    fn invalid_escapes_and_invalid_utf8_are_tolerated() {
        let d = dialplan("section=dialplan&Hunt-Destination-Number=%zz%4%&Hunt-Context=%FF%FEab");
        assert_eq!(d.destination.as_deref(), Some("%zz%4%"));
        assert_eq!(d.context.as_deref(), Some("\u{FFFD}\u{FFFD}ab"));
        let mut body = b"section=dialplan&Hunt-Context=a".to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        match parse(&body) {
            FetchRequest::Dialplan(d) => {
                assert_eq!(d.context.as_deref(), Some("a\u{FFFD}\u{FFFD}"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn configuration_fetches_name_the_file_and_profile() {
        assert_eq!(
            parse(b"hostname=fs1&section=configuration&tag_name=configuration&key_name=name&key_value=sofia.conf&Event-Name=REQUEST_PARAMS&profile=external&reconfig=true"),
            FetchRequest::Configuration(ConfigFetch {
                file: "sofia.conf".into(),
                profile: Some("external".into()),
                gateway: None,
                reconfig: true,
            })
        );
        assert_eq!(
            parse(b"section=configuration&key_value=sofia.conf&profile=external&reconfig=true&gateway=alpha"),
            FetchRequest::Configuration(ConfigFetch {
                file: "sofia.conf".into(),
                profile: Some("external".into()),
                gateway: Some("alpha".into()),
                reconfig: true,
            })
        );
        assert_eq!(
            parse(b"section=configuration&key_value=acl.conf"),
            FetchRequest::Configuration(ConfigFetch {
                file: "acl.conf".into(),
                ..ConfigFetch::default()
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn encoded_values_decode_to_what_was_encoded(value in "[^\\x00]{1,40}") {
            let encoded: String = value
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            let d = dialplan(&format!("section=dialplan&Hunt-Destination-Number={encoded}"));
            proptest::prop_assert_eq!(d.destination.as_deref(), Some(value.as_str()));
        }
    }

    #[test]
    fn other_sections_and_garbage_are_other() {
        assert_eq!(
            parse(b"section=directory&key_value=example.com"),
            FetchRequest::Other {
                section: "directory".into()
            }
        );
        for garbage in [&b""[..], b"&&&", b"=", b"section", b"\xff\x00=\x01", b"%%%"] {
            assert_eq!(
                parse(garbage),
                FetchRequest::Other {
                    section: String::new()
                }
            );
        }
    }
}
