//! What an access decision can end in.

use crate::store::StoreError;

/// Why a caller may not have what it asked for. Another tenant's resource is [`NotFound`],
/// never [`Forbidden`]: its existence is not revealed.
///
/// [`NotFound`]: AccessError::NotFound
/// [`Forbidden`]: AccessError::Forbidden
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A missing, malformed, unknown or revoked token.
    #[error("unauthorized")]
    Unauthorized,
    /// A missing scope or tenant feature, or a platform-managed resource.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Absent, or another tenant's.
    #[error("not found")]
    NotFound,
    /// A request field that names nothing the caller may use.
    #[error("{field}: {detail}")]
    Field { field: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccessError {
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        AccessError::Field {
            field: field.to_string(),
            detail: detail.into(),
        }
    }
}
