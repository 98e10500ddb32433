//! A bare actix-web JSON handler: the reference `make bench-cache` measures Keel's cached
//! reads against in the same run (SPEC §9 states the budget as a share of it). One route,
//! no middleware, the same worker count as keel (one per CPU).
//!
//!   cargo run --release -p keel-api --example bare   # listens on BARE_BIND (127.0.0.1:18099)

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BARE_BIND").unwrap_or_else(|_| "127.0.0.1:18099".to_owned());
    HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
        )
    })
    .bind(bind)?
    .run()
    .await
}
