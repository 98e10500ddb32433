//! The building blocks of webhook delivery (docs/api/events-and-webhooks.md), each pure or self-contained so that
//! the delivery worker and the webhook API only compose them:
//!
//! - [`signing`]: the `X-Keel-Signature` header, `t=<unix>,v1=<hex HMAC-SHA256>`, and its
//!   verification as a receiver does it (constant-time, with a timestamp tolerance).
//! - [`backoff`]: the delay before each retry, exponential from a base with "equal jitter",
//!   capped at 6 hours.
//! - [`breaker`]: a circuit breaker per webhook, a pure state machine over two persisted
//!   fields (consecutive failures, open until): closed, open, half-open with one trial.
//! - [`address`]: SSRF protection — URL form checks, the classification of IP addresses
//!   (public, loopback, private, link-local, metadata, …) and resolution that refuses a URL
//!   pointing anywhere but where a webhook may go.
//! - [`secret_box`]: AES-256-GCM sealing of signing secrets at rest, with key ids so that the
//!   key can be rotated.
//! - [`client`]: the HTTP sender — one reqwest client with rustls, no redirects, no proxy, a
//!   timeout, and a DNS resolver that filters addresses by [`address::classify`], so the
//!   address checked is the address connected to.
//!
//! Composed by [`store`] (webhooks and the delivery queue on SeaORM), [`policy`] (the use
//! cases' URL and secret ports) and [`sender`] (the delivery worker).
//!
//! See ADR 0010 for the reasons behind each choice.

pub mod address;
pub mod backoff;
pub mod breaker;
pub mod client;
pub mod policy;
pub mod secret_box;
pub mod sender;
pub mod signing;
pub mod store;

pub use address::{AddressClass, MAX_URL_LEN, UrlError, check_url, classify, resolve_checked};
pub use backoff::{MAX_RETRY_DELAY, jittered_retry_delay, retry_delay};
pub use breaker::{Breaker, BreakerPolicy, Gate};
pub use client::{Attempt, ClientError, ClientSettings, MAX_RESPONSE_BODY, WebhookClient};
pub use secret_box::{KeyError, SecretBox, SecretBoxError, parse_key};
pub use signing::{SignatureError, signature_header, verify};
