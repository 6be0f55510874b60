//! HTTP/1.1, sans-IO: request heads, chunked bodies, content codings,
//! media types, the client's address, and responses.

pub mod chunked;
pub mod client_ip;
pub mod coding;
pub mod media;
pub mod request;
pub mod response;

/// Why a request could not be read. Every kind closes the connection: after
/// a framing error the rest of the stream cannot be trusted. Its status,
/// code and message are [`crate::reject::Refusal::Http`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Malformed,
    Version,
    HeadTooLarge,
    TooManyHeaders,
    BadLength,
    Ambiguous,
    TransferEncoding,
    BadChunk,
    BodyTooLarge,
    /// A chunked body whose framing (size lines, extensions, CRLFs)
    /// outgrows what its data could need under the body limit.
    ChunksTooSmall,
    Timeout,
}

/// The statuses hookwire answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    NoContent,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeadersTooLarge,
    ServiceUnavailable,
    Unauthorized,
    Forbidden,
    /// A click's redirect.
    Found,
}

impl Status {
    pub fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::NoContent => b"HTTP/1.1 204 No Content\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            Status::PayloadTooLarge => b"HTTP/1.1 413 Payload Too Large\r\n",
            Status::UnsupportedMediaType => b"HTTP/1.1 415 Unsupported Media Type\r\n",
            Status::HeadersTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable\r\n",
            Status::Unauthorized => b"HTTP/1.1 401 Unauthorized\r\n",
            Status::Forbidden => b"HTTP/1.1 403 Forbidden\r\n",
            Status::Found => b"HTTP/1.1 302 Found\r\n",
        }
    }

    /// Position in [`crate::metrics::STATUSES`] (the per-status counters).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::HeadersTooLarge => 431,
            Status::ServiceUnavailable => 503,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::Found => 302,
        }
    }
}
