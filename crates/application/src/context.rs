//! What a use case knows about the request that triggered it (for the audit log).

/// Request metadata, filled by the api layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The personal access token the request came with, if any: its audit entries name it.
    pub token_id: Option<uuid::Uuid>,
}
