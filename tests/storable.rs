//! Whatever the classifier turns into rows, PostgreSQL stores: generated
//! records of every format (arbitrary Unicode with control characters and
//! NUL, 100 KB+ fields, extreme numbers, extreme and malformed dates,
//! mutated and truncated variants) go through the real classifier and then
//! the real write path (`insert_isolating`) against a real PostgreSQL. Each
//! record is poison with a documented class, or each of its rows is stored
//! exactly as parsed or refused by PostgreSQL with a data-error class; the
//! write as a whole never fails. A few hundred more go through the whole
//! ingest handler, whose summary must account for every record.
//!
//! One stack for all cases: the proptest runners are driven by hand inside
//! one test, on a runtime built here.

// The handler's future is deep (handler, pipeline, publisher, COPY).
#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest::IngestConfig;
use ingest::classify::{Verdict, classify};
use logpipe_kafka::InputRecord;
use logpipe_kafka::event::{EventRecord, EventSource, KafkaEventPayload};
use logpipe_postgres::{DbError, insert_isolating};
use logpipe_schema::LogRecord;
use logpipe_tests::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Rows written directly by the storable property (no Kafka involved).
const DIRECT_TOPIC: &str = "storable";
/// The handler phase uses a catalog topic: its `.dlq` topic exists.
const HANDLER_TOPIC: &str = "log-ingestion";

/// Every class the classifier may give a record that can never be stored.
const POISON_CLASSES: &[&str] = &[
    "invalid_base64",
    "malformed_envelope",
    "invalid_utf8",
    "nul_character",
    "tombstone",
    "oversized",
    "unknown_format",
    "empty_value",
    "invalid_json",
    "schema_violation",
    "invalid_line",
    "empty_batch",
    "too_deep",
    "too_many_rows",
];

/// One generated Kafka record.
#[derive(Clone)]
struct Input {
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: i64,
}

/// Long values shown cut, so a failure report stays readable.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let head: String = text.chars().take(400).collect();
    if head.len() < text.len() {
        format!("{head:?}… ({} bytes)", bytes.len())
    } else {
        format!("{head:?}")
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect();
        write!(
            f,
            "Input {{ timestamp_ms: {}, headers: {headers:?}, value: {} }}",
            self.timestamp_ms,
            self.value.as_deref().map_or("None".into(), show)
        )
    }
}

// ---------------------------------------------------------------- strings

/// Any character but NUL (which [`text`] adds on its own, rarely: a NUL
/// makes the whole record poison, so frequent ones would hide the rest).
fn nasty_char() -> impl Strategy<Value = char> + Clone {
    prop_oneof![
        4 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        3 => proptest::char::range('a', 'z'),
        2 => prop::sample::select(vec![
            '\u{1}', '\u{7}', '\u{8}', '\u{1b}', '\u{7f}', '\u{80}', '\u{9f}', '\u{a0}',
            '\u{feff}', '\u{2028}', '\u{200b}', '\u{fffd}', '\u{ffff}', '\u{10ffff}', '"', '\\',
            '\'', '=', ' ', '\t', '\n', '\r', '[', ']', '{', '}', '<', '>', ':', '-', '/', '%',
            'é', 'ß', '🌍', 'ホ', '\u{301}',
        ]),
    ]
}

fn short_text() -> BoxedStrategy<String> {
    prop::collection::vec(nasty_char(), 0..40)
        .prop_map(|v| v.into_iter().collect())
        .boxed()
}

/// A token without spaces (for key=value and space-separated formats).
fn word() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z0-9_.-]{1,12}",
        1 => short_text().prop_map(|s| s.replace([' ', '\n'], "_")),
    ]
    .boxed()
}

/// Seeded text that does not compress (so it stays large inside PostgreSQL
/// too): letters, digits, spaces and a few multi-byte characters.
fn incompressible(seed: u64, len: usize) -> String {
    const ALPHABET: &[char] = &[
        'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r',
        's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J',
        'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '0', '1',
        '2', '3', '4', '5', '6', '7', '8', '9', ' ', 'é', 'ホ', '🌍',
    ];
    let mut state = seed;
    let mut out = String::with_capacity(len + 4);
    while out.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.push(ALPHABET[(z % ALPHABET.len() as u64) as usize]);
    }
    out
}

