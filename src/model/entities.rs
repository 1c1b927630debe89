//! The stored entities as the rest of the crate sees them: fully validated, plain data.
//! The store builds them from rows (parsing every field again), routing and the document
//! renderers read them, the API serialises views of them. Carriers and routes, with their
//! written forms and rules, have modules of their own (`carrier.rs`, `route.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::caller_id::CallerIdPolicy;
use super::criteria::Cost;
use super::values::*;

/// Declares a string enum with its wire names, `as_str`, `parse` and serde.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            pub fn parse(s: &str) -> Result<Self, super::Invalid> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(super::Invalid::new(concat!("must be one of: ", $($wire, " "),+))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What kind of trunk a carrier is. Only the SIP kinds produce sofia gateways; the others are
    /// stored and refused for routing with a clear reason.
    CarrierType { SipTrunk = "sip_trunk", RegisterTrunk = "register_trunk", Iax2 = "iax2", Webrtc = "webrtc" }
);

impl CarrierType {
    pub fn is_sip(&self) -> bool {
        matches!(self, Self::SipTrunk | Self::RegisterTrunk)
    }
}

wire_enum!(
    /// Which way calls flow through a carrier.
    Direction { Inbound = "inbound", Outbound = "outbound", Bidirectional = "bidirectional" }
);

impl Direction {
    pub fn is_outbound(&self) -> bool {
        matches!(self, Self::Outbound | Self::Bidirectional)
    }
}

wire_enum!(
    /// Lifecycle of a carrier. `archived` is what DELETE does; the row stays.
    CarrierStatus { Active = "active", Disabled = "disabled", Archived = "archived" }
);

wire_enum!(
    /// SIP transport towards the carrier (gateway `register-transport`).
    Transport { Udp = "udp", Tcp = "tcp", Tls = "tls" }
);

impl Transport {
    pub fn default_port(&self) -> u16 {
        match self {
            Self::Tls => 5061,
            _ => 5060,
        }
    }
}

wire_enum!(
    /// How an outbound route matches the destination.
    MatchType { Prefix = "prefix", Regex = "regex" }
);

wire_enum!(
    /// What a DID can do.
    Capability { Voice = "voice", Sms = "sms", Mms = "mms", Fax = "fax" }
);

wire_enum!(
    /// Tenant feature flags.
    Feature { SelfServiceCarriers = "self_service_carriers" }
);

wire_enum!(
    /// How failover is expressed in the dialplan (FREESWITCH.md §4.3/§4.4). `default`: one
    /// document with a bridge per leg; FreeSWITCH moves on by itself on causes that only
    /// failover codes reach (`continue_on_fail`), and sends causes shared with other codes back
    /// to trunkline (`transfer_on_fail`), which decides on the real SIP code. `exact`: one leg
    /// per fetch, every failure back to trunkline. Both fail over on exactly the same codes.
    FailoverMode { Default = "default", Exact = "exact" }
);

/// A tenant: an owner of carriers, routes and numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: DisplayName,
    /// The FreeSWITCH dialplan context this tenant's outbound calls use (optional, unique).
    pub context: Option<ContextName>,
    pub features: Vec<Feature>,
    /// Overrides the configured failover mode for this tenant's calls.
    pub failover_mode: Option<FailoverMode>,
    /// The most a leg of this tenant's calls may cost per minute; dearer legs are dropped.
    pub max_cost: Option<Cost>,
    /// Which caller IDs this tenant's calls may present.
    pub caller_id_policy: CallerIdPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub fn has_feature(&self, f: Feature) -> bool {
        self.features.contains(&f)
    }
}

/// A DID in the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub number: E164,
    pub carrier_id: Option<Uuid>,
    pub capabilities: Vec<Capability>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The writable fields of a tenant (create, and update after merging a PATCH).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub name: DisplayName,
    pub context: Option<ContextName>,
    pub features: Vec<Feature>,
    pub failover_mode: Option<FailoverMode>,
    pub max_cost: Option<Cost>,
    pub caller_id_policy: CallerIdPolicy,
}

/// The writable fields of a phone number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPhoneNumber {
    pub tenant_id: Uuid,
    pub number: E164,
    pub carrier_id: Option<Uuid>,
    pub capabilities: Vec<Capability>,
}

wire_enum!(
    /// What an API token may do.
    Role { PlatformAdmin = "platform_admin", Admin = "admin" }
);

wire_enum!(
    /// Fine-grained permissions of an `admin` token (a `platform_admin` token has them all).
    Scope {
        CarriersRead = "carriers:read",
        CarriersWrite = "carriers:write",
        OutboundRoutesRead = "outbound_routes:read",
        OutboundRoutesWrite = "outbound_routes:write",
        PhoneNumbersRead = "phone_numbers:read",
        PhoneNumbersWrite = "phone_numbers:write",
        AttemptsRead = "attempts:read",
        MetricsRead = "metrics:read",
    }
);

/// A stored API token. Only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: Uuid,
    /// Lower-case hex SHA-256 of the secret the client presents.
    pub token_hash: String,
    /// The tenant an `admin` token is bound to; `None` for `platform_admin`.
    pub tenant_id: Option<Uuid>,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The writable fields of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiToken {
    pub token_hash: String,
    pub tenant_id: Option<Uuid>,
    pub role: Role,
    pub scopes: Vec<Scope>,
}
