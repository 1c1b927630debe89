//! Bearer-token authentication and the authorisation rules every handler applies.
//!
//! A token is 32 random bytes shown once (`tl_` + 64 hex digits); only its SHA-256 is stored, and
//! the lookup is by that hash. Roles: `platform_admin` sees and manages everything, including
//! platform carriers and platform default routes; `admin` is bound to one tenant and holds scopes.
//! Another tenant's resources answer 404, never 403: their existence is not revealed.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use crate::app::AppState;
use crate::model::{Feature, Role, Scope};

/// Who is calling, as established from a valid, unrevoked token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: Uuid,
    pub role: Role,
    /// The tenant an `admin` is bound to; `None` for a platform admin.
    pub tenant_id: Option<Uuid>,
    pub scopes: Vec<Scope>,
}

/// A freshly generated token: the secret (shown once) and the hash to store.
pub struct GeneratedToken {
    pub secret: String,
    pub hash: String,
}

pub fn generate_token() -> GeneratedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("tl_{}", hex::encode(bytes));
    let hash = hash_token(&secret);
    GeneratedToken { secret, hash }
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or(ApiError::Unauthorized)?;
        Principal::from_secret(state, secret).await
    }
}

/// Whether `token` has the shape of a token (`tl_` + 64 hex digits): anything else is refused
/// before it reaches the database.
pub fn well_formed(token: &str) -> bool {
    token.len() == 67
        && token.starts_with("tl_")
        && token[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Principal {
    /// The principal of a token secret, from a bearer header or the status page's cookie:
    /// 401 unless it is well formed, known and not revoked.
    pub async fn from_secret(state: &AppState, secret: &str) -> Result<Principal, ApiError> {
        if !well_formed(secret) {
            return Err(ApiError::Unauthorized);
        }
        let token = state
            .store
            .find_token_by_hash(&hash_token(secret))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if token.revoked_at.is_some() {
            return Err(ApiError::Unauthorized);
        }
        Ok(Principal {
            token_id: token.id,
            role: token.role,
            tenant_id: token.tenant_id,
            scopes: token.scopes,
        })
    }
}

impl Principal {
    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin
    }

    /// 403 unless the token holds `scope` (a platform admin holds every scope).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.is_platform_admin() || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token lacks the {scope} scope"
            )))
        }
    }

    /// 403 unless the caller is a platform admin.
    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        if self.is_platform_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only a platform admin may do this".into(),
            ))
        }
    }

    /// Whether a row owned by `owner` (None = platform) may be read by this caller. Tenant admins
    /// read their own rows, and platform rows only where `platform_visible` (platform carriers,
    /// which their routes may use).
    pub fn can_read(&self, owner: Option<Uuid>, platform_visible: bool) -> bool {
        match (self.tenant_id, owner) {
            _ if self.is_platform_admin() => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => platform_visible,
            (None, _) => false,
        }
    }

    /// The tenant a tenant admin acts for; for a platform admin, the tenant named in the request.
    /// A tenant admin naming another tenant gets 404 (the tenant's existence is not revealed).
    pub fn acting_tenant(&self, requested: Option<Uuid>) -> Result<Option<Uuid>, ApiError> {
        if self.is_platform_admin() {
            return Ok(requested);
        }
        match (self.tenant_id, requested) {
            (Some(mine), None) => Ok(Some(mine)),
            (Some(mine), Some(r)) if r == mine => Ok(Some(mine)),
            _ => Err(ApiError::NotFound),
        }
    }

    /// For tenant admins: the self-service gate on carriers and routes. The tenant must have the
    /// `self_service_carriers` feature (the write scope is checked separately).
    pub async fn require_self_service(&self, state: &AppState) -> Result<(), ApiError> {
        let Some(tenant_id) = self.tenant_id else {
            return Ok(());
        };
        if self.is_platform_admin() {
            return Ok(());
        }
        let tenant = state
            .store
            .get_tenant(tenant_id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if tenant.has_feature(Feature::SelfServiceCarriers) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this tenant lacks the self_service_carriers feature".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_hash_to_what_is_stored() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 67);
        assert_eq!(hash_token(&a.secret), a.hash);
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret[3..]));
    }
}
