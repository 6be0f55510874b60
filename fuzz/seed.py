#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from the requests the
test suite sends (tests/fuzz.rs, tests/http.rs, bench/samples/). Run from
anywhere; it replaces only the seed-*.bin files it writes."""
import gzip, os, struct, zlib
from pathlib import Path

root = Path(__file__).resolve().parent
samples = root.parent / "bench" / "samples"

requests = [
    b"GET /affise/conversion/7?clickid=5f8a3b&payout=12.50&sub2=adset%2077&sub3=%D0%BF&sub5=x+y&a[b]=1&t[]=1&t[]=2 HTTP/1.1\r\nHost: p\r\nUser-Agent: Affise\r\nCookie: uid=42\r\n\r\n",
    b"POST /crm/deal/3 HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 61\r\n\r\n{\"name\":\"lead\",\"n\":-1.5e3,\"a\":[1,{\"b\":\"\\u00e9\"}],\"c\":null}",
    b"POST /crm?name=deal HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\nleads[add][0][id]=7&x=caf%E9&y",
    b"POST /s/n HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n4\r\na=1&\r\n3;e=1\r\nb=2\r\n0\r\nX-T: 1\r\n\r\n",
    b"POST /s/n HTTP/1.1\r\nHost: p\r\nExpect: 100-continue\r\nContent-Type: application/json; charset=windows-1251\r\nContent-Length: 12\r\n\r\n{\"k\":\"\xcf\xf0\xe8\"}",
    b"GET http://example.com/s/n?x=1 HTTP/1.1\r\nHost: p\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n\r\nGET /s/n/1?y=2 HTTP/1.0\r\n\r\n",
    b"OPTIONS /s/n HTTP/1.1\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: p\r\n\r\n",
    b"POST /old/chunked HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\nGET /old/after HTTP/1.0\r\n\r\n",
    b"GET /bye/now?a=1 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\nGET /bye/after HTTP/1.1\r\nHost: test\r\n\r\n",
    b"POST /blank/lines HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na=1\r\n",
] + [p.read_bytes() for p in sorted(samples.glob("*.http"))]

json_bodies = [
    b"{\"name\":\"lead\",\"n\":-1.5e3,\"a\":[1,{\"b\":\"\\u00e9\"}],\"c\":null}",
    b"{\"order\":\"A-17\",\"amount\":12.5,\"tags\":[\"x\",\"y\"],\"ok\":true}",
    b"[1,2,{\"a\":\"b\"}]", b"\"text\"", b"-0.5e-7", b"null", b"{}", b" \r\n",
    b"{\"a\":{\"b\":{\"c\":[[],{}]}},\"projectId\":7,\"name\":\"x\",\"uid\":\"u\"}",
    b"{\"big\":123456789012345678901234567890,\"esc\":\"\\ud83d\\ude00\\n\\\"\"}",
]
for p in sorted(samples.glob("*.http")):
    raw = p.read_bytes()
    body = raw.split(b"\r\n\r\n", 1)[1]
    if body.lstrip().startswith(b"{"):
        json_bodies.append(body)

forms = [
    b"clickid=5f8a3b&payout=12.50&sub2=adset%2077&sub3=%D0%BF&sub5=x+y&a[b]=1&t[]=1&t[]=2",
    b"name=deal?leads[add][0][id]=7&x=caf%E9&y",
    b"a=1&&b&=c&%ZZ=%E9%&k[]=&k[]=2&s[x][y]=\"\\\x01",
    b"status[0][id]=1&status[1][id]=2&longer_than_sixteen_bytes=1&exactly8=1&exactly_sixteen_=2",
]
for p in sorted(samples.glob("*.http")):
    raw = p.read_bytes()
    line = raw.split(b"\r\n", 1)[0].split(b" ")[1]
    if b"?" in line:
        forms.append(line.split(b"?", 1)[1])
    body = raw.split(b"\r\n\r\n", 1)[1]
    if b"=" in body and not body.lstrip().startswith(b"{"):
        forms.append(body)

chunked = [
    b"\x104\r\na=1&\r\n3;e=1\r\nb=2\r\n0\r\nX-T: 1\r\n\r\n",
    b"\x40" + b"C;name=value\r\n{\"order\":\"A-\r\n000B;ext\r\n2.5,\"tags\":\r\n0\r\nX-Checksum: 9f2c\r\nX-Other: 1\r\n\r\n",
    b"\xff7\r\n{\"a\":1}\r\n0\r\n\r\n",
    b"\x01ffffffffffffffff\r\n",
]

def record(key, env):
    payload = struct.pack("<H", len(key)) + key + env
    head = struct.pack("<I", len(payload))
    crc = crc32c(head + payload)
    return head + struct.pack("<I", crc) + payload

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF

good = record(b"in.gen.a.b", b"{\"x\":1}") + record(b"in.gen.affise.conversion", b"{\"data\":{}}")
spool = [
    good,
    good + b"\0" * 64,
    good[:-3],
    good[:12] + b"\xff" + good[13:],
    b"\xff\xff\xff\xff" + good,
    b"\0" * 4096 + good,
]

codings = []
for body in json_bodies[:3] + forms[:2]:
    codings.append(b"\x00" + gzip.compress(body))
    codings.append(b"\x01" + zlib.compress(body))
    codings.append(b"\x04" + zlib.compress(body)[2:-4])

corpora = {
    "request": requests,
    "conn": [b"\x00" + r for r in requests] + [b"\x07" + r for r in requests[:4]],
    "envelope": json_bodies,
    "form": forms,
    "chunked": chunked,
    "coding": codings,
    "spool": spool,
}
for target, seeds in corpora.items():
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds):
        (d / f"seed-{i:02}.bin").write_bytes(s)
