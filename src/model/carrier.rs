//! A carrier, defined once: [`NewCarrier`] holds every writable field, [`Carrier`] is that plus
//! what the store assigns, and [`CarrierInput`] is the written form (plain strings, the
//! defaults of a POST) that [`NewCarrier::parse`] turns into a carrier, applying every field's
//! rule (FREESWITCH.md §6.4 allow-lists) and every rule between fields. The API's request body,
//! its view (through [`CarrierInput::shown`]), a PATCH's base and VoIPBIN's providers are all
//! this one form. A new field goes into [`NewCarrier`], [`CarrierInput`] and its two
//! conversions here, and the store's columns.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::caller_id::CallerIdFormat;
use super::criteria::{Cost, Currency};
use super::entities::{CarrierStatus, CarrierType, Direction, Transport};
use super::input::{CostInput, FieldErrors, parse_cost};
use super::values::*;

/// A SIP trunk (or a stored non-SIP trunk): its writable fields and what the store assigns.
/// Reads of the writable fields go through `Deref` (`carrier.gateway_name`).
#[derive(Debug, Clone, PartialEq)]
pub struct Carrier {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    pub fields: NewCarrier,
}

impl Deref for Carrier {
    type Target = NewCarrier;

    fn deref(&self) -> &NewCarrier {
        &self.fields
    }
}

/// Tests and fixtures change one field of a stored carrier in place.
impl DerefMut for Carrier {
    fn deref_mut(&mut self) -> &mut NewCarrier {
        &mut self.fields
    }
}

/// The writable fields of a carrier (create, and update after merging a PATCH). The store
/// assigns `id`, timestamps and `archived_at`. Built by [`NewCarrier::parse`], which holds the
/// rules between fields.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCarrier {
    /// `None` for a carrier the platform provides to every tenant.
    pub tenant_id: Option<Uuid>,
    pub name: DisplayName,
    pub gateway_name: GatewayName,
    pub carrier_type: CarrierType,
    pub direction: Direction,
    pub status: CarrierStatus,
    pub remote_host: Host,
    pub remote_port: u16,
    pub transport: Transport,
    pub profile: ProfileName,
    pub register: bool,
    pub auth_username: Option<SipUser>,
    pub auth_password: Option<Password>,
    pub realm: Option<Host>,
    pub from_user: Option<SipUser>,
    pub from_domain: Option<Host>,
    pub caller_id_in_from: bool,
    pub ping_seconds: Option<u32>,
    pub inbound_ips: Vec<Cidr>,
    pub strip_prefix: Digits,
    pub add_prefix: Digits,
    pub add_suffix: Digits,
    pub tech_headers: BTreeMap<HeaderName, HeaderValue>,
    pub attestation_header: Option<HeaderName>,
    pub failover_codes: Option<FailoverCodes>,
    pub leg_progress_timeout_seconds: Option<u32>,
    /// The per-minute cost of routes to this carrier that name none of their own.
    pub cost: Option<Cost>,
    /// Free notes (VoIPBIN's `detail`).
    pub detail: Detail,
    /// How this carrier receives the caller ID.
    pub caller_id: CallerIdFormat,
}

impl NewCarrier {
    /// Whether this carrier should exist as a sofia gateway: active, SIP, able to carry outbound
    /// calls.
    pub fn is_gateway(&self) -> bool {
        self.status == CarrierStatus::Active
            && self.carrier_type.is_sip()
            && self.direction.is_outbound()
    }
}

