//! Domain errors: the broken rule of a value, and the error contract of every store port.

use std::fmt;

/// An opaque cause carried inside an error for the logs; never shown to clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One broken rule of one input field, as reported in the `details` of a 400.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field as the client named it (camelCase, dotted for nested fields).
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// The error contract of every store (repository) port.
///
/// Adapters translate their driver's errors into these variants exactly once, at the
/// adapter boundary: a unique-constraint violation becomes [`StoreError::Conflict`], a pool
/// that cannot hand out a connection in time becomes [`StoreError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed record does not exist.
    #[error("record not found")]
    NotFound,
    /// A uniqueness rule was violated; the string names the rule (for the logs).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The actor no longer holds the authority the write was authorized with (see
    /// [`AuditEntry::authority`](crate::audit::AuditEntry::authority)), checked in the write's
    /// transaction: nothing was written.
    #[error("the actor no longer holds the authority the write needs")]
    AuthorityLost,
    /// The store cannot be reached right now (connection refused, pool timed out). The
    /// caller should answer 503 quickly rather than wait.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug or an unexpected driver failure.
    #[error("unexpected store error")]
    Unexpected(#[source] BoxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_displays_field_and_message() {
        let e = FieldError::new("email", "must be a valid e-mail address");
        assert_eq!(e.to_string(), "email: must be a valid e-mail address");
    }

    #[test]
    fn store_error_keeps_its_cause_for_the_logs() {
        let cause: BoxError = "connection refused".into();
        let e = StoreError::Unavailable(cause);
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
    }
}
