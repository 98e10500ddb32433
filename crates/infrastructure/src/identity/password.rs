//! argon2id password hashing, off the async workers, with a bound on concurrent hashes.
//!
//! Each hash holds `memory_kib` of memory for its duration; at most `max_concurrent` run at
//! once, so a login flood costs at most `max_concurrent × memory_kib`. Excess requests wait
//! up to `queue_timeout` for a slot, then fail with `HashError::Busy` (503).
//!
//! Hashes run on threads of their own (`keel-hash-<n>`, one per slot) at a lower scheduling
//! priority (nice +10 on Linux): a flood of logins uses the CPU the request workers leave,
//! instead of taking turns with them — a read that arrives during a flood preempts the hash
//! (docs/performance.md, the flood rows).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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

/// The priority of the hashing threads, on the crate's 0–99 scale: nice +10 on Linux.
const HASH_PRIORITY: u8 = 22;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    params: Params,
    slots: Arc<Semaphore>,
    /// Where hashes are sent to the hashing threads; they stop when the last clone is dropped.
    jobs: Arc<mpsc::Sender<Job>>,
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
        let slots = settings.max_concurrent.max(1);
        Ok(Self {
            params,
            jobs: Arc::new(hashing_threads(slots)?),
            slots: Arc::new(Semaphore::new(slots)),
            queue_timeout: settings.queue_timeout,
            dummy: Arc::new(dummy),
        })
    }

    /// Runs `work` on a hashing thread once a slot is free, carrying the caller's span.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _permit = permit;
                // A receiver gone (the request was dropped) needs no answer.
                let _ = done.send(span.in_scope(work));
            }))
            .map_err(|_| HashError::Failed("the hashing threads have stopped".into()))?;
        result
            .instrument(tracing::debug_span!("argon2"))
            .await
            .map_err(|_| HashError::Failed("a hash ended without an answer".into()))
    }
}

/// Starts `count` hashing threads at [`HASH_PRIORITY`], taking jobs from the returned sender
/// until it is dropped.
fn hashing_threads(count: usize) -> Result<mpsc::Sender<Job>, HashError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..count {
        let queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name(format!("keel-hash-{n}"))
            .spawn(move || {
                lower_priority();
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    let Ok(job) = next else { return };
                    // A panic in one hash fails that hash (its answer is dropped), not the thread.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map_err(|e| HashError::Failed(Box::new(e)))?;
    }
    Ok(jobs)
}

/// Lowers the calling thread's scheduling priority; where the platform refuses, hashes run
/// at normal priority as before.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    let lowered = ThreadPriorityValue::try_from(HASH_PRIORITY)
        .map_err(|e| e.to_owned())
        .and_then(|p| {
            set_current_thread_priority(ThreadPriority::Crossplatform(p)).map_err(|e| e.to_string())
        });
    if let Err(error) = lowered {
        tracing::debug!(%error, "the hashing thread keeps its priority");
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

    /// A hash runs on a hashing thread at nice +10: a read that arrives during a flood of
    /// logins preempts it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_their_own_threads_at_a_lower_priority() {
        let h = cheap(2, Duration::from_secs(5));
        let (name, nice) = h
            .run(|| {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                // Fields after the command's closing parenthesis: state is the 3rd field, nice the 19th.
                let after = stat.rsplit_once(')').unwrap().1;
                let nice: i32 = after.split_whitespace().nth(16).unwrap().parse().unwrap();
                (std::thread::current().name().map(str::to_owned), nice)
            })
            .await
            .unwrap();
        assert_eq!(
            name.as_deref().map(|n| n.starts_with("keel-hash-")),
            Some(true),
            "{name:?}"
        );
        assert_eq!(nice, 10);
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
