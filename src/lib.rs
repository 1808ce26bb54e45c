//! # Ferry
//!
//! Ferry moves a Redis dataset from a *source* server to a *target* server while both stay online,
//! and records every step as an immutable event. Backups (RDB copies of a server) and restores of
//! them are long-running things of the same shape.
//!
//! ## The layers, and the rules that keep them
//! ```text
//! main ─► cli ─┬► app (start-up) ─► api (HTTP only) ─► jobs (service: states + one command lock per aggregate)
//!              │        │  control (socket) ─────┤   command = lock → decide → store.append → fold
//!              │        ├─► supervisor ──────────┤──► aggregate (pure: decide, apply; Refusal)
//!              │        │     │ implements jobs::Worker └──► store (sled; no domain rules)
//!              │        │     ▼
//!              │        │   engine · backup · validate (all Redis and file I/O)
//!              │        │     ▼
//!              │        │   client (one admin Conn, one Info) ─► transport (TCP/TLS + AUTH)
//!              │        │     ▼                                   ▲
//!              │        │   relay · replication · rdb · resp ─────┘ (protocol and format libraries)
//!              └────────┴─► config, telemetry      model · spec · redis_url · disk · cluster: plain types, used by all
//! ```
//! 1. **No module imports one that imports it back.** `/work/shared/tools/module-cycles src`
//!    prints no `cycle:` line; the arrows above are the only directions.
//! 2. **The code that decides does no I/O.** [`aggregate`] has no tokio, sockets, files or sled;
//!    [`jobs`] talks only to the [`store`] and to the [`jobs::Worker`] port, which the
//!    [`supervisor`] implements. So `jobs` makes no Redis call and `jobs` never imports the
//!    supervisor: it holds it as a trait object.
//! 3. **The code that does I/O reports only through events.** Engines, captures and restores run
//!    as supervised tasks and report by calling the service's commands; progress reaches the
//!    views only as checkpoint events (at most about one a second), so it survives a restart.
//! 4. **HTTP types stay in [`api`].** Views are the aggregates' states; errors become
//!    problem+json there and only there. The dashboard is static files the API serves; the
//!    [`control`] socket and the [`cli`] translate into the same `jobs` commands as the API.
//! 5. **One admin client.** Every admin call goes through [`client::Conn`], every `INFO` through
//!    [`client::Info`], every connection through [`transport`] (shared with the replica handshake),
//!    so TLS (`rediss://`, client certificates) and ACL users reach every link from one place: a
//!    [`transport::Peer`] is a server with its TLS settings loaded once, at the start of the work.
//!
//! ## The modules, in the order data flows
//! - [`cli`]: the commands a person drives (`ferry migrate` with its progress display and
//!   signals, `cutover`, `cancel`, `audit verify`); [`control`]: the socket through which they
//!   reach the process that holds a data directory.
//! - [`app`]: start-up: configuration, store, fold, supervisor, control socket, HTTP.
//! - [`api`]: HTTP (actix-web) and the OpenAPI document. Handlers translate requests into service
//!   commands and states into JSON; live streams (SSE), `/metrics`, the audit endpoints, and the
//!   dashboard's static files.
//! - [`jobs`]: the service layer: in-memory states, command locks, commands and queries.
//! - [`aggregate`]: migrations, backups and restores: typed states, `decide`, one fold each; and
//!   who may write to a target ([`aggregate::lease`], the rule of the target lease).
//! - [`store`]: the only code that knows sled. An append-only, durable event log with a global
//!   sequence, per-aggregate reads, live subscriptions, and a hash chain over every event.
//! - [`supervisor`]: runs engines, captures and restores; does the I/O the service asks for.
//! - [`validate`]: pre-flight checks against both servers, one function per check id.
//! - [`engine`]: the transfer itself: full sync, live streaming, cutover, verification, loading
//!   an RDB file (restores).
//! - [`relay`]: the master side of replication, for targets that replicate *through* Ferry
//!   (`transfer: relay`): a shared listener, the server half of the handshake, the session that
//!   relays the source's RDB and stream, and the choice between relay and restore.
//! - [`backup`]: capturing a server's RDB over the replication link; writing RDB files whole.
//! - [`client`], [`transport`]: the one admin client and the socket it (and replication) opens,
//!   plain or TLS, with TLS failures named the way validation reports them; the target lease on
//!   the wire ([`client::lease`]); a cluster's slot map ([`client::cluster`]) and connections to
//!   its masters routed by slot ([`client::routed`]).
//! - [`replication`], [`rdb`], [`resp`]: protocol and format libraries. Bytes in, typed items out;
//!   they know nothing about jobs, HTTP or sled, and are tested and benchmarked on their own.
//! - [`shape`]: which keys a migration moves, under which names and database numbers (pure;
//!   the snapshot, the stream and verification all ask it).
//! - [`cluster`]: Redis Cluster without I/O: key slots, per-slot hash tags, the slot map parsed
//!   from a node's replies.
//! - [`model`], [`spec`], [`redis_url`], [`disk`], [`serde_objects`]: plain types and leaf helpers: events, reports,
//!   the user's request and its addresses (passwords redacted wherever they could be shown), free
//!   disk space and private (0600/0700) files.

pub mod aggregate;
pub mod api;
pub mod app;
pub mod backup;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod control;
pub mod disk;
pub mod engine;
pub mod jobs;
pub mod model;
pub mod rdb;
pub mod redis_url;
pub mod relay;
pub mod replication;
pub mod resp;
pub mod serde_objects;
pub mod shape;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod transport;
pub mod validate;