/// 100 KB+ fields: a piece repeated (compresses well) or incompressible.
fn long_text() -> BoxedStrategy<String> {
    prop_oneof![
        (short_text(), 100_000usize..180_000).prop_map(|(piece, len)| {
            let piece = if piece.is_empty() { "x".into() } else { piece };
            piece.repeat(len / piece.len() + 1)
        }),
        (any::<u64>(), 100_000usize..180_000).prop_map(|(seed, len)| incompressible(seed, len)),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        48 => short_text(),
        1 => (short_text(), any::<Index>()).prop_map(|(s, at)| {
            let mut chars: Vec<char> = s.chars().collect();
            chars.insert(at.index(chars.len() + 1), '\0');
            chars.into_iter().collect()
        }),
        // Larger than a btree index entry may be.
        2 => (any::<u64>(), 2_000usize..9_000).prop_map(|(seed, len)| incompressible(seed, len)),
        2 => long_text(),
    ]
    .boxed()
}

/// A JSON string literal.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

// ------------------------------------------------------- numbers and dates

/// JSON number text, some of it not valid JSON at all.
fn number_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        (0u32..1_000).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "1e308",
            "-1e308",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "2.2250738585072014e-308",
            "5e-324",
            "1e309",
            "-1e400",
            "1e-400",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
            "-0",
            "-0.0",
            "0.1",
            "1E+2",
            "NaN",
            "Infinity",
            "-Infinity",
            "0x10",
            "01",
            "1.",
            "+1",
            "599",
            "600",
            "99",
            "200.0",
            "200.5",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// Textual timestamps: well-formed across and beyond every supported
/// range, malformed, and arbitrary.
fn date_string() -> BoxedStrategy<String> {
    let zone = prop::sample::select(vec![
        "Z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+0530", "", " UTC", "z",
    ]);
    prop_oneof![
        // Plausible, with an extreme fraction and zone now and then.
        3 => (
            1_960i32..2_100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..60,
            0u32..1_000_000_000,
            prop::sample::select(vec!["Z", "+00:00", "-23:59", "+05:30", ""]),
        )
            .prop_map(|(y, mo, d, h, mi, s, ns, z)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}{z}")
            }),
        3 => (
            prop_oneof![-300_000i64..300_000, 1_960i64..2_100],
            0u32..14,
            0u32..33,
            0u32..26,
            0u32..62,
            0u32..62,
            0u32..1_000_000_000,
            zone,
        )
            .prop_map(|(y, mo, d, h, mi, s, ns, z)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}{z}")
            }),
        2 => prop::sample::select(vec![
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59.999999999-23:59",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-02-29T12:00:00+23:59",
            "2024-02-30T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-05-01 12:00:00",
            "2024-05-01T12:00:00+0000",
            "2024-05-01",
            "+262143-12-31T23:59:59Z",
            "-262144-01-01T00:00:00Z",
            "1714564800",
            "1714564800.123456789",
            "-1",
            "-9223372036854775808",
            "9223372036854775807",
            "1e308",
            "NaN",
            "yesterday",
            "",
            " ",
        ])
        .prop_map(String::from),
        1 => number_text(),
        1 => short_text(),
    ]
    .boxed()
}

/// A JSON time value: a string or a number.
fn date_json() -> BoxedStrategy<String> {
    prop_oneof![
        3 => date_string().prop_map(|s| q(&s)),
        1 => number_text(),
    ]
    .boxed()
}

fn clf_date() -> BoxedStrategy<String> {
    let month = prop::sample::select(vec![
        "Jan", "Feb", "Mar", "Nov", "Dec", "jan", "Foo", "", "Febr",
    ]);
    let zone = prop::sample::select(vec!["+0000", "-0700", "+1400", "-2400", "+9999", "Z", ""]);
    prop_oneof![
        4 => (0u32..33, month, -1i32..10_000, 0u32..26, 0u32..62, 0u32..62, zone).prop_map(
            |(d, m, y, h, mi, s, z)| format!("{d:02}/{m}/{y:04}:{h:02}:{mi:02}:{s:02} {z}")
        ),
        1 => short_text(),
    ]
    .boxed()
}

fn bsd_date() -> BoxedStrategy<String> {
    let month = prop::sample::select(vec!["Jan", "Feb", "Oct", "Dec", "FEB", "Xyz"]);
    prop_oneof![
        4 => (month, 0u32..33, 0u32..26, 0u32..62, 0u32..62)
            .prop_map(|(m, d, h, mi, s)| format!("{m} {d:>2} {h:02}:{mi:02}:{s:02}")),
        1 => date_string(),
    ]
    .boxed()
}

