//! The local dashboard (`tools/dashboard`) after a produce → ingest run on
//! the real local stack: its server in-process on a free loopback port,
//! `/api/panels` over real HTTP, and the page in real headless Chromium —
//! it reaches `data-state="ready"`, draws every panel (all but the alerts
//! panel, no detect run here, with rows), shows exactly the rows the API
//! answers, and logs no console error. A screenshot is left for a person to
//! look at (its path is printed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use logpipe_dashboard::{Dashboard, DashboardSpec, PanelQuery, PanelsReport, serve};
use logpipe_postgres::{Database, DbSettings};
use logpipe_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Watchdog only: Chromium ends by itself once its virtual time is spent;
/// this names a hang instead of waiting for CI's limit.
const BROWSER_WATCHDOG: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_draws_every_panel_from_the_local_database() {
    let chromium = chromium();
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    // Event times over the minute before the last two: inside "the last
    // hour" the page shows by default, however long the test takes.
    let start = Utc::now() - chrono::Duration::minutes(3);
    produce_and_ingest(&stack, "dashboard-test", 600, 11, start).await;

    let db = sql(&stack.database_url()).await.unwrap();
    // A word that is in some message, for the search panel.
    let word = frequent_word(&db).await;
    let stored = count(&db, "SELECT count(*) FROM logs").await;

    let spec = DashboardSpec::builtin().unwrap();
    let dashboard = Arc::new(Dashboard::new(
        spec.clone(),
        Database::new(
            DbSettings::from_url(&stack.database_url(), "dashboard-test"),
            None,
        )
        .unwrap(),
    ));

    // The search text is data, never SQL: a hostile one finds nothing,
    // breaks no panel and changes nothing.
    let hostile = dashboard
        .panels(
            &PanelQuery {
                minutes: 60,
                search: Some("x'); DELETE FROM logs; -- \\' $__timeFrom()".into()),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    for panel in &hostile.panels {
        assert_eq!(panel.error, None, "{}", panel.title);
    }
    let search_panel = hostile
        .panels
        .iter()
        .find(|p| p.title.starts_with("Search: "))
        .expect("the search panel");
    assert!(search_panel.rows.is_empty(), "{search_panel:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, stored);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, dashboard.clone(), async {
        let _ = stopped.await;
    }));

    // The API over HTTP: the page's JSON, and what it refuses.
    let search = form_encode(&word);
    let (status, body) = http_get(
        port,
        &format!("/api/panels?minutes=60&search={search}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let api: PanelsReportShape = serde_json::from_str(&body).expect("the report is JSON");
    assert_eq!(api.search, word);
    assert_eq!(api.panels.len(), spec.panels.len());
    for panel in &api.panels {
        assert!(panel.error.is_none(), "{}: {:?}", panel.title, panel.error);
        assert!(!panel.columns.is_empty(), "{}: no columns", panel.title);
        for row in &panel.rows {
            assert_eq!(row.len(), panel.columns.len(), "{}: {row:?}", panel.title);
        }
    }
    let (status, body) = http_get(port, "/api/panels?minutes=0", None).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http_get(port, "/", Some("dashboard.evil.example")).await;
    assert_eq!(status, 403, "a non-loopback Host is refused");
    let (status, body) = http_get(port, "/assets/vendor/uplot/uPlot.iife.min.js", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("uPlot"), "the vendored uPlot is served");

    // The page in a real browser.
    let url = format!("http://127.0.0.1:{port}/?minutes=60&search={search}&refresh=2");
    let profile = tempfile::tempdir().unwrap();
    let (dom, log) = run_chromium(&chromium, profile.path(), &["--dump-dom".into()], &url).await;
    let consoles: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    eprintln!("browser console:\n{}", consoles.join("\n"));
    let console_errors: Vec<&&str> = consoles
        .iter()
        // Chromium logs every console message at INFO: errors are told by
        // their text (the page's own start with "dashboard error").
        .filter(|l| {
            [
                "dashboard error",
                "Uncaught",
                "Refused to",
                "Failed to load resource",
                "Content Security Policy",
            ]
            .iter()
            .any(|e| l.contains(e))
        })
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:#?}"
    );

    let body = tags(&dom, "body")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <body> in the dumped DOM:\n{dom}\nbrowser log:\n{log}"));
    assert_eq!(
        body.get("data-state").map(String::as_str),
        Some("ready"),
        "the page never rendered: {body:?}\nbrowser log:\n{log}"
    );
    assert_eq!(
        body.get("data-panels"),
        Some(&spec.panels.len().to_string())
    );
    assert_eq!(body.get("data-errors").map(String::as_str), Some("0"));
    // refresh=2 over 15 s of the browser's virtual time: it kept refreshing.
    let loads: u32 = body
        .get("data-loads")
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(
        loads >= 2,
        "the page loaded the panels {loads} time(s), never refreshed"
    );

    // The page shows what the API answers now (the data does not change).
    let expected: PanelsReport = dashboard
        .panels(
            &PanelQuery {
                minutes: 60,
                search: Some(word.clone()),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let drawn: BTreeMap<String, usize> = tags(&dom, "section")
        .into_iter()
        .filter(|s| {
            s.get("class")
                .is_some_and(|c| c.split(' ').any(|c| c == "panel"))
        })
        .map(|s| {
            let id = s.get("data-panel").cloned().unwrap_or_default();
            let rows = s
                .get("data-rows")
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("panel {id} has no data-rows: {s:?}"));
            (id, rows)
        })
        .collect();
    assert_eq!(drawn.len(), spec.panels.len(), "{drawn:?}");
    for panel in &expected.panels {
        let rows = drawn
            .get(&panel.id.to_string())
            .unwrap_or_else(|| panic!("panel {:?} is not on the page", panel.title));
        eprintln!("panel {:?} ({}): {rows} rows", panel.title, panel.kind);
        assert_eq!(*rows, panel.rows.len(), "{}", panel.title);
        if panel.title != "Alerts" {
            assert!(*rows > 0, "{}: no rows after the run", panel.title);
        }
    }
    // The charts are uPlot's (a canvas each), not HTML.
    let charts = dom.matches("class=\"uplot").count();
    let chart_panels = expected
        .panels
        .iter()
        .filter(|p| matches!(p.kind.as_str(), "timeseries" | "barchart"))
        .count();
    assert_eq!(charts, chart_panels, "one uPlot chart per chart panel");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    run_chromium(
        &chromium,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,2000".into(),
        ],
        &url,
    )
    .await;
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    eprintln!("screenshot: {}", shot.display());

    let _ = stop.send(());
    server.await.unwrap();
}

/// The fields of `/api/panels` the page reads.
#[derive(serde::Deserialize)]
struct PanelsReportShape {
    search: String,
    panels: Vec<PanelShape>,
}

#[derive(serde::Deserialize)]
struct PanelShape {
    title: String,
    #[allow(dead_code)]
    kind: String,
    columns: Vec<serde_json::Value>,
    rows: Vec<Vec<serde_json::Value>>,
    error: Option<String>,
}

/// Chromium (`CHROMIUM` overrides), or a failure naming how to get it.
fn chromium() -> PathBuf {
    let name = std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into());
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(&name))
        .chain(std::iter::once(PathBuf::from(&name)))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{} not found: this test drives a real headless Chromium. \
             `scripts/bootstrap.sh all` (`make tools`) installs Debian's chromium when run as root; \
             otherwise `apt-get install chromium`, or set CHROMIUM to its path",
            Path::new(&name).display()
        )
    })
}

