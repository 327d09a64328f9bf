//! Cold start: each function's release binary from process start to its
//! first `GET /2018-06-01/runtime/invocation/next`, i.e. everything Lambda
//! bills as Init (clients built, whatever checks run before the runtime
//! loop), against the same path for a hello-world `lambda_runtime` binary
//! plus one bare PostgreSQL connect and one Kafka metadata fetch (the
//! network work no init can skip), measured in the same run.
//!
//! Init alone would reward moving work into the first invocation unseen, so
//! ingest and detect (and hello, on the ingest event) are also given a small
//! real event by `next` and timed to their first response POSTed: the first
//! batch a new sandbox answers, with whatever init left for it to do.
//!
//! The Runtime API is a loopback listener of this process: at the first
//! `next` it notes the time and the child's VmRSS and answers with the
//! event (or, without one, not at all); at the response it notes the time
//! and VmRSS again, checks the response, and kills the child.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use logpipe_devstack::{Lifetime, LocalStack};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::median;

/// Timed runs per binary, after one untimed run that pages it in.
const RUNS: usize = 9;
/// Init (or the first invocation) taking longer than this is a hang, not a
/// figure.
const LIMIT: Duration = Duration::from_secs(60);
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";

/// The functions measured, with the memory size they are deployed with
/// (their `package.metadata.lambda.deploy`; only reported to the runtime),
/// and the sample event of their first invocation (`events/<fn>/`, with its
/// `.expected.json` beside it), if any: produce is timed to `next` only.
const FUNCTIONS: [(&str, u32, Option<&str>); 3] = [
    ("ingest", 1769, Some("events/ingest/msk-all-formats.json")),
    ("detect", 512, Some("events/detect/sensor-breach.json")),
    ("produce", 512, None),
];
const HELLO: &str = "hello_lambda";
/// Hello echoes the ingest event: the runtime's own cost of a first
/// invocation of that size.
const HELLO_EVENT: &str = "events/ingest/msk-all-formats.json";

/// A sample event and the counts its `.expected.json` promises.
struct Sample {
    event: Value,
    expected: Option<Value>,
}

