//! Domain events after their commit (SPEC §6, adr/0010): the outbox table, the dispatcher
//! that publishes it, and the bus that carries published events to every instance.

pub mod bus;
pub mod dispatcher;
pub mod outbox;

pub use bus::{InProcessBus, RedisBus};
pub use dispatcher::{Dispatcher, DispatcherSettings, Pass};
pub use outbox::Outbox;
