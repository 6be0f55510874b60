//! Every refusal hookwire answers with: its status, its error code and a
//! message that says what to fix. Metrics count refusals by [`Code`].

use crate::http::coding::Bad;
use crate::http::{Error, Status};

/// The methods hookwire answers.
pub const ALLOW: &[u8] = b"Allow: GET, POST, HEAD, OPTIONS\r\n";

/// Declares [`Code`] once: each variant with its name and status.
macro_rules! codes {
    ($($code:ident = $name:literal, $status:ident;)*) => {
        /// The `error` codes of refusal bodies, in the order of the
        /// per-code counters ([`Code::ALL`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($code,)*
        }

        impl Code {
            pub const ALL: [Code; [$(Code::$code),*].len()] = [$(Code::$code),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$code => $name,)*
                }
            }

            pub fn status(self) -> Status {
                match self {
                    $(Code::$code => Status::$status,)*
                }
            }
        }
    };
}

codes! {
    MalformedRequest = "malformed_request", BadRequest;
    UnsupportedHttpVersion = "unsupported_http_version", BadRequest;
    HeadersTooLarge = "headers_too_large", HeadersTooLarge;
    TooManyHeaders = "too_many_headers", HeadersTooLarge;
    BadContentLength = "bad_content_length", BadRequest;
    AmbiguousFraming = "ambiguous_framing", BadRequest;
    UnsupportedTransferEncoding = "unsupported_transfer_encoding", BadRequest;
    BadChunk = "bad_chunk", BadRequest;
    BodyTooLarge = "body_too_large", PayloadTooLarge;
    ChunksTooSmall = "chunks_too_small", PayloadTooLarge;
    RequestTimeout = "request_timeout", RequestTimeout;
    MethodNotAllowed = "method_not_allowed", MethodNotAllowed;
    MissingService = "missing_service", BadRequest;
    InvalidService = "invalid_service", BadRequest;
    MissingName = "missing_name", BadRequest;
    InvalidName = "invalid_name", BadRequest;
    InvalidProjectId = "invalid_project_id", BadRequest;
    InvalidJson = "invalid_json", BadRequest;
    UnsupportedContentType = "unsupported_content_type", UnsupportedMediaType;
    UnsupportedCharset = "unsupported_charset", UnsupportedMediaType;
    UnsupportedContentEncoding = "unsupported_content_encoding", UnsupportedMediaType;
    BadEncoding = "bad_encoding", BadRequest;
    SpoolFull = "spool_full", ServiceUnavailable;
    SpoolError = "spool_error", ServiceUnavailable;
    NoRoute = "no_route", ServiceUnavailable;
    Overloaded = "overloaded", ServiceUnavailable;
    MissingSignature = "missing_signature", Unauthorized;
    InvalidSignature = "invalid_signature", Unauthorized;
    StaleTimestamp = "stale_timestamp", Unauthorized;
    ForbiddenAddress = "forbidden_address", Forbidden;
    InvalidVerifyToken = "invalid_verify_token", Forbidden;
    UnknownService = "unknown_service", NotFound;
    UnsignedQuery = "unsigned_query", BadRequest;
    RedirectNotAllowed = "redirect_not_allowed", BadRequest;
    MissingClientCert = "missing_client_cert", Unauthorized;
    UntrustedClientCert = "untrusted_client_cert", Forbidden;
    HttpsRequired = "https_required", BadRequest;
}

impl Code {
    /// Position in [`Code::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a request is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request cannot be read; the connection closes after the answer.
    Http(Error),
    MethodNotAllowed,
    MissingService,
    InvalidService,
    MissingName,
    InvalidName,
    /// `name[]=` or `name[x]=` with no plain `name`.
    BracketedName,
    BracketedProjectId,
    InvalidProjectId,
    /// Not JSON: where the parser stopped, and why when it can say more.
    InvalidJson {
        at: usize,
        why: Option<&'static str>,
    },
    /// A body with bytes its declared charset does not define, at `at`.
    NotInCharset {
        at: usize,
    },
    /// Too large to decode from its charset.
    TooLargeToTranscode,
    UnsupportedCharset,
    UnsupportedType,
    /// A body's `Content-Encoding` that cannot be decoded.
    Encoding(Bad),
    NoRoute,
    SpoolFull,
    SpoolError,
    /// The core has `--max-connections`' share open, or no descriptor
    /// left for one more: the connection closes after the answer.
    Overloaded,
    /// A source's signature (or token) header or parameter is absent;
    /// `why` names what the scheme wants.
    MissingSignature {
        why: &'static str,
    },
    /// Present but no secret of the source signs it so.
    InvalidSignature {
        why: &'static str,
    },
    /// The signed timestamp is further from now than the tolerance.
    StaleTimestamp,
    /// The client address is outside the source's `allow` list.
    ForbiddenAddress,
    /// Meta's subscription check with a `hub.verify_token` that is not
    /// the source's `verify-token`.
    InvalidVerifyToken,
    /// `strict`: no source matches the service.
    UnknownService,
    /// A query string on a request whose source signs only the body: its
    /// parameters would go into `data` unverified.
    UnsignedQuery,
    /// A click's `to=` target that is not followed: why.
    RedirectNotAllowed {
        why: &'static str,
    },
    /// The source has a `client-ca` and the connection brought no client
    /// certificate (or came over plain HTTP).
    MissingClientCert,
    /// The client certificate does not chain to the source's `client-ca`.
    UntrustedClientCert,
    /// Plain HTTP on the HTTPS port: answered in plain text, then closed.
    HttpsRequired,
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Http(e)
    }
}

