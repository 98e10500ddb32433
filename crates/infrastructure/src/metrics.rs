//! The Prometheus registry and the metrics of docs/operations.md that this layer records.
//!
//! Metrics are per `Metrics` instance (no global registry), so tests and several servers in
//! one process do not share counters.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Latency buckets from 1 ms to 5 s (docs/operations.md).
/// Failure to build or render the registry.
pub type MetricsError = prometheus::Error;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    http_request_duration_seconds: HistogramVec,
    http_requests_total: IntCounterVec,
    db_query_duration_seconds: HistogramVec,
    db_connections_active: IntGauge,
    auth_failures_total: IntCounterVec,
    cache_hits_total: IntCounterVec,
    cache_misses_total: IntCounterVec,
    rate_limit_rejections_total: IntCounterVec,
    webhook_deliveries_total: IntCounterVec,
    mail_deliveries_total: IntCounterVec,
    outbox_pending_events: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route", "status_code"],
        )?;
        let http_requests_total = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served by route pattern"),
            &["method", "route", "status_code"],
        )?;
        let db_query_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "db_query_duration_seconds",
                "Database statement latency, by what ran it (origin: request or background)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation", "table", "origin"],
        )?;
        let db_connections_active = IntGauge::new(
            "db_connections_active",
            "Database connections lent out of the pool",
        )?;
        let auth_failures_total = IntCounterVec::new(
            Opts::new("auth_failures_total", "Refused authentications by reason"),
            &["reason"],
        )?;
        let cache_hits_total = IntCounterVec::new(
            Opts::new("cache_hits_total", "Cache reads answered by a layer (l1, l2)"),
            &["cache_layer"],
        )?;
        let cache_misses_total = IntCounterVec::new(
            Opts::new(
                "cache_misses_total",
                "Cache reads a layer (l1, l2) could not answer",
            ),
            &["cache_layer"],
        )?;
        registry.register(Box::new(cache_hits_total.clone()))?;
        registry.register(Box::new(cache_misses_total.clone()))?;
        let rate_limit_rejections_total = IntCounterVec::new(
            Opts::new(
                "rate_limit_rejections_total",
                "Requests refused with 429 by policy (anonymous, user, login)",
            ),
            &["policy"],
        )?;
        // Present at 0 from the start, so a rate of rejections has a baseline.
        for policy in ["anonymous", "user", "login"] {
            rate_limit_rejections_total.with_label_values(&[policy]);
        }
        let webhook_deliveries_total = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook delivery attempts by outcome (success, http_error, network_error, refused, gave_up)",
            ),
            &["outcome"],
        )?;
        for outcome in ["success", "http_error", "network_error", "refused", "gave_up"] {
            webhook_deliveries_total.with_label_values(&[outcome]);
        }
        let mail_deliveries_total = IntCounterVec::new(
            Opts::new(
                "mail_deliveries_total",
                "Mail delivery attempts by outcome (sent, retried, failed: given up, dropped: KEEL_MAIL=disabled)",
            ),
            &["outcome"],
        )?;
        for outcome in ["sent", "retried", "failed", "dropped"] {
            mail_deliveries_total.with_label_values(&[outcome]);
        }
        registry.register(Box::new(mail_deliveries_total.clone()))?;
        let outbox_pending_events = IntGauge::new(
            "outbox_pending_events",
            "Committed events the outbox dispatcher has not published yet",
        )?;
        registry.register(Box::new(webhook_deliveries_total.clone()))?;
        registry.register(Box::new(outbox_pending_events.clone()))?;
        registry.register(Box::new(auth_failures_total.clone()))?;
        registry.register(Box::new(rate_limit_rejections_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(db_query_duration_seconds.clone()))?;
        registry.register(Box::new(db_connections_active.clone()))?;
        Ok(Self {
            registry,
            http_request_duration_seconds,
            http_requests_total,
            db_query_duration_seconds,
            db_connections_active,
            auth_failures_total,
            cache_hits_total,
            cache_misses_total,
            rate_limit_rejections_total,
            webhook_deliveries_total,
            mail_deliveries_total,
            outbox_pending_events,
        })
    }

    /// The registry, for adapters added later to register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one served request. `route` must be the route pattern, never the raw path.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.http_request_duration_seconds
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
        self.http_requests_total.with_label_values(&labels).inc();
    }

    /// Counts one webhook delivery attempt (or a delivery given up) by outcome.
    pub fn webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries_total.with_label_values(&[outcome]).inc();
    }

    /// Sets the number of events waiting in the outbox.
    /// Counts one mail delivery attempt by its outcome.
    pub fn mail_delivery(&self, outcome: &str) {
        self.mail_deliveries_total.with_label_values(&[outcome]).inc();
    }

    pub fn set_outbox_pending(&self, pending: u64) {
        self.outbox_pending_events
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// One statement; `origin` is [`crate::db::origin`]'s: `background` inside the
    /// background work's tasks, `request` anywhere else.
    pub fn observe_db_query(&self, operation: &str, table: String, elapsed: Duration) {
        self.db_query_duration_seconds
            .with_label_values(&[operation, table.as_str(), crate::db::origin()])
            .observe(elapsed.as_secs_f64());
    }

    /// One refused authentication; `reason` is a machine code such as `invalid_credentials`.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures_total.with_label_values(&[reason]).inc();
    }

    /// The hit counter of one cache layer (`l1`, `l2`), resolved once by its user.
    pub fn cache_hits(&self, layer: &str) -> prometheus::IntCounter {
        self.cache_hits_total.with_label_values(&[layer])
    }

    /// The miss counter of one cache layer (`l1`, `l2`).
    pub fn cache_misses(&self, layer: &str) -> prometheus::IntCounter {
        self.cache_misses_total.with_label_values(&[layer])
    }

    /// One request refused with 429; `policy` is `anonymous`, `user`, `login` or `password`.
    pub fn rate_limit_rejection(&self, policy: &str) {
        self.rate_limit_rejections_total
            .with_label_values(&[policy])
            .inc();
    }

    pub fn set_db_connections_active(&self, active: i64) {
        self.db_connections_active.set(active);
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_http_and_db_metrics_in_text_format() {
        let m = Metrics::new().unwrap();
        m.observe_http("GET", "/api/v1/projects/{id}", 200, Duration::from_millis(3));
        m.observe_db_query("select", "projects".into(), Duration::from_micros(800));
        m.set_db_connections_active(2);
        m.auth_failure("token_expired");
        m.cache_hits("l1").inc();
        m.cache_misses("l2").inc_by(2);
        m.rate_limit_rejection("login");
        let text = m.render().unwrap();
        assert!(text.contains(
            r#"http_requests_total{method="GET",route="/api/v1/projects/{id}",status_code="200"} 1"#
        ));
        assert!(text.contains(
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/projects/{id}",status_code="200",le="0.005"} 1"#
        ));
        assert!(
            text.contains(
                r#"db_query_duration_seconds_count{operation="select",origin="request",table="projects"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("db_connections_active 2"));
        assert!(text.contains(r#"auth_failures_total{reason="token_expired"} 1"#));
        assert!(text.contains(r#"cache_hits_total{cache_layer="l1"} 1"#));
        assert!(text.contains(r#"cache_misses_total{cache_layer="l2"} 2"#));
        assert!(text.contains(r#"rate_limit_rejections_total{policy="login"} 1"#));
    }

    #[tokio::test]
    async fn the_background_works_statements_are_labelled_apart_from_the_requests() {
        let m = std::sync::Arc::new(Metrics::new().unwrap());
        m.observe_db_query("select", "webhooks".into(), Duration::ZERO);
        crate::db::in_background(async { m.observe_db_query("select", "webhooks".into(), Duration::ZERO) })
            .await;
        let spawned = std::sync::Arc::clone(&m);
        crate::db::spawn_background(async move {
            spawned.observe_db_query("select", "webhooks".into(), Duration::ZERO);
            // A task spawned plainly from background work is not background work.
            tokio::spawn(
                async move { spawned.observe_db_query("select", "webhooks".into(), Duration::ZERO) },
            )
            .await
            .unwrap();
        })
        .await
        .unwrap();
        let text = m.render().unwrap();
        assert!(
            text.contains(
                r#"db_query_duration_seconds_count{operation="select",origin="request",table="webhooks"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"db_query_duration_seconds_count{operation="select",origin="background",table="webhooks"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn two_instances_do_not_share_counters() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.observe_http("GET", "/health", 200, Duration::ZERO);
        assert!(!b.render().unwrap().contains("http_requests_total{"));
    }
}