fn ip_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<[u16; 8]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
        any::<([u8; 4], u16)>().prop_map(|(b, p)| format!("{}:{p}", std::net::Ipv4Addr::from(b))),
        prop::sample::select(vec![
            "-",
            "::",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "[::1]:443",
            "256.1.1.1",
            "host.example",
        ])
        .prop_map(String::from),
        word(),
    ]
    .boxed()
}

// ----------------------------------------------------------------- shapes

/// A JSON value of any kind, nested a little.
fn json_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => text().prop_map(|s| q(&s)),
        2 => number_text(),
        1 => prop::sample::select(vec!["true", "false", "null", "{}", "[]"]).prop_map(String::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((short_text(), inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v.iter().map(|(k, v)| format!("{}:{v}", q(k))).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
    .boxed()
}

/// An HTTP status: mostly in range.
fn status_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (100u32..600).prop_map(|n| n.to_string()),
        1 => number_text(),
    ]
    .boxed()
}

fn level_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "info", "ERROR", "warning", "crit", "debug", "fatal", "notice", "trace", "chatty", "",
        ])
        .prop_map(String::from),
        1 => short_text(),
    ]
    .boxed()
}

/// `"key":value` pairs, each present or not.
fn object(fields: Vec<(&'static str, Option<String>)>, extra: Vec<(String, String)>) -> String {
    let mut parts: Vec<String> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{}:{v}", q(k))))
        .collect();
    parts.extend(extra.into_iter().map(|(k, v)| format!("{}:{v}", q(&k))));
    format!("{{{}}}", parts.join(","))
}

fn extra_fields() -> BoxedStrategy<Vec<(String, String)>> {
    prop::collection::vec((short_text(), json_value()), 0..4).boxed()
}

fn app_json() -> BoxedStrategy<String> {
    (
        (
            prop::sample::select(vec!["message", "msg", "log"]),
            prop_oneof![6 => text().prop_map(|s| q(&s)), 1 => json_value()],
            prop::option::of(date_json()),
            prop::option::of(level_text().prop_map(|s| q(&s))),
            prop::option::of(text().prop_map(|s| q(&s))),
            prop::option::of(text().prop_map(|s| q(&s))),
        ),
        (
            prop::option::of(status_text()),
            prop::option::of(number_text()),
            prop::option::of(ip_text().prop_map(|s| q(&s))),
            prop::option::of(text().prop_map(|s| q(&s))),
            prop::option::of(text().prop_map(|s| q(&s))),
            extra_fields(),
        ),
    )
        .prop_map(
            |(
                (msg_key, msg, time, level, service, host),
                (status, latency, ip, path, ua, extra),
            )| {
                object(
                    vec![
                        (msg_key, Some(msg)),
                        ("timestamp", time),
                        ("level", level),
                        ("service", service),
                        ("host", host),
                        ("status", status),
                        ("duration_ms", latency),
                        ("client_ip", ip),
                        ("path", path),
                        ("user_agent", ua),
                    ],
                    extra,
                )
            },
        )
        .boxed()
}

/// Text for inside a quoted field: quotes escaped, or not.
fn quoted_field() -> BoxedStrategy<String> {
    (text(), any::<bool>())
        .prop_map(|(s, escape)| {
            if escape {
                s.replace('\\', "\\\\").replace('"', "\\\"")
            } else {
                s
            }
        })
        .boxed()
}

fn access_log() -> BoxedStrategy<String> {
    (
        (ip_text(), word(), word(), clf_date()),
        (
            prop::sample::select(vec!["GET", "POST", "DELETE", "", "\u{16}\u{3}\u{1}"]),
            quoted_field(),
            prop::sample::select(vec!["HTTP/1.1", "HTTP/2.0", "", "HTTP/9"]),
        ),
        (status_text(), prop_oneof![number_text(), Just("-".to_string())]),
        (
            quoted_field(),
            quoted_field(),
            prop::option::of(prop_oneof![
                (0u32..100_000, 0u32..1_000).prop_map(|(s, ms)| format!("{s}.{ms:03}")),
                number_text(),
            ]),
            prop::option::of(short_text()),
        ),
    )
        .prop_map(
            |((ip, ident, user, date), (method, path, proto), (status, bytes), (referer, ua, latency, tail))| {
                let mut line = format!(
                    "{ip} {ident} {user} [{date}] \"{method} {path} {proto}\" {status} {bytes} \"{referer}\" \"{ua}\""
                );
                if let Some(l) = latency {
                    line.push(' ');
                    line.push_str(&l);
                }
                if let Some(t) = tail {
                    line.push(' ');
                    line.push_str(&t);
                }
                line
            },
        )
        .boxed()
}

fn kv_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => word(),
        2 => number_text(),
        2 => quoted_field().prop_map(|s| format!("\"{s}\"")),
        1 => text(),
    ]
    .boxed()
}

