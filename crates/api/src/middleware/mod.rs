//! Middleware applied to every request, outermost first: connection draining at
//! shutdown and the count of requests in flight, security headers, request context (request
//! id, tracing span, metrics, error rendering), CORS, the caller (who the request comes from,
//! decided once), rate limits, idempotency keys.

pub mod caller;
mod draining;
pub mod idempotency;
pub mod rate_limit;
pub(crate) mod request_context;
mod security_headers;

pub use caller::caller;
pub use draining::{IN_FLIGHT_WAIT, InFlight, close_while_draining};
pub use idempotency::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED, Idempotency, idempotency};
pub use rate_limit::{RateLimitPolicy, rate_limit};
pub use request_context::{
    ContractBody, RequestId, RoutePattern, X_REQUEST_ID as X_REQUEST_ID_HEADER, request_context,
};
pub use security_headers::{CarriesSecret, security_headers};
