//! Cold start: each function's release binary from process start to its
//! first `GET /2018-06-01/runtime/invocation/next`, i.e. everything Lambda
//! bills as Init (clients built, migrations checked, topics checked),
//! against the same path for a hello-world `lambda_runtime` binary plus one
//! bare PostgreSQL connect and one Kafka metadata fetch (the network work
//! no init can skip), measured in the same run.
//!
//! The Runtime API is a loopback listener of this process that answers
//! nothing: at the first request it notes the time and the child's VmRSS,
//! then kills the child.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use logpipe_devstack::{Lifetime, LocalStack};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::median;

/// Timed runs per binary, after one untimed run that pages it in.
const RUNS: usize = 9;
/// Init taking longer than this is a hang, not a figure.
const INIT_LIMIT: Duration = Duration::from_secs(60);
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";

/// The functions measured, with the memory size they are deployed with
/// (their `package.metadata.lambda.deploy`; only reported to the runtime).
const FUNCTIONS: [(&str, u32); 3] = [("ingest", 1769), ("detect", 512), ("produce", 512)];
const HELLO: &str = "hello_lambda";

pub async fn coldstart_bench(stack: &LocalStack) -> Result<()> {
    let binaries = build_binaries()?;
    let mut names: Vec<(&str, u32)> = vec![(HELLO, 128)];
    names.extend(FUNCTIONS);
    let mut init_ms: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut rss_kb: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut connect_ms = Vec::new();
    let mut db_connect_ms = Vec::new();
    let mut metadata_fetch_ms = Vec::new();
    eprintln!("coldstart: 1 warm-up + {RUNS} runs of each binary, interleaved, median reported");
    for run in 0..=RUNS {
        for &(name, memory_mb) in &names {
            let binary = binaries
                .get(name)
                .with_context(|| format!("cargo built no binary named {name}"))?;
            let log = stack.dir().join(format!("coldstart-{name}-{run}.log"));
            let init = measure_init(binary, &function_env(stack, name, memory_mb), &log).await?;
            if run > 0 {
                init_ms.entry(name).or_default().push(init.ms);
                rss_kb.entry(name).or_default().push(init.rss_kb as f64);
            }
        }
        let (db_ms, metadata_ms) = bare_connect(stack).await?;
        if run > 0 {
            eprintln!(
                "coldstart run {run}: {} | connect {db_ms:.1} + metadata {metadata_ms:.1} ms",
                names
                    .iter()
                    .map(|(n, _)| format!("{n} {:.1} ms", init_ms[n][run - 1]))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            connect_ms.push(db_ms + metadata_ms);
            db_connect_ms.push(db_ms);
            metadata_fetch_ms.push(metadata_ms);
        }
    }
    if std::env::var_os("RUST_LOG").is_some() {
        // The init logs of the last run, to see where the time goes.
        for (name, _) in FUNCTIONS {
            let log = stack.dir().join(format!("coldstart-{name}-{RUNS}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("coldstart: {name} init log:\n{text}");
        }
    }
    let hello = median(init_ms.get_mut(HELLO).context("no hello runs")?);
    let connect = median(&mut connect_ms);
    eprintln!(
        "coldstart: baseline medians: PostgreSQL connect {:.1} ms, Kafka client + metadata {:.1} ms",
        median(&mut db_connect_ms),
        median(&mut metadata_fetch_ms)
    );
    for (name, _) in FUNCTIONS {
        let ms = median(init_ms.get_mut(name).context("no runs")?);
        println!("RESULT init_ms_{name}={ms:.1}");
    }
    println!("RESULT init_hello_ms={hello:.1}");
    for (name, _) in FUNCTIONS {
        let kb = median(rss_kb.get_mut(name).context("no runs")?);
        println!("RESULT init_rss_kb_{name}={kb:.0}");
    }
    let kb = median(rss_kb.get_mut(HELLO).context("no hello runs")?);
    println!("RESULT init_rss_kb_hello={kb:.0}");
    println!("RESULT connect_ms={connect:.1}");
    for (name, _) in FUNCTIONS {
        let ms = median(init_ms.get_mut(name).context("no runs")?);
        println!(
            "RESULT init_vs_hello_plus_connect_{name}={:.2}",
            ms / (hello + connect)
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
    for (name, _) in FUNCTIONS {
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
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
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

struct Init {
    ms: f64,
    rss_kb: u64,
}

/// Starts `binary` against a Runtime API of our own and waits for its first
/// `next` request. Fails when the process exits or hangs first, or when its
/// init log has an error (a misconfigured init is not a cold start).
async fn measure_init(binary: &Path, env: &[(&'static str, String)], log: &Path) -> Result<Init> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", &api);
    let started = Instant::now();
    let mut child = logpipe_devstack::process::spawn(&mut cmd, log, Lifetime::TiedToParent)
        .with_context(|| format!("starting {}", binary.display()))?;
    let result = first_next_request(&listener, &mut child, started).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let init = result.with_context(|| format!("{}; its log:\n{text}", binary.display()))?;
    if text.contains(r#""level":"ERROR""#) {
        bail!("{} logged an error at init:\n{text}", binary.display());
    }
    Ok(init)
}

async fn first_next_request(
    listener: &TcpListener,
    child: &mut Child,
    started: Instant,
) -> Result<Init> {
    let (stream, _) = loop {
        tokio::select! {
            accepted = listener.accept() => break accepted?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Some(status) = child.try_wait()? {
                    bail!("exited before asking for an invocation ({status})");
                }
                if started.elapsed() > INIT_LIMIT {
                    bail!("no Runtime API request within {} s", INIT_LIMIT.as_secs());
                }
            }
        }
    };
    // The request line and headers (a GET has no body).
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut header = String::new();
    while reader.read_line(&mut header).await? > 2 {
        header.clear();
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    // Read now: the process waits for our answer, so this is its RSS at
    // the end of init.
    let rss_kb = vm_rss_kb(child.id())?;
    let mut parts = request_line.split_whitespace();
    if (parts.next(), parts.next()) != (Some("GET"), Some(NEXT_PATH)) {
        bail!("first Runtime API request was {:?}", request_line.trim());
    }
    Ok(Init { ms, rss_kb })
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
