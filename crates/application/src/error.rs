//! The application's error type: every failure a use case can report, by category.
//!
//! # Policy
//! - Each variant is one category of the API contract (docs/api/conventions.md); the api crate maps it to a
//!   status code and a machine code in one place (`keel_api::error`).
//! - `Display` is the message a client may read. It never contains internals: no SQL, no
//!   driver message, no secret. Causes travel in `#[source]` fields for the logs only.
//! - Store errors are translated once, here, through `From<StoreError>`.

use keel_domain::{BoxError, FieldError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// One or more inputs broke a rule; each is named in the details.
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// No credentials, or credentials that are not valid.
    #[error("authentication required")]
    Unauthorized,
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    #[error("token expired")]
    TokenExpired,
    #[error("refresh token already used; the session has been revoked")]
    TokenReused,
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("account disabled")]
    AccountDisabled,
    /// The personal access token the request came with does not cover this route (its
    /// scopes, or a route that needs a signed-in session).
    #[error("the access token's scopes do not cover this route")]
    InsufficientScope,
    /// A one-time token (password reset, e-mail verification) that is unknown, used,
    /// expired or malformed: one answer for all, so a guess learns nothing.
    #[error("the token is invalid, used or expired")]
    InvalidToken,
    /// The resource does not exist, or the caller may not know that it exists.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The message is client-safe (for example "a project with this key already exists").
    #[error("{0}")]
    Conflict(String),
    #[error("the resource has changed since it was read")]
    PreconditionFailed,
    /// What was asked for existed and is no longer kept (a feed position older than the
    /// retention). The message is client-safe.
    #[error("{0}")]
    Gone(String),
    /// Refused by a limit: the decision of the limit that refused (its quota, what is left,
    /// when to come back), which the response's `RateLimit-*` and `Retry-After` headers show —
    /// never another limit's figures.
    #[error("too many requests")]
    RateLimited(keel_domain::rate_limit::RateDecision),
    /// A dependency (database, hashing capacity) cannot serve the request right now.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] BoxError),
    /// A bug or an unexpected failure; the client sees only "internal error".
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl AppError {
    /// A validation error about a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// An unexpected failure with its cause, for the logs.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("resource"),
            // Adapters name the violated rule for the logs; clients get a generic message
            // unless the use case maps the conflict to a precise one itself.
            StoreError::Conflict(_) => Self::Conflict("the resource already exists".into()),
            // Authorized before the write, no longer when it committed: as if refused first.
            StoreError::AuthorityLost => Self::Forbidden,
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Unexpected(cause) => Self::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_conflict_does_not_leak_the_constraint_name() {
        let e: AppError = StoreError::Conflict("uq_projects_key".into()).into();
        assert!(matches!(e, AppError::Conflict(_)));
        assert!(!e.to_string().contains("uq_projects_key"));
    }

    #[test]
    fn store_unavailable_becomes_unavailable_with_its_cause() {
        let e: AppError = StoreError::Unavailable("pool timed out".into()).into();
        assert_eq!(e.to_string(), "service temporarily unavailable");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("pool timed out"));
    }

    #[test]
    fn internal_message_hides_the_cause() {
        let e = AppError::internal("syntax error at or near SELECT");
        assert_eq!(e.to_string(), "internal error");
    }
}
