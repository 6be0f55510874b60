//! # hookwire
//!
//! Webhook/postback ingestion: HTTP/1.1 requests in on
//! `/<service>/<name>/<projectId>`, JSON envelopes out over ZeroMQ PUSH
//! sockets, `{"key","id"}` back to the sender. `docs/contract.md` is the
//! contract this crate implements.
//!
//! # Layout
//!
//! Imports point one way, from the connection down to the wire formats:
//! no file imports one that imports it back.
//!
//! ```text
//! main.rs           the binary: command line, signals, open-files limit
//! runtime/          one glommio executor per core
//!   listener.rs     SO_REUSEPORT listeners, bound before the cores start; accept loop
//!   core.rs         a core's start and control loop (delivery, admin asks, timeouts)
//!   spooling.rs     the flusher (outbox → ZeroMQ, spool writes) and spool delivery
//!   drain.rs        the graceful drain, in three phases
//!   acks.rs         the ack listener: acknowledged ids to the core that sent them
//!   snapshot.rs     a copy of a core's metrics and routes, for the admin
//! conn/             one connection
//!   mod.rs          the sans-IO Conn: buffer, pipelining, framing, 100-continue
//!   ring.rs         the core's io_uring data path: multishot accept and receive
//!                   into a shared provided-buffer ring, sends queued per turn
//!   ring_io.rs      a connection's receive → process → send loop on it (--io uring)
//!   io.rs           the same over glommio's TcpStream (--io poll), or a TLS stream
//!   tls.rs          an HTTPS connection: handshake, kernel TLS or rustls, then io.rs
//!   registry.rs     the core's connections: deadlines, the timeout sweep, the drain
//! shard.rs          a core's reused state and the request handler
//! ingest/           path, query, body → routing fields and the members of `data`
//!   route.rs        service/name/projectId from the path, and their validation
//!   form.rs         query strings and urlencoded bodies
//!   json.rs         JSON bodies: one pass, simd-json when unsure; layout.rs: masks, walk, minify
//!   merge.rs        grouping repeated and bracketed keys
//!   charset.rs      a body's charset and its decoding to UTF-8
//! event/            the routing key; envelope.rs: the encoder; id.rs: snowflake ids
//! fanout/           per-core PUSH sockets: routes, outbox, peers, resend, acked, closing
//! spool/            the on-disk spool: records, segments, writer, reader, tickets
//! http/             request heads, chunked bodies, content codings, media types,
//!                   client address, responses
//! source/           [[source]]s: per-sender verification (verify.rs, mac.rs),
//!                   subscription challenges (challenge.rs), and browsers' pixels,
//!                   click targets, uid cookie and CORS origins (browser.rs)
//! reject.rs         every refusal's status, code and message
//! jsonw.rs          the JSON writers the encoders share
//! metrics.rs        per-core hdrhistograms and counters
//! admin/            the private admin listener: /health, /ready, /stats, /metrics
//! config/           flags, HOOKWIRE_* env and the TOML file → Settings
//! tls/              the rustls config, certificate reload, client CAs, kernel TLS
//! log.rs            tracing lines on stderr, by level
//! consumer.rs       a consumer for Rust services: repeats dropped by id, acks
//! tap.rs            the built-in PULL consumer, on consumer.rs
//! testing.rs        a core's state outside the server, for benches and tests
//! ```
//!
//! # A request's path
//!
//! [`conn::ring_io::serve`] takes the bytes the kernel received into the
//! core's buffer ring ([`conn::ring`]) and [`conn::Conn::feed`] parses them
//! there (a request that spans receives is copied into the connection's
//! own buffer, for [`conn::Conn::process`]); [`conn::io::serve`], on
//! `--io poll`, reads into the connection's buffer. [`conn::Conn::process`] asks [`http::request`] for a head and, once the
//! body is complete (a chunked one decoded in place, a compressed one
//! decoded by [`http::coding`] into the core's reused buffer), hands the
//! request — slices of those buffers — to [`shard::Shard::handle`]. When
//! the config has `[[source]]`s, the service's [`source`] is checked first
//! (allowed address, signature over the decoded body, subscription
//! challenge). [`ingest`] decodes
//! the query and body into the core's reused scratch and validates service,
//! name and projectId; [`fanout`] admits the event (a route must match and
//! have room); [`event`] takes the ids and writes the envelope into the
//! core's outbox, `data` spliced from the decoded parameters and the
//! sender's JSON bytes. The core's flusher hands the outbox to ZeroMQ with
//! `DONTWAIT`, or to the spool (the 200 then waits for the write). Every
//! response of one receive leaves in one send, and the sends of a turn of
//! the core's loop reach the kernel in one `io_uring_enter`.
//!
//! # Threading
//!
//! Every core runs its own executor with its own listener, buffers, id
//! generator, ZeroMQ context and sockets. Nothing mutable is shared between
//! cores and no lock is taken per request; [`config::Settings`] is shared
//! read-only, and the spool's byte count is published per core.

pub mod admin;
pub mod allocs;
pub mod config;
pub mod conn;
pub mod consumer;
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
pub mod source;
pub mod spool;
pub mod tap;
pub mod testing;
pub mod tls;
