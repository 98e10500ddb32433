//! Domain events after their commit (docs/api/events-and-webhooks.md, adr/0010): the outbox table, the dispatcher
//! that publishes it, and the bus that carries published events to every instance.

pub mod bus;
pub mod dispatcher;
pub mod feed;
pub mod outbox;

pub use bus::{InProcessBus, RedisBus};
pub use dispatcher::{Dispatcher, DispatcherSettings, Pass};
pub use feed::{FeedPurgeTask, SeaOrmEventFeed};
pub use outbox::Outbox;
