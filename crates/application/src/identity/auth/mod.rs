//! Account use cases: register, login, refresh, authenticate, logout, profile, password,
//! sessions, password reset, e-mail verification.

pub mod authenticate;
pub mod login;
pub mod logout;
pub mod password;
pub mod profile;
pub mod recovery;
pub mod refresh;
pub mod register;
pub mod sessions;
pub mod verification;