/// Runs headless Chromium on `url`; its stdout and stderr.
async fn run_chromium(
    chromium: &Path,
    profile: &Path,
    extra: &[String],
    url: &str,
) -> (String, String) {
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_WATCHDOG, command.output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not exit within {BROWSER_WATCHDOG:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "chromium failed ({}):\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// A GET over a plain TCP connection: the status and the body.
async fn http_get(port: u16, path: &str, host: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let host = host.map_or_else(|| format!("127.0.0.1:{port}"), str::to_string);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    (status, body.to_string())
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The attributes of every `<name …>` start tag in serialized HTML.
fn tags(html: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{name}");
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        rest = after;
        if !after.starts_with([' ', '>', '\n', '\t']) {
            continue;
        }
        let mut attrs = BTreeMap::new();
        let mut chars = after.char_indices().peekable();
        let mut end = after.len();
        loop {
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            let Some(&(i, c)) = chars.peek() else { break };
            if c == '>' || c == '/' {
                end = i;
                break;
            }
            let mut key = String::new();
            while let Some((_, c)) =
                chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=' && *c != '>')
            {
                key.push(c);
            }
            let mut value = String::new();
            if chars.next_if(|(_, c)| *c == '=').is_some() {
                if chars.next_if(|(_, c)| *c == '"').is_some() {
                    for (_, c) in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        value.push(c);
                    }
                } else {
                    while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '>')
                    {
                        value.push(c);
                    }
                }
            }
            attrs.insert(key, unescape(&value));
        }
        rest = &after[end..];
        found.push(attrs);
    }
    found
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}
