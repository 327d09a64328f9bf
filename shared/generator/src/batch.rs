//! Batch envelopes `{source, timestamp, batch_size, data:[…]}`: edge gateways
//! forwarding the readings of their stations, and mobile SDKs uploading
//! buffered app events.

use chrono::{DateTime, Duration, Utc};

use crate::rng::Rng;
use crate::sensor::{self, STATIONS};
use crate::{GeneratedRecord, Kind, Plan, app, rfc3339_ms};

/// Stations per edge gateway (gateway g serves stations 5g..5g+4).
const STATIONS_PER_GATEWAY: usize = 5;
const APP_SOURCES: &[&str] = &["mobile-sdk-ios", "mobile-sdk-android"];

pub(crate) fn record(plan: &Plan, rng: &mut Rng, time: DateTime<Utc>, pos: f64) -> GeneratedRecord {
    let n = rng.range(3, 5) as usize;
    // Elements were collected over the preceding seconds, oldest first.
    let mut ages: Vec<i64> = (0..n).map(|_| rng.range(0, 30_000) as i64).collect();
    ages.sort_unstable_by(|a, b| b.cmp(a));
    let times: Vec<DateTime<Utc>> = ages
        .iter()
        .map(|ms| time - Duration::milliseconds(*ms))
        .collect();

    let mut data = Vec::with_capacity(n);
    let source = if rng.chance(0.4) {
        let source = *rng.pick(APP_SOURCES);
        for t in &times {
            let Some(s) = plan.pick_service(rng, pos) else {
                data.clear();
                break;
            };
            let service = &plan.services[s];
            let ev = app::event(plan, rng, service, plan.effects(service, pos));
            data.push(app::app_json(&ev, service, *t));
        }
        source.to_owned()
    } else {
        String::new()
    };
    let source = if data.is_empty() {
        let gateways = STATIONS.len() / STATIONS_PER_GATEWAY;
        let g = rng.index(gateways);
        let mut stations: Vec<usize> =
            (g * STATIONS_PER_GATEWAY..(g + 1) * STATIONS_PER_GATEWAY).collect();
        // Partial Fisher-Yates: n distinct stations of this gateway.
        for i in 0..n {
            let j = i + rng.index(stations.len() - i);
            stations.swap(i, j);
        }
        for (station, t) in stations.iter().zip(&times) {
            data.push(sensor::reading(plan, rng, *station, *t, pos));
        }
        format!("edge-gw-{:02}", g + 1)
    } else {
        source
    };

    let value = format!(
        "{{\"source\":\"{source}\",\"timestamp\":\"{}\",\"batch_size\":{},\"data\":[{}]}}",
        rfc3339_ms(time),
        data.len(),
        data.join(",")
    );
    GeneratedRecord {
        kind: Kind::Batch,
        key: source,
        value,
        log_format: Kind::Batch.log_format(),
        trace_id: None,
        event_time: time,
    }
}
