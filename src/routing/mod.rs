//! Routing: the immutable in-memory snapshot of carriers and routes, its indexes, and
//! `resolve`, which turns (tenant, destination, forced carrier, caller, time) into the ordered
//! legs to try plus an explanation of why. Pure: no I/O. The same `resolve` serves the xml_curl
//! dialplan fetch, the route-preview API and `trunkline route explain`, so the explanation is
//! exactly what FreeSWITCH gets.

use uuid::Uuid;

use crate::model::{DialNumber, FailoverCodes, GatewayName, HeaderName, HeaderValue};

/// One carrier attempt, ready for the dial-string builder: every field is already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub carrier_id: Uuid,
    pub gateway_name: GatewayName,
    /// The number after route and carrier manipulation.
    pub number: DialNumber,
    /// SIP headers for this leg, in order: the carrier's `tech_headers`, then the attestation
    /// header when the caller asked for a level and the carrier names a header for it.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `leg_progress_timeout` for this leg (seconds), from the carrier.
    pub progress_timeout_seconds: Option<u32>,
    /// The SIP codes on which to move past this leg (the carrier's, else the platform default).
    pub failover_codes: FailoverCodes,
    /// The route that produced this leg; `None` for a forced carrier.
    pub route_id: Option<Uuid>,
}
