//! The record codec: `[len u32 LE][crc32c u32 LE][payload]`, the payload
//! `[key_len u16 LE][key][envelope]`, and what is wrong where a record
//! does not parse.
//!
//! A re-send (an event handed to a consumer before, kept again after a
//! disconnect) sets the key length's top bit and carries, after it, when
//! the event was first sent (`u64 LE`, Unix milliseconds), so that its
//! re-sends stay bounded by `--resend-window` across restarts too.

/// Bytes before a record's payload: its length and its CRC.
pub(super) const HEADER: usize = 8;
/// Bytes a record takes beyond its key and envelope.
pub const OVERHEAD: usize = HEADER + 2;
/// O_DIRECT block size the writer aligns to (a multiple of every
/// device's logical block size); a file's last block is padded with zeros.
pub(super) const ALIGN: u64 = 4096;

/// The key length's top bit: the record is a re-send.
const REPEAT: u16 = 0x8000;

/// Appends one record to `out`; the CRC covers the length bytes and the
/// payload. `first_sent`: a re-send, first sent then (Unix ms).
#[inline]
pub(super) fn encode(out: &mut Vec<u8>, key: &[u8], envelope: &[u8], first_sent: Option<u64>) {
    let stamp = if first_sent.is_some() { 8 } else { 0 };
    let payload_len = 2 + stamp + key.len() + envelope.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let flag = if first_sent.is_some() { REPEAT } else { 0 };
    out.extend_from_slice(&(key.len() as u16 | flag).to_le_bytes());
    if let Some(ms) = first_sent {
        out.extend_from_slice(&ms.to_le_bytes());
    }
    out.extend_from_slice(key);
    out.extend_from_slice(envelope);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start..start + 4]),
        &out[start + HEADER..],
    );
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What is wrong at an offset that holds no good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Damage {
    /// Zeros: the padding after the file's last record (nothing follows
    /// in its last block), so the end of its data.
    End,
    /// The length runs past the end of the file: a torn last write, or a
    /// damaged length.
    Truncated,
    /// A length no record has (0 before the last block, 1, over 1 GiB).
    Length,
    /// The length fits but the CRC (or the key length) does not.
    Crc,
}

/// One good record, borrowed from the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record<'a> {
    pub key: &'a [u8],
    pub envelope: &'a [u8],
    /// A re-send: when the event was first sent (Unix ms).
    pub first_sent: Option<u64>,
    /// Bytes it takes on disk, header included.
    pub len: u64,
}

/// A parsed record, `None` when more bytes are needed, or what is wrong at
/// this offset.
pub(super) type Parsed<'a> = Result<Option<Record<'a>>, Damage>;

/// Parses one record at the start of `b`, the file holding `remaining`
/// bytes of data from there on. Nothing past `remaining` is asked for, so
/// a damaged length never makes the reader wait for bytes that will not
/// come; the caller looks for the next good record byte by byte after a
/// damaged one (a CRC32C match by chance: 1 in 2^32 per offset).
pub(super) fn parse_record(b: &[u8], remaining: u64) -> Parsed<'_> {
    if remaining < HEADER as u64 {
        // A few bytes of a header: a torn write, or padding.
        return match b.iter().take(remaining as usize).all(|&x| x == 0) {
            true if b.len() as u64 >= remaining => Err(Damage::End),
            true => Ok(None),
            false => Err(Damage::Truncated),
        };
    }
    if b.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    if len == 0 {
        // The writer pads only the file's last block.
        return Err(if remaining < ALIGN {
            Damage::End
        } else {
            Damage::Length
        });
    }
    if !(2..=(1 << 30)).contains(&len) {
        return Err(Damage::Length);
    }
    if (HEADER + len) as u64 > remaining {
        return Err(Damage::Truncated);
    }
    if b.len() < HEADER + len {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let payload = &b[HEADER..HEADER + len];
    if crc32c::crc32c_append(crc32c::crc32c(&b[0..4]), payload) != crc {
        return Err(Damage::Crc);
    }
    let word = u16::from_le_bytes([payload[0], payload[1]]);
    let key_len = usize::from(word & !REPEAT);
    let (first_sent, at) = match word & REPEAT {
        0 => (None, 2),
        _ if len < 10 => return Err(Damage::Crc),
        _ => {
            let ms = u64::from_le_bytes(payload[2..10].try_into().unwrap());
            (Some(ms), 10)
        }
    };
    if at + key_len > len {
        return Err(Damage::Crc);
    }
    Ok(Some(Record {
        key: &payload[at..at + key_len],
        envelope: &payload[at + key_len..],
        first_sent,
        len: (HEADER + len) as u64,
    }))
}

/// Bytes needed to hold the whole record at the start of `b`, if its
/// header is there.
pub(super) fn needed(b: &[u8]) -> Option<usize> {
    let h = b.get(0..4)?;
    Some(HEADER + u32::from_le_bytes(h.try_into().ok()?) as usize)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::spool::RouteSpool;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let mut r = RouteSpool::new(PathBuf::from("/nonexistent"));
        r.append(b"in.gen.a.b", b"{\"x\":1}");
        r.append(b"k", b"{}");
        r.append_repeat(b"in.gen.r.s", b"{\"y\":2}", 1_700_000_000_123);
        let bytes = r.pending.clone();
        let all = bytes.len() as u64;
        let Record {
            key,
            envelope: env,
            first_sent,
            len,
        } = parse_record(&bytes, all).unwrap().unwrap();
        assert_eq!((key, env), (&b"in.gen.a.b"[..], &b"{\"x\":1}"[..]));
        assert_eq!(first_sent, None);
        let second = parse_record(&bytes[len as usize..], all - len)
            .unwrap()
            .unwrap();
        assert_eq!((second.key, second.envelope), (&b"k"[..], &b"{}"[..]));
        let at = (len + second.len) as usize;
        let third = parse_record(&bytes[at..], all - at as u64)
            .unwrap()
            .unwrap();
        assert_eq!(
            (third.key, third.envelope, third.first_sent),
            (
                &b"in.gen.r.s"[..],
                &b"{\"y\":2}"[..],
                Some(1_700_000_000_123)
            ),
            "a re-send keeps its first send's time"
        );
        assert_eq!(
            parse_record(&bytes[..len as usize - 1], all),
            Ok(None),
            "not all read yet: need more"
        );
        assert_eq!(
            parse_record(&bytes[..len as usize - 1], len - 1),
            Err(Damage::Truncated),
            "the file ends inside the record"
        );

        let mut flipped = bytes.clone();
        flipped[12] ^= 0x40;
        assert_eq!(
            parse_record(&flipped, all),
            Err(Damage::Crc),
            "a flipped payload byte fails the CRC"
        );
        let mut bad_len = bytes.clone();
        bad_len[0] ^= 0x01;
        assert!(
            parse_record(&bad_len, all).is_err(),
            "a flipped length byte fails too"
        );
        assert_eq!(
            parse_record(&[0u8; 16], 16),
            Err(Damage::End),
            "zeros end the data"
        );
        assert_eq!(
            parse_record(&[0u8; 16], ALIGN + 16),
            Err(Damage::Length),
            "zeros before the last block are damage, not padding"
        );
        assert_eq!(
            parse_record(&[0u8; 5], 5),
            Err(Damage::End),
            "padding shorter than a header"
        );
        assert_eq!(parse_record(&[1, 0, 0], 3), Err(Damage::Truncated));
    }
}