impl Refusal {
    pub fn code(self) -> Code {
        match self {
            Refusal::Http(e) => http_code(e),
            Refusal::MethodNotAllowed => Code::MethodNotAllowed,
            Refusal::MissingService => Code::MissingService,
            Refusal::InvalidService => Code::InvalidService,
            Refusal::MissingName => Code::MissingName,
            Refusal::InvalidName | Refusal::BracketedName => Code::InvalidName,
            Refusal::InvalidProjectId | Refusal::BracketedProjectId => Code::InvalidProjectId,
            Refusal::InvalidJson { .. }
            | Refusal::NotInCharset { .. }
            | Refusal::TooLargeToTranscode => Code::InvalidJson,
            Refusal::UnsupportedCharset => Code::UnsupportedCharset,
            Refusal::UnsupportedType => Code::UnsupportedContentType,
            Refusal::Encoding(Bad::Unknown | Bad::Stacked) => Code::UnsupportedContentEncoding,
            Refusal::Encoding(Bad::TooLarge) => Code::BodyTooLarge,
            Refusal::Encoding(Bad::Corrupt(_)) => Code::BadEncoding,
            Refusal::NoRoute => Code::NoRoute,
            Refusal::SpoolFull => Code::SpoolFull,
            Refusal::SpoolError => Code::SpoolError,
            Refusal::Overloaded => Code::Overloaded,
            Refusal::MissingSignature { .. } => Code::MissingSignature,
            Refusal::InvalidSignature { .. } => Code::InvalidSignature,
            Refusal::StaleTimestamp => Code::StaleTimestamp,
            Refusal::ForbiddenAddress => Code::ForbiddenAddress,
            Refusal::InvalidVerifyToken => Code::InvalidVerifyToken,
            Refusal::UnknownService => Code::UnknownService,
            Refusal::UnsignedQuery => Code::UnsignedQuery,
            Refusal::RedirectNotAllowed { .. } => Code::RedirectNotAllowed,
            Refusal::MissingClientCert => Code::MissingClientCert,
            Refusal::UntrustedClientCert => Code::UntrustedClientCert,
            Refusal::HttpsRequired => Code::HttpsRequired,
        }
    }

    pub fn status(self) -> Status {
        self.code().status()
    }

    /// Where in the body the problem is, for `invalid_json`.
    pub fn at(self) -> Option<usize> {
        match self {
            Refusal::InvalidJson { at, .. } | Refusal::NotInCharset { at } => Some(at),
            _ => None,
        }
    }

