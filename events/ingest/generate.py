#!/usr/bin/env python3
"""Writes the sample Lambda Kafka events for the ingest function.

    python3 events/ingest/generate.py      # rewrites the files next to it

Each `<name>.json` is a complete event as a Kafka event source mapping
delivers it (base64 key/value, headers as arrays of SIGNED bytes), and
`<name>.expected.json` holds the summary counts the ingest function must
report when the event is invoked for the first time into an empty database:

    {"records_in": N, "records_stored": S, "records_dead_lettered": D,
     "dead_letter_classes": {"class": count}}

The files use disjoint partitions AND offset ranges of `log-ingestion`
(msk: partitions 0-2, offsets 100+; self-managed: 3-4, 200+; malformed: 5,
300+): the function's progress is a high-water mark per partition, so
invoking all of them into one database, in any order, still gives
first-time counts for each. Stdlib only; the output is deterministic.
"""

import base64
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC = "log-ingestion"
# 2024-05-01T12:00:00Z in milliseconds: the Kafka record timestamps.
BASE_TS = 1714564800000
MSK_ARN = (
    "arn:aws:kafka:us-east-1:123456789012:cluster/logpipe-msk/"
    "a1b2c3d4-5678-90ab-cdef-1234567890ab-2"
)
MSK_BOOTSTRAP = (
    "b-1.logpipe-msk.abc123.c2.kafka.us-east-1.amazonaws.com:9098,"
    "b-2.logpipe-msk.abc123.c2.kafka.us-east-1.amazonaws.com:9098"
)
CONFLUENT_BOOTSTRAP = "pkc-12576z.us-east-1.aws.confluent.cloud:9092"
MAX_EVENT_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 262144


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def signed(data):
    """Bytes as Lambda writes header values: Java's signed bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return [b - 256 if b > 127 else b for b in data]


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Sample:
    """Builds one event and counts what the function must report."""

    def __init__(self, partitions, first_offset):
        self.records = {p: [] for p in partitions}
        self.next_offset = {p: first_offset for p in partitions}
        self.stored = 0
        self.dead = {}

    def add(self, partition, value, *, key="", headers=(), dead=None,
            raw_value=None, omit_headers=False, ts_offset_ms=0):
        """Adds a record. `value`: str/bytes (base64-encoded here) or None
        (tombstone); `raw_value` puts a string into `value` as is (bad
        base64). `key`: str/bytes or None. `dead`: the expected dead-letter
        class, None when the record must be stored."""
        offset = self.next_offset[partition]
        self.next_offset[partition] += 1
        record = {
            "topic": TOPIC,
            "partition": partition,
            "offset": offset,
            "timestamp": BASE_TS + partition * 1000 + (offset % 100) * 10 + ts_offset_ms,
            "timestampType": "CREATE_TIME",
            "key": None if key is None else b64(key),
            "value": raw_value if raw_value is not None else (
                None if value is None else b64(value)),
        }
        if not omit_headers:
            record["headers"] = [{name: signed(v)} for name, v in headers]
        self.records[partition].append(record)
        if dead is None:
            self.stored += 1
        else:
            self.dead[dead] = self.dead.get(dead, 0) + 1

    def event(self, source, bootstrap, arn=None):
        event = {"eventSource": source}
        if arn:
            event["eventSourceArn"] = arn
        event["bootstrapServers"] = bootstrap
        event["records"] = {
            f"{TOPIC}-{p}": recs for p, recs in self.records.items() if recs
        }
        return event

    def expected(self):
        n = sum(len(r) for r in self.records.values())
        dead = sum(self.dead.values())
        assert n == self.stored + dead
        return {
            "records_in": n,
            "records_stored": self.stored,
            "records_dead_lettered": dead,
            "dead_letter_classes": dict(sorted(self.dead.items())),
        }


# --- one valid value per format (FORMATS.md) -------------------------------

APP_JSON = compact({
    "timestamp": "2024-05-01T12:00:00.250Z", "level": "ERROR",
    "message": "payment failed", "service": "billing", "host": "web-1",
    "method": "POST", "path": "/v1/pay", "status": 503, "duration_ms": 87,
    "order_id": "A1",
})
APP_JSON_2 = compact({
    "@timestamp": 1714564805123, "severity": "warning", "msg": "retrying upstream call",
    "service": {"name": "checkout"}, "hostname": "api-3", "attempt": 2,
    "upstream": "inventory", "user": "zoë",
})
CLF = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
CLF_2 = '10.0.0.7 - - [01/May/2024:12:00:03 +0000] "DELETE /v1/cart/42 HTTP/1.1" 404 0'
COMBINED = ('2001:db8::1 - - [01/May/2024:12:00:00 +0000] "POST /api/users HTTP/1.1" 503 - '
            '"https://ex.com/" "Mozilla/5.0" 0.123')
COMBINED_2 = ('192.168.1.20 - alice [01/May/2024:12:00:04 +0000] "GET /search?q=caf%C3%A9 HTTP/2.0" '
              '200 5120 "https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64)"')
HEC_STRING = compact({
    "time": 1700000000.123, "host": "web-1", "source": "checkout",
    "sourcetype": "app:log", "index": "main", "event": "ERROR payment failed",
    "fields": {"region": "eu"},
})
HEC_OBJECT = compact({
    "time": "2024-05-01T12:00:00Z", "sourcetype": "_json",
    "event": {"msg": "login", "level": "warn", "status": 401},
})
SPLUNK_KV = ('2024-05-01T12:00:00.000Z host=web-1 source=app sourcetype=access_combined '
             'level=ERROR msg="payment \\"card\\" failed" status=500 duration_ms=87')
SPLUNK_KV_2 = ('2024-05-01 12:00:05 host=db-2 app=orders level=info '
               'msg="slow query" query_ms=1250 table=order_items')
SAP = "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed (reason=1, type=A)"
SAP_2 = "2024-05-01 12:00:06 QAS app02_QAS_01 200 - - AU1 I Logon successful (type=B, method=A)"
SENSOR = compact({
    "sensor_id": "st-042", "timestamp": "2024-05-01T12:00:00Z", "temperature": 21.5,
    "humidity": 55, "wind_speed": 12.3, "pressure": 1013.2, "station": "Berlin-Mitte",
    "location": {"lat": 52.5, "lon": 13.4},
})
SENSOR_2 = compact({
    "sensor_id": 9001, "ts": 1714564810, "temperature": -3.25, "rainfall": 0.4,
    "station": "Zürich-Fluntern", "unit": "metric",
})
BATCH = compact({
    "source": "edge-agent", "timestamp": "2024-05-01T12:00:00Z", "batch_size": 3,
    "data": [
        {"message": "hi", "level": "info"},
        "<13>Apr  5 01:02:03 host1 sshd[1]: hello",
        {"sensor_id": "st-7", "temperature": 20.1, "humidity": 40},
    ],
})
BATCH_2 = compact({
    "source": "fluent-bit", "time": "2024-05-01T12:00:07Z", "batch_size": 3,
    "data": [
        "2024-05-01 12:00:07 host=edge-1 level=warn msg=\"queue high\" depth=981",
        {"time": 1714564807, "host": "edge-1", "sourcetype": "agent", "event": "flush done"},
        "plain text line from the edge agent",
    ],
})
SYSLOG_5424 = ('<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 '
               '[exampleSDID@32473 iut="3" eventSource="Application"] '
               "\ufeff'su root' failed for lonvick on /dev/pts/8")
SYSLOG_5424_2 = '<165>1 2024-05-01T12:00:08.5+02:00 fw-1.example.net kernel 0 - - link eth0 down'
SYSLOG_3164 = "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"
SYSLOG_3164_2 = "<13>Apr  5 01:02:03 host1 sshd[4242]: Accepted publickey for root"
GENERIC = "Disk usage at 91% on /var: WARN threshold exceeded\n  mount: /dev/sda1"
GENERIC_2 = "[error] worker 7 exited unexpectedly, restarting (café batch job)"

PRODUCER_HDR = ("producer", "édge-collector/1.4 (Café-Rack 3)")
TRACE_HDR = ("trace-id", "tracé-00f1-é")


def msk_all_formats():
    s = Sample(partitions=[0, 1, 2], first_offset=100)
    # partition 0: application JSON and web access
    s.add(0, APP_JSON, key="billing", headers=[("log-format", "json"), TRACE_HDR])
    s.add(0, CLF, key="web-1", headers=[])                                   # sniffed CLF
    s.add(0, COMBINED, key="web-2", headers=[("log-format", "combined")])
    s.add(0, HEC_STRING, key="web-1", headers=[PRODUCER_HDR])                 # sniffed HEC
    # partition 1: Splunk key=value, SAP, sensor, batch envelope
    s.add(1, SPLUNK_KV, key="web-1", headers=[("log-format", "splunk-kv")])
    s.add(1, SAP, key="PRD", headers=[])                                      # sniffed SAP
    s.add(1, SENSOR, key="st-042", headers=[("log-format", "sensor"), TRACE_HDR])
    s.add(1, BATCH, key="edge-agent", headers=[("log-format", "batch")])
    # partition 2: syslog and generic text
    s.add(2, SYSLOG_5424, key="mymachine", headers=[("log-format", "syslog")])
    s.add(2, SYSLOG_3164, key="mymachine", headers=[PRODUCER_HDR])            # sniffed 3164
    s.add(2, GENERIC, key=None, headers=[])                                   # sniffed text
    s.add(2, HEC_OBJECT, key="auth", headers=[("log-format", "splunk-hec")])
    return s.event("aws:kafka", MSK_BOOTSTRAP, MSK_ARN), s


def self_managed_all_formats():
    # Same formats, the other way round: headers where the MSK file sniffs.
    s = Sample(partitions=[3, 4], first_offset=200)
    s.add(3, APP_JSON_2, key="checkout", headers=[PRODUCER_HDR])              # sniffed JSON
    s.add(3, CLF_2, key="web-3", headers=[("log-format", "clf")])
    s.add(3, COMBINED_2, key="web-4", headers=[])                             # sniffed combined
    s.add(3, HEC_STRING, key="web-1", headers=[("log-format", "splunk")])     # HEC via `splunk`
    s.add(3, SPLUNK_KV_2, key="db-2", headers=[])                             # sniffed key=value
    s.add(3, SAP_2, key="QAS", headers=[("Log-Format", " SAP-Audit "), TRACE_HDR])
    s.add(4, SENSOR_2, key="9001", headers=[])                                # sniffed sensor
    s.add(4, BATCH_2, key="fluent-bit", headers=[PRODUCER_HDR])               # sniffed batch
    s.add(4, SYSLOG_5424_2, key="fw-1", headers=[])                           # sniffed 5424
    s.add(4, SYSLOG_3164_2, key="host1", headers=[("log-format", "rfc3164")])
    s.add(4, GENERIC_2, key=None, headers=[("log-format", "text"), TRACE_HDR])
    s.add(4, HEC_OBJECT, key="auth", headers=[])                              # sniffed HEC
    return s.event("SelfManagedKafka", CONFLUENT_BOOTSTRAP), s


def malformed():
    s = Sample(partitions=[5], first_offset=300)
    p = 5
    s.add(p, None, key="bad-b64", raw_value="bm90!!base64**", headers=[],
          dead="invalid_base64")
    s.add(p, b"\xff\xfe\x00l\x00o\x00g", key="utf16", headers=[], dead="invalid_utf8")
    s.add(p, '{"level":"error","mess', key="truncated", headers=[], dead="invalid_json")
    s.add(p, compact({"sensor_id": "st-013", "temperature": "hot", "humidity": 30}),
          key="st-013", headers=[("log-format", "sensor")], dead="schema_violation")
    s.add(p, None, key="deleted-key", headers=[], dead="tombstone")
    s.add(p, "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed (reason=1, type=A)",
          key=None, headers=[])                                               # null key: stored
    s.add(p, compact({"level": "info", "message": "record without headers"}),
          key="no-headers", omit_headers=True)                                # stored
    s.add(p, "<13>Apr  5 01:02:03 host1 sshd[4242]: Accepted publickey",
          key="négatif", headers=[PRODUCER_HDR, TRACE_HDR])                   # stored
    s.add(p, "IDENTIFICATION DIVISION. PROGRAM-ID. PAYROLL. ABEND S0C7",
          key="mainframe", headers=[("log-format", "cobol-dump")], dead="unknown_format")
    big = ("INFO " + "x" * 94 + "\n") * 3000                                 # 300,000 bytes
    assert len(big.encode()) == 300_000 > DEFAULT_MAX_RECORD_BYTES
    s.add(p, big, key="huge", headers=[("log-format", "text")], dead="oversized")
    return s.event("aws:kafka", MSK_BOOTSTRAP, MSK_ARN), s


def incompressible(n):
    """Letters and digits from a fixed xorshift (pglz cannot shrink them)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    x, out, mask = 0x9E3779B97F4A7C15, [], (1 << 64) - 1
    for _ in range(n):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out.append(alphabet[x % len(alphabet)])
    return "".join(out)


