//! Account use cases: register, login, refresh, authenticate, logout, profile, password,
//! sessions.

pub mod authenticate;
pub mod login;
pub mod logout;
pub mod password;
pub mod profile;
pub mod refresh;
pub mod register;
pub mod sessions;
