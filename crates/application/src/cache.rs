//! The cache port: what the use cases read through and invalidate, never how it is stored.
//!
//! The infrastructure implements it as an in-process L1 over a shared Redis L2 (ADR 0009);
//! the use cases only name a [`CacheKey`], say how to load the value on a miss, and name the
//! keys a write made stale. Values stay typed in L1 (no decoding on a hit); [`Codec`]
//! carries them to and from the bytes of L2.
//!
//! Rules the use cases follow:
//! - read through [`cached`] only what a key fully determines (one row, or one user's list
//!   under a variant);
//! - invalidate after the write is committed and before answering, every key whose value
//!   the write changed; a list is invalidated through its key name, which covers all its
//!   variants (filters, pages);
//! - absence is never cached: a loader's `None` goes back to the caller and nothing is kept;
//! - a value that comes with another key's load (one statement reads a task and the caller's
//!   access to its project) is kept with [`store_since`], under a [`Watermark`] taken before
//!   the statement ran: it is dropped if anything was invalidated in between.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use keel_domain::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A cached value as L1 keeps it: typed, shared, never decoded on a hit.
pub type CachedValue = Arc<dyn Any + Send + Sync>;

/// Loads the value of a key on a miss; `None` when it does not exist.
pub type Loader<'a> = Pin<Box<dyn Future<Output = Result<Option<CachedValue>, StoreError>> + Send + 'a>>;

/// What is cached under one name: invalidating the name drops every variant of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: Arc<str>,
    variant: Option<Arc<str>>,
}

impl CacheKey {
    fn named(kind: &str, id: impl fmt::Display) -> Self {
        Self {
            name: format!("{kind}:{id}").into(),
            variant: None,
        }
    }

    /// What authentication needs of a user (role, status) and of one of their sessions
    /// (expiry, revocation): a variant of the user's name, so that any change of the user
    /// and any revocation drop it with one invalidation of [`CacheKey::user`].
    pub fn session_of(user_id: Uuid, session_id: Uuid) -> Self {
        Self::user(user_id).with_variant(format!("s:{session_id}"))
    }

    /// What authentication needs of one of a user's personal access tokens (the hash of its
    /// secret, scopes, projects, expiry) and of the user: a variant of the user's name, so
    /// that deleting the token and any change of the user drop it with one invalidation of
    /// [`CacheKey::user`], as for a session.
    pub fn token_of(user_id: Uuid, token_id: Uuid) -> Self {
        Self::user(user_id).with_variant(format!("t:{token_id}"))
    }

    /// Everything cached about a user (every variant: sessions, profile). Invalidated by
    /// every change of the user and every revocation of one of their sessions.
    pub fn user(id: Uuid) -> Self {
        Self::named("user", id)
    }

    /// The user as `GET /auth/profile` shows it.
    pub fn profile(user_id: Uuid) -> Self {
        Self::user(user_id).with_variant("profile")
    }

    /// Everything cached about a project: one variant per user holds the project with that
    /// user's role ([`CacheKey::access`]). Invalidated by every change of the project or of
    /// its memberships.
    pub fn project(id: Uuid) -> Self {
        Self::named("project", id)
    }

    /// A project with one user's role in it (or none): what every project-scoped
    /// authorization reads.
    pub fn access(project_id: Uuid, user_id: Uuid) -> Self {
        Self::project(project_id).with_variant(format!("m:{user_id}"))
    }

    pub fn task(id: Uuid) -> Self {
        Self::named("task", id)
    }

    /// Every cached page of a project's task list; one variant per query. Any change to the
    /// project's tasks invalidates them all.
    pub fn project_tasks(project_id: Uuid) -> Self {
        Self::named("tasks-of", project_id)
    }

    /// Every page of every project list a user may ask for; one variant per query.
    pub fn projects_of(user_id: Uuid) -> Self {
        Self::named("projects-of", user_id)
    }

    /// The same name with a variant: `key.with_variant(q)` is invalidated with `key`.
    #[must_use]
    pub fn with_variant(mut self, variant: impl Into<String>) -> Self {
        self.variant = Some(variant.into().into());
        self
    }

