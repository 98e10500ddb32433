//! Security headers on every response, and `Cache-Control: no-store` on every response
//! that carries a secret: under `/api/v1/auth/` (tokens), and any response its handler
//! marks with [`CarriesSecret`] (a webhook's signing secret). The rule is decided here,
//! once; a handler only says what its body holds.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

/// API responses are JSON: nothing may be loaded, framed or run from them.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The documentation viewer loads its own bundled scripts and styles, nothing else.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

/// Put into a response's extensions by a handler whose body holds a secret (a webhook's
/// signing secret): no cache, private or shared, may store it.
#[derive(Debug, Clone, Copy)]
pub struct CarriesSecret;

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    let is_docs = path == "/docs" || path.starts_with("/docs/");
    let is_auth = path.starts_with("/api/v1/auth/");
    let mut response = next.call(req).await?;
    let secret = is_auth || response.response().extensions().get::<CarriesSecret>().is_some();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if is_docs { DOCS_CSP } else { API_CSP }),
    );
    if secret {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    #[actix_web::test]
    async fn only_responses_that_carry_a_secret_are_no_store() {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(security_headers))
                .route(
                    "/secret",
                    web::post().to(|| async {
                        let mut response = HttpResponse::Created().json(serde_json::json!({"secret": "s"}));
                        response.extensions_mut().insert(CarriesSecret);
                        response
                    }),
                )
                .route("/plain", web::get().to(HttpResponse::Ok))
                .route("/api/v1/auth/profile", web::get().to(HttpResponse::Ok)),
        )
        .await;
        for (method, path, no_store) in [
            (actix_web::http::Method::POST, "/secret", true),
            (actix_web::http::Method::GET, "/plain", false),
            (actix_web::http::Method::GET, "/api/v1/auth/profile", true),
        ] {
            let req = test::TestRequest::default().method(method).uri(path).to_request();
            let res = test::call_service(&app, req).await;
            let cache = res
                .headers()
                .get(header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap());
            assert_eq!(cache == Some("no-store"), no_store, "{path}");
            assert_eq!(
                res.headers()
                    .get(header::X_CONTENT_TYPE_OPTIONS)
                    .map(|v| v.to_str().unwrap()),
                Some("nosniff")
            );
        }
    }
}