def hostile():
    """Every way a record can fail, and the edge cases that must still be
    stored, with the function's default limits (the same classes as
    tests/hostile.rs, which runs them through the broker)."""
    s = Sample(partitions=[0, 1, 2, 3, 4, 5], first_offset=600)
    fmt = lambda f: [("log-format", f)]
    # partition 0: what the Lambda envelope itself can get wrong (or right, leniently)
    s.add(0, None, key="bad-b64", raw_value="bm90!!base64**", dead="invalid_base64")
    s.add(0, compact({"level": "info", "message": "unpadded base64"}), key="lenient")
    s.records[0][-1]["value"] = s.records[0][-1]["value"].rstrip("=")
    s.add(0, compact({"level": "info", "message": "numeric strings"}), key="strings")
    for field in ("partition", "offset", "timestamp"):
        s.records[0][-1][field] = str(s.records[0][-1][field])
    s.add(0, SYSLOG_3164_2, key="x", headers=fmt("rfc3164"))
    s.records[0][-1]["key"] = "not base64!!"                             # value kept
    s.add(0, "placeholder", key="number", dead="malformed_envelope")
    s.records[0][-1]["value"] = 12345
    # partition 1: bytes and text the parsers cannot use
    s.add(1, b"\xff\xfe\x00A", key="bad", dead="invalid_utf8")
    s.add(1, b"log \xed\xa0\x80 line", key="surrogate", dead="invalid_utf8")
    s.add(1, '{"level":"error","mess', key="bad", headers=fmt("json"), dead="invalid_json")
    s.add(1, '{"message":"\\ud800 alone"}', key="bad", dead="invalid_json")
    s.add(1, '{"a":' * 200 + "1" + "}" * 200, key="deep", dead="invalid_json")
    s.add(1, compact({"sensor_id": "st-9", "temperature": "hot"}), key="st-9",
          headers=fmt("sensor"), dead="schema_violation")
    s.add(1, "[1,2,3]", key="array", dead="schema_violation")
    s.add(1, "this is not syslog", key="bad", headers=fmt("syslog"), dead="invalid_line")
    # partition 2: nothing to store, or not allowed to
    s.add(2, None, key="gone", dead="tombstone")
    s.add(2, "", key="empty", dead="empty_value")
    s.add(2, " \n\t \ufeff ", key="blank", dead="empty_value")
    s.add(2, "some text", key="bad", headers=fmt("cobol-dump"), dead="unknown_format")
    s.add(2, "some text", key="bad", headers=[("log-format", b"\xff\x00")], dead="unknown_format")
    s.add(2, "before\0after", key="nul", dead="nul_character")
    s.add(2, '{"level":"info","message":"a\\u0000b"}', key="nul", dead="nul_character")
    s.add(2, "x" * (DEFAULT_MAX_RECORD_BYTES + 1), key="big", dead="oversized")
    # partition 3: batch envelopes
    s.add(3, compact({"source": "edge", "batch_size": 10001, "data": ["x"] * 10001}),
          key="edge", headers=fmt("batch"), dead="too_many_rows")
    s.add(3, compact({"source": "edge", "data": []}), key="edge", headers=fmt("batch"),
          dead="empty_batch")
    s.add(3, compact({"source": "a", "data": [{"source": "b", "data": ["x"]}]}), key="edge",
          dead="too_deep")
    s.add(3, BATCH, key="edge-agent", headers=fmt("batch"))
    # partition 4: parsed, then refused by PostgreSQL or the broker
    s.add(4, compact({"level": "info", "message": "m", "service": incompressible(3000)}),
          key="svc", dead="db_rejected")       # over a btree entry's 2704 bytes
    s.add(4, compact({"source": "edge", "data": [
        {"message": "first"}, {"message": "second", "service": incompressible(3000)},
        {"message": "third"}]}), key="edge", dead="db_rejected")  # its other rows go too
    s.add(4, CLF_2, key="web", headers=[("service", b"we\0b")])   # header ignored: stored
    s.add(4, "2026-11-22T10:00:00Z host=h1 level=info msg=" + "\x01" * 125000 + " a=" +
          "\x02" * 40000 + " b=" + "\x03" * 40000, key="kv", headers=fmt("splunk-kv"))
    # (its forward is slimmed in steps until it fits)
    # partition 5: stored, some with corrections or slimmed forwards
    s.add(5, compact({"timestamp": "9999-01-01T00:00:00Z", "level": "info", "message": "future"}), key="t")
    s.add(5, compact({"timestamp": "1900-01-01T00:00:00Z", "level": "info", "message": "past"}), key="t")
    s.add(5, compact({"timestamp": -86400, "level": "info", "message": "before the epoch"}), key="t")
    s.add(5, "".join(chr(1 + i % 31) for i in range(200000)), key="ctrl")  # forward slimmed
    s.add(5, "word " * 50000, key="long")
    s.add(5, "\U0001f980 \u1e9etra\u00dfe \u05e2\u05d1\u05e8\u05d9\u05ea e\u0301\u0301 "
          "\u202ereversed\u202c \uffff\U0010ffff", key="uni")
    s.add(5, "\ufeff" + compact({"level": "info", "message": "bom"}), key="bom")
    s.add(5, APP_JSON, key="billing", headers=[("log-format", "json"), TRACE_HDR])
    return s.event("aws:kafka", MSK_BOOTSTRAP, MSK_ARN), s


