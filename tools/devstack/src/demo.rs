//! `logpipe-dev demo`: the whole pipeline, live, on the local stack.
//!
//! The functions run under `cargo lambda watch` (scripts/demo.sh starts it);
//! this drives them the way AWS would: `produce` invoked on a schedule (one
//! run carries an injected incident), the ingest and detect event source
//! mappings run by the local ESM runner, plus a few malformed records from
//! a "partner system". A table updates in place every second; at the end
//! comes a summary read back from PostgreSQL and the topics.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use logpipe_esm::{HttpInvoker, Invoke, MappingConfig, MappingHandle, start_mapping};
use logpipe_kafka::KafkaSettings;
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_kafka::rdkafka::Message;
use logpipe_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use logpipe_kafka::rdkafka::message::{Header, Headers, OwnedHeaders};
use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use logpipe_postgres::tokio_postgres::{self, Client};
use logpipe_schema::Alert;

pub struct DemoOptions {
    pub endpoint: String,
    pub bootstrap: String,
    pub database_url: String,
    pub seconds: u64,
    pub interval: u64,
    pub count: u64,
    pub mappings: Vec<MappingConfig>,
}

/// What the background consumers saw.
#[derive(Default)]
struct Seen {
    dead_letters: BTreeMap<String, u64>,
    alerts: Vec<Alert>,
}

/// How often the demo invokes detect's tick (the template's schedule).
const TICK_EVERY: Duration = Duration::from_secs(60);

