//! `logpipe-dev`: the developer CLI.
//!
//! - `up`: start PostgreSQL, Tansu and moto detached under `.local/stack`
//!   of the tree we are run in (found from the current directory like git
//!   does, or `LOGPIPE_ROOT`; see `logpipe_devstack::root`), migrate, create
//!   the topics, print the environment to use them.
//! - `down`: stop what `up` started — only processes verified to be this
//!   stack's (`logpipe_devstack::ownership`); stale entries are dropped.
//! - `env`: print the environment of the running stack.
//! - `health`: consumer-group lag and status, ingest freshness, DLQ counts
//!   (`logpipe_health`; exit codes in its `cli::USAGE`).
//! - `esm`: run the local Kafka event source mappings (`logpipe_esm`)
//!   against functions served by `cargo lambda watch`, until Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use logpipe_devstack::ownership::{Recorded, Verdict, verify};
use logpipe_devstack::postgres::{self, url_like};
use logpipe_devstack::state::{self, Outcome};
use logpipe_devstack::{
    Lifetime, Postgres, StackPaths, apply_local_catalog, create_roles, describe, maintain, migrate,
    start_moto, start_tansu, workspace_root,
};

/// The running stack's state (verified to be this tree's).
fn running_state() -> Result<serde_json::Value> {
    StackPaths::locate()?.running()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => up().await,
        Some("down") => down(),
        Some("env") => print_env(&running_state()?),
        Some("topics") => topics(&args[1..]).await,
        Some("health") => health(&args[1..]).await,
        Some("esm") => esm(&args[1..]).await,
        Some("demo") => demo(&args[1..]).await,
        _ => {
            eprintln!(
                "usage: logpipe-dev up | down | env | topics [--bootstrap HOST:PORT] [--replication-factor N] | health [--help]\n       logpipe-dev esm [--template infra/template.yaml | --config FILE] [--endpoint http://127.0.0.1:9000] [--bootstrap HOST:PORT] [--stats-file FILE]\n\nRun inside a logpipe checkout: the tree is the nearest directory upwards whose Cargo.toml [workspace] lists tools/devstack (LOGPIPE_ROOT overrides); the stack lives in its .local/stack (LOGPIPE_STACK_DIR overrides)."
            );
            std::process::exit(2);
        }
    }
}

