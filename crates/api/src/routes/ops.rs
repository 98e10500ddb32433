//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use keel_application::AppError;
use keel_application::readiness::Readiness;
use keel_domain::health::ComponentStatus;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
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

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
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