/// A carrier as written (POST, and PATCH merged over the stored carrier), and, without its
/// secret, as shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = CarrierBody)]
#[serde(deny_unknown_fields)]
pub struct CarrierInput {
    /// Owner; null = a platform carrier (platform admins only).
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    pub name: String,
    /// Free notes, up to 1,000 characters.
    #[serde(default)]
    pub detail: String,
    /// FreeSWITCH gateway name, unique platform-wide; derived from `name` when absent.
    #[serde(default)]
    pub gateway_name: Option<String>,
    #[serde(rename = "type", default = "default_type")]
    pub carrier_type: CarrierType,
    #[serde(default = "default_direction")]
    pub direction: Direction,
    #[serde(default = "default_status")]
    pub status: CarrierStatus,
    pub remote_host: String,
    /// Default 5060 (5061 for tls).
    #[serde(default)]
    pub remote_port: Option<u32>,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Sofia profile; default `external`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Whether the gateway registers; default true for `register_trunk`, else false.
    #[serde(default)]
    pub register: Option<bool>,
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Write-only: never returned. Absent rather than null when unset, so that the shown form
    /// ([`CarrierInput::shown`]) carries no trace of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default)]
    pub from_user: Option<String>,
    #[serde(default)]
    pub from_domain: Option<String>,
    #[serde(default)]
    pub caller_id_in_from: bool,
    #[serde(default)]
    pub ping_seconds: Option<u32>,
    #[serde(default)]
    pub inbound_ips: Vec<String>,
    #[serde(default)]
    pub strip_prefix: String,
    #[serde(default)]
    pub add_prefix: String,
    #[serde(default)]
    pub add_suffix: String,
    #[serde(default)]
    pub tech_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attestation_header: Option<String>,
    /// Null = the platform default (404, 408, 5xx, 604, 606, 608).
    #[serde(default)]
    pub failover_codes: Option<Vec<String>>,
    #[serde(default)]
    pub leg_progress_timeout_seconds: Option<u32>,
    /// Default per-minute cost of routes to this carrier that name none.
    #[serde(default)]
    pub cost: Option<CostInput>,
    /// How this carrier receives the caller ID: `format` `as_presented` (default), `e164`,
    /// `e164_without_plus` or `national` (with `country_code`, and `national_prefix` such as
    /// `0`); `asserted_identity` sends P-Asserted-Identity, `privacy` adds `Privacy: id`;
    /// `name` `pass` (default: the caller's name when it is a plain one, else the tenant's
    /// `default_name`, else none), `replace` (the tenant's `default_name`) or `none`.
    #[serde(default)]
    pub caller_id: CallerIdFormat,
}

fn default_type() -> CarrierType {
    CarrierType::SipTrunk
}
fn default_direction() -> Direction {
    Direction::Outbound
}
fn default_status() -> CarrierStatus {
    CarrierStatus::Active
}
fn default_transport() -> Transport {
    Transport::Udp
}

const MAX_INBOUND_IPS: usize = 256;
const MAX_TECH_HEADERS: usize = 32;

impl CarrierInput {
    /// The written form with every POST default, for the settings a client has no field for
    /// (VoIPBIN's providers). `name` and `remote_host` are empty: the client must set them.
    pub fn defaults() -> Self {
        CarrierInput {
            tenant_id: None,
            name: String::new(),
            detail: String::new(),
            gateway_name: None,
            carrier_type: default_type(),
            direction: default_direction(),
            status: default_status(),
            remote_host: String::new(),
            remote_port: None,
            transport: default_transport(),
            profile: None,
            register: None,
            auth_username: None,
            auth_password: None,
            realm: None,
            from_user: None,
            from_domain: None,
            caller_id_in_from: false,
            ping_seconds: None,
            inbound_ips: Vec::new(),
            strip_prefix: String::new(),
            add_prefix: String::new(),
            add_suffix: String::new(),
            tech_headers: BTreeMap::new(),
            attestation_header: None,
            failover_codes: None,
            leg_progress_timeout_seconds: None,
            cost: None,
            caller_id: CallerIdFormat::default(),
        }
    }

    /// What of `c` may be shown: everything but the password (the one secret).
    pub fn shown(c: &NewCarrier) -> Self {
        CarrierInput {
            auth_password: None,
            ..Self::from(c)
        }
    }
}

/// The form that would recreate `c`, secret included: the base a PATCH merges over.
impl From<&NewCarrier> for CarrierInput {
    fn from(c: &NewCarrier) -> Self {
        CarrierInput {
            tenant_id: c.tenant_id,
            name: c.name.to_string(),
            detail: c.detail.to_string(),
            gateway_name: Some(c.gateway_name.to_string()),
            carrier_type: c.carrier_type,
            direction: c.direction,
            status: c.status,
            remote_host: c.remote_host.to_string(),
            remote_port: Some(u32::from(c.remote_port)),
            transport: c.transport,
            profile: Some(c.profile.to_string()),
            register: Some(c.register),
            auth_username: c.auth_username.as_ref().map(ToString::to_string),
            auth_password: c.auth_password.as_ref().map(|p| p.expose().to_string()),
            realm: c.realm.as_ref().map(ToString::to_string),
            from_user: c.from_user.as_ref().map(ToString::to_string),
            from_domain: c.from_domain.as_ref().map(ToString::to_string),
            caller_id_in_from: c.caller_id_in_from,
            ping_seconds: c.ping_seconds,
            inbound_ips: c.inbound_ips.iter().map(ToString::to_string).collect(),
            strip_prefix: c.strip_prefix.to_string(),
            add_prefix: c.add_prefix.to_string(),
            add_suffix: c.add_suffix.to_string(),
            tech_headers: c
                .tech_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            attestation_header: c.attestation_header.as_ref().map(ToString::to_string),
            failover_codes: c
                .failover_codes
                .as_ref()
                .map(|f| f.codes().iter().map(ToString::to_string).collect()),
            leg_progress_timeout_seconds: c.leg_progress_timeout_seconds,
            cost: c.cost.as_ref().map(CostInput::from),
            caller_id: c.caller_id.clone(),
        }
    }
}

