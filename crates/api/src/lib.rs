//! Keel's HTTP server: routes, extractors, middleware, error mapping, OpenAPI and the
//! wiring of infrastructure into the use cases (see `startup`).

pub mod caller;
pub mod conditional;
pub mod config;
pub mod error;
pub mod extract;
pub mod extractors;
pub mod listener;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod routes;
pub mod startup;
pub mod state;
pub mod stream_slots;
pub mod telemetry;

pub use config::Settings;
pub use startup::Application;
