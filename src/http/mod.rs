//! HTTP/1.1, sans-IO: request heads, chunked bodies and responses.

pub mod chunked;
pub mod request;
pub mod response;

/// Why a request could not be read. Every kind closes the connection: after
/// a framing error the rest of the stream cannot be trusted.
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

impl Error {
    /// Status line, error code and message for the JSON error body.
    pub fn describe(self) -> (Status, &'static str, &'static str) {
        use Status::*;
        match self {
            Error::Malformed => (
                BadRequest,
                "malformed_request",
                "the request is not valid HTTP/1.1; send a request line, headers and a blank line",
            ),
            Error::Version => (
                BadRequest,
                "unsupported_http_version",
                "only HTTP/1.0 and HTTP/1.1 are accepted",
            ),
            Error::HeadTooLarge => (
                HeadersTooLarge,
                "headers_too_large",
                "the request line and headers exceed the size limit; send fewer or shorter headers",
            ),
            Error::TooManyHeaders => (
                HeadersTooLarge,
                "too_many_headers",
                "the request has more than 64 headers; send fewer",
            ),
            Error::BadLength => (
                BadRequest,
                "bad_content_length",
                "Content-Length must be one decimal number; conflicting values are refused",
            ),
            Error::Ambiguous => (
                BadRequest,
                "ambiguous_framing",
                "send either Content-Length or Transfer-Encoding: chunked, not both",
            ),
            Error::TransferEncoding => (
                BadRequest,
                "unsupported_transfer_encoding",
                "only Transfer-Encoding: chunked is accepted",
            ),
            Error::BadChunk => (
                BadRequest,
                "bad_chunk",
                "the chunked body is malformed: each chunk is a hex size line, CRLF, data, CRLF",
            ),
            Error::BodyTooLarge => (
                PayloadTooLarge,
                "body_too_large",
                "the body exceeds the size limit (--max-body); send a smaller body",
            ),
            Error::ChunksTooSmall => (
                PayloadTooLarge,
                "chunks_too_small",
                "the chunked body's framing (size lines and CRLFs) outgrew what a body under the \
                 size limit (--max-body) needs; send larger chunks or a Content-Length",
            ),
            Error::Timeout => (
                RequestTimeout,
                "request_timeout",
                "the request did not arrive completely in time; send it without pauses",
            ),
        }
    }
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
        }
    }
}