def render(event):
    """Pretty JSON with one record per line (readable diffs, headers intact)."""
    lines = ["{"]
    for k in ("eventSource", "eventSourceArn", "bootstrapServers"):
        if k in event:
            lines.append(f"  {json.dumps(k)}: {json.dumps(event[k])},")
    lines.append('  "records": {')
    parts = list(event["records"].items())
    for i, (pk, recs) in enumerate(parts):
        lines.append(f"    {json.dumps(pk)}: [")
        for j, r in enumerate(recs):
            sep = "," if j < len(recs) - 1 else ""
            lines.append("      " + json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) + sep)
        lines.append("    ]" + ("," if i < len(parts) - 1 else ""))
    lines.append("  }")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == event
    return text


def write(name, event, sample):
    text = render(event)
    assert len(text.encode()) < MAX_EVENT_BYTES, f"{name} is over 6 MB"
    with open(os.path.join(HERE, f"{name}.json"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(HERE, f"{name}.expected.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(sample.expected(), indent=2) + "\n")
    exp = sample.expected()
    print(f"wrote {name}.json ({len(text.encode())} bytes): {exp['records_in']} in, "
          f"{exp['records_stored']} stored, {exp['records_dead_lettered']} dead-lettered")


def main():
    write("msk-all-formats", *msk_all_formats())
    write("self-managed-all-formats", *self_managed_all_formats())
    write("malformed", *malformed())
    write("hostile", *hostile())


if __name__ == "__main__":
    main()
