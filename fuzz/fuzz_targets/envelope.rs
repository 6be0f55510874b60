//! The JSON body path through the envelope encoder: every body accepted
//! gives one envelope that serde_json parses, whose `data` holds the body's
//! members (or the body whole, as `data.body`, when it is not an object).

#![no_main]

mod common;

use std::collections::HashSet;
use std::fmt;

use hookwire::conn::Step;
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let mut raw = format!(
        "POST /fuzz/event/7 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    common::with_core(|settings, shard| {
        let mut conn = hookwire::testing::conn(settings);
        let step = common::drive(&mut conn, shard, &raw, 0);
        let ok = conn.out.starts_with(b"HTTP/1.1 200 ");
        let envelopes: Vec<Vec<u8>> = shard
            .fanout
            .outbox_envelopes()
            .map(<[u8]>::to_vec)
            .collect();
        shard.fanout.discard_outbox();
        if body.len() > 65536 {
            assert!(!ok, "a body over --max-body accepted");
            return;
        }
        assert!(
            matches!(
                step,
                Some(Step::More { completed: 1 }) | Some(Step::Close { completed: 1 })
            ),
            "{step:?}"
        );
        if !ok {
            assert!(envelopes.is_empty(), "a refused body made an event");
            return;
        }
        let [envelope] = &envelopes[..] else {
            panic!("{} envelopes for one request", envelopes.len());
        };
        let parsed: Value = match serde_json::from_slice(envelope) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {}", String::from_utf8_lossy(envelope)),
        };
        let data = &parsed["data"];
        assert!(data.is_object(), "data is not an object: {parsed}");
        // What the body means to serde_json, when it reads it and it has no
        // repeated member names (hookwire groups those; serde_json keeps
        // the last).
        let Ok(text) = std::str::from_utf8(body) else {
            return;
        };
        if text.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
            assert_eq!(data, &Value::Object(Default::default()), "blank body");
            return;
        }
        let Ok(NoRepeats) = serde_json::from_str::<NoRepeats>(text) else {
            return;
        };
        let Ok(sent) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let expected = match sent {
            Value::Object(members) => Value::Object(members),
            other => serde_json::json!({ "body": other }),
        };
        assert_eq!(
            data,
            &expected,
            "data does not round-trip: {}",
            String::from_utf8_lossy(envelope)
        );
    });
});

/// A JSON value in which no object repeats a member name.
struct NoRepeats;

impl<'de> Deserialize<'de> for NoRepeats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoRepeatsVisitor)
    }
}

struct NoRepeatsVisitor;

impl<'de> Visitor<'de> for NoRepeatsVisitor {
    type Value = NoRepeats;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoRepeats, E> {
        Ok(NoRepeats)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoRepeats, E> {
        Ok(NoRepeats)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoRepeats, E> {
        Ok(NoRepeats)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoRepeats, E> {
        Ok(NoRepeats)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoRepeats, E> {
        Ok(NoRepeats)
    }
    fn visit_unit<E>(self) -> Result<NoRepeats, E> {
        Ok(NoRepeats)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoRepeats, A::Error> {
        while seq.next_element::<NoRepeats>()?.is_some() {}
        Ok(NoRepeats)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoRepeats, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("repeated member"));
            }
            map.next_value::<NoRepeats>()?;
        }
        Ok(NoRepeats)
    }
}
