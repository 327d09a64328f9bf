//! Weather-station readings.
//!
//! Twenty stations, each with its own climate (mean temperature, humidity,
//! wind). Per run, each station gets a weather state (today's offset, mean
//! wind and direction, pressure); readings add a diurnal cycle (by local
//! solar time) and small noise. Normal readings stay inside the default
//! thresholds: temperature 0.5..37.5 °C, humidity 30..85 %, wind 0..40 km/h,
//! pressure 995..1030 hPa. A `sensor_breach` pushes the target station's
//! readings past them (a heat wave, or a storm).

use std::f64::consts::PI;

use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;

use crate::rng::{Rng, cos, round_to};
use crate::{GeneratedRecord, Kind, Plan, rfc3339_ms};

pub(crate) struct Station {
    pub id: &'static str,
    pub name: &'static str,
    lat: f64,
    lon: f64,
    /// Mean temperature (°C).
    temp: f64,
    /// Mean relative humidity (%).
    humidity: f64,
    /// Mean wind speed (km/h).
    wind: f64,
}

const fn st(
    id: &'static str,
    name: &'static str,
    lat: f64,
    lon: f64,
    temp: f64,
    humidity: f64,
    wind: f64,
) -> Station {
    Station {
        id,
        name,
        lat,
        lon,
        temp,
        humidity,
        wind,
    }
}

pub(crate) const STATIONS: [Station; 20] = [
    st("st-001", "Berlin-Mitte", 52.52, 13.40, 11.0, 70.0, 12.0),
    st("st-002", "Hamburg-Hafen", 53.54, 9.97, 10.0, 78.0, 18.0),
    st("st-003", "Muenchen-Riem", 48.13, 11.70, 9.5, 72.0, 10.0),
    st("st-004", "Koeln-Deutz", 50.94, 6.97, 11.5, 74.0, 11.0),
    st(
        "st-005",
        "Frankfurt-Flughafen",
        50.03,
        8.56,
        11.0,
        71.0,
        12.0,
    ),
    st(
        "st-006",
        "Wien-Innere-Stadt",
        48.21,
        16.37,
        12.0,
        66.0,
        14.0,
    ),
    st("st-007", "Zuerich-Fluntern", 47.38, 8.57, 9.5, 74.0, 8.0),
    st("st-008", "Paris-Montsouris", 48.82, 2.34, 12.5, 70.0, 12.0),
    st("st-009", "Lyon-Bron", 45.72, 4.94, 13.0, 68.0, 10.0),
    st(
        "st-010",
        "Amsterdam-Schiphol",
        52.31,
        4.76,
        10.5,
        80.0,
        20.0,
    ),
    st("st-011", "Kobenhavn-Kastrup", 55.63, 12.65, 9.0, 79.0, 19.0),
    st("st-012", "Oslo-Blindern", 59.94, 10.72, 6.5, 72.0, 9.0),
    st("st-013", "Stockholm-Bromma", 59.35, 17.94, 7.5, 74.0, 12.0),
    st("st-014", "Helsinki-Kumpula", 60.20, 24.96, 6.0, 77.0, 14.0),
    st("st-015", "Warszawa-Okecie", 52.17, 20.97, 8.5, 76.0, 13.0),
    st("st-016", "Praha-Ruzyne", 50.10, 14.26, 8.5, 73.0, 14.0),
    st("st-017", "Madrid-Retiro", 40.41, -3.68, 15.5, 55.0, 9.0),
    st("st-018", "Lisboa-Geofisico", 38.72, -9.15, 17.5, 68.0, 15.0),
    st("st-019", "Roma-Ciampino", 41.80, 12.58, 16.0, 68.0, 10.0),
    st("st-020", "Athina-Elliniko", 37.89, 23.73, 19.5, 58.0, 16.0),
];

/// A station by id (`st-003`) or name (case-insensitive).
pub(crate) fn station_index(target: &str) -> Option<usize> {
    STATIONS
        .iter()
        .position(|s| s.id == target || s.name.eq_ignore_ascii_case(target))
}

