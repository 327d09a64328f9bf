//! The panels to show, read from a Grafana dashboard model (by default the
//! project's `infra/grafana/logpipe.json`, embedded at build time, so the
//! local page and Grafana draw the same queries).

use serde::Serialize;

/// The Grafana dashboard this crate was built with.
pub const GRAFANA_DASHBOARD: &str = include_str!("../../../infra/grafana/logpipe.json");

/// Why a dashboard model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the dashboard is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the dashboard has no panels array")]
    NoPanels,
    #[error("panel {index}: {what}")]
    Panel { index: usize, what: String },
}

/// Where a panel sits on Grafana's 24-column grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GridPos {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// One panel: its SQL still has the macros in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelSpec {
    pub id: u64,
    pub title: String,
    /// Grafana's panel type: `timeseries`, `barchart`, `table`, `stat`, …
    pub kind: String,
    pub grid: GridPos,
    pub sql: String,
}

/// The panels plus the dashboard's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardSpec {
    pub title: String,
    pub panels: Vec<PanelSpec>,
    /// The `search` text box's current value.
    pub default_search: String,
    /// The time range's length, from `time.from` (`now-1h`, `now-15m`, …).
    pub default_minutes: u32,
}

impl DashboardSpec {
    /// The embedded `infra/grafana/logpipe.json`.
    pub fn builtin() -> Result<Self, SpecError> {
        Self::from_grafana_json(GRAFANA_DASHBOARD)
    }

    pub fn from_grafana_json(text: &str) -> Result<Self, SpecError> {
        let model: serde_json::Value = serde_json::from_str(text)?;
        let raw = model["panels"].as_array().ok_or(SpecError::NoPanels)?;
        let mut panels = Vec::with_capacity(raw.len());
        for (index, p) in raw.iter().enumerate() {
            let bad = |what: &str| SpecError::Panel {
                index,
                what: what.to_string(),
            };
            let grid = &p["gridPos"];
            let cell = |k: &str| grid[k].as_u64().and_then(|v| u32::try_from(v).ok());
            panels.push(PanelSpec {
                id: p["id"].as_u64().ok_or_else(|| bad("no numeric id"))?,
                title: p["title"]
                    .as_str()
                    .ok_or_else(|| bad("no title"))?
                    .to_string(),
                kind: p["type"]
                    .as_str()
                    .ok_or_else(|| bad("no type"))?
                    .to_string(),
                grid: GridPos {
                    x: cell("x").unwrap_or(0),
                    y: cell("y").unwrap_or(0),
                    w: cell("w").unwrap_or(12),
                    h: cell("h").unwrap_or(8),
                },
                sql: p["targets"][0]["rawSql"]
                    .as_str()
                    .ok_or_else(|| bad("no targets[0].rawSql"))?
                    .to_string(),
            });
        }
        let default_search = model["templating"]["list"]
            .as_array()
            .and_then(|vars| vars.iter().find(|v| v["name"] == "search"))
            .and_then(|v| v["current"]["value"].as_str().or(v["query"].as_str()))
            .unwrap_or_default()
            .to_string();
        let default_minutes = model["time"]["from"]
            .as_str()
            .and_then(relative_minutes)
            .unwrap_or(60);
        Ok(Self {
            title: model["title"].as_str().unwrap_or("logpipe").to_string(),
            panels,
            default_search,
            default_minutes,
        })
    }
}

/// `now-15m` → 15, `now-6h` → 360, `now-2d` → 2880.
fn relative_minutes(from: &str) -> Option<u32> {
    let spec = from.strip_prefix("now-")?;
    let unit_at = spec.find(|c: char| !c.is_ascii_digit())?;
    let n: u32 = spec[..unit_at].parse().ok()?;
    let per = match &spec[unit_at..] {
        "m" => 1,
        "h" => 60,
        "d" => 1440,
        _ => return None,
    };
    n.checked_mul(per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_dashboard() {
        let spec = DashboardSpec::builtin().expect("infra/grafana/logpipe.json is usable");
        assert_eq!(spec.default_search, "error");
        assert_eq!(spec.default_minutes, 60);
        assert_eq!(spec.panels.len(), 8);
        let first = &spec.panels[0];
        assert_eq!(first.kind, "timeseries");
        assert_eq!(first.title, "Error rate per minute, per service");
        assert_eq!(
            first.grid,
            GridPos {
                x: 0,
                y: 0,
                w: 12,
                h: 8
            }
        );
        assert!(first.sql.contains("$__timeFrom()"), "{}", first.sql);
    }

    #[test]
    fn names_what_a_panel_lacks() {
        let err = DashboardSpec::from_grafana_json(
            r#"{"panels": [{"id": 1, "title": "t", "type": "table", "targets": []}]}"#,
        )
        .expect_err("no SQL");
        assert_eq!(err.to_string(), "panel 0: no targets[0].rawSql");
        assert!(matches!(
            DashboardSpec::from_grafana_json("{}"),
            Err(SpecError::NoPanels)
        ));
    }

    #[test]
    fn relative_ranges() {
        assert_eq!(relative_minutes("now-15m"), Some(15));
        assert_eq!(relative_minutes("now-6h"), Some(360));
        assert_eq!(relative_minutes("now-2d"), Some(2880));
        assert_eq!(relative_minutes("now/d"), None);
        assert_eq!(relative_minutes("now-1w"), None);
    }
}
