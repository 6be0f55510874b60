//! HMAC keys prepared once per secret, and constant-time comparison of a
//! received signature with the one computed.
//!
//! RustCrypto's `hmac` + `sha1`/`sha2` (bench/hmac.rs compares it with
//! ring): a key's inner and outer pads are hashed at start, and each
//! request clones that state on the stack, so signing allocates nothing.

use base64::Engine;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// The hash an HMAC uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha1,
    Sha512,
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Algorithm {
    /// As the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha512 => "sha512",
        }
    }
}

impl Encoding {
    /// As the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }
}

/// One secret, ready to sign with.
#[derive(Clone)]
pub enum Key {
    Sha256(Hmac<sha2::Sha256>),
    Sha1(Hmac<sha1::Sha1>),
    Sha512(Hmac<sha2::Sha512>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

/// A MAC, on the stack: up to 64 bytes (SHA-512).
#[derive(Clone, Copy)]
pub struct Tag {
    bytes: [u8; 64],
    len: usize,
}

impl Tag {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Whether `given` (already decoded) is this tag; constant-time in the
    /// bytes compared.
    pub fn matches(&self, given: &[u8]) -> bool {
        given.len() == self.len && bool::from(self.as_bytes().ct_eq(given))
    }

    /// The tag as lower-case hex, into `out` (128 bytes hold any tag).
    pub fn hex<'a>(&self, out: &'a mut [u8; 128]) -> &'a [u8] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.as_bytes().iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        &out[..2 * self.len]
    }
}

impl Key {
    pub fn new(algorithm: Algorithm, secret: &[u8]) -> Key {
        // HMAC takes keys of any length.
        match algorithm {
            Algorithm::Sha256 => Key::Sha256(Mac::new_from_slice(secret).expect("any length")),
            Algorithm::Sha1 => Key::Sha1(Mac::new_from_slice(secret).expect("any length")),
            Algorithm::Sha512 => Key::Sha512(Mac::new_from_slice(secret).expect("any length")),
        }
    }

    /// The MAC of the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> Tag {
        fn run<M: Mac + Clone>(proto: &M, parts: &[&[u8]]) -> Tag {
            let mut mac = proto.clone();
            for part in parts {
                mac.update(part);
            }
            let out = mac.finalize().into_bytes();
            let mut tag = Tag {
                bytes: [0; 64],
                len: out.len(),
            };
            tag.bytes[..out.len()].copy_from_slice(&out);
            tag
        }
        match self {
            Key::Sha256(m) => run(m, parts),
            Key::Sha1(m) => run(m, parts),
            Key::Sha512(m) => run(m, parts),
        }
    }
}

/// A signature as its header writes it, decoded onto the stack; `None`
/// when it is not valid hex or base64, or longer than any tag.
pub fn decode<'a>(text: &[u8], encoding: Encoding, out: &'a mut [u8; 96]) -> Option<&'a [u8]> {
    match encoding {
        Encoding::Hex => {
            if text.len() % 2 != 0 || text.len() > 128 {
                return None;
            }
            for (i, pair) in text.chunks_exact(2).enumerate() {
                out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
            }
            Some(&out[..text.len() / 2])
        }
        Encoding::Base64 => {
            if text.len() > 128 {
                return None;
            }
            let n = base64::engine::general_purpose::STANDARD
                .decode_slice(text, out)
                .ok()?;
            Some(&out[..n])
        }
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether two secrets (tokens) are equal, in time that depends on their
/// lengths only.
pub fn same_token(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len() && bool::from(given.ct_eq(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example.
    #[test]
    fn github_vector() {
        let key = Key::new(Algorithm::Sha256, b"It's a Secret to Everybody");
        let tag = key.sign(&[b"Hello, ", b"World!"]);
        let mut hex = [0; 128];
        assert_eq!(
            tag.hex(&mut hex),
            b"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let mut buf = [0; 96];
        let given = decode(
            b"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            Encoding::Hex,
            &mut buf,
        )
        .unwrap();
        assert!(tag.matches(given));
        assert!(!tag.matches(&given[..31]));
    }

    /// RFC 4231 test case 2, for each hash length.
    #[test]
    fn rfc4231_and_sha1() {
        let data: &[u8] = b"what do ya want for nothing?";
        let mut hex = [0; 128];
        let sha512 = Key::new(Algorithm::Sha512, b"Jefe").sign(&[data]);
        assert_eq!(
            sha512.hex(&mut hex),
            &b"164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"[..]
        );
        // RFC 2202 test case 2.
        let sha1 = Key::new(Algorithm::Sha1, b"Jefe").sign(&[data]);
        assert_eq!(
            sha1.hex(&mut hex),
            b"effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn decoding_refuses_garbage() {
        let mut buf = [0; 96];
        assert!(decode(b"abc", Encoding::Hex, &mut buf).is_none());
        assert!(decode(b"zz", Encoding::Hex, &mut buf).is_none());
        assert!(decode(b"!!!!", Encoding::Base64, &mut buf).is_none());
        assert_eq!(decode(b"AQI=", Encoding::Base64, &mut buf).unwrap(), [1, 2]);
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abd", b"abc"));
        assert!(!same_token(b"ab", b"abc"));
    }
}
