//! The spool's record reader on damaged files: the input is a segment file
//! as a crash or a bad disk could leave it, followed by a good file of one
//! record. Reading never spins or fails, hands on only records whose CRC
//! holds, and always reaches the good file's record.

#![no_main]

use libfuzzer_sys::fuzz_target;

const GOOD_KEY: &[u8] = b"in.gen.fuzz.good";
const GOOD_ENVELOPE: &[u8] = b"{\"good\":true}";

fuzz_target!(|data: &[u8]| {
    let settings = hookwire::testing::settings_with("tcp://127.0.0.1:1", &[]);
    let route = settings
        .spool_dir
        .join(&hookwire::spool::route_dirs(&settings)[0]);
    let core = route.join("core-0");
    std::fs::create_dir_all(&core).unwrap();
    std::fs::write(core.join("seg-0000000000000001.log"), data).unwrap();
    std::fs::write(
        core.join("seg-0000000000000002.log"),
        record(GOOD_KEY, GOOD_ENVELOPE),
    )
    .unwrap();
    let mut records = Vec::new();
    // Each step reads at least a byte or a file; a generous bound.
    let max_steps = 64 + 4 * data.len();
    let steps = hookwire::testing::read_spool(&settings, max_steps, |key, envelope| {
        records.push((key.to_vec(), envelope.to_vec()));
    })
    .expect("a damaged file is skipped, not an error");
    let _ = std::fs::remove_dir_all(&settings.spool_dir);
    assert!(steps < max_steps, "the reader spins");
    let last = records.last().map(|(k, e)| (&k[..], &e[..]));
    assert_eq!(
        last,
        Some((GOOD_KEY, GOOD_ENVELOPE)),
        "the next file's record"
    );
    // Every record handed on was written whole, so it is in the input.
    for (key, envelope) in &records[..records.len() - 1] {
        let bytes = record(key, envelope);
        assert!(
            data.windows(bytes.len()).any(|w| w == bytes),
            "a record not in the file"
        );
    }
});

/// A record as the spool writes it.
fn record(key: &[u8], envelope: &[u8]) -> Vec<u8> {
    let payload_len = 2 + key.len() + envelope.len();
    let mut out = Vec::new();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(envelope);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..4]), &out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}
