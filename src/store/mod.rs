//! The event log on sled: durable appends, ordered reads, live subscriptions.

pub mod event;

pub use event::{Event, EventKind};