async fn up() -> Result<()> {
    let paths = StackPaths::locate()?;
    let dir = paths.dir.clone();
    if let Ok(state) = paths.read() {
        let scopes = paths.scopes();
        let recs = state::recorded(&state);
        if !recs.is_empty() && recs.iter().all(|r| verify(r, &scopes) == Verdict::Ours) {
            eprintln!("local stack already running ({})", dir.display());
            return print_env(&state);
        }
        eprintln!(
            "local stack in {} not (fully) running; restarting it",
            dir.display()
        );
        paths.stop(&state);
    }
    std::fs::create_dir_all(&dir)?;
    let mut started = Vec::new();
    let state = match start_services(&dir, &mut started) {
        Ok(state) => state,
        Err(e) => {
            // Nothing records them yet: stop what did start, not orphan it.
            let scopes = paths.scopes();
            let partial = state::new_state(&started, "", "", "", 0);
            state::stop_recorded(&partial, &scopes, &paths.state_file());
            return Err(e);
        }
    };
    let pg_url = state["database_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bootstrap = state["bootstrap_servers"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    std::fs::write(paths.state_file(), serde_json::to_vec_pretty(&state)?)?;
    let owner_url = url_like(&pg_url, postgres::OWNER, postgres::OWNER_PASSWORD)
        .context("the stack's database URL has no host part")?;
    eprintln!(
        "creating the database roles (owner {}, functions {})",
        postgres::OWNER,
        postgres::RUNTIME
    );
    create_roles(&pg_url).await?;
    eprintln!("applying database migrations (as {})", postgres::OWNER);
    migrate(&owner_url).await?;
    for change in maintain(&owner_url).await? {
        eprintln!(
            "logs partitions: {} {} ({} rows)",
            change.action,
            change.partition,
            change.rows.map_or("-".into(), |n| n.to_string())
        );
    }
    eprintln!("applying the topic catalog (infra/topics.json)");
    let report = apply_local_catalog(&bootstrap).await?;
    eprintln!("{}", describe(&report));
    std::fs::write(paths.env_file(), env_lines(&state)?.join("\n") + "\n")?;
    eprintln!(
        "local stack is up; `make down` stops it. Environment (also in {}):",
        paths.env_file().display()
    );
    print_env(&state)
}

/// Starts the three servers detached, recording each in `started` as soon
/// as it runs; returns the state to write.
fn start_services(dir: &Path, started: &mut Vec<Recorded>) -> Result<serde_json::Value> {
    eprintln!("starting PostgreSQL (data in {})", dir.join("pg").display());
    let pg = Postgres::start(&dir.join("pg"), Lifetime::Detached)?;
    let pg_port = pg.port();
    let pg_url = pg.url();
    started.push(Recorded::now("postgres", pg.detach()));
    eprintln!("starting Tansu broker");
    let tansu = start_tansu(dir, Lifetime::Detached)?;
    let tansu_port = tansu.port();
    started.push(Recorded::now("tansu", tansu.detach()));
    eprintln!("starting moto (AWS API)");
    let moto = start_moto(dir, Lifetime::Detached)?;
    let moto_port = moto.port();
    started.push(Recorded::now("moto", moto.detach()));
    Ok(state::new_state(
        started,
        &pg_url,
        &format!("127.0.0.1:{tansu_port}"),
        &format!("http://127.0.0.1:{moto_port}"),
        pg_port,
    ))
}

/// Applies the topic catalog to the local stack's broker, or to any broker
/// given with --bootstrap (PLAINTEXT; for a secured cluster use the same
/// KAFKA_* variables as the functions).
async fn topics(args: &[String]) -> Result<()> {
    let mut bootstrap = None;
    let mut replication = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bootstrap" => bootstrap = it.next().cloned(),
            "--replication-factor" => {
                replication = Some(
                    it.next()
                        .context("--replication-factor needs a number")?
                        .parse()?,
                )
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let report = match bootstrap {
        None if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_none() => {
            let state = running_state()?;
            let servers = state["bootstrap_servers"]
                .as_str()
                .context("stack state lacks bootstrap_servers")?;
            apply_local_catalog(servers).await?
        }
        Some(b)
            if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_none() && replication.is_none() =>
        {
            // A plaintext broker named on the command line (a local one).
            apply_local_catalog(&b).await?
        }
        _ => {
            let mut settings = logpipe_kafka::KafkaSettings::from_env("logpipe-topics")?;
            if let Some(b) = bootstrap {
                settings.bootstrap_servers = b;
            }
            let secrets = match &settings.credentials {
                logpipe_kafka::settings::SaslCredentials::Secret { .. } => {
                    Some(logpipe_secrets::SecretsCache::from_env().await)
                }
                _ => None,
            };
            let client = settings.client(secrets.as_ref()).await?;
            logpipe_kafka::admin::apply_catalog(
                &client,
                &logpipe_devstack::load_catalog()?,
                replication,
            )
            .await?
        }
    };
    println!("{}", describe(&report));
    Ok(())
}

fn down() -> Result<()> {
    let paths = StackPaths::locate()?;
    if !paths.state_file().exists() {
        eprintln!("no local stack running in {}", paths.dir.display());
        return Ok(());
    }
    let state = match paths.read() {
        Ok(state) => state,
        Err(e) => {
            eprintln!("{e:#}; removing it");
            serde_json::Value::Null
        }
    };
    let outcomes = paths.stop(&state);
    let stopped = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Stopped)
        .count();
    let stale = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Stale(_)))
        .count();
    eprintln!(
        "local stack in {} stopped ({stopped} process(es) stopped, {stale} stale entr(y/ies) left alone)",
        paths.dir.display()
    );
    Ok(())
}

