//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use keel_application::AppError;
use keel_application::readiness::Readiness;
use keel_domain::health::ComponentStatus;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::caller::bearer;
use crate::error::{ApiError, ErrorBody};
use crate::middleware::ContractBody;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
}

/// Liveness: the process is up. Touches no dependency.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "getHealth",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = HealthBody))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// A dependency's state in a readiness report.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Degraded,
    Down,
}

impl From<ComponentStatus> for CheckStatus {
    fn from(s: ComponentStatus) -> Self {
        match s {
            ComponentStatus::Ok => Self::Ok,
            ComponentStatus::Degraded => Self::Degraded,
            ComponentStatus::Down => Self::Down,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok` or `down`.
    pub database: CheckStatus,
    /// `ok` or `degraded` (Redis configured but not answering).
    pub cache: CheckStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessBody {
    pub status: Readiness,
    pub checks: ReadinessChecks,
}

/// Readiness: the database answers (the cache may be degraded) and the instance is not
/// shutting down.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "getReadiness",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `ok`, or `degraded` when Redis does not answer", body = ReadinessBody),
        (status = 503, description = "Not ready: `unavailable` when the database does not answer, `draining` while the instance shuts down", body = ReadinessBody)
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let mut report = state.readiness.execute().await;
    if *state.shutdown.borrow() {
        report.status = Readiness::Draining;
    }
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = HttpResponse::build(status).json(ReadinessBody {
        status: report.status,
        checks: ReadinessChecks {
            database: report.database.into(),
            cache: report.cache.into(),
        },
    });
    response.extensions_mut().insert(ContractBody);
    response
}

/// Who may read `/metrics` on one listener (`KEEL_METRICS_TOKEN`, `KEEL_METRICS_BIND`).
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// `false` on the API's listener when the metrics have a listener of their own.
    pub served: bool,
    /// SHA-256 of the bearer token a scrape must carry, when one is configured: compared
    /// digest to digest, so the comparison's time says nothing about the token.
    pub token_digest: Option<[u8; 32]>,
}

impl MetricsAccess {
    pub fn new(served: bool, token: Option<&str>) -> Self {
        Self {
            served,
            token_digest: token.map(digest),
        }
    }

    fn admits(&self, req: &HttpRequest) -> bool {
        match &self.token_digest {
            None => true,
            Some(expected) => bearer(req).is_some_and(|given| digest(given) == *expected),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Prometheus metrics in the text exposition format. With `KEEL_METRICS_TOKEN` set, only
/// for `Authorization: Bearer <token>`; with `KEEL_METRICS_BIND` set, only on that address.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "`KEEL_METRICS_TOKEN` is set and the request does not carry it as a bearer token", body = ErrorBody),
        (status = 404, description = "`KEEL_METRICS_BIND` is set: the metrics are served on that address only", body = ErrorBody)
    )
)]
pub async fn metrics(
    state: web::Data<AppState>,
    access: Option<web::Data<MetricsAccess>>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Without an access rule (a test app that registers none), as by default: open.
    if let Some(access) = access {
        if !access.served {
            return Err(ApiError::RouteNotFound);
        }
        if !access.admits(&req) {
            return Err(AppError::Unauthorized.into());
        }
    }
    state
        .metrics
        .set_db_connections_active(state.db.active_connections());
    let text = state.metrics.render().map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// An OpenAPI 3.1 document: this API's, as `GET /api/v1/openapi.json` serves it.
#[derive(Debug, ToSchema)]
#[schema(value_type = Object)]
pub struct OpenApiDocument(pub serde_json::Value);

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "getOpenApiDocument",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = OpenApiDocument))
)]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(state.openapi_json.clone())
}