/// Today's weather at one station.
struct State {
    temp_offset: f64,
    humidity_offset: f64,
    wind_mean: f64,
    wind_dir: f64,
    pressure: f64,
}

pub(crate) struct Weather {
    states: Vec<State>,
}

impl Weather {
    pub(crate) fn new(rng: &mut Rng) -> Weather {
        // A shared synoptic situation plus local variation.
        let regional_pressure = 1013.0 + 6.0 * rng.normal();
        let states = STATIONS
            .iter()
            .map(|s| State {
                temp_offset: 3.0 * rng.normal(),
                humidity_offset: 7.0 * rng.normal(),
                wind_mean: rng.log_normal(s.wind, 0.35),
                wind_dir: rng.range_f64(0.0, 360.0),
                pressure: regional_pressure + 3.0 * rng.normal(),
            })
            .collect();
        Weather { states }
    }
}

#[derive(Serialize)]
struct Location {
    lat: f64,
    lon: f64,
}

#[derive(Serialize)]
struct Reading<'a> {
    sensor_id: &'a str,
    station: &'a str,
    timestamp: String,
    temperature: f64,
    humidity: f64,
    wind_speed: f64,
    wind_direction: u32,
    pressure: f64,
    location: Location,
}

/// One reading of a station as JSON object text.
pub(crate) fn reading(
    plan: &Plan,
    rng: &mut Rng,
    station: usize,
    time: DateTime<Utc>,
    pos: f64,
) -> String {
    let s = &STATIONS[station % STATIONS.len()];
    let w = &plan.weather.states[station % STATIONS.len()];
    let hour = f64::from(time.num_seconds_from_midnight()) / 3600.0 + s.lon / 15.0;
    // Warmest around 15:00 local solar time, most humid around dawn.
    let day = cos(2.0 * PI * (hour - 15.0) / 24.0);
    let mut temperature =
        (s.temp + w.temp_offset + 4.5 * day + 0.3 * rng.normal()).clamp(0.5, 37.5);
    let mut humidity =
        (s.humidity + w.humidity_offset - 10.0 * day + 1.5 * rng.normal()).clamp(30.0, 85.0);
    let mut wind = (w.wind_mean * (1.0 + 0.25 * rng.normal())).clamp(0.0, 40.0);
    let mut pressure = (w.pressure + 0.2 * rng.normal()).clamp(995.0, 1030.0);
    match plan.breach(station, pos) {
        // Heat wave: hot and dry.
        Some(0) => {
            temperature = rng.range_f64(41.0, 47.0);
            humidity = rng.range_f64(14.0, 25.0);
        }
        // Storm: gale, deep low, saturated air.
        Some(_) => {
            wind = rng.range_f64(55.0, 95.0);
            pressure = rng.range_f64(962.0, 978.0);
            humidity = rng.range_f64(91.0, 99.0);
            temperature = (temperature - 3.0).max(0.5);
        }
        None => {}
    }
    let dir = (w.wind_dir + 15.0 * rng.normal()).rem_euclid(360.0);
    serde_json::to_string(&Reading {
        sensor_id: s.id,
        station: s.name,
        timestamp: rfc3339_ms(time),
        temperature: round_to(temperature, 1),
        humidity: round_to(humidity, 1),
        wind_speed: round_to(wind, 1),
        wind_direction: dir.floor() as u32 % 360,
        pressure: round_to(pressure, 1),
        location: Location {
            lat: s.lat,
            lon: s.lon,
        },
    })
    .unwrap_or_default()
}

pub(crate) fn record(
    plan: &Plan,
    rng: &mut Rng,
    station: usize,
    time: DateTime<Utc>,
    pos: f64,
) -> GeneratedRecord {
    let value = reading(plan, rng, station, time, pos);
    GeneratedRecord {
        kind: Kind::Sensor,
        key: STATIONS[station % STATIONS.len()].id.to_owned(),
        value,
        log_format: Kind::Sensor.log_format(),
        trace_id: None,
        event_time: time,
    }
}