    /// The unit of invalidation.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}#{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// How a value of one type becomes the bytes of the shared tier and back. A value that
/// does not decode (another version's layout, a corrupt entry) counts as a miss.
#[derive(Clone, Copy)]
pub struct Codec {
    pub encode: fn(&(dyn Any + Send + Sync)) -> Option<Vec<u8>>,
    pub decode: fn(&[u8]) -> Option<CachedValue>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Codec")
    }
}

impl Codec {
    /// JSON, through the type's serde implementation.
    pub fn json<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> Self {
        Self {
            encode: |value| serde_json::to_vec(value.downcast_ref::<T>()?).ok(),
            decode: |bytes| {
                serde_json::from_slice::<T>(bytes)
                    .ok()
                    .map(|v| Arc::new(v) as CachedValue)
            },
        }
    }
}

/// What an invalidation dropped, as the watchers of [`Cache::invalidations`] hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidated {
    /// Every variant of this key name (`CacheKey::name`).
    Name(Arc<str>),
    /// Possibly anything: the whole cache was flushed, or the watcher fell behind.
    Everything,
}

impl Invalidated {
    /// Whether this drops what is cached under `key`'s name.
    pub fn covers(&self, key: &CacheKey) -> bool {
        match self {
            Self::Name(name) => **name == *key.name(),
            Self::Everything => true,
        }
    }
}

/// A point in an instance's invalidation history (see [`Cache::watermark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark(pub u64);

/// The cache service. Never fails a request for its own sake: when its shared tier is
/// unreachable it serves from L1 and the loader, and says so through readiness.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value of `key`: from L1, else L2, else `load` — which runs once for concurrent
    /// misses of one key (the others wait for its result). A loader error is returned to
    /// every waiter; a `None` is returned and not cached.
    async fn get_or_load<'a>(
        &self,
        key: &CacheKey,
        codec: Codec,
        load: Loader<'a>,
    ) -> Result<Option<CachedValue>, StoreError>;

    /// Drops `keys` (every variant of their names) here and on every other instance.
    /// Call it after the write is committed; it returns once this instance and L2 can no
    /// longer serve the old values and the other instances have been told.
    async fn invalidate(&self, keys: &[CacheKey]);

    /// Where this instance's invalidations stand now: take it before reading from the store
    /// a value to keep with [`Cache::fill_since`].
    fn watermark(&self) -> Watermark;

    /// Keeps `value` as `key`'s (in this instance's L1 only), unless any key was invalidated
    /// on this instance since `mark` was taken: a value read before a write must not outlive
    /// the write's invalidation. Never fails; a skipped fill costs the next read a load.
    async fn fill_since(&self, mark: Watermark, key: &CacheKey, codec: Codec, value: CachedValue);

    /// Every invalidation this instance applies from now on — its own writes' and, through
    /// pub/sub, other instances' — for holders of long-lived state that must re-check it when
    /// it changes (an open event stream and its session). A watcher that falls behind hears
    /// [`Invalidated::Everything`].
    fn invalidations(&self) -> BoxStream<'static, Invalidated>;
}

/// Keeps `value` as `key`'s, typed, unless something was invalidated since `mark`.
pub async fn store_since<T>(cache: &dyn Cache, mark: Watermark, key: &CacheKey, value: Arc<T>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    cache
        .fill_since(mark, key, Codec::json::<T>(), value as CachedValue)
        .await;
}

/// Reads `key` through `cache`, typed: `load` runs on a miss.
pub async fn cached<T, F>(cache: &dyn Cache, key: &CacheKey, load: F) -> Result<Option<Arc<T>>, StoreError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    F: Future<Output = Result<Option<T>, StoreError>> + Send,
{
    let loader: Loader<'_> = Box::pin(async move { Ok(load.await?.map(|v| Arc::new(v) as CachedValue)) });
    match cache.get_or_load(key, Codec::json::<T>(), loader).await? {
        None => Ok(None),
        Some(value) => value
            .downcast::<T>()
            .map(Some)
            .map_err(|_| StoreError::Unexpected(format!("cache entry {key:?} holds another type").into())),
    }
}

