//! Per-process caches on the hot path of every authenticated request: access tokens already
//! verified (until they expire) and sessions recently found live (for one second).
//!
//! A token is cached only after its signature, issuer and expiry were checked, keyed by the
//! exact token string. A session is cached only while live and not suspended; revocations
//! made by this process drop it at once, revocations made by another api node take effect
//! here within [`SESSION_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use copains_wire::{AccessClaims, Id, TokenError, TokenVerifier};

/// How long a session found live is trusted without asking the database again.
pub const SESSION_TTL: Duration = Duration::from_secs(1);
/// Most entries of each map (cleared wholesale when full: a cache, not a store).
pub const MAX_ENTRIES: usize = 20_000;

/// The two caches.
#[derive(Debug, Default)]
pub struct AuthCache {
    tokens: Mutex<HashMap<String, AccessClaims>>,
    sessions: Mutex<HashMap<i64, (bool, Instant)>>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl AuthCache {
    /// The claims of `token`, verified once and then served from memory until it expires.
    pub fn verify(
        &self,
        verifier: &TokenVerifier,
        token: &str,
    ) -> Result<AccessClaims, TokenError> {
        {
            let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get(token) {
                return if c.exp > now_secs() {
                    Ok(c.clone())
                } else {
                    Err(TokenError::Expired)
                };
            }
        }
        let claims = verifier.verify(token)?;
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// `Some(is_admin)` when `session` was found live less than [`SESSION_TTL`] ago.
    pub fn live_session(&self, session: Id) -> Option<bool> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&session.0)
            .filter(|(_, at)| at.elapsed() < SESSION_TTL)
            .map(|(admin, _)| *admin)
    }

    /// Records that `session` is live (and whether its user is an admin).
    pub fn remember_session(&self, session: Id, is_admin: bool) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(session.0, (is_admin, Instant::now()));
    }

    /// Forgets `session` (it was revoked here).
    pub fn forget_session(&self, session: Id) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&session.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use copains_wire::TokenSigner;

    #[test]
    fn verified_tokens_are_served_from_memory_and_forged_ones_never() {
        let signer = TokenSigner::from_pem(&TokenSigner::generate_pem().unwrap()).unwrap();
        let other = TokenSigner::from_pem(&TokenSigner::generate_pem().unwrap()).unwrap();
        let v = signer.verifier().unwrap();
        let now = now_secs();
        let claims = AccessClaims {
            sub: Id(1),
            sid: Id(2),
            iat: now,
            exp: now + 60,
            iss: "copains".into(),
        };
        let cache = AuthCache::default();
        let t = signer.sign(&claims).unwrap();
        assert_eq!(cache.verify(&v, &t).unwrap(), claims);
        assert_eq!(
            cache.verify(&v, &t).unwrap(),
            claims,
            "second time from the cache"
        );
        let forged = other.sign(&claims).unwrap();
        assert!(
            cache.verify(&v, &forged).is_err(),
            "a token signed by another key is never accepted"
        );
        let expired = AccessClaims {
            exp: now - 100,
            ..claims.clone()
        };
        assert!(cache.verify(&v, &signer.sign(&expired).unwrap()).is_err());

        assert_eq!(cache.live_session(Id(2)), None);
        cache.remember_session(Id(2), true);
        assert_eq!(cache.live_session(Id(2)), Some(true));
        cache.forget_session(Id(2));
        assert_eq!(cache.live_session(Id(2)), None);
    }
}
