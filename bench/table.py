#!/usr/bin/env python3
"""Markdown table of the last criterion runs of bench/stages.rs and
bench/pipeline.rs: ns/event, events/s and MB/s per benchmark.

    cargo bench --bench stages && cargo bench --bench pipeline
    python3 bench/table.py [target/criterion]

The time is criterion's central estimate (the slope of its linear fit, as
it prints in the middle of `time: [...]`); one iteration is one event in
every benchmark here, so it is ns/event. MB/s (10^6 bytes) is of the
stage's input, as each bench's Throughput says.
"""
import json
import os
import sys

ORDER = ["http_parse", "query_decode", "form_decode", "floor", "json_decode", "decode_merge",
         "envelope_encode", "transport", "id_gen", "to_envelope", "pipeline", "content_coding",
         "signed_webhook", "browser", "hmac_sha256", "metrics"]

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
rows = []
for dirpath, _dirs, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    ns = (est.get("slope") or est["mean"])["point_estimate"]
    name = bench.get("value_str") or bench.get("function_id") or ""
    if bench["group_id"] == "floor":
        name = f'{bench.get("function_id")} {name}'  # to_tape or scan
    tp = bench.get("throughput") or {}
    rows.append((bench["group_id"], name, ns, tp.get("Bytes")))

if not rows:
    sys.exit(f"no criterion results under {root}: run cargo bench first")
SAMPLES = ["seed_get_path", "seed_get_query", "seed_json", "seed_form", "affise_get",
           "amocrm_form_1k", "webhook_json_4k", "webhook_json_16k", "identity", "gzip", "zstd",
           "unsigned_4k", "signed_4k", "plain_get", "pixel", "redirect"]
rank = {g: i for i, g in enumerate(ORDER)}
srank = {s: i for i, s in enumerate(SAMPLES)}
rows.sort(key=lambda r: (rank.get(r[0], len(ORDER)), r[0], srank.get(r[1], len(SAMPLES)), r[1]))
print("| bench | sample | ns/event | events/s | input bytes | MB/s |")
print("|---|---|---|---|---|---|")
for group, name, ns, nbytes in rows:
    eps = 1e9 / ns
    mbs = f"{nbytes * eps / 1e6:,.0f}" if nbytes else "–"
    print(f"| {group} | {name} | {ns:,.1f} | {eps:,.0f} | {nbytes or '–'} | {mbs} |".replace(",", " "))
