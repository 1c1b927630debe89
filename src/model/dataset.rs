//! The whole configuration at one version: what a snapshot is built from.

use uuid::Uuid;

use super::{Carrier, E164, Route, Tenant};

/// Everything routing and the documents need, read by the store in one transaction so the
/// version matches the rows. Carriers include disabled and archived ones; every list is ordered
/// by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub version: u64,
    pub tenants: Vec<Tenant>,
    pub carriers: Vec<Carrier>,
    pub routes: Vec<Route>,
    /// Every phone number with voice capability, and its tenant: what caller-ID policies and
    /// attestation check a caller ID against.
    pub voice_numbers: Vec<(Uuid, E164)>,
}
