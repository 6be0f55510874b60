//! Kernel TLS: after rustls's handshake, the traffic keys go to the
//! socket (`TCP_ULP` "tls", then `TLS_TX` and `TLS_RX`) and the kernel
//! encrypts and decrypts the records, so the connection is served like a
//! plain one.
//!
//! Written here rather than with the `ktls` crate: that crate drives
//! tokio-rustls streams, and hookwire's are glommio's (futures-io); what
//! is needed is three `setsockopt`s over the secrets rustls hands out.

use std::io;
use std::os::fd::RawFd;

use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

// linux/tls.h and linux/tcp.h.
const SOL_TCP: libc::c_int = 6;
const TCP_ULP: libc::c_int = 31;
const SOL_TLS: libc::c_int = 282;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
const TLS_1_2_VERSION: u16 = 0x0303;
const TLS_1_3_VERSION: u16 = 0x0304;
const TLS_CIPHER_AES_GCM_128: u16 = 51;
const TLS_CIPHER_AES_GCM_256: u16 = 52;
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;

#[repr(C)]
#[derive(Clone, Copy)]
struct Info {
    version: u16,
    cipher_type: u16,
}

#[repr(C)]
struct AesGcm128 {
    info: Info,
    iv: [u8; 8],
    key: [u8; 16],
    salt: [u8; 4],
    rec_seq: [u8; 8],
}

#[repr(C)]
struct AesGcm256 {
    info: Info,
    iv: [u8; 8],
    key: [u8; 32],
    salt: [u8; 4],
    rec_seq: [u8; 8],
}

#[repr(C)]
struct Chacha20Poly1305 {
    info: Info,
    iv: [u8; 12],
    key: [u8; 32],
    rec_seq: [u8; 8],
}

/// Attaches the kernel's TLS layer to a connected TCP socket. Fails with
/// ENOENT where the kernel has no `tls` module: the connection is then
/// served through rustls in user space. Until keys are installed the
/// socket still passes bytes through unchanged.
pub fn attach(fd: RawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: setsockopt on a socket with a buffer of the given length.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_TCP,
            TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Installs both directions' keys on a socket [`attach`] succeeded on.
pub fn install(fd: RawFd, version: ProtocolVersion, secrets: ExtractedSecrets) -> io::Result<()> {
    let version = match version {
        ProtocolVersion::TLSv1_2 => TLS_1_2_VERSION,
        ProtocolVersion::TLSv1_3 => TLS_1_3_VERSION,
        _ => return Err(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT)),
    };
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    set(fd, TLS_TX, version, tx_seq, &tx)?;
    set(fd, TLS_RX, version, rx_seq, &rx)
}

/// Whether the kernel's TLS layer handles this cipher suite.
pub fn supported(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS13_AES_256_GCM_SHA384
            | S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

fn set(
    fd: RawFd,
    direction: libc::c_int,
    version: u16,
    seq: u64,
    secrets: &ConnectionTrafficSecrets,
) -> io::Result<()> {
    let rec_seq = seq.to_be_bytes();
    // The GCM nonce's first 4 bytes are the salt, the other 8 the IV.
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            let (salt, iv) = iv.as_ref().split_at(4);
            let info = AesGcm128 {
                info: Info {
                    version,
                    cipher_type: TLS_CIPHER_AES_GCM_128,
                },
                iv: iv.try_into().map_err(|_| invalid())?,
                key: key.as_ref().try_into().map_err(|_| invalid())?,
                salt: salt.try_into().map_err(|_| invalid())?,
                rec_seq,
            };
            setsockopt(fd, direction, &info)
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            let (salt, iv) = iv.as_ref().split_at(4);
            let info = AesGcm256 {
                info: Info {
                    version,
                    cipher_type: TLS_CIPHER_AES_GCM_256,
                },
                iv: iv.try_into().map_err(|_| invalid())?,
                key: key.as_ref().try_into().map_err(|_| invalid())?,
                salt: salt.try_into().map_err(|_| invalid())?,
                rec_seq,
            };
            setsockopt(fd, direction, &info)
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            let info = Chacha20Poly1305 {
                info: Info {
                    version,
                    cipher_type: TLS_CIPHER_CHACHA20_POLY1305,
                },
                iv: iv.as_ref().try_into().map_err(|_| invalid())?,
                key: key.as_ref().try_into().map_err(|_| invalid())?,
                rec_seq,
            };
            setsockopt(fd, direction, &info)
        }
        _ => Err(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT)),
    }
}

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

fn setsockopt<T>(fd: RawFd, direction: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live `repr(C)` value of its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_TLS,
            direction,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