pub async fn coldstart_bench(stack: &LocalStack) -> Result<()> {
    let binaries = build_binaries()?;
    let root = logpipe_devstack::workspace_root()?;
    let mut names: Vec<(&str, u32, Option<&str>)> = vec![(HELLO, 128, Some(HELLO_EVENT))];
    names.extend(FUNCTIONS);
    let mut samples: BTreeMap<&str, Sample> = BTreeMap::new();
    for &(name, _, event) in &names {
        if let Some(path) = event {
            samples.insert(name, load_sample(&root, path, name != HELLO)?);
        }
    }
    // Every run is a new consumer group on new offsets: each first batch
    // is new to the database, as a new sandbox's would be.
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut init_ms: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut rss_kb: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut invoke_ms: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut invoke_rss_kb: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut connect_ms = Vec::new();
    let mut db_connect_ms = Vec::new();
    let mut metadata_fetch_ms = Vec::new();
    eprintln!("coldstart: 1 warm-up + {RUNS} runs of each binary, interleaved, median reported");
    for run in 0..=RUNS {
        for &(name, memory_mb, _) in &names {
            let binary = binaries
                .get(name)
                .with_context(|| format!("cargo built no binary named {name}"))?;
            let log = stack.dir().join(format!("coldstart-{name}-{run}.log"));
            let mut env = function_env(stack, name, memory_mb);
            env.push(("CONSUMER_GROUP", format!("coldstart-{name}-{nonce}-{run}")));
            let event = samples
                .get(name)
                .map(|s| invocation_event(&s.event, nonce + run as i64 * 1_000_000))
                .transpose()?;
            let measured = measure(binary, &env, event.as_deref(), &log).await?;
            if let (Some(sample), Some(sent), Some(invoked)) =
                (samples.get(name), &event, &measured.invoked)
            {
                check_response(name, sample, sent, &invoked.response)?;
            }
            if run > 0 {
                init_ms.entry(name).or_default().push(measured.init.ms);
                rss_kb
                    .entry(name)
                    .or_default()
                    .push(measured.init.rss_kb as f64);
                if let Some(invoked) = &measured.invoked {
                    invoke_ms.entry(name).or_default().push(invoked.at.ms);
                    invoke_rss_kb
                        .entry(name)
                        .or_default()
                        .push(invoked.at.rss_kb as f64);
                }
            }
        }
        let (db_ms, metadata_ms) = bare_connect(stack).await?;
        if run > 0 {
            eprintln!(
                "coldstart run {run}: {} | connect {db_ms:.1} + metadata {metadata_ms:.1} ms",
                names
                    .iter()
                    .map(|(n, ..)| match invoke_ms.get(n) {
                        Some(first) =>
                            format!("{n} {:.1} / {:.1} ms", init_ms[n][run - 1], first[run - 1]),
                        None => format!("{n} {:.1} ms", init_ms[n][run - 1]),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            connect_ms.push(db_ms + metadata_ms);
            db_connect_ms.push(db_ms);
            metadata_fetch_ms.push(metadata_ms);
        }
    }
    if std::env::var_os("RUST_LOG").is_some() {
        // The logs of the last run, to see where the time goes.
        for (name, ..) in FUNCTIONS {
            let log = stack.dir().join(format!("coldstart-{name}-{RUNS}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("coldstart: {name} log:\n{text}");
        }
    }
    let hello = med(&mut init_ms, HELLO)?;
    let connect = median(&mut connect_ms);
    eprintln!(
        "coldstart: baseline medians: PostgreSQL connect {:.1} ms, Kafka client + metadata {:.1} ms",
        median(&mut db_connect_ms),
        median(&mut metadata_fetch_ms)
    );
    for (name, ..) in FUNCTIONS {
        println!("RESULT init_ms_{name}={:.1}", med(&mut init_ms, name)?);
    }
    println!("RESULT init_hello_ms={hello:.1}");
    for (name, _, event) in FUNCTIONS {
        if event.is_some() {
            println!(
                "RESULT first_invoke_ms_{name}={:.1}",
                med(&mut invoke_ms, name)?
            );
        }
    }
    println!(
        "RESULT first_invoke_hello_ms={:.1}",
        med(&mut invoke_ms, HELLO)?
    );
    for (name, ..) in FUNCTIONS {
        println!("RESULT init_rss_kb_{name}={:.0}", med(&mut rss_kb, name)?);
    }
    println!("RESULT init_rss_kb_hello={:.0}", med(&mut rss_kb, HELLO)?);
    for (name, _, event) in FUNCTIONS {
        if event.is_some() {
            println!(
                "RESULT first_invoke_rss_kb_{name}={:.0}",
                med(&mut invoke_rss_kb, name)?
            );
        }
    }
    println!("RESULT connect_ms={connect:.1}");
    // The target (logpipe issue 13): a function's init may take up to 1.5
    // times hello's plus the network work no init can skip, so
    // init_ratio = init_ms / (1.5 * init_hello_ms + connect_ms), at most 1.
    for (name, ..) in FUNCTIONS {
        println!(
            "RESULT init_ratio_{name}={:.2}",
            med(&mut init_ms, name)? / (1.5 * hello + connect)
        );
    }
    Ok(())
}

/// The release binaries of the functions and of the hello-world baseline
/// (cargo's no-op when they are up to date), by target name.
fn build_binaries() -> Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(logpipe_devstack::workspace_root()?).args([
        "build",
        "--release",
        "-q",
        "--message-format=json-render-diagnostics",
    ]);
    for (name, ..) in FUNCTIONS {
        cmd.args(["-p", name, "--bin", name]);
    }
    cmd.args(["-p", "logpipe-bench", "--bin", HELLO]);
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build of the cold-start binaries failed ({})",
            out.status
        );
    }
    let mut binaries = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some("compiler-artifact"), Some(name), Some(exe)) = (
            message["reason"].as_str(),
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            binaries.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    Ok(binaries)
}

/// The median of `name`'s figures in `series`.
fn med(series: &mut BTreeMap<&str, Vec<f64>>, name: &str) -> Result<f64> {
    Ok(median(
        series
            .get_mut(name)
            .with_context(|| format!("no runs of {name}"))?,
    ))
}

fn load_sample(root: &Path, path: &str, with_expected: bool) -> Result<Sample> {
    let read = |p: &Path| -> Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    };
    let event = read(&root.join(path))?;
    let expected = if with_expected {
        let expected = root.join(path.replace(".json", ".expected.json"));
        Some(read(&expected)?)
    } else {
        None
    };
    Ok(Sample { event, expected })
}

/// The sample event with every record's offset moved on by `shift`.
fn invocation_event(event: &Value, shift: i64) -> Result<Vec<u8>> {
    let mut event = event.clone();
    let partitions = event["records"]
        .as_object_mut()
        .context("sample event has no records map")?;
    for records in partitions.values_mut() {
        for record in records.as_array_mut().context("records is not a list")? {
            let offset = record["offset"]
                .as_i64()
                .context("sample record without an offset")?;
            record["offset"] = Value::from(offset + shift);
        }
    }
    Ok(serde_json::to_vec(&event)?)
}

/// The first invocation must have done the sample's work: its counts as
/// promised by `.expected.json`, nothing handed back.
fn check_response(name: &str, sample: &Sample, sent: &[u8], response: &[u8]) -> Result<()> {
    let body: Value = serde_json::from_slice(response).with_context(|| {
        format!(
            "{name} answered with no JSON: {}",
            String::from_utf8_lossy(response)
        )
    })?;
    let Some(expected) = &sample.expected else {
        // Hello echoes its event.
        let sent: Value = serde_json::from_slice(sent)?;
        if body != sent {
            bail!("{name} did not echo its event: {body}");
        }
        return Ok(());
    };
    let failures = body["batchItemFailures"].as_array().map_or(0, Vec::len);
    if failures > 0 {
        bail!("{name}'s first invocation handed records back: {body}");
    }
    let summary = &body["summary"];
    // Not alerts_new: an alert's id does not depend on the consumer group,
    // so only the first run's is new.
    for key in [
        "records_in",
        "records_stored",
        "records_processed",
        "records_dead_lettered",
    ] {
        if let Some(want) = expected.get(key)
            && summary.get(key) != Some(want)
        {
            bail!("{name}'s first invocation: {key} is not {want}: {body}");
        }
    }
    Ok(())
}

/// What the Runtime API and the function read, as Lambda sets it (plus the
/// local stack); the rest of the environment is not passed on.
fn function_env(stack: &LocalStack, name: &str, memory_mb: u32) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("DATABASE_URL", stack.database_url()),
        ("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap_servers()),
    ];
    if let Ok(level) = std::env::var("RUST_LOG") {
        env.push(("RUST_LOG", level));
    }
    env
}

