//! Tracing set-up: readable lines in development, JSON lines in production. The subscriber
//! takes its sink, so tests can silence it or capture it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::Subscriber;
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

/// How long a line may wait in the buffer before the background thread writes it out.
const BATCH_INTERVAL: Duration = Duration::from_millis(25);
/// A buffer this full is written out at once, without waiting for the interval.
const BATCH_SOON: usize = 64 * 1024;
/// A buffer this full makes writers wait until it is written out: nothing is dropped, and
/// memory stays bounded when the sink is slower than the service.
const BATCH_MAX: usize = 8 * 1024 * 1024;

/// Where log lines go in the server: a shared buffer that a background thread writes out in
/// one write per batch (at most every [`BATCH_INTERVAL`], sooner when [`BATCH_SOON`] bytes
/// are waiting).
///
/// A request appends its formatted line under a short lock and never waits on the sink,
/// and, unlike a channel with one message per line, it does not wake another thread either:
/// the writer wakes once per batch. Lines keep the order they were written in. Lossless: a
/// writer waits only when [`BATCH_MAX`] bytes are waiting. Dropping the [`LogFlush`]
/// returned with it writes out the rest; lines written after that are dropped.
#[derive(Clone, Debug)]
pub struct LogSink {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Batch>,
    /// Wakes the background thread: the buffer became non-empty, grew past
    /// [`BATCH_SOON`], or the sink closes.
    writer: Condvar,
    /// Wakes writers waiting for room.
    room: Condvar,
}

#[derive(Debug, Default)]
struct Batch {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // A panic while holding the lock leaves a buffer of whole lines: keep using it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut batch = self.lock();
        while batch.lines.len() >= BATCH_MAX && !batch.closed {
            self.writer.notify_one();
            batch = self.room.wait(batch).unwrap_or_else(PoisonError::into_inner);
        }
        if batch.closed {
            return;
        }
        let was_empty = batch.lines.is_empty();
        batch.lines.extend_from_slice(line);
        let soon = batch.lines.len() >= BATCH_SOON;
        drop(batch);
        if was_empty || soon {
            self.writer.notify_one();
        }
    }

    /// The background thread: waits for lines, lets a batch gather, writes it out.
    fn drain(&self, sink: &mut dyn Write) {
        let mut out = Vec::new();
        loop {
            let mut batch = self.lock();
            while batch.lines.is_empty() && !batch.closed {
                batch = self.writer.wait(batch).unwrap_or_else(PoisonError::into_inner);
            }
            if !batch.closed {
                batch = self
                    .writer
                    .wait_timeout_while(batch, BATCH_INTERVAL, |b| b.lines.len() < BATCH_SOON && !b.closed)
                    .map_or_else(|e| e.into_inner().0, |(batch, _)| batch);
            }
            std::mem::swap(&mut batch.lines, &mut out);
            let closed = batch.closed;
            drop(batch);
            self.room.notify_all();
            // A failing sink (a closed stderr) loses these lines; nothing better to do.
            let _ = sink.write_all(&out).and_then(|()| sink.flush());
            out.clear();
            if closed {
                return;
            }
        }
    }
}

impl Write for &LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = &'a LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Writes out what is left in a [`LogSink`] when dropped, and stops its thread.
#[derive(Debug)]
pub struct LogFlush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogFlush {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.writer.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A [`LogSink`] writing to `sink` from a background thread named `keel-log`.
pub fn background_writer<W>(sink: W) -> std::io::Result<(LogSink, LogFlush)>
where
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared::default());
    let drained = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("keel-log".into())
        .spawn(move || {
            let mut sink = sink;
            drained.drain(&mut sink);
        })?;
    Ok((
        LogSink {
            shared: Arc::clone(&shared),
        },
        LogFlush {
            shared,
            thread: Some(thread),
        },
    ))
}

/// Installs the subscriber for the whole process (once, in `main`).
pub fn init(
    subscriber: Box<dyn Subscriber + Send + Sync>,
) -> Result<(), tracing::subscriber::SetGlobalDefaultError> {
    tracing::subscriber::set_global_default(subscriber)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the writer thread owns it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_reaches_the_sink_in_order_by_the_time_the_flush_is_dropped() {
        let out = Captured::default();
        let (sink, flush) = background_writer(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        (&sink).write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(flush);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        let mut lines = 0;
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
            lines += 1;
        }
        assert_eq!(lines, 20_000);
    }

    #[test]
    fn a_line_is_written_out_within_the_interval_without_a_flush() {
        let out = Captured::default();
        let (sink, _flush) = background_writer(out.clone()).unwrap();
        (&sink).write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line never reached the sink"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"one line\n");
    }

    #[test]
    fn writers_wait_for_room_instead_of_dropping_lines_behind_a_slow_sink() {
        struct Slow(Captured);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Captured::default();
        let (sink, flush) = background_writer(Slow(out.clone())).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..(3 * BATCH_MAX / line.len()) {
            (&sink).write_all(&line).unwrap();
        }
        drop(flush);
        assert_eq!(out.0.lock().unwrap().len(), 3 * BATCH_MAX);
    }
}
