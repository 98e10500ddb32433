//! While the instance drains after SIGTERM/SIGINT (`KEEL_SHUTDOWN_DRAIN_SECS`), every
//! response closes its connection, so a load balancer's pooled keep-alive connections
//! end after their current request instead of being cut while idle — when a proxy may
//! already be writing the next request on them.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;

use crate::state::AppState;

pub async fn close_while_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let shutdown = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.shutdown.clone());
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
