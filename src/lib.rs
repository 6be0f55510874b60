//! # hookwire
//!
//! Webhook/postback ingestion: HTTP/1.1 requests in on
//! `/<service>/<name>/<projectId>`, JSON envelopes out over ZeroMQ PUSH
//! sockets, `{"key","id"}` back to the sender. The behaviour is specified in
//! `spec/ingest.md` of the shared contract; this crate follows it.
//!
//! # Layout
//!
//! - [`config`]: flags, `HOOKWIRE_*` env and TOML file → validated [`config::Settings`].
//! - [`server`]: binds one SO_REUSEPORT listener per core, starts one glommio
//!   executor per core, accepts connections.
//! - [`conn`]: one connection: read buffer, pipelining, keep-alive, timeouts,
//!   one write per batch of responses.
//! - [`http`]: sans-IO request heads (httparse), chunked bodies, responses.
//! - [`shard`]: one core's state and the request handler.
//! - [`ingest`]: path/query/body → routing fields and the members of `data`
//!   ([`ingest::form`] urlencoded, [`ingest::json`] simd-json,
//!   [`ingest::layout`] JSON value spans and minifying from 64-byte block
//!   masks, [`ingest::data`] grouping and merge).
//! - [`envelope`]: the envelope encoder, into a reused buffer.
//! - [`id`]: snowflake ids.
//! - [`fanout`]: per-core PUSH sockets and routes.
//! - [`spool`]: the on-disk spool per core and route, and the durable journal.
//! - [`metrics`]: per-core hdrhistograms and counters.
//! - [`admin`]: the private admin listener; merges per-core snapshots on demand.
//! - [`tap`]: the built-in PULL consumer.
//!
//! # A request's path
//!
//! `conn` reads into the connection's buffer and asks `http::request` for a
//! head; once the body is complete (a chunked one is decoded in place) the
//! request — slices of that buffer — goes to [`shard::Shard::handle`].
//! `ingest` decodes the query and body into the core's reused scratch and
//! validates service, name and projectId; `fanout` admits the event (a
//! route must match and have room); ids are taken; `envelope` writes the
//! envelope into the core's reused buffer, `data` spliced from the decoded
//! parameters and the sender's JSON bytes; `fanout` hands it to ZeroMQ with
//! `DONTWAIT` or appends it to the spool (the 200 then waits for the write); the 200 is appended to the
//! connection's output, written once for all requests of that read.
//!
//! # Threading
//!
//! Every core runs its own executor with its own listener, buffers, id
//! generator, ZeroMQ context and sockets. Nothing mutable is shared between
//! cores and no lock is taken per request; [`config::Settings`] is shared
//! read-only.

pub mod admin;
pub mod config;
pub mod conn;
pub mod envelope;
pub mod fanout;
pub mod http;
pub mod id;
pub mod ingest;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod spool;
pub mod tap;