/// A moment of the child's life: ms since its start, and its VmRSS then.
#[derive(Clone, Copy)]
struct Moment {
    ms: f64,
    rss_kb: u64,
}

struct Invoked {
    at: Moment,
    response: Vec<u8>,
}

struct Measured {
    /// The first `next` request.
    init: Moment,
    /// The first response POSTed, when an event was given.
    invoked: Option<Invoked>,
}

/// Starts `binary` against a Runtime API of our own, waits for its first
/// `next` request and, given an `event`, answers it and waits for the
/// response. Fails when the process exits, hangs or reports an error first,
/// or when its log has an error (a misconfigured init is not a cold start).
async fn measure(
    binary: &Path,
    env: &[(&'static str, String)],
    event: Option<&[u8]>,
    log: &Path,
) -> Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let (requests, mut incoming) = mpsc::channel(4);
    let server = tokio::spawn(serve(listener, requests));
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", &api);
    let started = Instant::now();
    let mut child = logpipe_devstack::process::spawn(&mut cmd, log, Lifetime::TiedToParent)
        .with_context(|| format!("starting {}", binary.display()))?;
    let result = runtime_api(&mut incoming, &mut child, started, event).await;
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let measured = result.with_context(|| format!("{}; its log:\n{text}", binary.display()))?;
    if text.contains(r#""level":"ERROR""#) {
        bail!("{} logged an error:\n{text}", binary.display());
    }
    Ok(measured)
}

/// The Runtime API's side of one cold start (see [`measure`]).
async fn runtime_api(
    incoming: &mut mpsc::Receiver<(Request, oneshot::Sender<Vec<u8>>)>,
    child: &mut Child,
    started: Instant,
    event: Option<&[u8]>,
) -> Result<Measured> {
    let mut init = None;
    // Kept until the child is killed: dropping a responder closes its
    // connection.
    let mut unanswered = Vec::new();
    loop {
        let (request, respond) = tokio::select! {
            got = incoming.recv() => got.context("the Runtime API listener stopped")?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Some(status) = child.try_wait()? {
                    bail!("exited before answering an invocation ({status})");
                }
                if started.elapsed() > LIMIT {
                    bail!("no Runtime API request within {} s", LIMIT.as_secs());
                }
                continue;
            }
        };
        // Read now: the process waits for our answer.
        let now = Moment {
            ms: request.at.duration_since(started).as_secs_f64() * 1e3,
            rss_kb: vm_rss_kb(child.id())?,
        };
        let path = request.path.as_str();
        match (request.method.as_str(), init, event) {
            ("GET", None, _) if path == NEXT_PATH => {
                init = Some(now);
                let Some(event) = event else {
                    return Ok(Measured {
                        init: now,
                        invoked: None,
                    });
                };
                let deadline = SystemTime::now().duration_since(UNIX_EPOCH)? + LIMIT;
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     lambda-runtime-aws-request-id: coldstart\r\n\
                     lambda-runtime-deadline-ms: {}\r\n\
                     lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:coldstart\r\n\
                     content-length: {}\r\n\r\n",
                    deadline.as_millis(),
                    event.len()
                )
                .into_bytes();
                answer.extend_from_slice(event);
                let _ = respond.send(answer);
            }
            ("GET", Some(_), _) if path == NEXT_PATH => {
                // A second `next` before the response: never answered.
                unanswered.push(respond);
            }
            ("POST", Some(init), Some(_))
                if path == format!("{INVOCATION_PREFIX}coldstart/response") =>
            {
                let _ = respond.send(
                    b"HTTP/1.1 202 Accepted\r\ncontent-length: 16\r\n\r\n{\"status\":\"OK\"}\n"
                        .to_vec(),
                );
                return Ok(Measured {
                    init,
                    invoked: Some(Invoked {
                        at: now,
                        response: request.body,
                    }),
                });
            }
            (method, ..) => bail!(
                "unexpected Runtime API request {method} {path}: {}",
                String::from_utf8_lossy(&request.body)
            ),
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    /// When it had been read whole.
    at: Instant,
}

/// Accepts the child's connections and hands each request over with a
/// channel for its answer (the raw HTTP/1.1 response).
async fn serve(listener: TcpListener, requests: mpsc::Sender<(Request, oneshot::Sender<Vec<u8>>)>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, requests.clone()));
    }
}