impl NewCarrier {
    /// Parses every field (FREESWITCH.md §6.4 allow-lists) and the rules between them, naming
    /// every refused field at once. A cost must be in `currency`, the platform's.
    ///
    /// Whether the profile's template runs TLS is not a rule of the carrier but of the
    /// deployment's templates; the API checks it after this.
    pub fn parse(input: CarrierInput, currency: &Currency) -> Result<NewCarrier, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = e.parse("name", &input.name, DisplayName::parse);
        let detail = e.parse("detail", &input.detail, Detail::parse);
        let gateway_name = match &input.gateway_name {
            Some(g) => e.parse("gateway_name", g, GatewayName::parse),
            None => {
                let mut suffix = [0u8; 3];
                rand::rng().fill_bytes(&mut suffix);
                // Named after `name`: a derivation that fails is that field's fault.
                e.parse("name", &input.name, |n| {
                    GatewayName::derive(n, &hex::encode(suffix))
                })
            }
        };
        let remote_host = e.parse("remote_host", &input.remote_host, Host::parse);
        let remote_port = match input.remote_port {
            None => Some(input.transport.default_port()),
            Some(p @ 1..=65535) => Some(p as u16),
            Some(_) => {
                e.add("remote_port", "must be between 1 and 65535");
                None
            }
        };
        let profile = match &input.profile {
            None => Some(ProfileName::external()),
            Some(p) => e.parse("profile", p, ProfileName::parse),
        };
        let register = input
            .register
            .unwrap_or(input.carrier_type == CarrierType::RegisterTrunk);
        if input.carrier_type == CarrierType::RegisterTrunk && !register {
            e.add(
                "register",
                "a register_trunk registers: register cannot be false",
            );
        }
        let auth_username = e.parse_opt(
            "auth_username",
            input.auth_username.as_deref(),
            SipUser::parse,
        );
        let auth_password = e.parse_opt(
            "auth_password",
            input.auth_password.as_deref(),
            Password::parse,
        );
        // FreeSWITCH skips a registering gateway that lacks username or password (FREESWITCH.md §2.2).
        if register {
            if input.auth_username.is_none() {
                e.add("auth_username", "required when the carrier registers");
            }
            if input.auth_password.is_none() {
                e.add("auth_password", "required when the carrier registers");
            }
        }
        let realm = e.parse_opt("realm", input.realm.as_deref(), Host::parse);
        let from_user = e.parse_opt("from_user", input.from_user.as_deref(), SipUser::parse);
        let from_domain = e.parse_opt("from_domain", input.from_domain.as_deref(), Host::parse);
        // FreeSWITCH rejects a ping interval under 5 s (sofia.c parse_gateways).
        if let Some(p) = input.ping_seconds
            && !(5..=3600).contains(&p)
        {
            e.add("ping_seconds", "must be null or between 5 and 3600");
        }
        if let Some(t) = input.leg_progress_timeout_seconds
            && !(1..=300).contains(&t)
        {
            e.add(
                "leg_progress_timeout_seconds",
                "must be null or between 1 and 300",
            );
        }
        if input.inbound_ips.len() > MAX_INBOUND_IPS {
            e.add("inbound_ips", format!("at most {MAX_INBOUND_IPS} entries"));
        }
        let inbound_ips = e.parse_list("inbound_ips", &input.inbound_ips, Cidr::parse);
        let strip_prefix = e.parse("strip_prefix", &input.strip_prefix, Digits::parse);
        let add_prefix = e.parse("add_prefix", &input.add_prefix, Digits::parse);
        let add_suffix = e.parse("add_suffix", &input.add_suffix, Digits::parse);
        if input.tech_headers.len() > MAX_TECH_HEADERS {
            e.add(
                "tech_headers",
                format!("at most {MAX_TECH_HEADERS} headers"),
            );
        }
        let mut tech_headers = BTreeMap::new();
        for (k, v) in &input.tech_headers {
            let field = format!("tech_headers.{}", printable(k));
            let name = e.parse(&field, k, HeaderName::parse);
            let value = e.parse(&field, v, HeaderValue::parse);
            if let (Some(name), Some(value)) = (name, value) {
                tech_headers.insert(name, value);
            }
        }
        let attestation_header = e.parse_opt(
            "attestation_header",
            input.attestation_header.as_deref(),
            HeaderName::parse,
        );
        if let Some(Some(h)) = &attestation_header
            && tech_headers
                .keys()
                .any(|k| k.as_str().eq_ignore_ascii_case(h.as_str()))
        {
            e.add("attestation_header", "is also set in tech_headers");
        }
        let failover_codes = match &input.failover_codes {
            None => Some(None),
            Some(list) => e
                .parse_list("failover_codes", list, FailoverCode::parse)
                .and_then(|codes| {
                    FailoverCodes::new(codes)
                        .map_err(|err| e.add("failover_codes", err.0))
                        .ok()
                })
                .map(Some),
        };
        let cost = parse_cost(&mut e, "cost", input.cost.as_ref(), currency);
        if input.status == CarrierStatus::Archived {
            e.add("status", "use DELETE to archive a carrier");
        }
        if let Err((field, why)) = input.caller_id.check() {
            e.add(&format!("caller_id.{field}"), why.0);
        }
        e.finish_with(|| {
            Some(NewCarrier {
                tenant_id: input.tenant_id,
                name: name?,
                gateway_name: gateway_name?,
                carrier_type: input.carrier_type,
                direction: input.direction,
                status: input.status,
                remote_host: remote_host?,
                remote_port: remote_port?,
                transport: input.transport,
                profile: profile?,
                register,
                auth_username: auth_username?,
                auth_password: auth_password?,
                realm: realm?,
                from_user: from_user?,
                from_domain: from_domain?,
                caller_id_in_from: input.caller_id_in_from,
                ping_seconds: input.ping_seconds,
                inbound_ips: inbound_ips?,
                strip_prefix: strip_prefix?,
                add_prefix: add_prefix?,
                add_suffix: add_suffix?,
                tech_headers,
                attestation_header: attestation_header?,
                failover_codes: failover_codes?,
                leg_progress_timeout_seconds: input.leg_progress_timeout_seconds,
                cost: cost?,
                detail: detail?,
                caller_id: input.caller_id,
            })
        })
    }
}

