//! The caller-ID decision of one call (issue 19): whether the presented caller ID may go out
//! under the tenant's policy, what replaces it, the STIR/SHAKEN level, and how each carrier
//! gets the number. Pure; the tenant's numbers are in the snapshot, never queried per call.
//!
//! - A call presents a valid caller number (`+?[0-9]{1,20}`) or none: anything else (`${…}`,
//!   quotes, spaces, 300 characters) counts as none, and is replaced by the tenant's default
//!   number or refused, whatever the policy, so it never reaches a leg as written. The one
//!   exception is `anonymous` (a withheld number) under `any`: it goes on as it is.
//! - Under `own_numbers` the number must be one of the tenant's phone numbers with voice
//!   capability. A number without `+` is read as international (`15551234567` is
//!   `+15551234567`): the inventory is E.164, and dialers send either.
//! - Attestation, unless the call sets a valid `trunkline_attestation`: A when the number sent
//!   is the tenant's own, B when the tenant is known but the number is not theirs, C when the
//!   call has no tenant.
//! - The name (issue 36): every leg sets one explicitly, so the caller's own never reaches a
//!   carrier as FreeSWITCH holds it. A carrier's `name` policy picks it: `pass` sends the
//!   caller's name when it parses as a [`CallerName`] (plain ASCII words, at most 48
//!   characters), else the tenant's `default_name`, else none; `replace` sends the tenant's
//!   `default_name`, else none; `none` sends none. A hostile, overlong or non-ASCII name counts
//!   as no name: it is replaced, never cleaned up and passed.

use serde::Serialize;

use super::Snapshot;
use crate::model::{
    Attestation, CallerIdAllow, CallerIdFormat, CallerIdNumberFormat, CallerName, CallerNameMode,
    CallerNumber, Carrier, ForeignCallerId, Tenant,
};

/// What became of the presented caller ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdOutcome {
    Kept,
    Replaced,
    /// The call is refused (`CALL_REJECTED`).
    Refused,
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdReason {
    /// The policy allows the presented number.
    Allowed,
    /// The call presented no valid caller number.
    Invalid,
    /// `own_numbers`, and the number is not one of the tenant's voice numbers.
    NotOwnNumber,
    /// `own_numbers`, and the tenant's `default_number` is not one of its voice numbers either.
    DefaultNotOwnNumber,
    /// `any`, and the call withholds its number (`anonymous`), which then goes on as it is.
    Withheld,
}

impl CallerIdReason {
    pub fn detail(&self) -> &'static str {
        match self {
            Self::Allowed => "the tenant's policy allows the presented caller ID",
            Self::Invalid => "the call presents no valid caller ID number",
            Self::NotOwnNumber => "the caller ID is not one of the tenant's voice numbers",
            Self::DefaultNotOwnNumber => {
                "the tenant's default caller ID is not one of its voice numbers"
            }
            Self::Withheld => "the caller withholds its number (anonymous): passed on as it is",
        }
    }
}

/// Where the attestation level comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationSource {
    /// The call's `trunkline_attestation`.
    ChannelVariable,
    /// A: the caller ID sent is one of the tenant's numbers.
    OwnNumber,
    /// B: the tenant is known, the number is not theirs.
    TenantNotOwner,
    /// C: the call has no tenant.
    NoTenant,
}

/// The caller-ID part of a routing decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallerIdDecision {
    /// The tenant's policy (`any` for a call without a tenant).
    pub allow: CallerIdAllow,
    /// The valid caller number the call presented; `None`: none, or not a valid one.
    pub presented: Option<CallerNumber>,
    /// The number the legs carry (before each carrier's format); `None` when refused, or when
    /// a withheld number goes on as it is.
    pub sent: Option<CallerNumber>,
    pub outcome: CallerIdOutcome,
    pub reason: CallerIdReason,
    pub detail: &'static str,
    pub attestation: Attestation,
    pub attestation_source: AttestationSource,
    /// The caller-ID name: what the call presented and what a `replace` puts in its place.
    pub name: CallerNameDecision,
}