fn env_lines(state: &serde_json::Value) -> Result<Vec<String>> {
    let get = |k: &str| -> Result<String> {
        match state[k].as_str() {
            Some(v) => Ok(v.to_string()),
            None => bail!("stack state lacks {k}"),
        }
    };
    let superuser_url = get("database_url")?;
    // The functions get the DML-only runtime login, as in AWS; migrations
    // and maintenance use the owner (DATABASE_OWNER_URL).
    let runtime_url = url_like(
        &superuser_url,
        postgres::RUNTIME,
        postgres::RUNTIME_PASSWORD,
    )
    .context("the stack's database URL has no host part")?;
    let owner_url = url_like(&superuser_url, postgres::OWNER, postgres::OWNER_PASSWORD)
        .context("the stack's database URL has no host part")?;
    Ok(vec![
        format!("export DATABASE_URL={runtime_url}"),
        format!("export DATABASE_OWNER_URL={owner_url}"),
        format!(
            "export KAFKA_BOOTSTRAP_SERVERS={}",
            get("bootstrap_servers")?
        ),
        format!("export AWS_ENDPOINT_URL={}", get("aws_endpoint_url")?),
        "export AWS_REGION=us-east-1".into(),
        "export AWS_ACCESS_KEY_ID=testing".into(),
        "export AWS_SECRET_ACCESS_KEY=testing".into(),
    ])
}

fn print_env(state: &serde_json::Value) -> Result<()> {
    for line in env_lines(state)? {
        println!("{line}");
    }
    Ok(())
}

/// Pipeline health against the broker and database named by
/// KAFKA_BOOTSTRAP_SERVERS (+ KAFKA_* security) and DATABASE_URL /
/// DB_SECRET_ARN, else the running local stack's. Exits with the report's code.
async fn health(args: &[String]) -> Result<()> {
    let cli = match logpipe_health::cli::HealthArgs::parse(args) {
        Ok(cli) if cli.help => {
            println!("{}", logpipe_health::cli::USAGE);
            return Ok(());
        }
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("{e}\n{}", logpipe_health::cli::USAGE);
            std::process::exit(2);
        }
    };
    let state = running_state().ok();
    let from_state = |k: &str| state.as_ref().and_then(|s| s[k].as_str().map(String::from));
    let secrets = || logpipe_secrets::SecretsCache::from_env();
    let kafka = if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_some() {
        let settings = logpipe_kafka::KafkaSettings::from_env("logpipe-health")?;
        let cache = match &settings.credentials {
            logpipe_kafka::settings::SaslCredentials::Secret { .. } => Some(secrets().await),
            _ => None,
        };
        settings.client(cache.as_ref()).await?
    } else {
        let servers = from_state("bootstrap_servers")
            .context("set KAFKA_BOOTSTRAP_SERVERS or start the local stack (`make up`)")?;
        logpipe_kafka::KafkaClientConfig::new(
            logpipe_kafka::KafkaSettings::plaintext(&servers, "logpipe-health")
                .client_config(None)?,
        )
    };
    let db_settings = if std::env::var_os("DATABASE_URL").is_some()
        || std::env::var_os("DB_SECRET_ARN").is_some()
    {
        Some(logpipe_postgres::DbSettings::from_env("logpipe-health")?)
    } else {
        from_state("database_url")
            .map(|url| logpipe_postgres::DbSettings::from_url(&url, "logpipe-health"))
    };
    let database = match db_settings {
        Some(settings) => {
            let cache = match settings.source {
                logpipe_postgres::DbSource::Secret { .. } => {
                    Some(std::sync::Arc::new(secrets().await))
                }
                logpipe_postgres::DbSource::Url(_) => None,
            };
            Some(logpipe_postgres::Database::new(settings, cache)?)
        }
        None => None,
    };
    let report = logpipe_health::check(&kafka, database.as_ref(), &cli.options).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_table());
    }
    std::process::exit(report.exit_code());
}

