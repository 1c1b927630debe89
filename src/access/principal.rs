//! API tokens and the principal behind one.
//!
//! A token is 32 random bytes shown once (`tl_` + 64 hex digits); only its SHA-256 is stored, and
//! the lookup is by that hash. Roles: `platform_admin` sees and manages everything, including
//! platform carriers and platform default routes; `admin` is bound to one tenant and holds scopes.
//! Another tenant's resources answer "not found", never "forbidden": their existence is not
//! revealed.

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AccessError;
use crate::model::{Carrier, Feature, Role, Scope};
use crate::store::Store;

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

/// Whether `token` has the shape of a token (`tl_` + 64 hex digits): anything else is refused
/// before it reaches the database.
pub fn well_formed(token: &str) -> bool {
    token.len() == 67
        && token.starts_with("tl_")
        && token[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Principal {
    /// The principal of a token secret, from a bearer header or the status page's cookie:
    /// unauthorized unless it is well formed, known and not revoked.
    pub async fn from_secret(store: &Store, secret: &str) -> Result<Principal, AccessError> {
        if !well_formed(secret) {
            return Err(AccessError::Unauthorized);
        }
        let token = store
            .find_token_by_hash(&hash_token(secret))
            .await?
            .ok_or(AccessError::Unauthorized)?;
        if token.revoked_at.is_some() {
            return Err(AccessError::Unauthorized);
        }
        Ok(Principal {
            token_id: token.id,
            role: token.role,
            tenant_id: token.tenant_id,
            scopes: token.scopes,
        })
    }

    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin
    }

    /// Forbidden unless the token holds `scope` (a platform admin holds every scope).
    pub fn require(&self, scope: Scope) -> Result<(), AccessError> {
        if self.is_platform_admin() || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(format!(
                "this token lacks the {scope} scope"
            )))
        }
    }

    /// Forbidden unless the caller may read figures that name every tenant's carriers (such as
    /// `/metrics`): a platform admin, or a platform token (bound to no tenant) holding `scope`.
    /// A tenant's token never does, whatever its scopes.
    pub fn require_platform_scope(&self, scope: Scope) -> Result<(), AccessError> {
        if self.is_platform_admin() || (self.tenant_id.is_none() && self.scopes.contains(&scope)) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(format!(
                "{scope} needs a platform token: these figures name every tenant's carriers"
            )))
        }
    }

    /// Forbidden unless the caller is a platform admin.
    pub fn require_platform_admin(&self) -> Result<(), AccessError> {
        if self.is_platform_admin() {
            Ok(())
        } else {
            Err(AccessError::Forbidden(
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
    /// A tenant admin naming another tenant gets "not found" (the tenant's existence is not
    /// revealed).
    pub fn acting_tenant(&self, requested: Option<Uuid>) -> Result<Option<Uuid>, AccessError> {
        if self.is_platform_admin() {
            return Ok(requested);
        }
        match (self.tenant_id, requested) {
            (Some(mine), None) => Ok(Some(mine)),
            (Some(mine), Some(r)) if r == mine => Ok(Some(mine)),
            _ => Err(AccessError::NotFound),
        }
    }

    /// For tenant admins: the self-service gate on carriers and routes. The tenant must have the
    /// `self_service_carriers` feature (the write scope is checked separately).
    pub async fn require_self_service(&self, store: &Store) -> Result<(), AccessError> {
        let Some(tenant_id) = self.tenant_id else {
            return Ok(());
        };
        if self.is_platform_admin() {
            return Ok(());
        }
        let tenant = store
            .get_tenant(tenant_id)
            .await?
            .ok_or(AccessError::Unauthorized)?;
        if tenant.has_feature(Feature::SelfServiceCarriers) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(
                "this tenant lacks the self_service_carriers feature".into(),
            ))
        }
    }
}

/// Carrier `id` if `principal` may read it (its own or the platform's), else not found.
pub async fn visible_carrier(
    store: &Store,
    principal: &Principal,
    id: Uuid,
) -> Result<Carrier, AccessError> {
    let carrier = store.get_carrier(id).await?.ok_or(AccessError::NotFound)?;
    if principal.can_read(carrier.tenant_id, true) {
        Ok(carrier)
    } else {
        Err(AccessError::NotFound)
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
        assert!(well_formed(&a.secret));
    }

    #[test]
    fn a_tenant_admin_reads_its_own_rows_and_platform_rows_only_where_visible() {
        let tenant = Uuid::from_u128(7);
        let admin = Principal {
            token_id: Uuid::from_u128(1),
            role: Role::Admin,
            tenant_id: Some(tenant),
            scopes: vec![Scope::CarriersRead],
        };
        assert!(admin.can_read(Some(tenant), false));
        assert!(!admin.can_read(Some(Uuid::from_u128(8)), true));
        assert!(admin.can_read(None, true));
        assert!(!admin.can_read(None, false));
        assert!(admin.require(Scope::CarriersRead).is_ok());
        assert!(matches!(
            admin.require(Scope::CarriersWrite),
            Err(AccessError::Forbidden(_))
        ));
        assert!(matches!(
            admin.acting_tenant(Some(Uuid::from_u128(8))),
            Err(AccessError::NotFound)
        ));
    }

    #[test]
    fn only_a_platform_token_reads_what_names_every_tenants_carriers() {
        let token = |tenant_id: Option<Uuid>, role: Role, scopes: Vec<Scope>| Principal {
            token_id: Uuid::from_u128(1),
            role,
            tenant_id,
            scopes,
        };
        let scrape = token(None, Role::Admin, vec![Scope::MetricsRead]);
        let platform = token(None, Role::PlatformAdmin, Vec::new());
        let tenant = token(Some(Uuid::from_u128(7)), Role::Admin, Scope::ALL.to_vec());
        let unscoped = token(None, Role::Admin, vec![Scope::CarriersRead]);
        assert!(scrape.require_platform_scope(Scope::MetricsRead).is_ok());
        assert!(platform.require_platform_scope(Scope::MetricsRead).is_ok());
        for refused in [tenant, unscoped] {
            assert!(matches!(
                refused.require_platform_scope(Scope::MetricsRead),
                Err(AccessError::Forbidden(_))
            ));
        }
        // The scrape token reads nothing else.
        assert!(!scrape.can_read(None, true));
        assert!(scrape.require(Scope::CarriersRead).is_err());
    }
}
