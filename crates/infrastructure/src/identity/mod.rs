//! Identity adapters: user, session, personal access token and one-time token stores,
//! argon2id hashing, JWTs, token secrets.

pub mod account_tokens;
pub mod jwt;
pub mod metrics;
pub mod password;
pub mod personal_data;
pub mod personal_tokens;
pub mod sessions;
pub mod users;