    /// What to fix.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Http(e) => http_message(e),
            Refusal::MethodNotAllowed => {
                "use GET or POST for events (HEAD and OPTIONS are answered too)"
            }
            Refusal::MissingService => {
                "no service in the path: send events to /<service>/<name>/<projectId>"
            }
            Refusal::InvalidService => {
                "the service (first path segment) must be 1-64 characters of A-Z a-z 0-9 _ -"
            }
            Refusal::MissingName => {
                "no event name: put it in the path (/<service>/<name>), the query (?name=) or the body (name)"
            }
            Refusal::InvalidName => "the event name must be 1-64 characters of A-Z a-z 0-9 _ -",
            Refusal::BracketedName => {
                "the event name must be one plain value (name=lead), not name[]= or name[…]="
            }
            Refusal::BracketedProjectId => {
                "projectId must be one plain unsigned integer (projectId=7), not projectId[]= or projectId[…]="
            }
            Refusal::InvalidProjectId => {
                "projectId must be an unsigned integer (0 to 18446744073709551615)"
            }
            Refusal::InvalidJson { why: Some(why), .. } => why,
            Refusal::InvalidJson { why: None, .. } => {
                "the body is not valid UTF-8 JSON; fix it or send it as application/x-www-form-urlencoded"
            }
            Refusal::NotInCharset { .. } => {
                "the body has bytes its declared charset does not define; \
                 send it in the charset the Content-Type names (or as UTF-8)"
            }
            Refusal::TooLargeToTranscode => {
                "the body is too large to decode from its charset; send it as UTF-8"
            }
            Refusal::UnsupportedCharset => {
                "the Content-Type's charset is not one hookwire knows (the WHATWG Encoding \
                 Standard's labels: utf-8, windows-1251, koi8-r…); send UTF-8 or name a known charset"
            }
            Refusal::UnsupportedType => {
                "send application/json, application/x-www-form-urlencoded or text/plain"
            }
            Refusal::Encoding(Bad::Unknown) => {
                "send the body with Content-Encoding gzip, deflate or zstd, or without one"
            }
            Refusal::Encoding(Bad::Stacked) => {
                "send the body in one Content-Encoding (gzip, deflate or zstd), not several"
            }
            Refusal::Encoding(Bad::TooLarge) => {
                "the decoded body exceeds the size limit (--max-body); send a smaller body"
            }
            Refusal::Encoding(Bad::Corrupt(why)) => why,
            Refusal::NoRoute => {
                "no route matches this event's key; add --push or a --route whose glob matches it"
            }
            Refusal::SpoolFull => {
                "the event could not be stored: consumers are not taking events and the spool is full \
                 (--spool-max-bytes, or its filesystem is down to --spool-min-free); retry later"
            }
            Refusal::SpoolError => {
                "the event could not be stored: writing the spool failed (disk full or failing; see hookwire's log); retry later"
            }
            Refusal::Overloaded => {
                "hookwire has as many connections open as it takes (--max-connections, or the \
                 open-files limit); retry later, or reuse a keep-alive connection"
            }
            Refusal::MissingSignature { why }
            | Refusal::InvalidSignature { why }
            | Refusal::RedirectNotAllowed { why } => why,
            Refusal::StaleTimestamp => {
                "the signed timestamp is further from now than this source's tolerance; \
                 check the sender's clock and send a freshly signed request"
            }
            Refusal::ForbiddenAddress => {
                "this source accepts events only from the addresses in its allow list; \
                 send from one of them (or add yours to the source's allow)"
            }
            Refusal::InvalidVerifyToken => {
                "hub.verify_token is not this source's verify-token; \
                 set the same token in the sender's subscription and in hookwire's config"
            }
            Refusal::UnknownService => {
                "no [[source]] is configured for this service and hookwire runs strict; \
                 send to a configured service or add a [[source]] for it"
            }
            Refusal::UnsignedQuery => {
                "this source's signature covers the body only, so a query string is refused \
                 (its parameters would reach consumers unverified); give the sender the URL \
                 without it, putting name and projectId in the path"
            }
            Refusal::MissingClientCert => {
                "this source accepts events only over HTTPS with a client certificate \
                 (mutual TLS); send one issued by the CA in the source's client-ca"
            }
            Refusal::UntrustedClientCert => {
                "the client certificate does not chain to this source's client-ca; \
                 send one issued by that CA"
            }
            Refusal::HttpsRequired => {
                "this port speaks HTTPS: send the request over TLS (an https:// URL)"
            }
        }
    }

    /// Extra headers of the answer: a 503 tells the sender when to retry,
    /// a 405 which methods to use.
    pub fn headers(self) -> &'static [u8] {
        match self.status() {
            Status::ServiceUnavailable => b"Retry-After: 1\r\n",
            Status::MethodNotAllowed => ALLOW,
            _ => b"",
        }
    }
}

fn http_code(e: Error) -> Code {
    match e {
        Error::Malformed => Code::MalformedRequest,
        Error::Version => Code::UnsupportedHttpVersion,
        Error::HeadTooLarge => Code::HeadersTooLarge,
        Error::TooManyHeaders => Code::TooManyHeaders,
        Error::BadLength => Code::BadContentLength,
        Error::Ambiguous => Code::AmbiguousFraming,
        Error::TransferEncoding => Code::UnsupportedTransferEncoding,
        Error::BadChunk => Code::BadChunk,
        Error::BodyTooLarge => Code::BodyTooLarge,
        Error::ChunksTooSmall => Code::ChunksTooSmall,
        Error::Timeout => Code::RequestTimeout,
    }
}

fn http_message(e: Error) -> &'static str {
    match e {
        Error::Malformed => {
            "the request is not valid HTTP/1.1; send a request line, headers and a blank line"
        }
        Error::Version => "only HTTP/1.0 and HTTP/1.1 are accepted",
        Error::HeadTooLarge => {
            "the request line and headers exceed the size limit; send fewer or shorter headers"
        }
        Error::TooManyHeaders => "the request has more than 64 headers; send fewer",
        Error::BadLength => {
            "Content-Length must be one decimal number; conflicting values are refused"
        }
        Error::Ambiguous => "send either Content-Length or Transfer-Encoding: chunked, not both",
        Error::TransferEncoding => "only Transfer-Encoding: chunked is accepted",
        Error::BadChunk => {
            "the chunked body is malformed: each chunk is a hex size line, CRLF, data, CRLF"
        }
        Error::BodyTooLarge => "the body exceeds the size limit (--max-body); send a smaller body",
        Error::ChunksTooSmall => {
            "the chunked body's framing (size lines and CRLFs) outgrew what a body under the \
             size limit (--max-body) needs; send larger chunks or a Content-Length"
        }
        Error::Timeout => "the request did not arrive completely in time; send it without pauses",
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn codes_are_listed_in_index_order_and_distinct() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code:?}");
        }
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
