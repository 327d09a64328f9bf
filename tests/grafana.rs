//! The Grafana dashboard (`infra/grafana/logpipe.json`) against the real
//! local PostgreSQL after a produce → ingest run: every panel's SQL, with
//! Grafana's PostgreSQL macros expanded for a concrete range, runs, returns
//! the columns the panel is drawn from, and (except the alerts panel: no
//! detect run here) has rows.

use chrono::Utc;
use logpipe_dashboard::expand;
use logpipe_tests::*;

/// Panel title → the columns it must return.
const SHAPES: &[(&str, &[&str])] = &[
    (
        "Error rate per minute, per service",
        &["time", "metric", "error_rate"],
    ),
    ("Status codes", &["status_class", "requests"]),
    ("Latency percentiles (ms)", &["time", "p50", "p95", "p99"]),
    (
        "Top endpoints",
        &[
            "http_method",
            "http_path",
            "requests",
            "server_errors",
            "avg_latency_ms",
            "p95_latency_ms",
        ],
    ),
    (
        "Traffic by client IP",
        &[
            "client_ip",
            "requests",
            "bytes",
            "client_and_server_errors",
            "first_seen",
            "last_seen",
        ],
    ),
    (
        "Alerts",
        &["time", "severity", "detector", "entity", "message"],
    ),
    (
        "Search: messages matching $search",
        &["time", "service", "host", "level", "message"],
    ),
    (
        "Ingest freshness",
        &["seconds_since_last_row", "rows_in_range"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_answers_with_its_shape_after_a_run() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/grafana/logpipe.json"
        ))
        .unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert_eq!(
        panels.len(),
        SHAPES.len(),
        "a panel without an expected shape here"
    );

    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let now = Utc::now();
    produce_and_ingest(&stack, "grafana-test", 600, 7, now).await;

    let db = sql(&stack.database_url()).await.unwrap();
    // A word that is in some message, for the search panel.
    let word = frequent_word(&db).await;
    let (from, to) = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    let mut problems = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let shape = SHAPES
            .iter()
            .find(|(t, _)| *t == title)
            .unwrap_or_else(|| panic!("no expected shape for panel {title:?}"))
            .1;
        let raw_sql = panel["targets"][0]["rawSql"].as_str().unwrap();
        // Grafana's macros, expanded as its PostgreSQL data source does
        // (the local dashboard's expander, unit-tested there).
        let query = match expand(raw_sql, from, to, &word) {
            Ok(query) => query,
            Err(e) => {
                problems.push(format!("{title}: {e}"));
                continue;
            }
        };
        let rows = match db.query(&query, &[]).await {
            Ok(rows) => rows,
            Err(e) => {
                problems.push(format!("{title}: {e}\n  {query}"));
                continue;
            }
        };
        let statement = db.prepare(&query).await.unwrap();
        let columns: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
        if columns != shape {
            problems.push(format!("{title}: columns {columns:?}, expected {shape:?}"));
        }
        eprintln!("panel {title:?}: {} rows", rows.len());
        if rows.is_empty() && title != "Alerts" {
            problems.push(format!("{title}: no rows after the run"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
