#!/usr/bin/env python3
"""Writes the sample Lambda Kafka events for the detect function.

    python3 events/detect/generate.py      # rewrites the files next to it

Each `<name>.json` is a complete event as the event source mapping on
`log-processing` delivers it: values are normalized log records (what the
ingest function forwards), base64 encoded; headers are arrays of SIGNED
bytes. `<name>.expected.json` holds the counts the detect function must
report when the samples are invoked in order into empty detect tables:

    {"records_in": N, "records_processed": P, "records_dead_lettered": D,
     "dead_letter_classes": {...}, "alerts_new": A}
"""
import base64
import json
import os
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
BOOTSTRAP = "127.0.0.1:9092"


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sensor(t, station, offset, temperature):
    return {
        "event_time": iso(t),
        "source_type": "sensor",
        "service": "weather",
        "host": station,
        "level": None,
        "message": "",
        "http": None,
        "metrics": {"temperature": temperature, "humidity": 55.0,
                    "wind_speed": 12.0, "pressure": 1012.0},
        "attributes": {"sensor_id": station},
        "raw": "",
        "kafka": {"topic": "log-ingestion", "partition": 0, "offset": offset,
                  "seq": 0, "timestamp_ms": int(t.timestamp() * 1000)},
    }


def signed(b):
    return [x - 256 if x > 127 else x for x in b]


def record(partition, offset, t, value, key=None):
    return {
        "topic": "log-processing",
        "partition": partition,
        "offset": offset,
        "timestamp": int(t.timestamp() * 1000),
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(key.encode()).decode() if key else None,
        "value": None if value is None else base64.b64encode(value).decode(),
        "headers": [{"content-type": signed(b"application/json")}],
    }


def event(records, msk):
    by = {}
    for r in records:
        by.setdefault(f"{r['topic']}-{r['partition']}", []).append(r)
    e = {"eventSource": "aws:kafka" if msk else "SelfManagedKafka",
         "bootstrapServers": BOOTSTRAP, "records": by}
    if msk:
        e["eventSourceArn"] = "arn:aws:kafka:us-east-1:123456789012:cluster/logpipe/abc"
    return e


def write(name, ev, expected):
    with open(os.path.join(HERE, f"{name}.json"), "w") as f:
        json.dump(ev, f, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, f"{name}.expected.json"), "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")


# 1. Three stations for three minutes, one reading every 10 s; st-002 runs
# hot (45 °C, over the 40 °C rule) during the first minute. The clock passes
# the end of that minute plus the allowed lateness, so its window closes and
# exactly one alert (one incident) is raised, with one prediction per
# closed station-minute.
records = []
offset = 0
for step in range(18):
    t = T0 + timedelta(seconds=10 * step)
    for station in ("st-001", "st-002", "st-003"):
        hot = station == "st-002" and step < 6
        value = json.dumps(sensor(t, station, offset, 45.0 if hot else 21.5)).encode()
        records.append(record(0, offset, t, value, key=f"log-ingestion-0-{offset}-0"))
        offset += 1
write("sensor-breach", event(records, msk=False), {
    "records_in": len(records), "records_processed": len(records),
    "records_dead_lettered": 0, "dead_letter_classes": {}, "alerts_new": 1,
})

# 2. An MSK event with one good record and two that cannot be used.
t = T0 + timedelta(minutes=3)
good = json.dumps(sensor(t, "st-004", 1000, 20.0)).encode()
write("msk-malformed", event([
    record(1, 0, t, good, key="log-ingestion-0-1000-0"),
    record(1, 1, t, b"{\"event_time\": \"yesterday\"}"),
    record(1, 2, t, None),
], msk=True), {
    "records_in": 3, "records_processed": 1, "records_dead_lettered": 2,
    "dead_letter_classes": {"invalid_record": 1, "tombstone": 1}, "alerts_new": 0,
})