fn splunk_kv() -> BoxedStrategy<String> {
    (
        prop::option::of(date_string()),
        prop::collection::vec(
            (
                prop_oneof![
                    3 => prop::sample::select(vec![
                        "host", "source", "sourcetype", "level", "msg", "message", "status",
                        "duration_ms", "service", "client_ip", "time",
                    ])
                    .prop_map(String::from),
                    1 => word(),
                ],
                kv_value(),
            ),
            1..8,
        ),
        prop::option::of(short_text()),
    )
        .prop_map(|(time, pairs, loose)| {
            let mut parts: Vec<String> = time.into_iter().collect();
            parts.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
            parts.extend(loose);
            parts.join(" ")
        })
        .boxed()
}

fn splunk_hec() -> BoxedStrategy<String> {
    (
        prop::option::of(date_json()),
        prop::option::of(text().prop_map(|s| q(&s))),
        prop::option::of(text().prop_map(|s| q(&s))),
        prop::option::of(word().prop_map(|s| q(&s))),
        prop_oneof![
            2 => text().prop_map(|s| q(&s)),
            2 => app_json(),
            1 => json_value(),
        ],
        prop::option::of(json_value()),
    )
        .prop_map(|(time, host, source, sourcetype, event, fields)| {
            object(
                vec![
                    ("time", time),
                    ("host", host),
                    ("source", source),
                    ("sourcetype", sourcetype.or_else(|| Some(q("_json")))),
                    ("index", Some(q("main"))),
                    ("event", Some(event)),
                    ("fields", fields),
                ],
                vec![],
            )
        })
        .boxed()
}

fn pri() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (0u32..200).prop_map(|p| p.to_string()),
        1 => number_text(),
        1 => word(),
    ]
    .boxed()
}

fn syslog5424() -> BoxedStrategy<String> {
    (
        (
            pri(),
            prop_oneof![3 => date_string(), 1 => Just("-".to_string())],
        ),
        (word(), word(), word(), word()),
        prop_oneof![
            Just("-".to_string()),
            (word(), word(), quoted_field())
                .prop_map(|(id, k, v)| format!("[{id} {k}=\"{}\"]", v.replace(']', "\\]"))),
            short_text(),
        ],
        prop::option::of(prop_oneof![
            text(),
            text().prop_map(|s| format!("\u{feff}{s}"))
        ]),
    )
        .prop_map(|((pri, ts), (host, app, proc_id, msg_id), sd, msg)| {
            let mut line = format!("<{pri}>1 {ts} {host} {app} {proc_id} {msg_id} {sd}");
            if let Some(m) = msg {
                line.push(' ');
                line.push_str(&m);
            }
            line
        })
        .boxed()
}

fn syslog3164() -> BoxedStrategy<String> {
    (
        pri(),
        bsd_date(),
        word(),
        prop_oneof![
            word().prop_map(|t| format!("{t}:")),
            (word(), number_text()).prop_map(|(t, p)| format!("{t}[{p}]:")),
            Just(String::new()),
        ],
        text(),
    )
        .prop_map(|(pri, date, host, tag, msg)| format!("<{pri}>{date} {host} {tag} {msg}"))
        .boxed()
}

fn sensor_json() -> BoxedStrategy<String> {
    (
        prop_oneof![3 => text().prop_map(|s| q(&s)), 1 => number_text()],
        prop::option::of(date_json()),
        (
            prop::option::of(number_text()),
            prop::option::of(number_text()),
            prop::option::of(number_text()),
            prop::option::of(prop_oneof![number_text(), text().prop_map(|s| q(&s))]),
        ),
        extra_fields(),
    )
        .prop_map(|(id, time, (temp, hum, wind, pressure), extra)| {
            object(
                vec![
                    ("sensor_id", Some(id)),
                    ("timestamp", time),
                    ("temperature", temp),
                    ("humidity", hum),
                    ("wind_speed", wind),
                    ("pressure", pressure),
                ],
                extra,
            )
        })
        .boxed()
}

