//! Tracing set-up: readable lines in development, JSON lines in production. The subscriber
//! takes its sink, so tests can silence it or capture it.

use tracing::Subscriber;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::LogFormat;

/// Levels when `RUST_LOG` is unset: our crates at info, chatty dependencies at warn.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,actix_server=warn";

pub fn subscriber<W>(format: LogFormat, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_writer(sink)
                    .with_target(false),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
    }
}

/// A writer that hands log lines to a background thread, which writes whatever queued up in
/// one buffered write. Lossless: a caller blocks only when 128 Ki lines are waiting. Dropping
/// the guard flushes the rest.
pub fn background_writer<W>(sink: W) -> (NonBlocking, WorkerGuard)
where
    W: std::io::Write + Send + 'static,
{
    NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("keel-log")
        .finish(std::io::BufWriter::new(sink))
}

/// Installs the subscriber for the whole process (once, in `main`).
pub fn init(
    subscriber: Box<dyn Subscriber + Send + Sync>,
) -> Result<(), tracing::subscriber::SetGlobalDefaultError> {
    tracing::subscriber::set_global_default(subscriber)
}
