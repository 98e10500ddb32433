//! A bare actix-web JSON handler: the reference `make bench` and `make bench-cache` measure
//! Keel's cached reads against in the same run (docs/performance.md states the budget as a share of it).
//! No middleware, the same worker count as keel (one per CPU).
//!
//!   cargo run --release -p keel-api --example bare   # listens on BARE_BIND (127.0.0.1:18099)
//!
//! `GET /` answers `{"status":"ok"}`, or, when `BARE_BODY_FILE` names a JSON file, that
//! document. When `BARE_BODY_DIR` names a folder, each `NAME.json` in it is answered at
//! `GET /NAME` too, so one process can stand for several keel routes. Every document is parsed
//! once at start-up and serialized per request like any JSON handler's answer, so the reference
//! sends the same body as the keel route it is compared with.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};

fn read_json(path: &std::path::Path) -> std::io::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BARE_BIND").unwrap_or_else(|_| "127.0.0.1:18099".to_owned());
    let mut documents = HashMap::new();
    let root = match std::env::var_os("BARE_BODY_FILE") {
        Some(path) => read_json(path.as_ref())?,
        None => serde_json::json!({"status": "ok"}),
    };
    documents.insert("/".to_owned(), root);
    if let Some(dir) = std::env::var_os("BARE_BODY_DIR") {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                documents.insert(format!("/{stem}"), read_json(&path)?);
            }
        }
    }
    let documents: Vec<(String, Arc<serde_json::Value>)> = documents
        .into_iter()
        .map(|(path, body)| (path, Arc::new(body)))
        .collect();
    HttpServer::new(move || {
        documents.iter().fold(App::new(), |app, (path, body)| {
            let body = Arc::clone(body);
            app.route(
                path,
                web::get().to(move || {
                    let body = Arc::clone(&body);
                    async move { HttpResponse::Ok().json(&*body) }
                }),
            )
        })
    })
    .bind(bind)?
    .run()
    .await
}