/// The caller-ID name a call presented (`Caller-Caller-ID-Name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PresentedName {
    #[default]
    Absent,
    Valid(CallerName),
    /// A name that is not a valid [`CallerName`]: counted as none, never sent.
    Invalid,
}

impl PresentedName {
    /// The posted name, if any, as a [`CallerName`] or not.
    pub fn parse(raw: Option<&str>) -> Self {
        match raw {
            None => Self::Absent,
            Some(raw) => CallerName::parse(raw).map_or(Self::Invalid, Self::Valid),
        }
    }
}

/// The caller-ID name of one call, before each carrier's `name` policy picks from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallerNameDecision {
    /// The valid name the call presented; `None`: none, or not a valid one.
    pub presented: Option<CallerName>,
    /// The call presented a name that is not a valid [`CallerName`] (quotes, `<`, `${…}`,
    /// control characters, more than 48 characters, not ASCII): it is never sent.
    pub presented_invalid: bool,
    /// The tenant's `default_name`.
    pub tenant_name: Option<CallerName>,
}

impl CallerNameDecision {
    /// The name a leg under `mode` sends; `None`: no display name at all.
    pub fn for_mode(&self, mode: CallerNameMode) -> Option<CallerName> {
        match mode {
            CallerNameMode::Pass => self.presented.clone().or_else(|| self.tenant_name.clone()),
            CallerNameMode::Replace => self.tenant_name.clone(),
            CallerNameMode::None => None,
        }
    }
}

impl CallerIdDecision {
    /// The caller ID a leg to `carrier` sets (`origination_caller_id_number`): the number
    /// sent in the carrier's format. `None` — nothing set, FreeSWITCH passes the caller's own
    /// on — only where that is exactly the number sent: kept, any number allowed, and the
    /// carrier takes it as presented with no header.
    pub fn for_carrier(&self, carrier: &Carrier) -> Option<CallerNumber> {
        let sent = self.sent.as_ref()?;
        let passes_through = self.outcome == CallerIdOutcome::Kept
            && self.allow == CallerIdAllow::Any
            && carrier.caller_id.is_plain();
        (!passes_through).then(|| formatted(sent, &carrier.caller_id))
    }

    /// The caller-ID name a leg to `carrier` sends (`origination_caller_id_name`); `None`:
    /// none. Unlike the number, always decided here: FreeSWITCH would otherwise pass the
    /// caller's name on as it holds it.
    pub fn name_for_carrier(&self, carrier: &Carrier) -> Option<CallerName> {
        self.name.for_mode(carrier.caller_id.name)
    }
}

/// `number` as `format` writes it. A number the format cannot write (a national prefix making
/// it too long) stays as it is.
fn formatted(number: &CallerNumber, format: &CallerIdFormat) -> CallerNumber {
    let digits = number.as_str().strip_prefix('+').unwrap_or(number.as_str());
    let written = match format.format {
        CallerIdNumberFormat::AsPresented => return number.clone(),
        CallerIdNumberFormat::E164 => format!("+{digits}"),
        CallerIdNumberFormat::E164WithoutPlus => digits.to_string(),
        CallerIdNumberFormat::National => match &format.country_code {
            Some(cc) if digits.len() > cc.as_str().len() && digits.starts_with(cc.as_str()) => {
                format!("{}{}", format.national_prefix, &digits[cc.as_str().len()..])
            }
            _ => format!("+{digits}"),
        },
    };
    CallerNumber::parse(&written).unwrap_or_else(|_| number.clone())
}

