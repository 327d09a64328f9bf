//! Runs every panel's SQL for a time range and a search text, and turns the
//! rows into JSON the page draws.

use std::error::Error as StdError;

use chrono::{DateTime, NaiveDateTime, Utc};
use logpipe_postgres::tokio_postgres::types::{FromSql, Type};
use logpipe_postgres::{Database, DbError};
use serde::Serialize;
use serde_json::Value;

use crate::macros::{expand, expand_title};
use crate::spec::{DashboardSpec, GridPos, PanelSpec};

/// The longest range the page may ask for: a week.
pub const MAX_MINUTES: u32 = 7 * 24 * 60;
/// Longest search text accepted.
pub const MAX_SEARCH_CHARS: usize = 500;
/// Rows kept per panel; the panels' own LIMITs are far below it, but a
/// timeseries over a long range is not.
pub const MAX_ROWS: usize = 20_000;

/// Every query runs in a read-only transaction (the dashboard only reads),
/// with standard string literals (what makes `$search` quoting safe) and a
/// bound on its time.
const SESSION_SETUP: &str = "SET default_transaction_read_only = on; \
     SET standard_conforming_strings = on; \
     SET statement_timeout = '15s'";

/// What the page asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    /// The range is the last `minutes` minutes up to now.
    pub minutes: u32,
    /// `None`: the dashboard's default search text.
    pub search: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("minutes must be a whole number from 1 to {MAX_MINUTES}, not {0:?}")]
    BadMinutes(String),
    #[error("search is longer than {MAX_SEARCH_CHARS} characters")]
    SearchTooLong,
    #[error("search contains a NUL character")]
    NulInSearch,
}

impl PanelQuery {
    /// From a URL query string (`minutes=N&search=TEXT`, form-encoded; other
    /// keys ignored).
    pub fn parse(query: Option<&str>, spec: &DashboardSpec) -> Result<Self, QueryError> {
        let mut minutes = spec.default_minutes;
        let mut search = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "minutes" => {
                    minutes = value
                        .parse()
                        .ok()
                        .filter(|m| (1..=MAX_MINUTES).contains(m))
                        .ok_or_else(|| QueryError::BadMinutes(value.to_string()))?;
                }
                "search" => {
                    if value.chars().count() > MAX_SEARCH_CHARS {
                        return Err(QueryError::SearchTooLong);
                    }
                    if value.contains('\0') {
                        return Err(QueryError::NulInSearch);
                    }
                    search = Some(value.into_owned());
                }
                _ => {}
            }
        }
        Ok(Self { minutes, search })
    }
}

/// How the page should read a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// RFC 3339 text in UTC.
    Time,
    Number,
    Text,
    Bool,
    Json,
}