/// A header name as it may appear in a field path of an error: hostile names are not echoed.
fn printable(name: &str) -> String {
    if HeaderName::parse(name).is_ok() {
        name.to_string()
    } else {
        "<invalid name>".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn usd() -> Currency {
        Currency::usd()
    }

    #[test]
    fn the_recreating_form_parses_back_to_the_same_carrier() {
        let mut c = fixtures::carrier("gw-one", 1);
        c.register = true;
        c.auth_username = Some(SipUser::parse("acct").unwrap());
        c.auth_password = Some(Password::parse("s3cret").unwrap());
        let input = CarrierInput::from(&c.fields);
        assert_eq!(NewCarrier::parse(input, &usd()).unwrap(), c.fields);
    }

    #[test]
    fn a_registering_carrier_needs_a_username_and_a_password() {
        let input = CarrierInput {
            name: "Alpha".into(),
            remote_host: "sip.example.net".into(),
            carrier_type: CarrierType::RegisterTrunk,
            ..CarrierInput::defaults()
        };
        let refused: Vec<_> = NewCarrier::parse(input, &usd())
            .unwrap_err()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(refused, ["auth_username", "auth_password"]);
    }

    #[test]
    fn the_shown_form_has_no_password() {
        let mut c = fixtures::carrier("gw-one", 1);
        c.auth_password = Some(Password::parse("s3cret").unwrap());
        let shown = serde_json::to_value(CarrierInput::shown(&c.fields)).unwrap();
        assert!(shown.get("auth_password").is_none(), "{shown}");
        assert!(!shown.to_string().contains("s3cret"));
    }
}
