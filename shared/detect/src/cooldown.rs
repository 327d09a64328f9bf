//! Alert dedup / cooldown: one incident = one alert per (key, entity).
//!
//! The key is the detector (plus rule, see [`crate::model::alert_key`]).
//! A firing in window `w` emits only if no incident is open, i.e. the last
//! firing for the pair was at least `cooldown_windows` clear windows ago —
//! or, through [`Cooldown::fire_ranked`], if it outranks everything the open
//! incident has reported so far (an incident opened by a latency outlier
//! does not swallow the error-rate alert that follows it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, alert_key};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub opened: DateTime<Utc>,
    pub last_firing: DateTime<Utc>,
    pub firings: u64,
    /// Highest rank reported for this incident (see [`Cooldown::fire_ranked`];
    /// 0 for incidents saved before ranks existed).
    #[serde(default)]
    pub rank: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    pub window_secs: i64,
    pub cooldown_windows: i64,
    /// Key: `"<key>|<entity>"`.
    pub incidents: BTreeMap<String, Incident>,
}

impl Cooldown {
    pub fn new(window_secs: i64, cooldown_windows: i64) -> Cooldown {
        Cooldown {
            window_secs: window_secs.max(1),
            cooldown_windows: cooldown_windows.max(0),
            incidents: BTreeMap::new(),
        }
    }

    /// Records a firing in the window starting at `window_start`; returns
    /// whether to emit an alert (true only for a new incident).
    pub fn fire(&mut self, key: &str, entity: &str, window_start: DateTime<Utc>) -> bool {
        self.fire_ranked(key, entity, window_start, 0)
    }

    /// [`Cooldown::fire`] for a finding of `rank`: within an open incident it
    /// emits too when `rank` is higher than any the incident reported (an
    /// escalation, which raises the incident's rank); otherwise it only
    /// extends the incident.
    pub fn fire_ranked(
        &mut self,
        key: &str,
        entity: &str,
        window_start: DateTime<Utc>,
        rank: u8,
    ) -> bool {
        let k = format!("{key}|{entity}");
        let w = self.window_secs.max(1);
        if let Some(inc) = self.incidents.get_mut(&k) {
            let gap_windows = (window_start - inc.last_firing).num_seconds().div_euclid(w);
            let clear_windows = gap_windows - 1;
            if clear_windows < self.cooldown_windows {
                inc.last_firing = inc.last_firing.max(window_start);
                inc.firings = inc.firings.saturating_add(1);
                if rank > inc.rank {
                    inc.rank = rank;
                    return true;
                }
                return false;
            }
        }
        self.incidents.insert(
            k,
            Incident {
                opened: window_start,
                last_firing: window_start,
                firings: 1,
                rank,
            },
        );
        true
    }

    /// Keeps only the alerts that open a new incident.
    pub fn filter(&mut self, alerts: Vec<Alert>) -> Vec<Alert> {
        alerts
            .into_iter()
            .filter(|a| {
                let key = alert_key(&a.detector, a.rule.as_deref());
                self.fire(&key, &a.entity, a.window_start)
            })
            .collect()
    }

    /// Forgets incidents whose cooldown has expired by `now` (bounds state).
    pub fn prune(&mut self, now: DateTime<Utc>) {
        // Saturating: both settings come from the environment.
        let horizon = self
            .window_secs
            .saturating_mul(self.cooldown_windows.saturating_add(1));
        self.incidents
            .retain(|_, inc| (now - inc.last_firing).num_seconds() <= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::t;
    use chrono::Duration;

    #[test]
    fn one_incident_one_alert() {
        let mut c = Cooldown::new(60, 3);
        let t0 = t("2026-11-22T10:00:00Z");
        let w = |i: i64| t0 + Duration::minutes(i);
        // firing for 10 consecutive windows: one emit
        let emits = (0..10)
            .filter(|&i| c.fire("error_rate", "checkout", w(i)))
            .count();
        assert_eq!(emits, 1);
        // another entity is independent
        assert!(c.fire("error_rate", "cart", w(5)));
        // 2 clear windows (10, 11): still the same incident
        assert!(!c.fire("error_rate", "checkout", w(12)));
        // 3 clear windows (13..=15): a new incident
        assert!(c.fire("error_rate", "checkout", w(16)));
        // out-of-order firing belongs to the open incident
        assert!(!c.fire("error_rate", "checkout", w(14)));
        c.prune(w(100));
        assert!(c.incidents.is_empty());
        let back: Cooldown = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_higher_ranked_finding_escalates_an_open_incident_once() {
        let mut c = Cooldown::new(60, 3);
        let t0 = t("2026-11-22T10:00:00Z");
        let w = |i: i64| t0 + Duration::minutes(i);
        assert!(c.fire_ranked("incident", "checkout", w(0), 2));
        // the same or a lower rank while open: part of the incident
        assert!(!c.fire_ranked("incident", "checkout", w(1), 2));
        assert!(!c.fire_ranked("incident", "checkout", w(1), 1));
        // a higher rank: reported, once
        assert!(c.fire_ranked("incident", "checkout", w(2), 5));
        assert!(!c.fire_ranked("incident", "checkout", w(3), 5));
        assert!(!c.fire_ranked("incident", "checkout", w(3), 2));
        assert_eq!(c.incidents["incident|checkout"].firings, 6);
        // incidents saved without a rank load as rank 0
        let old = r#"{"window_secs":60,"cooldown_windows":3,"incidents":{"incident|x":
            {"opened":"2026-11-22T10:00:00Z","last_firing":"2026-11-22T10:00:00Z","firings":1}}}"#;
        let mut back: Cooldown = serde_json::from_str(old).unwrap();
        assert!(back.fire_ranked("incident", "x", w(1), 1));
    }
}