fn sap_line() -> BoxedStrategy<String> {
    (
        (
            prop_oneof![
                3 => (1_900i32..2_100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
                1 => word(),
            ],
            prop_oneof![
                3 => (0u32..24, 0u32..60, 0u32..60).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}")),
                1 => word(),
            ],
        ),
        (
            prop_oneof!["[A-Z][A-Z0-9]{2}", word()],
            "[A-Za-z0-9_.-]{1,40}",
            prop_oneof!["[0-9]{3}", word()],
            prop_oneof!["[A-Z0-9_.-]{1,12}", Just("-".to_string())],
            prop_oneof!["[A-Z0-9_/]{1,20}", Just("-".to_string())],
            "[A-Z0-9]{3}",
            prop::sample::select(vec!["I", "W", "E", "A", "S", "X"]),
        ),
        text(),
    )
        .prop_map(|((date, time), (sid, inst, client, user, tcode, msgid, sev), msg)| {
            format!("{date} {time} {sid} {inst} {client} {user} {tcode} {msgid} {sev} {msg}")
        })
        .boxed()
}

fn batch_envelope() -> BoxedStrategy<String> {
    let element = prop_oneof![
        3 => sensor_json(),
        3 => app_json(),
        2 => prop_oneof![
            syslog3164(),
            access_log(),
            splunk_kv(),
            text(),
        ]
        .prop_map(|s| q(&s)),
        1 => json_value(),
        1 => Just(r#"{"data":[{"message":"nested"}]}"#.to_string()),
    ];
    (
        prop::option::of(text().prop_map(|s| q(&s))),
        prop::option::of(date_json()),
        prop_oneof![
            6 => prop::collection::vec(element, 0..6),
            // Hundreds of rows from one small record. (Thousands, all
            // refused, cost the write path minutes: see the ignored test
            // at the end.)
            1 => (100usize..300).prop_map(|n| vec![q("x"); n]),
        ],
        prop_oneof![
            3 => Just(None),
            2 => Just(Some(None)),
            1 => number_text().prop_map(|n| Some(Some(n))),
        ],
    )
        .prop_map(|(source, time, data, size)| {
            let size = match size {
                None => None,
                Some(None) => Some(data.len().to_string()),
                Some(Some(n)) => Some(n),
            };
            object(
                vec![
                    ("source", source),
                    ("timestamp", time),
                    ("batch_size", size),
                    ("data", Some(format!("[{}]", data.join(",")))),
                ],
                vec![],
            )
        })
        .boxed()
}

/// A record value of some shape, and the `log-format` header naming it.
fn shaped() -> BoxedStrategy<(String, &'static str)> {
    prop_oneof![
        3 => app_json().prop_map(|v| (v, "json")),
        2 => access_log().prop_map(|v| (v, "clf")),
        2 => splunk_kv().prop_map(|v| (v, "splunk-kv")),
        2 => splunk_hec().prop_map(|v| (v, "splunk")),
        2 => syslog5424().prop_map(|v| (v, "syslog")),
        2 => syslog3164().prop_map(|v| (v, "rfc3164")),
        2 => sensor_json().prop_map(|v| (v, "sensor")),
        2 => batch_envelope().prop_map(|v| (v, "batch")),
        1 => sap_line().prop_map(|v| (v, "sap")),
        2 => text().prop_map(|v| (v, "text")),
    ]
    .boxed()
}

/// Mutations of a well-shaped value: cut short, a character inserted, a
/// BOM or whitespace around it.
fn mutate(value: String, how: u8, at: Index, c: char) -> String {
    let boundaries: Vec<usize> = value
        .char_indices()
        .map(|(i, _)| i)
        .chain([value.len()])
        .collect();
    let i = boundaries[at.index(boundaries.len())];
    match how {
        0 => value[..i].to_string(),
        1 => format!("{}{c}{}", &value[..i], &value[i..]),
        2 => format!("\u{feff}{value}"),
        3 => format!(" \n\t{value}\r\n"),
        4 => format!("\u{feff} {value}"),
        _ => value,
    }
}

fn header_value() -> BoxedStrategy<Option<Vec<u8>>> {
    prop_oneof![
        10 => Just(None),
        1 => prop::sample::select(vec![
            "json", "APP-JSON", " clf ", "combined", "splunk-hec", "splunk-kv", "splunk", "sap",
            "sensor", "batch", "syslog", "syslog5424", "rfc3164", "text", "", "cobol-dump",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => Just(Some(vec![0xff, 0x4a])),
    ]
    .boxed()
}

fn timestamp_ms() -> BoxedStrategy<i64> {
    prop_oneof![
        6 => 1_600_000_000_000i64..1_900_000_000_000,
        2 => prop::sample::select(vec![
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            i64::MAX,
            // chrono's limits in milliseconds
            8_210_266_876_799_999,
            -8_334_601_228_800_000,
            // PostgreSQL's: 4713 BC and 294276 AD
            -210_866_803_200_000,
            -210_866_803_200_001,
            9_224_318_015_999_999,
            -300_000_000_000_000,
        ]),
        1 => any::<i64>(),
    ]
    .boxed()
}

fn input() -> BoxedStrategy<Input> {
    let value = prop_oneof![
        20 => (shaped(), 0u8..12, any::<Index>(), nasty_char(), header_value(), any::<bool>())
            .prop_map(|((v, natural), how, at, c, header, use_natural)| {
                let header = if use_natural && header.is_none() {
                    Some(natural.as_bytes().to_vec())
                } else {
                    header
                };
                (Some(mutate(v, how, at, c).into_bytes()), header)
            }),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| (Some(b), None)),
        1 => Just((None, None)),
    ];
    (
        value,
        prop::option::of(prop_oneof![word(), text()]),
        timestamp_ms(),
    )
        .prop_map(|((value, format), service, timestamp_ms)| {
            let mut headers = vec![];
            if let Some(f) = format {
                headers.push(("log-format".to_string(), f));
            }
            if let Some(s) = service {
                headers.push(("service".to_string(), s.into_bytes()));
            }
            Input {
                value,
                headers,
                timestamp_ms,
            }
        })
        .boxed()
}

// ------------------------------------------------------------- properties

/// Offsets never repeat across cases (shrinking re-runs inputs), so every
/// row is new and must be inserted or refused.
static NEXT_OFFSET: AtomicI64 = AtomicI64::new(0);

fn input_record(input: &Input, topic: &str, partition: i32, offset: i64) -> InputRecord {
    InputRecord {
        topic: topic.into(),
        partition,
        offset,
        timestamp_ms: input.timestamp_ms,
        key: None,
        value: input.value.clone(),
        headers: input.headers.clone(),
        error: None,
        key_error: None,
        key_schema: None,
        value_schema: None,
    }
}

/// What the direct property saw, over all cases (printed at the end).
#[derive(Debug, Default)]
struct Tally {
    records: usize,
    rows_stored: usize,
    rows_refused: BTreeMap<String, usize>,
    poison: BTreeMap<&'static str, usize>,
}

/// The property for one batch of records: classify, then write every row
/// in one transaction; read the stored rows back.
async fn storable(
    url: &str,
    inputs: &[Input],
    tally: &std::sync::Mutex<Tally>,
) -> Result<(), TestCaseError> {
    let limits = ingest::Limits::default();
    let first = NEXT_OFFSET.fetch_add(inputs.len() as i64, Ordering::SeqCst);
    let mut rows: Vec<LogRecord> = Vec::new();
    let mut poison = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let record = input_record(input, DIRECT_TOPIC, 0, first + i as i64);
        match classify(&record, &limits) {
            Verdict::Rows(r) => {
                prop_assert!(!r.is_empty(), "a record classified into no rows: {input:?}");
                rows.extend(r);
            }
            Verdict::Poison(p) => {
                prop_assert!(
                    POISON_CLASSES.contains(&p.class),
                    "undocumented class {:?} ({}) for {input:?}",
                    p.class,
                    p.message
                );
                poison.push(p.class);
            }
            // A CloudWatch control message: nothing to store, by design.
            Verdict::Control => {}
        }
    }

    let mut client = sql(url)
        .await
        .map_err(|e| TestCaseError::fail(format!("connect: {e}")))?;
    let mut txn = client
        .transaction()
        .await
        .map_err(|e| TestCaseError::fail(format!("begin: {e}")))?;
    let refs: Vec<&LogRecord> = rows.iter().collect();
    let inserted = match insert_isolating(&mut txn, DIRECT_TOPIC, &refs).await {
        Ok(inserted) => inserted,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the write failed as a whole: {e} (rows: {})",
                describe_rows(&rows)
            )));
        }
    };
    txn.commit()
        .await
        .map_err(|e| TestCaseError::fail(format!("commit: {e}")))?;

    let mut refused = vec![false; rows.len()];
    let mut codes = Vec::new();
    for (i, e) in &inserted.rejected {
        prop_assert!(e.is_data_error(), "refused with a non-data error: {e}");
        let DbError::Rejected { code, .. } = e else {
            return Err(TestCaseError::fail(format!("not a rejection: {e}")));
        };
        prop_assert!(
            ["22", "23", "54"].iter().any(|c| code.starts_with(c)),
            "refused with SQLSTATE {code}: {e}"
        );
        refused[*i] = true;
        codes.push(code.clone());
    }
    let expected: Vec<&LogRecord> = rows
        .iter()
        .zip(&refused)
        .filter(|(_, r)| !**r)
        .map(|(row, _)| row)
        .collect();
    prop_assert_eq!(inserted.inserted as usize, expected.len(), "new rows");

    // What is stored is what was parsed.
    let stored = client
        .query(
            "SELECT kafka_offset, seq, event_time, message, raw FROM logs
              WHERE topic = $1 AND kafka_offset >= $2 AND kafka_offset < $3
              ORDER BY kafka_offset, seq",
            &[&DIRECT_TOPIC, &first, &(first + inputs.len() as i64)],
        )
        .await
        .map_err(|e| TestCaseError::fail(format!("read back: {e}")))?;
    prop_assert_eq!(stored.len(), expected.len(), "stored rows");
    for (db, want) in stored.iter().zip(&expected) {
        let k = want.kafka.as_ref().expect("classify sets coordinates");
        prop_assert_eq!(
            (db.get::<_, i64>(0), db.get::<_, i32>(1)),
            (k.offset, k.seq)
        );
        // PostgreSQL keeps microseconds.
        let time: DateTime<Utc> = db.get(2);
        let off = (time - want.event_time).num_nanoseconds();
        prop_assert!(
            off.is_some_and(|n| n.abs() < 1_000),
            "event_time {time} stored for {}",
            want.event_time
        );
        prop_assert!(db.get::<_, &str>(3) == want.message, "message differs");
        prop_assert!(db.get::<_, &str>(4) == want.raw, "raw differs");
    }

    let mut t = tally.lock().expect("tally lock");
    t.records += inputs.len();
    t.rows_stored += expected.len();
    for c in codes {
        *t.rows_refused.entry(c).or_default() += 1;
    }
    for p in poison {
        *t.poison.entry(p).or_default() += 1;
    }
    Ok(())
}

