//! A bare actix-web JSON handler: the reference `make bench` and `make bench-cache` measure
//! Keel's cached reads against in the same run (SPEC §9 states the budget as a share of it).
//! One route, no middleware, the same worker count as keel (one per CPU).
//!
//!   cargo run --release -p keel-api --example bare   # listens on BARE_BIND (127.0.0.1:18099)
//!
//! It answers `{"status":"ok"}`, or, when `BARE_BODY_FILE` names a JSON file, that document
//! (parsed once at start-up, serialized per request like any JSON handler's answer), so the
//! reference can send the same body as the keel route it is compared with.

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BARE_BIND").unwrap_or_else(|_| "127.0.0.1:18099".to_owned());
    let body: serde_json::Value = match std::env::var_os("BARE_BODY_FILE") {
        Some(path) => serde_json::from_slice(&std::fs::read(path)?)?,
        None => serde_json::json!({"status": "ok"}),
    };
    let body = web::Data::new(body);
    HttpServer::new(move || {
        App::new().app_data(body.clone()).route(
            "/",
            web::get()
                .to(|body: web::Data<serde_json::Value>| async move { HttpResponse::Ok().json(&**body) }),
        )
    })
    .bind(bind)?
    .run()
    .await
}
