//! Identity adapters: user and session stores, argon2id hashing, JWTs.

pub mod jwt;
pub mod metrics;
pub mod password;
pub mod sessions;
pub mod users;
