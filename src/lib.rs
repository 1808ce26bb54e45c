//! # Ferry
//!
//! Ferry moves a Redis dataset from a *source* server to a *target* server while both stay online,
//! and records every step as an immutable event. A tour of the modules, in the order data flows:
//!
//! - [`api`]: HTTP (actix-web) and the OpenAPI document. Handlers translate requests into job
//!   commands and projections into JSON; they hold no business rules and make no Redis calls.
//! - [`jobs`]: the migration aggregate. A command (create, validate, start, cutover, cancel) is
//!   checked against the state folded from events, and either becomes new events or is refused with
//!   a typed error. The state machine lives here, once. The supervisor runs the engine for each job.
//! - [`store`]: the only code that knows sled. An append-only, durable event log with a global
//!   sequence, per-migration reads and live subscriptions.
//! - [`validate`]: pre-flight checks against both servers, one function per check id.
//! - [`engine`]: the transfer itself: full sync, live streaming, cutover, verification. It reports
//!   only by emitting events.
//! - [`relay`]: the master side of replication, for targets that replicate *through* Ferry
//!   (`transfer: relay`): a shared listener, the server half of the handshake, the session that
//!   relays the source's RDB and stream, and the choice between relay and restore.
//! - [`replication`], [`rdb`], [`resp`]: protocol and format libraries. Bytes in, typed items out;
//!   they know nothing about jobs, HTTP or sled, and are tested and benchmarked on their own.
//! - [`spec`], [`redis_url`]: the user's request and the endpoint addresses inside it, with the
//!   password redacted wherever it could be shown.

pub mod api;
pub mod backup;
pub mod config;
pub mod engine;
pub mod jobs;
pub mod rdb;
pub mod redis_url;
pub mod relay;
pub mod replication;
pub mod resp;
pub mod spec;
pub mod store;
pub mod telemetry;
pub mod validate;
