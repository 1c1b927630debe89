//! Principals verified recently, for what must keep answering while the database is away:
//! `/metrics` is how an operator sees the outage, so a scrape token that the database accepted
//! within the last [`RecentPrincipals::KEEP`] is still accepted while the database cannot be
//! asked. Anything the database answers (unknown, revoked) is final at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{AccessError, Principal, hash_token};
use crate::store::Store;

/// The last successful verification of each token, by the token's hash.
#[derive(Default)]
pub struct RecentPrincipals {
    verified: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl RecentPrincipals {
    /// How long a verification stands in for the database while it cannot be asked.
    pub const KEEP: Duration = Duration::from_secs(3600);
    /// Tokens remembered at most (scrapers are few; the oldest is forgotten first).
    const CAPACITY: usize = 256;

    /// [`Principal::from_secret`], and while the database cannot answer, the same token's
    /// verification of the last [`Self::KEEP`].
    pub async fn from_secret(&self, store: &Store, secret: &str) -> Result<Principal, AccessError> {
        let hash = hash_token(secret);
        match Principal::from_secret(store, secret).await {
            Ok(principal) => {
                self.remember(hash, principal.clone(), Instant::now());
                Ok(principal)
            }
            Err(AccessError::Store(e)) => self
                .recalled(&hash, Instant::now())
                .ok_or(AccessError::Store(e)),
            Err(refused) => {
                self.lock().remove(&hash);
                Err(refused)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Principal, Instant)>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, hash: String, principal: Principal, now: Instant) {
        let mut verified = self.lock();
        if verified.len() >= Self::CAPACITY && !verified.contains_key(&hash) {
            let oldest = verified
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(h, _)| h.clone());
            if let Some(oldest) = oldest {
                verified.remove(&oldest);
            }
        }
        verified.insert(hash, (principal, now));
    }

    fn recalled(&self, hash: &str, now: Instant) -> Option<Principal> {
        self.lock()
            .get(hash)
            .filter(|(_, at)| now.saturating_duration_since(*at) < Self::KEEP)
            .map(|(p, _)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::model::{Role, Scope};

    fn scrape() -> Principal {
        Principal {
            token_id: Uuid::from_u128(1),
            role: Role::Admin,
            tenant_id: None,
            scopes: vec![Scope::MetricsRead],
        }
    }

    #[test]
    fn a_verification_stands_in_for_the_database_for_an_hour_only() {
        let recent = RecentPrincipals::default();
        let at = Instant::now();
        recent.remember("h".into(), scrape(), at);
        assert!(recent.recalled("h", at + Duration::from_secs(60)).is_some());
        assert!(recent.recalled("h", at + RecentPrincipals::KEEP).is_none());
        assert!(recent.recalled("other", at).is_none());
    }

    #[test]
    fn the_oldest_verification_is_forgotten_first_at_capacity() {
        let recent = RecentPrincipals::default();
        let at = Instant::now();
        for i in 0..RecentPrincipals::CAPACITY {
            recent.remember(
                format!("h{i}"),
                scrape(),
                at + Duration::from_millis(i as u64),
            );
        }
        recent.remember("new".into(), scrape(), at + Duration::from_secs(1));
        assert!(recent.recalled("h0", at).is_none());
        assert!(recent.recalled("h1", at).is_some() && recent.recalled("new", at).is_some());
    }
}