/// A caller number as the inventory's integer key: its digits read as E.164 (at most 15, no
/// leading zero), else `None`.
fn key(number: &CallerNumber) -> Option<u64> {
    let digits = number.as_str().strip_prefix('+').unwrap_or(number.as_str());
    if digits.len() > 15 || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

impl Snapshot {
    /// The caller-ID decision for a call of `tenant` presenting `presented`, with the level
    /// the call asked for, if any, and the caller-ID name it presented.
    pub fn caller_id(
        &self,
        tenant: Option<&Tenant>,
        presented: Option<&CallerNumber>,
        withheld: bool,
        requested: Option<Attestation>,
        name: &PresentedName,
    ) -> CallerIdDecision {
        let policy = tenant.map(|t| &t.caller_id_policy);
        let allow = policy.map_or(CallerIdAllow::Any, |p| p.allow);
        let own = |n: &CallerNumber| {
            tenant.is_some_and(|t| key(n).is_some_and(|k| self.owns_number(t.id, k)))
        };
        let allowed = |n: &CallerNumber| allow == CallerIdAllow::Any || own(n);
        let (outcome, reason, sent) = match presented {
            Some(n) if allowed(n) => (
                CallerIdOutcome::Kept,
                CallerIdReason::Allowed,
                Some(n.clone()),
            ),
            None if withheld && allow == CallerIdAllow::Any => {
                (CallerIdOutcome::Kept, CallerIdReason::Withheld, None)
            }
            _ => {
                let why = if presented.is_some() {
                    CallerIdReason::NotOwnNumber
                } else {
                    CallerIdReason::Invalid
                };
                let replacement = policy
                    .filter(|p| p.foreign == ForeignCallerId::Replace)
                    .and_then(|p| p.default_number.as_ref())
                    .and_then(|d| CallerNumber::parse(d.as_str()).ok());
                match replacement {
                    Some(d) if allowed(&d) => (CallerIdOutcome::Replaced, why, Some(d)),
                    Some(_) => (
                        CallerIdOutcome::Refused,
                        CallerIdReason::DefaultNotOwnNumber,
                        None,
                    ),
                    None => (CallerIdOutcome::Refused, why, None),
                }
            }
        };
        let (attestation, attestation_source) =
            attestation(tenant.is_some(), sent.as_ref().is_some_and(own), requested);
        CallerIdDecision {
            allow,
            presented: presented.cloned(),
            sent,
            outcome,
            reason,
            detail: reason.detail(),
            attestation,
            attestation_source,
            name: CallerNameDecision {
                presented: match name {
                    PresentedName::Valid(n) => Some(n.clone()),
                    _ => None,
                },
                presented_invalid: *name == PresentedName::Invalid,
                tenant_name: policy.and_then(|p| p.default_name.clone()),
            },
        }
    }
}

/// The level and its source: the call's own valid level first.
fn attestation(
    has_tenant: bool,
    own_number: bool,
    requested: Option<Attestation>,
) -> (Attestation, AttestationSource) {
    match requested {
        Some(level) => (level, AttestationSource::ChannelVariable),
        None if !has_tenant => (Attestation::C, AttestationSource::NoTenant),
        None if own_number => (Attestation::A, AttestationSource::OwnNumber),
        None => (Attestation::B, AttestationSource::TenantNotOwner),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::model::fixtures::{carrier, tenant};
    use crate::model::{CallerIdPolicy, E164};
    use crate::routing::RoutingSettings;

    const ACME: u128 = 0xacde;
    const OWN: &str = "+15550001111";
    const DEFAULT: &str = "+15550002222";

    fn snapshot(policy: CallerIdPolicy) -> Snapshot {
        let mut acme = tenant("acme", ACME);
        acme.caller_id_policy = policy;
        Snapshot::build(1, vec![acme], vec![], vec![], RoutingSettings::default())
            .with_voice_numbers(vec![
                (Uuid::from_u128(ACME), E164::parse(OWN).unwrap()),
                (Uuid::from_u128(ACME), E164::parse(DEFAULT).unwrap()),
                (
                    Uuid::from_u128(0xbeef),
                    E164::parse("+15559999999").unwrap(),
                ),
            ])
    }

    fn policy(
        allow: CallerIdAllow,
        foreign: ForeignCallerId,
        default: Option<&str>,
    ) -> CallerIdPolicy {
        CallerIdPolicy {
            allow,
            foreign,
            default_number: default.map(|d| E164::parse(d).unwrap()),
            default_name: None,
        }
    }

    fn decide(
        s: &Snapshot,
        presented: Option<&str>,
        requested: Option<Attestation>,
    ) -> CallerIdDecision {
        let presented = presented.and_then(|p| CallerNumber::parse(p).ok());
        s.caller_id(
            s.tenant(Uuid::from_u128(ACME)),
            presented.as_ref(),
            false,
            requested,
            &PresentedName::Absent,
        )
    }

    fn summary(
        d: &CallerIdDecision,
    ) -> (CallerIdOutcome, CallerIdReason, Option<&str>, Attestation) {
        (
            d.outcome,
            d.reason,
            d.sent.as_ref().map(CallerNumber::as_str),
            d.attestation,
        )
    }

    #[test]
    fn own_numbers_keeps_the_tenants_numbers_and_refuses_or_replaces_the_rest() {
        use CallerIdOutcome::*;
        use CallerIdReason::*;
        let refuse = snapshot(policy(
            CallerIdAllow::OwnNumbers,
            ForeignCallerId::Refuse,
            None,
        ));
        let replace = snapshot(policy(
            CallerIdAllow::OwnNumbers,
            ForeignCallerId::Replace,
            Some(DEFAULT),
        ));
        for s in [&refuse, &replace] {
            assert_eq!(
                summary(&decide(s, Some(OWN), None)),
                (Kept, Allowed, Some(OWN), Attestation::A)
            );
            // Without the `+`, the same number.
            assert_eq!(decide(s, Some("15550001111"), None).outcome, Kept);
        }
        // Another tenant's number is foreign too.
        for foreign in ["+15559999999", "+4930123456"] {
            assert_eq!(
                summary(&decide(&refuse, Some(foreign), None)),
                (Refused, NotOwnNumber, None, Attestation::B)
            );
            assert_eq!(
                summary(&decide(&replace, Some(foreign), None)),
                (Replaced, NotOwnNumber, Some(DEFAULT), Attestation::A)
            );
        }
        // A default that is not the tenant's is refused under own_numbers.
        let stray = snapshot(policy(
            CallerIdAllow::OwnNumbers,
            ForeignCallerId::Replace,
            Some("+4930123456"),
        ));
        assert_eq!(
            summary(&decide(&stray, Some("+15559999999"), None)),
            (Refused, DefaultNotOwnNumber, None, Attestation::B)
        );
    }

    #[test]
    fn any_keeps_every_valid_number_and_no_invalid_one() {
        use CallerIdOutcome::*;
        use CallerIdReason::*;
        let any = snapshot(CallerIdPolicy::default());
        assert_eq!(
            summary(&decide(&any, Some("+4930123456"), None)),
            (Kept, Allowed, Some("+4930123456"), Attestation::B)
        );
        assert_eq!(
            summary(&decide(&any, Some(OWN), None)),
            (Kept, Allowed, Some(OWN), Attestation::A)
        );
        // No valid caller ID: refused, or replaced when the tenant says so.
        assert_eq!(
            summary(&decide(&any, None, None)),
            (Refused, Invalid, None, Attestation::B)
        );
        let replace = snapshot(policy(
            CallerIdAllow::Any,
            ForeignCallerId::Replace,
            Some(DEFAULT),
        ));
        assert_eq!(
            summary(&decide(&replace, None, None)),
            (Replaced, Invalid, Some(DEFAULT), Attestation::A)
        );
    }

    #[test]
    fn a_valid_requested_level_wins_and_no_tenant_is_c() {
        let any = snapshot(CallerIdPolicy::default());
        let d = decide(&any, Some(OWN), Some(Attestation::C));
        assert_eq!(
            (d.attestation, d.attestation_source),
            (Attestation::C, AttestationSource::ChannelVariable)
        );
        let n = CallerNumber::parse(OWN).unwrap();
        let d = any.caller_id(None, Some(&n), false, None, &PresentedName::Absent);
        assert_eq!(
            (d.outcome, d.attestation, d.attestation_source),
            (
                CallerIdOutcome::Kept,
                Attestation::C,
                AttestationSource::NoTenant
            )
        );
    }

    #[test]
    fn each_carrier_sends_the_name_its_policy_says_and_never_an_invalid_one() {
        use crate::model::{CallerName, CallerNameMode as M};
        let named = |name: Option<&str>| {
            snapshot(CallerIdPolicy {
                default_name: name.map(|n| CallerName::parse(n).unwrap()),
                ..CallerIdPolicy::default()
            })
        };
        let carrier_with = |mode: M| {
            let mut c = carrier("alpha", 1);
            c.caller_id.name = mode;
            c
        };
        let sent = |s: &Snapshot, raw: Option<&str>, mode: M| {
            let n = CallerNumber::parse(OWN).unwrap();
            s.caller_id(
                s.tenant(Uuid::from_u128(ACME)),
                Some(&n),
                false,
                None,
                &PresentedName::parse(raw),
            )
            .name_for_carrier(&carrier_with(mode))
            .map(|n| n.as_str().to_string())
        };
        let with_name = named(Some("Acme Sales"));
        let without = named(None);
        // A plain name passes as it is, whatever the tenant's own.
        for s in [&with_name, &without] {
            assert_eq!(
                sent(s, Some("Front Desk"), M::Pass).as_deref(),
                Some("Front Desk")
            );
            assert_eq!(sent(s, Some("Front Desk"), M::None), None);
        }
        assert_eq!(
            sent(&with_name, Some("Front Desk"), M::Replace).as_deref(),
            Some("Acme Sales")
        );
        assert_eq!(sent(&without, Some("Front Desk"), M::Replace), None);
        // A hostile, overlong or absent name is never passed: the tenant's, else none.
        let long = "A".repeat(300);
        for raw in [
            Some("Evil\" <sip:x@evil>"),
            Some("${system id}"),
            Some(long.as_str()),
            Some("Alice\r\nX-Evil: 1"),
            Some("_undef_"),
            None,
        ] {
            assert_eq!(
                sent(&with_name, raw, M::Pass).as_deref(),
                Some("Acme Sales"),
                "{raw:?}"
            );
            assert_eq!(sent(&without, raw, M::Pass), None, "{raw:?}");
            assert_eq!(sent(&with_name, raw, M::None), None, "{raw:?}");
        }
        let d = without.caller_id(None, None, false, None, &PresentedName::parse(Some("${x}")));
        assert_eq!(
            (
                d.name.presented,
                d.name.presented_invalid,
                d.name.tenant_name
            ),
            (None, true, None)
        );
    }

    #[test]
    fn each_format_writes_the_number_as_the_carrier_wants_it() {
        let format =
            |json: serde_json::Value| -> CallerIdFormat { serde_json::from_value(json).unwrap() };
        let n = |s: &str| CallerNumber::parse(s).unwrap();
        let cases = [
            (
                format(serde_json::json!({})),
                "+442071234567",
                "+442071234567",
            ),
            (
                format(serde_json::json!({"format": "e164"})),
                "442071234567",
                "+442071234567",
            ),
            (
                format(serde_json::json!({"format": "e164_without_plus"})),
                "+442071234567",
                "442071234567",
            ),
            (
                format(
                    serde_json::json!({"format": "national", "country_code": "44", "national_prefix": "0"}),
                ),
                "+442071234567",
                "02071234567",
            ),
            (
                format(serde_json::json!({"format": "national", "country_code": "1"})),
                "+15550001111",
                "5550001111",
            ),
            // Another country's number stays international.
            (
                format(
                    serde_json::json!({"format": "national", "country_code": "44", "national_prefix": "0"}),
                ),
                "+15550001111",
                "+15550001111",
            ),
        ];
        for (f, from, to) in cases {
            assert_eq!(formatted(&n(from), &f).as_str(), to, "{f:?} {from}");
        }
        // What a leg sets: nothing when the number passes through unchanged.
        let any = snapshot(CallerIdPolicy::default());
        let kept = decide(&any, Some("+442071234567"), None);
        let mut c = carrier("alpha", 1);
        assert_eq!(kept.for_carrier(&c), None);
        c.caller_id = format(serde_json::json!({"asserted_identity": true}));
        assert_eq!(kept.for_carrier(&c), Some(n("+442071234567")));
        c.caller_id = format(serde_json::json!({"format": "e164_without_plus"}));
        assert_eq!(kept.for_carrier(&c), Some(n("442071234567")));
    }
}