async fn connection(
    stream: TcpStream,
    requests: mpsc::Sender<(Request, oneshot::Sender<Vec<u8>>)>,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader).await? {
        let (respond, answer) = oneshot::channel();
        if requests.send((request, respond)).await.is_err() {
            break;
        }
        let Ok(answer) = answer.await else { break };
        write.write_all(&answer).await?;
    }
    Ok(())
}

/// One HTTP/1.1 request (body by `content-length` or chunked); `None` at
/// the end of the connection.
async fn read_request<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        bail!("not an HTTP request line: {line:?}");
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 {
            bail!("connection closed in the headers");
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().context("content-length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await?;
            let size = size.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).context("chunk size")?;
            if size == 0 {
                // Trailers, up to the empty line.
                let mut trailer = String::new();
                while reader.read_line(&mut trailer).await? > 2 {
                    trailer.clear();
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).await?;
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    }
    Ok(Some(Request {
        method,
        path,
        body,
        at: Instant::now(),
    }))
}

fn vm_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// One PostgreSQL connect and one Kafka metadata fetch (all topics, as the
/// functions' check does) on fresh clients, in ms each.
async fn bare_connect(stack: &LocalStack) -> Result<(f64, f64)> {
    use logpipe_kafka::rdkafka::ClientConfig;
    use logpipe_kafka::rdkafka::producer::{BaseProducer, Producer};
    use logpipe_postgres::tokio_postgres;

    let url = stack.database_url();
    let started = Instant::now();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let db_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(client);
    connection.await?;

    let bootstrap = stack.bootstrap_servers();
    let metadata_ms = tokio::task::spawn_blocking(move || -> Result<f64> {
        let started = Instant::now();
        // The functions' connect spacing (see RECONNECT_BACKOFF_MS): with
        // librdkafka's default a fresh client's first fetch takes ~2 or ~52 ms
        // depending on a race, which makes no baseline.
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set(
                "reconnect.backoff.ms",
                logpipe_kafka::producer::RECONNECT_BACKOFF_MS.to_string(),
            )
            .create()?;
        let metadata = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(5))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if metadata.topics().is_empty() {
            bail!("the broker listed no topics");
        }
        Ok(ms)
    })
    .await??;
    Ok((db_ms, metadata_ms))
}
