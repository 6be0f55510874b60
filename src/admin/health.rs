//! `/health` and `/ready`: whether every core answers and accepts, every
//! route has a consumer on every core, and the spool can take events.

use std::fmt::Write as _;

use super::stats::json_str;
use crate::runtime::snapshot::CoreSnapshot;

/// `/ready`: every core answers and accepts, every route has a consumer
/// connected on every core, and every core's spool can take events (not
/// full, its last write did not fail).
pub(super) fn readiness(snaps: &[Option<CoreSnapshot>]) -> (bool, String) {
    let mut problems = Vec::new();
    for (core, s) in snaps.iter().enumerate() {
        match s {
            None => problems.push(format!(
                r#"{{"core":{core},"reason":"the core did not answer within 1 s"}}"#
            )),
            Some(s) if !s.accepting => problems.push(format!(
                r#"{{"core":{core},"reason":"the core is not accepting connections (draining)"}}"#
            )),
            _ => {}
        }
        let Some(s) = s else { continue };
        let mut spool_problem = |reason: String| {
            problems.push(format!(
                r#"{{"core":{core},"reason":{}}}"#,
                json_str(&reason)
            ))
        };
        if s.spool_full {
            let held: u64 = snaps.iter().flatten().map(|s| s.spool_stored).sum();
            spool_problem(format!(
                "the spool is full ({} of --spool-max-bytes {}): events that need it get 503 spool_full; start consumers or raise --spool-max-bytes",
                bytesize::ByteSize(held).to_string_as(true),
                bytesize::ByteSize(s.spool_max).to_string_as(true)
            ));
        }
        if let Some(e) = &s.spool_error {
            spool_problem(format!(
                "the spool's last write failed ({e}): events ZeroMQ cannot take now get 503 spool_error until a write succeeds"
            ));
        }
    }
    let answered: Vec<&CoreSnapshot> = snaps.iter().flatten().collect();
    let routes = answered.first().map_or(0, |s| s.routes.len());
    let mut route_states = Vec::new();
    for r in 0..routes {
        let spec = &answered[0].routes[r];
        let missing: Vec<usize> = answered
            .iter()
            .filter(|s| s.routes[r].connected == 0)
            .map(|s| s.core)
            .collect();
        let waiting: u64 = answered.iter().map(|s| s.routes[r].waiting).sum();
        let ready = missing.is_empty();
        let mut state = format!(
            r#"{{"route":{},"endpoints":{},"ready":{ready},"waiting":{waiting}"#,
            json_str(&spec.pattern),
            json_str(&spec.endpoints.join(","))
        );
        if !ready {
            let _ = write!(
                state,
                r#","reason":{}"#,
                json_str(&format!(
                    "no consumer is connected to {} (from core(s) {:?}); start a consumer that binds PULL there",
                    spec.endpoints.join(" or "),
                    missing
                ))
            );
            problems.push(state.clone() + "}");
        }
        state.push('}');
        route_states.push(state);
    }
    let ready = problems.is_empty();
    let body = format!(
        r#"{{"ready":{ready},"routes":[{}],"problems":[{}]}}"#,
        route_states.join(","),
        problems.join(",")
    );
    (ready, body)
}