fn describe_rows(rows: &[LogRecord]) -> String {
    let shown: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{time {}, service {:?}, message {}, raw {}}}",
                r.event_time,
                r.service.as_deref().map(|s| show(s.as_bytes())),
                show(r.message.as_bytes()),
                show(r.raw.as_bytes())
            )
        })
        .collect();
    shown.join(", ")
}

/// The whole handler on one event of `inputs`: the summary accounts for
/// every record, as the classifier predicted, and `logs` holds a row set
/// for exactly the records reported stored.
async fn through_handler(
    stack: &LocalStack,
    handler: &ingest::Ingestor,
    inputs: &[Input],
) -> Result<(), TestCaseError> {
    let first = NEXT_OFFSET.fetch_add(inputs.len() as i64, Ordering::SeqCst);
    let records: Vec<EventRecord> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| EventRecord {
            topic: HANDLER_TOPIC.into(),
            partition: (i % 3) as i32,
            offset: first + i as i64,
            timestamp_ms: input.timestamp_ms,
            timestamp_type: "CREATE_TIME",
            key: Some(format!("k{i}").into_bytes()),
            value: input.value.clone(),
            headers: input.headers.clone(),
        })
        .collect();
    let event = event(&records, EventSource::Msk, &stack.bootstrap_servers());

    // The classifier's verdicts on the records as the handler decodes them.
    let payload: KafkaEventPayload = serde_json::from_value(event.clone())
        .map_err(|e| TestCaseError::fail(format!("event: {e}")))?;
    let limits = ingest::Limits::default();
    let mut predicted: BTreeMap<String, usize> = BTreeMap::new();
    let mut with_rows = 0usize;
    for r in &payload.decode().records {
        match classify(r, &limits) {
            Verdict::Rows(_) | Verdict::Control => with_rows += 1,
            Verdict::Poison(p) => *predicted.entry(p.class.to_string()).or_default() += 1,
        }
    }

    let response = invoke(handler, &event)
        .await
        .map_err(|e| TestCaseError::fail(format!("the handler asked for a retry: {e}")))?;
    let s = &response.summary;
    prop_assert_eq!(s.records_in, inputs.len(), "{:?}", s);
    prop_assert_eq!(
        s.records_in,
        s.records_stored + s.records_duplicate + s.records_dead_lettered + s.records_retry,
        "{:?}",
        s
    );
    prop_assert_eq!(s.records_retry, 0, "{:?}", s);
    prop_assert_eq!(s.records_duplicate, 0, "{:?}", s);
    prop_assert!(
        response.batch.batch_item_failures.is_empty(),
        "{:?}",
        response
    );
    prop_assert_eq!(
        s.dead_letter_classes.values().sum::<usize>(),
        s.records_dead_lettered,
        "{:?}",
        s
    );
    // Records with rows are stored, or refused by PostgreSQL / the broker.
    let mut classes = s.dead_letter_classes.clone();
    let refused = classes.remove("db_rejected").unwrap_or(0);
    let forward_refused = classes.remove("forward_rejected").unwrap_or(0);
    prop_assert_eq!(&classes, &predicted, "poison classes");
    prop_assert_eq!(
        s.records_stored + refused + forward_refused,
        with_rows,
        "{:?}",
        s
    );

    let db = sql(&stack.database_url())
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let stored: i64 = db
        .query_one(
            "SELECT count(DISTINCT (topic, kafka_partition, kafka_offset)) FROM logs
              WHERE topic = $1 AND kafka_offset >= $2 AND kafka_offset < $3",
            &[&HANDLER_TOPIC, &first, &(first + inputs.len() as i64)],
        )
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .get(0);
    prop_assert_eq!(stored as usize, s.records_stored, "{:?}", s);
    eprintln!("storable: handler summary {s:?}");
    Ok(())
}

