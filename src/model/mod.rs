//! Domain types: every value that can reach FreeSWITCH is a newtype built only by a `parse`
//! that enforces the allow-lists of FREESWITCH.md §6.4. The rest of the crate never re-checks
//! them: holding a `GatewayName` *is* the proof that it is safe in `sofia/gateway/<name>/`, in
//! an ESL command and in XML.
//!
//! This module does no I/O. Errors are plain [`Invalid`] values carrying a human message; the
//! caller (API, store, config) attaches the field name. The written forms of carriers and
//! routes ([`CarrierInput`], [`RouteInput`]) live here too, with the rules that turn them into
//! entities, so that every API and every rule between fields use one definition; a refused
//! form is a [`FieldErrors`].

mod attempt;
mod caller_id;
mod carrier;
mod criteria;
mod dataset;
mod entities;
#[doc(hidden)]
pub mod fixtures;
mod input;
mod network;
mod route;
mod switch;
mod tried;
mod values;

pub use attempt::*;
pub use caller_id::*;
pub use carrier::*;
pub use criteria::*;
pub use dataset::*;
pub use entities::*;
pub use input::*;
pub use network::*;
pub use route::*;
pub use switch::*;
pub use tried::*;
pub use values::*;

/// Why a value was refused. The message is safe to show to the client: it never echoes the
/// refused input (which may be hostile or a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Self {
        Invalid(msg.into())
    }
}
