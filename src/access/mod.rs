//! Who is calling and what they may see: the principal behind an API token, the authorisation
//! rules every admin surface applies, and the scoped reads that both the API and the status page
//! answer from (a carrier the caller may see, a call explained as the caller may see it).
//!
//! It sits below the HTTP rooms (`api`, `status`) and above what it reads (`store`, `publish`,
//! `quality`, the Event Socket's live view); it knows nothing of HTTP. Its one error type,
//! [`AccessError`], becomes HTTP in the API's error mapping.

mod error;
mod explain;
mod principal;
mod recent;

pub use self::error::AccessError;
pub use self::explain::{ExplainSources, PreviewQuery, explain_for};
pub use self::principal::{
    GeneratedToken, Principal, generate_token, hash_token, visible_carrier, well_formed,
};
pub use self::recent::RecentPrincipals;
