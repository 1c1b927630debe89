//! Caller-ID settings (issue 19): a tenant's policy on the caller IDs its calls present, and a
//! carrier's format for the caller ID it receives. Both are stored as one JSON column each and
//! parsed through serde into these validated types.

use serde::{Deserialize, Serialize};

use super::Invalid;
use super::values::{CallerName, CountryCode, Digits, E164};

/// Which caller IDs a tenant's calls may present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdAllow {
    /// Any valid number (a dialer's caller IDs often come from its lead lists).
    #[default]
    Any,
    /// Only the tenant's own phone numbers with voice capability.
    OwnNumbers,
}

/// What happens to a call presenting a caller ID the policy does not allow, or none that is
/// valid at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForeignCallerId {
    /// The call is refused (`CALL_REJECTED`: FreeSWITCH answers the caller 603 Decline).
    #[default]
    Refuse,
    /// The caller ID is replaced by the tenant's `default_number`.
    Replace,
}

/// A tenant's caller-ID policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallerIdPolicy {
    #[serde(default)]
    pub allow: CallerIdAllow,
    #[serde(default)]
    pub foreign: ForeignCallerId,
    /// The number a replaced caller ID becomes (one of the tenant's own numbers).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub default_number: Option<E164>,
    /// The caller-ID name of this tenant's calls where a carrier's `name` is `replace`, and
    /// where a call presents no valid name under `pass` (a [`CallerName`]: plain ASCII words,
    /// at most 48 characters). Without one, those legs send no name.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub default_name: Option<CallerName>,
}

impl CallerIdPolicy {
    /// The rules between the fields: replacing needs a number to replace with.
    pub fn check(&self) -> Result<(), (&'static str, Invalid)> {
        if self.foreign == ForeignCallerId::Replace && self.default_number.is_none() {
            return Err((
                "default_number",
                Invalid::new("required when foreign is replace"),
            ));
        }
        Ok(())
    }
}

/// How a carrier wants the caller ID number written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdNumberFormat {
    /// As the call presents it (after the tenant's policy).
    #[default]
    AsPresented,
    /// `+` and the international number.
    E164,
    /// The international number without `+`.
    E164WithoutPlus,
    /// Numbers of `country_code`: the national number behind `national_prefix`; numbers of
    /// other countries stay E.164.
    National,
}

/// What a carrier's legs send as the caller-ID name (the INVITE's From display name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerNameMode {
    /// The caller's own name when it is a valid [`CallerName`]; else the tenant's
    /// `default_name`; else none. A hostile or overlong name is never passed as written.
    #[default]
    Pass,
    /// The tenant's `default_name` whatever the caller sent; none when the tenant has none.
    Replace,
    /// No display name at all.
    None,
}

/// A carrier's caller-ID format, applied to each of its legs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallerIdFormat {
    #[serde(default)]
    pub format: CallerIdNumberFormat,
    /// For `national`: the country whose numbers are written nationally.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub country_code: Option<CountryCode>,
    /// For `national`: the trunk prefix written before a national number (`0` in most of
    /// Europe, nothing in the NANP).
    #[serde(default)]
    #[schema(value_type = String)]
    pub national_prefix: Digits,
    /// Send `P-Asserted-Identity` with the caller ID (FreeSWITCH `sip_cid_type=pid`).
    #[serde(default)]
    pub asserted_identity: bool,
    /// Send `Privacy: id` (the number withheld from the callee); needs `asserted_identity`.
    #[serde(default)]
    pub privacy: bool,
    /// The caller-ID name its legs send.
    #[serde(default)]
    pub name: CallerNameMode,
}

impl CallerIdFormat {
    /// The rules between the fields.
    pub fn check(&self) -> Result<(), (&'static str, Invalid)> {
        if self.format == CallerIdNumberFormat::National && self.country_code.is_none() {
            return Err((
                "country_code",
                Invalid::new("required for the national format"),
            ));
        }
        if self.privacy && !self.asserted_identity {
            return Err((
                "privacy",
                Invalid::new(
                    "needs asserted_identity: FreeSWITCH sends Privacy with P-Asserted-Identity",
                ),
            ));
        }
        Ok(())
    }

    /// Whether a leg to this carrier carries the caller ID as presented, with no header: then
    /// nothing about the caller ID goes into its dial string.
    pub fn is_plain(&self) -> bool {
        self.format == CallerIdNumberFormat::AsPresented && !self.asserted_identity
    }
}
