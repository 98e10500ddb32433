//! argon2id password hashing, off the async workers, with a bound on concurrent hashes.
//!
//! Each hash holds `memory_kib` of memory for its duration; at most `max_concurrent` run at
//! once, so a login flood costs at most `max_concurrent × memory_kib`. Excess requests wait
//! up to `queue_timeout` for a slot, then fail with `HashError::Busy` (503).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash as Phc;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use keel_domain::identity::ports::{HashError, PasswordHasher};
use keel_domain::identity::{Password, PasswordHash};
use rand::RngCore;
use tokio::sync::Semaphore;
use tracing::Instrument;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    params: Params,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a random password with the configured cost: unknown users are verified
    /// against it so that they cost as much as known ones.
    dummy: Arc<String>,
}

impl Argon2Hasher {
    /// Builds the hasher; computes the dummy hash once (blocking, at start-up).
    pub fn new(settings: HashSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Failed(e.to_string().into()))?;
        let mut random = [0_u8; 32];
        rand::rng().fill_bytes(&mut random);
        let dummy = hash_blocking(&params, &random)?;
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            queue_timeout: settings.queue_timeout,
            dummy: Arc::new(dummy),
        })
    }

    /// Runs `work` on the blocking pool once a slot is free, carrying the caller's span.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .instrument(tracing::debug_span!("argon2"))
        .await
        .map_err(|e| HashError::Failed(Box::new(e)))
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &[u8]) -> Result<String, HashError> {
    argon2(params)
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string().into()))
}

/// `Ok(false)` for a wrong password; errors only for an unreadable stored hash.
fn verify_blocking(params: &Params, candidate: &[u8], phc: &str) -> Result<bool, HashError> {
    let parsed = Phc::new(phc).map_err(|e| HashError::Failed(e.to_string().into()))?;
    // The stored hash's own parameters are used, so old hashes keep verifying after a cost
    // change.
    Ok(argon2(params).verify_password(candidate, &parsed).is_ok())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let params = self.params.clone();
        let bytes = password.expose().as_bytes().to_vec();
        let phc = self.run(move || hash_blocking(&params, &bytes)).await??;
        Ok(PasswordHash::new(phc))
    }

    async fn verify<'a>(&self, candidate: &str, hash: Option<&'a PasswordHash>) -> Result<bool, HashError> {
        let params = self.params.clone();
        let bytes = candidate.as_bytes().to_vec();
        let (phc, known) = match hash {
            Some(h) => (h.as_str().to_owned(), true),
            None => (self.dummy.as_str().to_owned(), false),
        };
        let matches = self.run(move || verify_blocking(&params, &bytes, &phc)).await??;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap(max_concurrent: usize, queue_timeout: Duration) -> Argon2Hasher {
        Argon2Hasher::new(HashSettings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent,
            queue_timeout,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_in_phc_format_and_verifies() {
        let h = cheap(2, Duration::from_secs(5));
        let pw = Password::parse("Passw0rdX", "password").unwrap();
        let hash = h.hash(&pw).await.unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=256,t=1,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(h.verify("Passw0rdX", Some(&hash)).await.unwrap());
        assert!(!h.verify("passw0rdX", Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_salt() {
        let h = cheap(2, Duration::from_secs(5));
        let pw = Password::parse("Passw0rdX", "password").unwrap();
        assert_ne!(h.hash(&pw).await.unwrap(), h.hash(&pw).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies_even_with_the_right_guess() {
        let h = cheap(2, Duration::from_secs(5));
        assert!(!h.verify("anything", None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_another_cost_still_verify() {
        let old = Argon2Hasher::new(HashSettings {
            memory_kib: 512,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 1,
            queue_timeout: Duration::from_secs(5),
        })
        .unwrap();
        let pw = Password::parse("Passw0rdX", "password").unwrap();
        let hash = old.hash(&pw).await.unwrap();
        assert!(
            cheap(1, Duration::from_secs(5))
                .verify("Passw0rdX", Some(&hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting_forever() {
        let h = cheap(1, Duration::from_millis(20));
        // Hold the only slot.
        let _held = Arc::clone(&h.slots).acquire_owned().await.unwrap();
        let pw = Password::parse("Passw0rdX", "password").unwrap();
        assert!(matches!(h.hash(&pw).await, Err(HashError::Busy)));
    }
}
