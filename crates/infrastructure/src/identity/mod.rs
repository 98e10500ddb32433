//! Identity adapters: user, session and personal access token stores, argon2id hashing,
//! JWTs, token secrets.

pub mod jwt;
pub mod metrics;
pub mod password;
pub mod personal_data;
pub mod personal_tokens;
pub mod sessions;
pub mod users;
