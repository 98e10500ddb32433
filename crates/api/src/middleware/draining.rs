//! While the instance drains after SIGTERM/SIGINT (`KEEL_SHUTDOWN_DRAIN_SECS`), every
//! response closes its connection, so a load balancer's pooled keep-alive connections
//! end after their current request instead of being cut while idle — when a proxy may
//! already be writing the next request on them.
//!
//! The same middleware counts the requests in flight ([`InFlight`]): the server stops only
//! once none is (within a bound). Each actix worker runs its own runtime, and a pooled
//! database connection belongs to the runtime of the worker that opened it; a worker that
//! stops first takes its connections' I/O with it, so a request still running on another
//! worker that borrowed one of them would fail with 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;

use crate::state::AppState;

/// How long the server waits for the requests in flight to end before it stops anyway.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);

/// The number of requests being handled, shared by every worker.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Counts a request until the guard is dropped (its response produced, or its future
    /// dropped).
    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(Arc::clone(&self.0))
    }

    /// Resolves once no request is in flight, or after `bound`; `true` when none was.
    pub async fn settled(&self, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        while self.count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(IN_FLIGHT_POLL).await;
        }
        true
    }
}

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn close_while_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>();
    let shutdown = state.map(|state| state.shutdown.clone());
    let _counted = state.map(|state| state.in_flight.enter());
    let mut response = next.call(req).await?;
    // Read after the handler: a request that began just before the signal closes too.
    if shutdown.is_some_and(|flag| *flag.borrow()) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_only_once_no_request_is_in_flight() {
        let in_flight = InFlight::default();
        assert!(in_flight.settled(Duration::from_millis(20)).await);

        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        assert!(!in_flight.settled(Duration::from_millis(20)).await, "bounded");

        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.settled(Duration::from_secs(5)).await })
        };
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        drop(second);
        assert!(waiter.await.unwrap());
        assert_eq!(in_flight.count(), 0);
    }
}