/// No cache: every read loads. For tools and tests that need a [`Cache`] but no caching.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    async fn get_or_load<'a>(
        &self,
        _key: &CacheKey,
        _codec: Codec,
        load: Loader<'a>,
    ) -> Result<Option<CachedValue>, StoreError> {
        load.await
    }

    async fn invalidate(&self, _keys: &[CacheKey]) {}

    fn watermark(&self) -> Watermark {
        Watermark(0)
    }

    async fn fill_since(&self, _mark: Watermark, _key: &CacheKey, _codec: Codec, _value: CachedValue) {}

    fn invalidations(&self) -> BoxStream<'static, Invalidated> {
        // Nothing is cached, so nothing held from it can go stale: a stream that never ends.
        Box::pin(futures::stream::pending())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A cache double for the use cases' unit tests: loads through, remembers what was
    //! invalidated.

    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub struct RecordingCache {
        invalidated: Mutex<Vec<CacheKey>>,
        reads: Mutex<Vec<CacheKey>>,
        fills: Mutex<Vec<CacheKey>>,
    }

    impl RecordingCache {
        /// Names of the keys invalidated so far, in order.
        pub fn invalidated(&self) -> Vec<String> {
            self.invalidated
                .lock()
                .map(|k| k.iter().map(|k| k.name().to_owned()).collect())
                .unwrap_or_default()
        }

        /// Keys kept with `fill_since` so far, in order.
        pub fn filled(&self) -> Vec<String> {
            self.fills
                .lock()
                .map(|k| k.iter().map(|k| format!("{k:?}")).collect())
                .unwrap_or_default()
        }

        /// Keys read through the cache so far, in order.
        pub fn reads(&self) -> Vec<String> {
            self.reads
                .lock()
                .map(|k| k.iter().map(|k| format!("{k:?}")).collect())
                .unwrap_or_default()
        }
    }

    #[async_trait]
    impl Cache for RecordingCache {
        async fn get_or_load<'a>(
            &self,
            key: &CacheKey,
            _codec: Codec,
            load: Loader<'a>,
        ) -> Result<Option<CachedValue>, StoreError> {
            if let Ok(mut reads) = self.reads.lock() {
                reads.push(key.clone());
            }
            load.await
        }

        async fn invalidate(&self, keys: &[CacheKey]) {
            if let Ok(mut invalidated) = self.invalidated.lock() {
                invalidated.extend(keys.iter().cloned());
            }
        }

        fn watermark(&self) -> Watermark {
            Watermark(0)
        }

        async fn fill_since(&self, _mark: Watermark, key: &CacheKey, _codec: Codec, _value: CachedValue) {
            if let Ok(mut fills) = self.fills.lock() {
                fills.push(key.clone());
            }
        }

        fn invalidations(&self) -> BoxStream<'static, Invalidated> {
            Box::pin(futures::stream::pending())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Thing {
        n: u32,
    }

    #[test]
    fn the_json_codec_round_trips_and_refuses_other_shapes() {
        let codec = Codec::json::<Thing>();
        let bytes = (codec.encode)(&Thing { n: 7 }).unwrap();
        let back = (codec.decode)(&bytes).unwrap().downcast::<Thing>().unwrap();
        assert_eq!(*back, Thing { n: 7 });
        assert!((codec.decode)(b"{\"m\":1}").is_none());
        assert!((codec.encode)(&"not a thing").is_none());
    }

    #[test]
    fn variants_share_their_name() {
        let u = Uuid::now_v7();
        let page = CacheKey::projects_of(u).with_variant("status=active");
        assert_eq!(page.name(), CacheKey::projects_of(u).name());
        assert_ne!(page, CacheKey::projects_of(u));
        assert_eq!(page.variant(), Some("status=active"));
        assert_ne!(CacheKey::project(u).name(), CacheKey::task(u).name());
    }

    #[tokio::test]
    async fn cached_is_typed_and_passes_absence_through() {
        let key = CacheKey::project(Uuid::now_v7());
        let hit = cached(&NoCache, &key, async { Ok(Some(Thing { n: 3 })) })
            .await
            .unwrap();
        assert_eq!(hit.as_deref(), Some(&Thing { n: 3 }));
        let none = cached::<Thing, _>(&NoCache, &key, async { Ok(None) })
            .await
            .unwrap();
        assert!(none.is_none());
    }
}