#[test]
fn whatever_the_parsers_return_is_stored_or_refused_row_by_row() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stack = runtime
        .block_on(LocalStack::start(StackOptions::default()))
        .expect("local stack");
    let url = stack.database_url();

    let tally = std::sync::Mutex::new(Tally::default());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        // Inputs worth keeping become regression tests below, by hand.
        failure_persistence: None,
        // A failing case may be slow (many refused rows); shrink briefly.
        max_shrink_time: 60_000,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(input(), 1..8), |inputs| {
        runtime.block_on(storable(&url, &inputs, &tally))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner().expect("tally");
    eprintln!("storable: {tally:?}");
    assert!(tally.rows_stored > 0, "no case stored anything: {tally:?}");

    let handler = runtime
        .block_on(ingestor(
            &stack,
            IngestConfig {
                report_batch_item_failures: true,
                message_timeout: Duration::from_secs(10),
                ..IngestConfig::default()
            },
        ))
        .expect("ingestor");
    let mut runner = TestRunner::new(Config {
        cases: 3,
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(input(), 100), |inputs| {
        runtime.block_on(through_handler(&stack, &handler, &inputs))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    drop(stack);
}

/// Refusals must not pile up inside the transaction. tokio-postgres rolls a
/// savepoint back with `ROLLBACK TO` alone, which keeps the savepoint (a
/// subtransaction) open; `insert_isolating` then opens the next savepoint
/// inside it, so every refused chunk leaves a nested subtransaction and its
/// transaction-id lock behind (about two per refused row: 601 locks after
/// 300 refused rows). The shared lock table holds about 64 ×
/// max_connections entries, so one batch envelope with a few thousand
/// refused rows (e.g. 10,000 elements under a 3 KB `source`, ~45 KB in
/// all) exhausts it: the write fails as a whole with 53200 (transient, so
/// the batch is retried forever) after ~70 s, and every other session of
/// the server fails with "out of shared memory" until the transaction ends.
#[test]
fn refused_rows_leave_no_subtransactions_behind() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stack = LocalStack::start(StackOptions::default())
            .await
            .expect("local stack");
        // Every row gets the envelope's `source` as its service: an
        // incompressible 3 KB service is too large for the btree index
        // on (service, event_time).
        let elements = vec![q("x"); 300].join(",");
        let value = format!(
            "{{\"source\":{},\"data\":[{elements}]}}",
            q(&incompressible(7, 3_000))
        );
        let input = Input {
            value: Some(value.into_bytes()),
            headers: vec![],
            timestamp_ms: 1_700_000_000_000,
        };
        let record = input_record(&input, DIRECT_TOPIC, 0, 0);
        let Verdict::Rows(rows) = classify(&record, &ingest::Limits::default()) else {
            panic!("the envelope is valid");
        };
        let mut client = sql(&stack.database_url()).await.expect("connect");
        let mut txn = client.transaction().await.expect("begin");
        let refs: Vec<&LogRecord> = rows.iter().collect();
        let inserted = insert_isolating(&mut txn, DIRECT_TOPIC, &refs)
            .await
            .expect("refusals are reported, not raised");
        assert_eq!(
            (inserted.inserted, inserted.rejected.len()),
            (0, rows.len())
        );
        let locks: i64 = txn
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_locks")
            .get(0);
        // A handful (the relations, the transaction's own ids), not one
        // or two per refused row.
        assert!(
            locks < 50,
            "{locks} locks held after {} refused rows",
            rows.len()
        );
    });
}