/// Runs the local event source mappings (from the SAM template when it
/// exists, else infra/local-mappings.json) against the Lambda Invoke API at
/// --endpoint, on the local stack's broker unless --bootstrap or
/// KAFKA_BOOTSTRAP_SERVERS (+ KAFKA_* security variables) say otherwise.
async fn esm(args: &[String]) -> Result<()> {
    let mut template = None;
    let mut config_file = None;
    let mut endpoint = "http://127.0.0.1:9000".to_string();
    let mut bootstrap = None;
    let mut stats_file: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--template" => template = Some(PathBuf::from(value()?)),
            "--config" => config_file = Some(PathBuf::from(value()?)),
            "--endpoint" => endpoint = value()?,
            "--bootstrap" => bootstrap = Some(value()?),
            "--stats-file" => stats_file = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (mappings, source) = match (template, config_file) {
        (Some(_), Some(_)) => bail!("give --template or --config, not both"),
        (Some(t), None) => (logpipe_esm::load_template(&t)?, t),
        (None, Some(c)) => (logpipe_esm::load_mappings_file(&c)?, c),
        (None, None) => {
            let root = workspace_root()?;
            logpipe_esm::load_mappings(
                &root.join("infra/template.yaml"),
                &root.join("infra/local-mappings.json"),
            )?
        }
    };
    if mappings.is_empty() {
        bail!("no Kafka event source mappings in {}", source.display());
    }
    // KAFKA_* variables (security included) when set, --bootstrap
    // overriding the servers; else --bootstrap or the local stack, plaintext.
    let settings = if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_some() {
        let mut settings = logpipe_kafka::KafkaSettings::from_env("logpipe-esm")?;
        if let Some(b) = bootstrap {
            settings.bootstrap_servers = b;
        }
        settings
    } else {
        let servers = match bootstrap {
            Some(b) => b,
            None => running_state()?["bootstrap_servers"]
                .as_str()
                .context("stack state lacks bootstrap_servers")?
                .to_string(),
        };
        logpipe_kafka::KafkaSettings::plaintext(&servers, "logpipe-esm")
    };
    eprintln!(
        "{} mapping(s) from {}; broker {}; functions at {endpoint}; Ctrl-C stops",
        mappings.len(),
        source.display(),
        settings.bootstrap_servers
    );
    let mut handles = Vec::new();
    for m in mappings {
        eprintln!("  {}", m.describe());
        let invoker = logpipe_esm::HttpInvoker::new(&endpoint, &m.function_name)?;
        handles.push(logpipe_esm::start_mapping(m, &settings, invoker)?);
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Some(path) = &stats_file
                    && let Err(e) = write_esm_stats(path, &handles)
                {
                    eprintln!("could not write {}: {e}", path.display());
                }
                if handles.iter().any(|h| h.is_finished()) {
                    break;
                }
            }
        }
    }
    if let Some(path) = &stats_file {
        write_esm_stats(path, &handles)?;
    }
    let mut failed = false;
    for h in handles {
        let name = h.config().describe();
        match h.stop().await {
            Ok(s) => eprintln!(
                "{name}: {} records delivered in {} batches, {} retries, {} sent to the failure topic, {} discarded; committed {:?}",
                s.records_delivered,
                s.batches,
                s.retries,
                s.records_to_destination,
                s.records_discarded,
                s.committed
            ),
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("a mapping stopped with an error");
    }
    Ok(())
}

/// Live counters for a demo: `{"<mapping>": {...}}`, replaced atomically.
fn write_esm_stats(path: &Path, handles: &[logpipe_esm::MappingHandle]) -> Result<()> {
    let stats: serde_json::Map<String, serde_json::Value> = handles
        .iter()
        .map(|h| (h.config().describe(), h.stats().to_json()))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&stats)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `demo [--endpoint URL] [--seconds N] [--interval N] [--count N]`: the
/// live pipeline against functions served by `cargo lambda watch` at URL
/// (scripts/demo.sh starts everything; see `make demo`).
async fn demo(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let mut endpoint = "http://127.0.0.1:9000".to_string();
    let mut seconds = 60u64;
    let mut interval = 5u64;
    let mut count = 400u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--endpoint" => endpoint = value()?,
            "--seconds" => seconds = value()?.parse().context("--seconds")?,
            "--interval" => interval = value()?.parse().context("--interval")?,
            "--count" => count = value()?.parse().context("--count")?,
            other => bail!("unknown argument {other}"),
        }
    }
    let state = running_state()?;
    let text = |k: &str| -> Result<String> {
        Ok(state[k]
            .as_str()
            .with_context(|| format!("stack state lacks {k}"))?
            .to_string())
    };
    let (mappings, source) = logpipe_esm::load_mappings(
        &root.join("infra/template.yaml"),
        &root.join("infra/local-mappings.json"),
    )?;
    logpipe_devstack::demo::check_mappings(&mappings)?;
    eprintln!("event source mappings from {}:", source.display());
    for m in &mappings {
        eprintln!("  {}", m.describe());
    }
    logpipe_devstack::demo::run(logpipe_devstack::demo::DemoOptions {
        endpoint,
        bootstrap: text("bootstrap_servers")?,
        database_url: text("database_url")?,
        seconds,
        interval,
        count,
        mappings,
    })
    .await
}