pub async fn run(opts: DemoOptions) -> Result<()> {
    let start_ms = chrono::Utc::now().timestamp_millis();
    let db = connect(&opts.database_url).await?;
    let kafka = KafkaSettings::plaintext(&opts.bootstrap, "logpipe-demo");

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watchers = [
        watch(&opts.bootstrap, "log-ingestion.dlq", start_ms, seen.clone())?,
        watch(&opts.bootstrap, "alerts", start_ms, seen.clone())?,
    ];

    let mut handles: Vec<MappingHandle> = Vec::new();
    for m in &opts.mappings {
        let invoker = HttpInvoker::new(&opts.endpoint, &m.function_name)?;
        handles.push(start_mapping(m.clone(), &kafka, invoker)?);
    }
    let ingest = handles
        .iter()
        .position(|h| h.config().topics.iter().any(|t| t == "log-ingestion"))
        .context("no mapping reads log-ingestion")?;
    let detect = handles
        .iter()
        .position(|h| h.config().topics.iter().any(|t| t == "log-processing"))
        .context("no mapping reads log-processing")?;

    let produce = HttpInvoker::new(&opts.endpoint, "produce")?;
    // The scheduled tick of the template (EventBridge Scheduler, every
    // minute): an event without records closes idle windows and drains
    // detect's outbox when no batch arrives.
    let detect_fn = HttpInvoker::new(&opts.endpoint, &handles[detect].config().function_name)?;
    let mut last_tick = Instant::now();
    // Start the produce function before the clock runs (an invalid input:
    // it answers InvalidInput and produces nothing).
    let _ = produce.invoke(serde_json::json!({"count": 0})).await;
    let started = Instant::now();
    let partner: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &opts.bootstrap)
        .create()?;

    let total = Duration::from_secs(opts.seconds.max(20));
    // Produce for the first two thirds, then let the pipeline drain and the
    // last windows close.
    let produce_until = total.mul_f64(0.67);
    let interval = Duration::from_secs(opts.interval.max(1));
    let runs = (produce_until.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
    let incident_run = runs / 3;
    println!(
        "logpipe demo: produce every {}s ({} records) for {}s, an error burst on `checkout` in run {}; ends after {}s or on Ctrl-C",
        interval.as_secs(),
        opts.count,
        produce_until.as_secs(),
        incident_run + 1,
        total.as_secs()
    );

    let mut produced = 0u64;
    let mut partner_bad = 0u64;
    let mut run = 0u64;
    let mut next_run = Instant::now();
    let mut drawn = false;
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while started.elapsed() < total {
        if run < runs && Instant::now() >= next_run {
            // Every line format the generator knows, so the summary shows each
            // parsed to its own source type with its own time.
            let mut input =
                serde_json::json!({"count": opts.count, "seed": 7000 + run, "all_formats": true});
            if run == incident_run {
                input["anomalies"] = serde_json::json!([
                    {"kind": "error_burst", "target": "checkout", "start": 0.0, "share": 1.0}
                ]);
            }
            match produce.invoke(input).await {
                Ok(report) => produced += report["produced"].as_u64().unwrap_or(0),
                Err(e) => eprintln!("\nproduce run {} failed: {e}", run + 1),
            }
            partner_bad += send_malformed(&partner, run).await;
            run += 1;
            next_run += interval;
        }
        if last_tick.elapsed() >= TICK_EVERY {
            if let Err(e) = detect_fn.invoke(serde_json::json!({"tick": true})).await {
                eprintln!("\ndetect tick failed: {e}");
            }
            last_tick = Instant::now();
        }
        let stats: Vec<_> = handles.iter().map(|h| h.stats()).collect();
        let rows = count(&db, "SELECT count(*) FROM logs").await;
        let (dlq, alerts) = {
            let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            (s.dead_letters.values().sum::<u64>(), s.alerts.clone())
        };
        let sent = produced + partner_bad;
        let ingest_backlog = sent.saturating_sub(stats[ingest].records_delivered);
        let detect_backlog = (rows.max(0) as u64).saturating_sub(stats[detect].records_delivered);
        let lines = vec![
            format!(
                "{} {:>3}s/{}s  produce runs {run}/{runs}{}",
                bar(started.elapsed(), total),
                started.elapsed().as_secs(),
                total.as_secs(),
                if run > incident_run {
                    "  (incident injected)"
                } else {
                    ""
                }
            ),
            format!(
                "  {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}",
                "produced", "ingested", "rows", "dlq", "detected", "alerts", "lag-ing", "lag-det"
            ),
            format!(
                "  {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}",
                sent,
                stats[ingest].records_delivered,
                rows,
                dlq,
                stats[detect].records_delivered,
                alerts.len(),
                ingest_backlog,
                detect_backlog
            ),
            format!(
                "  last alert: {}",
                alerts
                    .last()
                    .map(|a| truncate(&a.message, 100))
                    .unwrap_or_else(|| "-".into())
            ),
        ];
        redraw(&lines, drawn);
        drawn = true;
        tokio::select! {
            _ = &mut ctrl_c => { interrupted = true; break; }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    println!();
    if interrupted {
        println!("interrupted: stopping the mappings");
    }
    for h in handles {
        if let Err(e) = h.stop().await {
            eprintln!("stopping a mapping: {e}");
        }
    }
    for w in watchers {
        w.abort();
    }
    summary(
        &db,
        &seen,
        produced,
        partner_bad,
        start_ms,
        started.elapsed(),
    )
    .await
}

/// Records no parser accepts, from a "partner system": they must end up on
/// the dead-letter topic, never in `logs`, never blocking their neighbours.
async fn send_malformed(producer: &FutureProducer, run: u64) -> u64 {
    let bad: [(&str, &[u8]); 2] = [
        ("json", b"{\"level\":\"info\",\"message\":\"truncated"),
        ("cobol-copybook", b"000120 PAYMENT RECORD 00042"),
    ];
    let mut sent = 0;
    for (format, value) in bad {
        let headers = OwnedHeaders::new().insert(Header {
            key: "log-format",
            value: Some(format),
        });
        let key = format!("partner-{run}");
        let record = FutureRecord::to("log-ingestion")
            .key(key.as_str())
            .payload(value)
            .headers(headers);
        if producer.send(record, Duration::from_secs(5)).await.is_ok() {
            sent += 1;
        }
    }
    sent
}

/// Reads `topic` from the start in the background, keeping what was
/// produced since the demo began (an older stack may hold earlier runs).
fn watch(
    bootstrap: &str,
    topic: &str,
    since_ms: i64,
    seen: Arc<Mutex<Seen>>,
) -> Result<tokio::task::JoinHandle<()>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("logpipe-demo-{}-{topic}", std::process::id()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let alerts = topic == "alerts";
    Ok(tokio::spawn(async move {
        loop {
            let Ok(m) = consumer.recv().await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if m.timestamp().to_millis().unwrap_or(0) < since_ms {
                continue;
            }
            let Ok(mut s) = seen.lock() else { return };
            if alerts {
                if let Some(a) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Alert>(p).ok())
                    && !s.alerts.iter().any(|x| x.id == a.id)
                {
                    s.alerts.push(a);
                }
            } else {
                let class = m
                    .headers()
                    .and_then(|hs| {
                        hs.iter()
                            .find(|h| h.key == "dlq-error-class")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_else(|| "unknown".into());
                *s.dead_letters.entry(class).or_default() += 1;
            }
        }
    }))
}

async fn summary(
    db: &Client,
    seen: &Arc<Mutex<Seen>>,
    produced: u64,
    partner_bad: u64,
    start_ms: i64,
    elapsed: Duration,
) -> Result<()> {
    let since = chrono::DateTime::from_timestamp_millis(start_ms).unwrap_or_default();
    println!("\n== summary ({:.0} s) ==", elapsed.as_secs_f64());
    println!("produced {produced} generated records + {partner_bad} malformed partner records");
    table(
        db,
        "rows per source type",
        "SELECT source_type, count(*)::text FROM logs WHERE ingested_at >= $1 GROUP BY 1 ORDER BY count(*) DESC",
        &since,
        &["source type", "rows"],
    )
    .await;
    {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let total: u64 = s.dead_letters.values().sum();
        println!("\ndead-lettered: {total}");
        for (class, n) in &s.dead_letters {
            println!("  {class:<24} {n}");
        }
        println!("\nalerts fired: {}", s.alerts.len());
        for a in &s.alerts {
            println!(
                "  [{}] {} {} — {}",
                a.severity.as_str(),
                a.window_start.format("%H:%M:%S"),
                a.entity,
                truncate(&a.message, 160)
            );
        }
    }
    let predictions = count(
        db,
        "SELECT count(*) FROM detect_outbox WHERE kind = 'prediction' AND published_at IS NOT NULL",
    )
    .await;
    println!("predictions published to ml-predictions: {predictions}");
    table(
        db,
        "top endpoints (view top_endpoints)",
        "SELECT http_method || ' ' || http_path, requests::text, server_errors::text, avg_latency_ms::text
           FROM top_endpoints WHERE $1::timestamptz IS NOT NULL LIMIT 5",
        &since,
        &["endpoint", "requests", "5xx", "avg ms"],
    )
    .await;
    table(
        db,
        "highest error rates per minute and service (view error_rate_per_minute)",
        "SELECT to_char(minute, 'HH24:MI'), service, records::text, errors::text, (round(error_rate * 100, 1))::text || ' %'
           FROM error_rate_per_minute WHERE minute >= date_trunc('minute', $1::timestamptz) - interval '1 minute'
          ORDER BY error_rate DESC LIMIT 5",
        &since,
        &["minute", "service", "records", "errors", "rate"],
    )
    .await;
    table(
        db,
        "end-to-end latency (produced → row committed in PostgreSQL)",
        "SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric)::text,
                round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric)::text,
                count(*)::text
           FROM (SELECT extract(epoch FROM ingested_at - kafka_timestamp) * 1000 AS ms
                   FROM logs WHERE ingested_at >= $1) l",
        &since,
        &["p50 ms", "p99 ms", "rows"],
    )
    .await;
    Ok(())
}

async fn table(
    db: &Client,
    title: &str,
    sql: &str,
    since: &chrono::DateTime<chrono::Utc>,
    header: &[&str],
) {
    println!("\n{title}");
    let rows = match db.query(sql, &[since]).await {
        Ok(rows) => rows,
        Err(e) => {
            println!("  (query failed: {e})");
            return;
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..header.len())
                .map(|i| {
                    r.try_get::<_, Option<String>>(i)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("  {}", parts.join("  "))
    };
    println!(
        "{}",
        line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
    );
    for c in &cells {
        println!("{}", line(c));
    }
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(conn);
    Ok(client)
}

async fn count(db: &Client, sql: &str) -> i64 {
    match db.query_one(sql, &[]).await {
        Ok(r) => r.get(0),
        Err(_) => -1,
    }
}

fn bar(done: Duration, total: Duration) -> String {
    let width = 24;
    let filled =
        ((done.as_secs_f64() / total.as_secs_f64()) * width as f64).min(width as f64) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Rewrites the previous block of lines in place (ANSI cursor up + clear).
fn redraw(lines: &[String], drawn: bool) {
    let mut out = std::io::stdout().lock();
    if drawn {
        let _ = write!(out, "\x1b[{}A", lines.len());
    }
    for l in lines {
        let _ = writeln!(out, "\x1b[2K{l}");
    }
    let _ = out.flush();
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Checks the mappings the demo needs are there.
pub fn check_mappings(mappings: &[MappingConfig]) -> Result<()> {
    for topic in ["log-ingestion", "log-processing"] {
        if !mappings.iter().any(|m| m.topics.iter().any(|t| t == topic)) {
            bail!("no event source mapping reads {topic}");
        }
    }
    Ok(())
}
