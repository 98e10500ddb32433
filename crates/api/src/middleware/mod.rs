//! Middleware applied to every request, outermost first: security headers, request
//! context (request id, tracing span, metrics, error rendering), CORS, idempotency keys.

pub mod idempotency;
mod request_context;
mod security_headers;

pub use idempotency::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED, Idempotency, idempotency};
pub use request_context::{ContractBody, RequestId, X_REQUEST_ID as X_REQUEST_ID_HEADER, request_context};
pub use security_headers::security_headers;
