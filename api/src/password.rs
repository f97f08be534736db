//! argon2id password hashing (m = 19456 KiB, t = 2, p = 1: OWASP ASVS 5.0), run off the
//! async threads and bounded in concurrency, with a dummy hash so unknown accounts take
//! as long to refuse as wrong passwords.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Memory cost in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes and verifies passwords on the blocking pool, a bounded number at a time.
#[derive(Clone, Debug)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
}

impl PasswordHasherPool {
    /// At most `max_concurrent` computations at once; the rest wait their turn.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable)?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    }

    /// Whether `password` matches `phc`. With `phc = None` it checks against a dummy hash
    /// (and answers false), so a missing account costs the same time as a wrong password.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable)?;
        tokio::task::spawn_blocking(move || {
            let real = phc.is_some();
            let phc = match phc {
                Some(p) => p,
                None => dummy_hash()?.to_owned(),
            };
            let ok = verify_blocking(&password, &phc)?;
            Ok(ok && real)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

fn hash_blocking(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("argon2 hash: {e}")))
}

fn verify_blocking(password: &str, phc: &str) -> Result<bool, ApiError> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| ApiError::Internal(format!("stored hash: {e}")))?;
    // Verify with the parameters stored in the hash (they may be older or stronger).
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(d) = DUMMY.get() {
        return Ok(d);
    }
    let h = hash_blocking("copains-dummy-password-for-timing")?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_uses_argon2id_with_asvs_params_and_verifies() {
        let pool = PasswordHasherPool::new(2);
        let h = pool.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(
            pool.verify("correct horse battery".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong".into(), Some(h)).await.unwrap());
        assert!(
            !pool
                .verify("copains-dummy-password-for-timing".into(), None)
                .await
                .unwrap()
        );
    }
}
