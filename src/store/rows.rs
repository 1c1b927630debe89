//! Rows as stored and their conversion to and from the model. Columns are portable types (text,
//! 64-bit integers, booleans), so one set of queries serves SQLite and PostgreSQL. Reading a row
//! parses every value again through the model's `parse` (serde for the JSON columns): a row that
//! no longer parses is [`StoreError::Corrupt`], never a panic and never an unchecked value.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{AttemptView, StoreError};
use crate::model::*;

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Now, truncated to what the text column holds, so a written entity equals the one read back.
pub fn now() -> DateTime<Utc> {
    parse_ts("now", &ts(Utc::now())).expect("own format parses")
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("model values serialise")
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn parse_ts(what: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(what, e))
}

fn parse_opt_ts(what: &str, s: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.map(|s| parse_ts(what, s)).transpose()
}

pub fn parse_id(what: &str, s: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(s).map_err(|e| corrupt(what, e))
}

fn parse_opt_id(what: &str, s: Option<&str>) -> Result<Option<Uuid>, StoreError> {
    s.map(|s| parse_id(what, s)).transpose()
}

fn from_json<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn value<T>(
    what: &str,
    s: &str,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Result<T, StoreError> {
    parse(s).map_err(|e| corrupt(what, e))
}

fn opt_value<T>(
    what: &str,
    s: Option<&str>,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Result<Option<T>, StoreError> {
    s.map(|s| value(what, s, &parse)).transpose()
}

/// A cost from its two columns, which are both set or both NULL.
fn cost(
    what: &str,
    micros: Option<i64>,
    currency: Option<&str>,
) -> Result<Option<Cost>, StoreError> {
    match (micros, currency) {
        (None, None) => Ok(None),
        (Some(micros), Some(currency)) => Ok(Some(Cost {
            rate: Rate::from_micros(micros).map_err(|e| corrupt(what, e))?,
            currency: value(what, currency, Currency::parse)?,
        })),
        _ => Err(corrupt(
            what,
            "micro-units and currency must be set together",
        )),
    }
}

/// The two columns (`…_micros`, `…_currency`) of an optional cost.
pub fn cost_columns(c: Option<&Cost>) -> (Option<i64>, Option<String>) {
    (
        c.map(|c| c.rate.micros()),
        c.map(|c| c.currency.to_string()),
    )
}

fn small(what: &str, n: Option<i64>) -> Result<Option<u32>, StoreError> {
    n.map(|n| u32::try_from(n).map_err(|e| corrupt(what, e)))
        .transpose()
}

#[derive(Debug, sqlx::FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub context: Option<String>,
    pub features: String,
    pub failover_mode: Option<String>,
    pub max_cost_micros: Option<i64>,
    pub max_cost_currency: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub caller_id_policy: String,
}

impl TenantRow {
    pub fn into_model(self) -> Result<Tenant, StoreError> {
        Ok(Tenant {
            id: parse_id("tenants.id", &self.id)?,
            name: value("tenants.name", &self.name, DisplayName::parse)?,
            context: opt_value(
                "tenants.context",
                self.context.as_deref(),
                ContextName::parse,
            )?,
            features: from_json("tenants.features", &self.features)?,
            failover_mode: opt_value(
                "tenants.failover_mode",
                self.failover_mode.as_deref(),
                FailoverMode::parse,
            )?,
            max_cost: cost(
                "tenants.max_cost",
                self.max_cost_micros,
                self.max_cost_currency.as_deref(),
            )?,
            caller_id_policy: from_json("tenants.caller_id_policy", &self.caller_id_policy)?,
            created_at: parse_ts("tenants.created_at", &self.created_at)?,
            updated_at: parse_ts("tenants.updated_at", &self.updated_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct CarrierRow {
    pub id: String,
    pub tenant_id: Option<String>,
    pub name: String,
    pub gateway_name: String,
    pub carrier_type: String,
    pub direction: String,
    pub status: String,
    pub remote_host: String,
    pub remote_port: i64,
    pub transport: String,
    pub profile: String,
    pub register: bool,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub realm: Option<String>,
    pub from_user: Option<String>,
    pub from_domain: Option<String>,
    pub caller_id_in_from: bool,
    pub ping_seconds: Option<i64>,
    pub inbound_ips: String,
    pub strip_prefix: String,
    pub add_prefix: String,
    pub add_suffix: String,
    pub tech_headers: String,
    pub attestation_header: Option<String>,
    pub failover_codes: Option<String>,
    pub leg_progress_timeout_seconds: Option<i64>,
    pub cost_micros: Option<i64>,
    pub cost_currency: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    pub detail: String,
    pub caller_id: String,
}

impl CarrierRow {
    /// Each column parses on its own rather than through [`NewCarrier::parse`]: the rules
    /// between fields judge a write, and one tightened later must not turn a stored carrier
    /// into a corrupt row that keeps the snapshot from loading. The columns are not the written
    /// form either (a cost in micro-units, lists as JSON, archived carriers).
    pub fn into_model(self) -> Result<Carrier, StoreError> {
        let tech_headers: BTreeMap<HeaderName, HeaderValue> =
            from_json("carriers.tech_headers", &self.tech_headers)?;
        Ok(Carrier {
            id: parse_id("carriers.id", &self.id)?,
            created_at: parse_ts("carriers.created_at", &self.created_at)?,
            updated_at: parse_ts("carriers.updated_at", &self.updated_at)?,
            archived_at: parse_opt_ts("carriers.archived_at", self.archived_at.as_deref())?,
            fields: NewCarrier {
                tenant_id: parse_opt_id("carriers.tenant_id", self.tenant_id.as_deref())?,
                name: value("carriers.name", &self.name, DisplayName::parse)?,
                gateway_name: value(
                    "carriers.gateway_name",
                    &self.gateway_name,
                    GatewayName::parse,
                )?,
                carrier_type: value(
                    "carriers.carrier_type",
                    &self.carrier_type,
                    CarrierType::parse,
                )?,
                direction: value("carriers.direction", &self.direction, Direction::parse)?,
                status: value("carriers.status", &self.status, CarrierStatus::parse)?,
                remote_host: value("carriers.remote_host", &self.remote_host, Host::parse)?,
                remote_port: u16::try_from(self.remote_port)
                    .map_err(|e| corrupt("carriers.remote_port", e))?,
                transport: value("carriers.transport", &self.transport, Transport::parse)?,
                profile: value("carriers.profile", &self.profile, ProfileName::parse)?,
                register: self.register,
                auth_username: opt_value(
                    "carriers.auth_username",
                    self.auth_username.as_deref(),
                    SipUser::parse,
                )?,
                auth_password: opt_value(
                    "carriers.auth_password",
                    self.auth_password.as_deref(),
                    Password::parse,
                )?,
                realm: opt_value("carriers.realm", self.realm.as_deref(), Host::parse)?,
                from_user: opt_value(
                    "carriers.from_user",
                    self.from_user.as_deref(),
                    SipUser::parse,
                )?,
                from_domain: opt_value(
                    "carriers.from_domain",
                    self.from_domain.as_deref(),
                    Host::parse,
                )?,
                caller_id_in_from: self.caller_id_in_from,
                ping_seconds: small("carriers.ping_seconds", self.ping_seconds)?,
                inbound_ips: from_json("carriers.inbound_ips", &self.inbound_ips)?,
                strip_prefix: value("carriers.strip_prefix", &self.strip_prefix, Digits::parse)?,
                add_prefix: value("carriers.add_prefix", &self.add_prefix, Digits::parse)?,
                add_suffix: value("carriers.add_suffix", &self.add_suffix, Digits::parse)?,
                tech_headers,
                attestation_header: opt_value(
                    "carriers.attestation_header",
                    self.attestation_header.as_deref(),
                    HeaderName::parse,
                )?,
                failover_codes: self
                    .failover_codes
                    .as_deref()
                    .map(|s| from_json("carriers.failover_codes", s))
                    .transpose()?,
                leg_progress_timeout_seconds: small(
                    "carriers.leg_progress_timeout_seconds",
                    self.leg_progress_timeout_seconds,
                )?,
                cost: cost(
                    "carriers.cost",
                    self.cost_micros,
                    self.cost_currency.as_deref(),
                )?,
                detail: value("carriers.detail", &self.detail, Detail::parse)?,
                caller_id: from_json("carriers.caller_id", &self.caller_id)?,
            },
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct RouteRow {
    pub id: String,
    pub tenant_id: Option<String>,
    pub name: String,
    pub match_type: String,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub carrier_id: String,
    pub priority: i64,
    pub strip_prefix: String,
    pub add_prefix: String,
    pub enabled: bool,
    pub cost_micros: Option<i64>,
    pub cost_currency: Option<String>,
    pub weight: Option<i64>,
    pub caller_prefix: Option<String>,
    pub caller_regex: Option<String>,
    pub schedule: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub detail: String,
}

impl RouteRow {
    pub fn into_model(self) -> Result<Route, StoreError> {
        let matcher = match value(
            "outbound_routes.match_type",
            &self.match_type,
            MatchType::parse,
        )? {
            MatchType::Prefix => RouteMatch::Prefix(value(
                "outbound_routes.prefix",
                self.prefix.as_deref().unwrap_or_default(),
                RoutePrefix::parse,
            )?),
            MatchType::Regex => RouteMatch::Regex(value(
                "outbound_routes.regex",
                self.regex.as_deref().unwrap_or_default(),
                RouteRegex::parse,
            )?),
        };
        Ok(Route {
            id: parse_id("outbound_routes.id", &self.id)?,
            created_at: parse_ts("outbound_routes.created_at", &self.created_at)?,
            updated_at: parse_ts("outbound_routes.updated_at", &self.updated_at)?,
            fields: NewRoute {
                tenant_id: parse_opt_id("outbound_routes.tenant_id", self.tenant_id.as_deref())?,
                name: value("outbound_routes.name", &self.name, DisplayName::parse)?,
                matcher,
                carrier_id: parse_id("outbound_routes.carrier_id", &self.carrier_id)?,
                priority: self.priority,
                strip_prefix: value(
                    "outbound_routes.strip_prefix",
                    &self.strip_prefix,
                    Digits::parse,
                )?,
                add_prefix: value(
                    "outbound_routes.add_prefix",
                    &self.add_prefix,
                    Digits::parse,
                )?,
                enabled: self.enabled,
                criteria: RouteCriteria {
                    schedule: self
                        .schedule
                        .as_deref()
                        .map(|s| from_json("outbound_routes.schedule", s))
                        .transpose()?,
                    cost: cost(
                        "outbound_routes.cost",
                        self.cost_micros,
                        self.cost_currency.as_deref(),
                    )?,
                    weight: self
                        .weight
                        .map(|w| Weight::new(w).map_err(|e| corrupt("outbound_routes.weight", e)))
                        .transpose()?,
                    caller_prefix: opt_value(
                        "outbound_routes.caller_prefix",
                        self.caller_prefix.as_deref(),
                        CallerPrefix::parse,
                    )?,
                    caller_regex: opt_value(
                        "outbound_routes.caller_regex",
                        self.caller_regex.as_deref(),
                        RouteRegex::parse,
                    )?,
                },
                detail: value("outbound_routes.detail", &self.detail, Detail::parse)?,
            },
        })
    }
}

/// The `prefix` and `regex` columns of a route matcher.
pub fn matcher_columns(m: &RouteMatch) -> (Option<String>, Option<String>) {
    match m {
        RouteMatch::Prefix(p) => (Some(p.to_string()), None),
        RouteMatch::Regex(r) => (None, Some(r.to_string())),
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct PhoneNumberRow {
    pub id: String,
    pub tenant_id: String,
    pub number: String,
    pub carrier_id: Option<String>,
    pub capabilities: String,
    pub created_at: String,
    pub updated_at: String,
}

impl PhoneNumberRow {
    pub fn into_model(self) -> Result<PhoneNumber, StoreError> {
        Ok(PhoneNumber {
            id: parse_id("phone_numbers.id", &self.id)?,
            tenant_id: parse_id("phone_numbers.tenant_id", &self.tenant_id)?,
            number: value("phone_numbers.number", &self.number, E164::parse)?,
            carrier_id: parse_opt_id("phone_numbers.carrier_id", self.carrier_id.as_deref())?,
            capabilities: from_json("phone_numbers.capabilities", &self.capabilities)?,
            created_at: parse_ts("phone_numbers.created_at", &self.created_at)?,
            updated_at: parse_ts("phone_numbers.updated_at", &self.updated_at)?,
        })
    }
}

/// A number's owner and capabilities: what the routing snapshot reads of the inventory.
#[derive(Debug, sqlx::FromRow)]
pub struct NumberOwnerRow {
    pub tenant_id: String,
    pub number: String,
    pub capabilities: String,
}

impl NumberOwnerRow {
    /// The owner and number when the number carries voice, else `None`.
    pub fn into_voice_number(self) -> Result<Option<(Uuid, E164)>, StoreError> {
        let capabilities: Vec<Capability> =
            from_json("phone_numbers.capabilities", &self.capabilities)?;
        if !capabilities.contains(&Capability::Voice) {
            return Ok(None);
        }
        Ok(Some((
            parse_id("phone_numbers.tenant_id", &self.tenant_id)?,
            value("phone_numbers.number", &self.number, E164::parse)?,
        )))
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub token_hash: String,
    pub tenant_id: Option<String>,
    pub role: String,
    pub scopes: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl TokenRow {
    pub fn into_model(self) -> Result<ApiToken, StoreError> {
        Ok(ApiToken {
            id: parse_id("api_tokens.id", &self.id)?,
            token_hash: self.token_hash,
            tenant_id: parse_opt_id("api_tokens.tenant_id", self.tenant_id.as_deref())?,
            role: value("api_tokens.role", &self.role, Role::parse)?,
            scopes: from_json("api_tokens.scopes", &self.scopes)?,
            created_at: parse_ts("api_tokens.created_at", &self.created_at)?,
            revoked_at: parse_opt_ts("api_tokens.revoked_at", self.revoked_at.as_deref())?,
        })
    }
}

/// An attempt record with its computed `failed_over` (`store/attempts.rs`).
#[derive(Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: String,
    pub call_id: String,
    pub leg_id: String,
    pub switch_id: Option<String>,
    pub tenant_id: Option<String>,
    pub route_id: Option<String>,
    pub carrier_id: String,
    pub gateway: String,
    pub number: String,
    pub attempt: i64,
    pub sip_status: Option<i64>,
    pub cause: String,
    pub q850: Option<i64>,
    pub started_at: String,
    pub progress_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: String,
    pub billable_seconds: i64,
    pub hangup_by: Option<String>,
    pub failed_over: bool,
}

fn code(what: &str, n: Option<i64>) -> Result<Option<u16>, StoreError> {
    n.map(|n| u16::try_from(n).map_err(|e| corrupt(what, e)))
        .transpose()
}

impl AttemptRow {
    pub fn into_model(self) -> Result<AttemptView, StoreError> {
        let count = |what: &str, n: i64| u32::try_from(n).map_err(|e| corrupt(what, e));
        let hangup_by = match self.hangup_by.as_deref() {
            None => None,
            Some(s) => Some(
                HangupBy::parse(s)
                    .ok_or_else(|| corrupt("call_attempts.hangup_by", "not carrier or switch"))?,
            ),
        };
        Ok(AttemptView {
            attempt: Attempt {
                id: parse_id("call_attempts.id", &self.id)?,
                call_id: parse_id("call_attempts.call_id", &self.call_id)?,
                leg_id: parse_id("call_attempts.leg_id", &self.leg_id)?,
                switch_id: parse_opt_id("call_attempts.switch_id", self.switch_id.as_deref())?,
                tenant_id: parse_opt_id("call_attempts.tenant_id", self.tenant_id.as_deref())?,
                route_id: parse_opt_id("call_attempts.route_id", self.route_id.as_deref())?,
                carrier_id: parse_id("call_attempts.carrier_id", &self.carrier_id)?,
                gateway: self.gateway,
                number: self.number,
                attempt: count("call_attempts.attempt", self.attempt)?,
                sip_status: code("call_attempts.sip_status", self.sip_status)?,
                cause: self.cause,
                q850: code("call_attempts.q850", self.q850)?,
                started_at: parse_ts("call_attempts.started_at", &self.started_at)?,
                progress_at: parse_opt_ts(
                    "call_attempts.progress_at",
                    self.progress_at.as_deref(),
                )?,
                answered_at: parse_opt_ts(
                    "call_attempts.answered_at",
                    self.answered_at.as_deref(),
                )?,
                ended_at: parse_ts("call_attempts.ended_at", &self.ended_at)?,
                billable_seconds: count("call_attempts.billable_seconds", self.billable_seconds)?,
                hangup_by,
            },
            failed_over: self.failed_over,
        })
    }
}