impl ColumnKind {
    /// `None` for a type the page cannot show.
    pub fn of(ty: &Type) -> Option<Self> {
        Some(match *ty {
            Type::TIMESTAMPTZ | Type::TIMESTAMP => Self::Time,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => {
                Self::Number
            }
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Self::Text,
            Type::BOOL => Self::Bool,
            Type::JSON | Type::JSONB => Self::Json,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnKind,
}

/// One panel's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PanelData {
    pub id: u64,
    /// `$search` replaced by the search text.
    pub title: String,
    pub kind: String,
    pub grid: GridPos,
    pub columns: Vec<Column>,
    /// One array per row, values in column order.
    pub rows: Vec<Vec<Value>>,
    /// More than [`MAX_ROWS`] rows: the rest were dropped.
    pub truncated: bool,
    /// Why the panel has no result (its SQL failed); the others still show.
    pub error: Option<String>,
}

/// Everything `/api/panels` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PanelsReport {
    pub title: String,
    pub from: String,
    pub to: String,
    pub minutes: u32,
    pub search: String,
    pub panels: Vec<PanelData>,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Database(#[from] DbError),
}

impl DashboardError {
    /// Whether the same request may succeed later (the database is back).
    pub fn is_transient(&self) -> bool {
        match self {
            DashboardError::Database(e) => e.is_transient(),
        }
    }
}

/// The panels and the database they read.
pub struct Dashboard {
    spec: DashboardSpec,
    db: Database,
}

impl Dashboard {
    pub fn new(spec: DashboardSpec, db: Database) -> Self {
        Self { spec, db }
    }

    pub fn spec(&self) -> &DashboardSpec {
        &self.spec
    }

    /// Every panel for `minutes` up to `now`. A panel whose SQL fails carries
    /// its error; only an unreachable database fails the whole report.
    pub async fn panels(
        &self,
        query: &PanelQuery,
        now: DateTime<Utc>,
    ) -> Result<PanelsReport, DashboardError> {
        let to = now;
        let from = now - chrono::Duration::minutes(i64::from(query.minutes));
        let search = query
            .search
            .clone()
            .unwrap_or_else(|| self.spec.default_search.clone());
        let report = {
            let client = self.db.client().await?;
            let setup = client.batch_execute(SESSION_SETUP).await;
            match setup {
                Err(e) => Err(DbError::from_query(e)),
                Ok(()) => {
                    let mut panels = Vec::with_capacity(self.spec.panels.len());
                    for panel in &self.spec.panels {
                        panels.push(run_panel(&client, panel, from, to, &search).await);
                    }
                    Ok(panels)
                }
            }
        };
        let panels = match report {
            Ok(panels) => panels,
            Err(e) => {
                // A broken connection is reopened by the next request.
                self.db.reset().await;
                return Err(e.into());
            }
        };
        if panels.iter().any(|p| p.error.is_some()) {
            // A panel failing because the connection dropped must not stay
            // failing: reconnect next time (cheap when nothing was wrong).
            self.db.reset().await;
        }
        Ok(PanelsReport {
            title: self.spec.title.clone(),
            from: rfc3339(from),
            to: rfc3339(to),
            minutes: query.minutes,
            search,
            panels,
        })
    }
}

async fn run_panel(
    client: &logpipe_postgres::tokio_postgres::Client,
    panel: &PanelSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    search: &str,
) -> PanelData {
    let mut data = PanelData {
        id: panel.id,
        title: expand_title(&panel.title, search),
        kind: panel.kind.clone(),
        grid: panel.grid,
        columns: Vec::new(),
        rows: Vec::new(),
        truncated: false,
        error: None,
    };
    match query_panel(client, panel, from, to, search).await {
        Ok((columns, rows, truncated)) => {
            data.columns = columns;
            data.rows = rows;
            data.truncated = truncated;
        }
        Err(e) => {
            tracing::warn!(panel = %panel.title, error = %e, "panel query failed");
            data.error = Some(e);
        }
    }
    data
}

type PanelRows = (Vec<Column>, Vec<Vec<Value>>, bool);

async fn query_panel(
    client: &logpipe_postgres::tokio_postgres::Client,
    panel: &PanelSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    search: &str,
) -> Result<PanelRows, String> {
    let sql = expand(&panel.sql, from, to, search).map_err(|e| e.to_string())?;
    // Prepared, not simple, so the text is exactly one statement.
    let statement = client.prepare(&sql).await.map_err(pg_message)?;
    let columns = statement
        .columns()
        .iter()
        .map(|c| {
            ColumnKind::of(c.type_())
                .map(|kind| Column {
                    name: c.name().to_string(),
                    kind,
                })
                .ok_or_else(|| {
                    format!(
                        "column {} has type {}, which the dashboard cannot show",
                        c.name(),
                        c.type_()
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let result = client.query(&statement, &[]).await.map_err(pg_message)?;
    let truncated = result.len() > MAX_ROWS;
    let mut rows = Vec::with_capacity(result.len().min(MAX_ROWS));
    for row in result.iter().take(MAX_ROWS) {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let cell: Cell = row
                .try_get(i)
                .map_err(|e| format!("column {}: {e}", column.name))?;
            values.push(cell.0);
        }
        rows.push(values);
    }
    Ok((columns, rows, truncated))
}

/// The server's message (and SQLSTATE) rather than tokio-postgres's
/// generic "db error".
fn pg_message(e: logpipe_postgres::tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One value of any type [`ColumnKind::of`] accepts, as JSON (NaN and
/// infinities, which JSON cannot hold, as null).
struct Cell(Value);

type BoxError = Box<dyn StdError + Sync + Send>;

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
            Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
            Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
            Type::FLOAT4 => number(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => number(f64::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw)?.map_or(Value::Null, number),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                Value::String(String::from_sql(ty, raw)?)
            }
            Type::TIMESTAMPTZ => Value::String(rfc3339(DateTime::<Utc>::from_sql(ty, raw)?)),
            // Read as UTC, as Grafana does.
            Type::TIMESTAMP => Value::String(rfc3339(NaiveDateTime::from_sql(ty, raw)?.and_utc())),
            Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
            _ => return Err(format!("type {ty} is not shown").into()),
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        ColumnKind::of(ty).is_some()
    }
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// PostgreSQL's binary `numeric`: ndigits, weight, sign, dscale (i16/u16
/// each), then ndigits base-10000 digits, the first worth 10000^weight.
/// Spelled out in decimal and parsed, so the f64 is the nearest to the
/// value. `None` for NaN and the infinities.
fn numeric(raw: &[u8]) -> Result<Option<f64>, BoxError> {
    let word = |at: usize| -> Result<u16, BoxError> {
        raw.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "numeric value is truncated".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    if raw.len() != 8 + 2 * ndigits {
        return Err(format!("numeric value has {} bytes for {ndigits} digits", raw.len()).into());
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        // NaN, +Infinity, -Infinity
        0xC000 | 0xD000 | 0xF000 => return Ok(None),
        other => return Err(format!("numeric sign {other:#x}").into()),
    };
    let digits = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    if digits.is_empty() {
        return Ok(Some(0.0));
    }
    let mut text = String::with_capacity(4 * ndigits + 8);
    if negative {
        text.push('-');
    }
    for d in &digits {
        text.push_str(&format!("{d:04}"));
    }
    // The digit groups as an integer, times 10^(4 * (weight + 1 - ndigits)).
    let exponent = 4 * (weight + 1 - ndigits as i64);
    text.push_str(&format!("e{exponent}"));
    Ok(Some(text.parse::<f64>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's binary numeric for a few values, as the server sends
    /// them (`SELECT numeric_send(v)`).
    fn numeric_bytes(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn decodes_numeric() {
        // 0.1234 (error_rate's round(…, 4))
        assert_eq!(
            numeric(&numeric_bytes(1, -1, 0, 4, &[1234])).ok(),
            Some(Some(0.1234))
        );
        // 12345.67
        assert_eq!(
            numeric(&numeric_bytes(3, 1, 0, 2, &[1, 2345, 6700])).ok(),
            Some(Some(12345.67))
        );
        // -0.00005
        assert_eq!(
            numeric(&numeric_bytes(1, -2, 0x4000, 5, &[5000])).ok(),
            Some(Some(-0.00005))
        );
        // 0 and NaN
        assert_eq!(
            numeric(&numeric_bytes(0, 0, 0, 0, &[])).ok(),
            Some(Some(0.0))
        );
        assert_eq!(
            numeric(&numeric_bytes(0, 0, 0xC000, 0, &[])).ok(),
            Some(None)
        );
        // 10000000000 (a large bytes sum)
        assert_eq!(
            numeric(&numeric_bytes(1, 2, 0, 0, &[100])).ok(),
            Some(Some(1e10))
        );
        assert!(numeric(&[0, 2, 0, 0]).is_err(), "truncated header");
        assert!(
            numeric(&numeric_bytes(2, 0, 0, 0, &[1])).is_err(),
            "missing digit"
        );
    }

    fn spec() -> DashboardSpec {
        DashboardSpec::builtin().expect("the built-in dashboard")
    }

    #[test]
    fn parses_the_pages_query() {
        let spec = spec();
        assert_eq!(
            PanelQuery::parse(None, &spec),
            Ok(PanelQuery {
                minutes: 60,
                search: None
            })
        );
        assert_eq!(
            PanelQuery::parse(Some("minutes=15&search=it%27s+a%20test&x=1"), &spec),
            Ok(PanelQuery {
                minutes: 15,
                search: Some("it's a test".into())
            })
        );
        for bad in ["minutes=0", "minutes=-5", "minutes=abc", "minutes=10081"] {
            assert!(
                matches!(
                    PanelQuery::parse(Some(bad), &spec),
                    Err(QueryError::BadMinutes(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            PanelQuery::parse(Some("search=a%00b"), &spec),
            Err(QueryError::NulInSearch)
        );
        let long = format!("search={}", "a".repeat(MAX_SEARCH_CHARS + 1));
        assert_eq!(
            PanelQuery::parse(Some(&long), &spec),
            Err(QueryError::SearchTooLong)
        );
    }

    #[test]
    fn the_report_has_the_shape_the_page_reads() {
        let report = PanelsReport {
            title: "logpipe".into(),
            from: "2026-01-01T10:00:00.000Z".into(),
            to: "2026-01-01T11:00:00.000Z".into(),
            minutes: 60,
            search: "error".into(),
            panels: vec![PanelData {
                id: 3,
                title: "Latency percentiles (ms)".into(),
                kind: "timeseries".into(),
                grid: GridPos {
                    x: 0,
                    y: 8,
                    w: 12,
                    h: 8,
                },
                columns: vec![
                    Column {
                        name: "time".into(),
                        kind: ColumnKind::Time,
                    },
                    Column {
                        name: "p50".into(),
                        kind: ColumnKind::Number,
                    },
                ],
                rows: vec![vec![
                    Value::from("2026-01-01T10:01:00.000Z"),
                    Value::from(12.5),
                ]],
                truncated: false,
                error: None,
            }],
        };
        assert_eq!(
            serde_json::to_value(&report).expect("serializes"),
            serde_json::json!({
                "title": "logpipe",
                "from": "2026-01-01T10:00:00.000Z",
                "to": "2026-01-01T11:00:00.000Z",
                "minutes": 60,
                "search": "error",
                "panels": [{
                    "id": 3,
                    "title": "Latency percentiles (ms)",
                    "kind": "timeseries",
                    "grid": {"x": 0, "y": 8, "w": 12, "h": 8},
                    "columns": [
                        {"name": "time", "type": "time"},
                        {"name": "p50", "type": "number"}
                    ],
                    "rows": [["2026-01-01T10:01:00.000Z", 12.5]],
                    "truncated": false,
                    "error": null
                }]
            })
        );
    }

    #[test]
    fn every_panel_of_the_builtin_dashboard_expands() {
        let now = Utc::now();
        for panel in spec().panels {
            let sql = expand(&panel.sql, now - chrono::Duration::hours(1), now, "it's")
                .unwrap_or_else(|e| panic!("{}: {e}", panel.title));
            assert!(!sql.contains('$'), "{}: {sql}", panel.title);
        }
    }

    #[test]
    fn json_cannot_hold_nan() {
        assert_eq!(number(f64::NAN), Value::Null);
        assert_eq!(number(f64::INFINITY), Value::Null);
        assert_eq!(number(1.5), Value::from(1.5));
    }
}
