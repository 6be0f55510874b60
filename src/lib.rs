//! # hookwire
//!
//! Webhook/postback ingestion: HTTP/1.1 requests in on
//! `/<service>/<name>/<projectId>`, JSON envelopes out over ZeroMQ PUSH
//! sockets, `{"key","id"}` back to the sender. `docs/contract.md` is the
//! contract this crate implements.
//!
//! # Layout
//!
//! Imports point one way, from the connection down to the wire formats.
//!
//! - [`runtime`]: one glommio executor per core: listeners and accept
//!   loops, the core's control loop, spool tasks, snapshots, the drain.
//! - [`conn`]: one connection, sans-IO ([`conn::Conn`]), its I/O loop and
//!   the core's connection registry (timeouts, drain).
//! - [`shard`]: one core's reused state and the request handler.
//! - [`ingest`]: path, query and body → the event's routing fields and the
//!   members of `data` (`form` urlencoded, `json` simd-json, `layout` JSON
//!   spans, `merge` grouping, `charset` decoding, `route` validation).
//! - [`event`]: the routing key, the envelope encoder, snowflake ids.
//! - [`fanout`]: per-core PUSH sockets, routes, the outbox and re-sends.
//! - [`spool`]: the on-disk spool per core and route, and the durable journal.
//! - [`http`]: sans-IO request heads (httparse), chunked bodies, media
//!   types, the client's address, responses.
//! - [`reject`]: every refusal's status, code and message.
//! - `jsonw`: the JSON writers the encoders share.
//! - [`metrics`]: per-core hdrhistograms and counters.
//! - [`admin`]: the private admin listener; merges core snapshots on demand.
//! - [`config`]: flags, `HOOKWIRE_*` env and TOML file → [`config::Settings`].
//! - [`log`]: `tracing` lines on stderr, by level.
//! - [`tap`]: the built-in PULL consumer.
//! - [`testing`]: a core's state outside the server, for benches and tests.
//!
//! # A request's path
//!
//! [`conn::io::serve`] reads into the connection's buffer;
//! [`conn::Conn::process`] asks [`http::request`] for a head and, once the
//! body is complete (a chunked one decoded in place), hands the request —
//! slices of that buffer — to [`shard::Shard::handle`]. [`ingest`] decodes
//! the query and body into the core's reused scratch and validates service,
//! name and projectId; [`fanout`] admits the event (a route must match and
//! have room); [`event`] takes the ids and writes the envelope into the
//! core's outbox, `data` spliced from the decoded parameters and the
//! sender's JSON bytes. The core's flusher hands the outbox to ZeroMQ with
//! `DONTWAIT`, or to the spool (the 200 then waits for the write). Every
//! response of one read leaves in one write.
//!
//! # Threading
//!
//! Every core runs its own executor with its own listener, buffers, id
//! generator, ZeroMQ context and sockets. Nothing mutable is shared between
//! cores and no lock is taken per request; [`config::Settings`] is shared
//! read-only, and the spool's byte count is published per core.

pub mod admin;
pub mod config;
pub mod conn;
pub mod event;
pub mod fanout;
pub mod http;
pub mod ingest;
mod jsonw;
pub mod log;
pub mod metrics;
pub mod reject;
pub mod runtime;
pub mod shard;
pub mod spool;
pub mod tap;
pub mod testing;
