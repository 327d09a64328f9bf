use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeZone;
use logpipe_schema::{Level, LogRecord, SourceType, parse};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn two_minutes() -> Duration {
    Duration::minutes(2)
}

fn request(count: usize, seed: u64) -> GenerateRequest {
    GenerateRequest {
        count,
        seed: Some(seed),
        ..GenerateRequest::default()
    }
}

fn run(req: &GenerateRequest) -> Vec<GeneratedRecord> {
    generate(req, t0(), two_minutes()).unwrap()
}

fn parse_all(r: &GeneratedRecord) -> Vec<LogRecord> {
    parse(&r.value, Some(r.log_format), r.event_time)
        .unwrap_or_else(|e| panic!("{:?} record does not parse: {e}\n{}", r.kind, r.value))
}

fn parse_one(r: &GeneratedRecord) -> LogRecord {
    let mut rows = parse_all(r);
    assert_eq!(rows.len(), 1, "{}", r.value);
    rows.remove(0)
}

fn share(hits: usize, total: usize) -> f64 {
    assert!(total > 0, "no records to measure");
    hits as f64 / total as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty(), "no values for a median");
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Records whose position i/count lies in [from, to).
fn in_window(recs: &[GeneratedRecord], from: f64, to: f64) -> Vec<&GeneratedRecord> {
    let n = recs.len() as f64;
    recs.iter()
        .enumerate()
        .filter(|(i, _)| {
            let pos = *i as f64 / n;
            pos >= from && pos < to
        })
        .map(|(_, r)| r)
        .collect()
}

fn outside_window(recs: &[GeneratedRecord], from: f64, to: f64) -> Vec<&GeneratedRecord> {
    let n = recs.len() as f64;
    recs.iter()
        .enumerate()
        .filter(|(i, _)| {
            let pos = *i as f64 / n;
            pos < from || pos >= to
        })
        .map(|(_, r)| r)
        .collect()
}

#[test]
fn same_seed_same_output_different_seed_differs() {
    let a = run(&request(500, 42));
    let b = run(&request(500, 42));
    assert_eq!(a, b);
    let c = run(&request(500, 43));
    assert_ne!(a, c);
    let differing = a.iter().zip(&c).filter(|(x, y)| x.value != y.value).count();
    assert!(differing > 450, "only {differing} of 500 differ");

    // No seed: derived from the start time (reproducible, different per run).
    let unseeded = GenerateRequest::default();
    let x = generate(&unseeded, t0(), two_minutes()).unwrap();
    let y = generate(&unseeded, t0(), two_minutes()).unwrap();
    let z = generate(&unseeded, t0() + two_minutes(), two_minutes()).unwrap();
    assert_eq!(x, y);
    assert_ne!(
        x.iter().map(|r| &r.key).collect::<Vec<_>>(),
        z.iter().map(|r| &r.key).collect::<Vec<_>>()
    );
}

#[test]
fn pinned_output_never_changes() {
    // Guards "same seed ⇒ same output forever": if this fails, seeded runs
    // recorded elsewhere no longer reproduce. Update only deliberately.
    let out = run(&request(50, 1));
    let digest = out
        .iter()
        .map(|r| rng::fnv1a(&format!("{}|{}|{}", r.key, r.value, r.event_time)))
        .fold(0u64, |h, x| h.rotate_left(5) ^ x);
    assert_eq!(
        digest, PINNED_DIGEST,
        "digest {digest:#x}, first record {:?}",
        out[0]
    );
}

const PINNED_DIGEST: u64 = 0x8907_b96e_afde_90bc;

#[test]
fn times_are_ordered_and_inside_the_span() {
    let start = t0() + Duration::milliseconds(250);
    let out = generate(&request(2_000, 5), start, two_minutes()).unwrap();
    for w in out.windows(2) {
        assert!(
            w[0].event_time <= w[1].event_time,
            "{:?} > {:?}",
            w[0],
            w[1]
        );
    }
    assert!(out[0].event_time >= start);
    assert!(out.last().unwrap().event_time <= start + two_minutes());
    let spread = out.last().unwrap().event_time - out[0].event_time;
    assert!(spread > Duration::seconds(110), "{spread:?}");

    // A zero span is fine; a negative one is not.
    let flat = generate(&request(10, 5), t0(), Duration::zero()).unwrap();
    assert!(flat.iter().all(|r| r.event_time == t0()));
    assert!(matches!(
        generate(&request(10, 5), t0(), Duration::seconds(-1)),
        Err(GenerateError::BadSpan(_))
    ));
}

#[test]
fn every_record_parses_as_its_format() {
    let out = run(&GenerateRequest {
        all_formats: true,
        ..request(6_000, 2024)
    });
    let mut kinds = BTreeSet::new();
    let mut web_status = Vec::new();
    let mut web_latency = Vec::new();
    let mut app_levels = Vec::new();
    let mut templates = BTreeSet::new();
    for r in &out {
        kinds.insert(r.kind);
        assert_eq!(r.log_format, r.kind.log_format());
        let rows = parse_all(r);
        for row in &rows {
            assert_ne!(row.source_type, SourceType::Generic, "{}", r.value);
        }
        // Sniffing without the header reaches the same parser.
        let sniffed = parse(&r.value, None, r.event_time).unwrap();
        assert_eq!(
            sniffed.iter().map(|x| x.source_type).collect::<Vec<_>>(),
            rows.iter().map(|x| x.source_type).collect::<Vec<_>>(),
            "{}",
            r.value
        );
        if r.kind == Kind::Batch {
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            let elements = v["data"].as_array().unwrap().len();
            assert!((3..=5).contains(&elements));
            assert_eq!(rows.len(), elements);
            assert_eq!(v["batch_size"], elements);
            for row in &rows {
                assert!(row.event_time <= r.event_time);
                assert!(matches!(
                    row.source_type,
                    SourceType::Sensor | SourceType::AppJson
                ));
            }
            continue;
        }
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        let written = match r.kind {
            Kind::WebAccess | Kind::Sap | Kind::SyslogFile | Kind::NginxError => {
                trunc_s(r.event_time)
            }
            _ => trunc_ms(r.event_time),
        };
        assert_eq!(row.event_time, written, "{}", r.value);
        let expected = match r.kind {
            Kind::WebAccess => SourceType::WebAccess,
            Kind::AppJson => SourceType::AppJson,
            Kind::SplunkHec => SourceType::SplunkHec,
            Kind::SplunkKv => SourceType::SplunkKv,
            Kind::Sap => SourceType::SapSyslog,
            Kind::Sensor => SourceType::Sensor,
            Kind::Syslog => SourceType::Syslog5424,
            Kind::SyslogFile => SourceType::SyslogFile,
            Kind::Log4j => SourceType::Log4j,
            Kind::Logfmt => SourceType::Logfmt,
            Kind::NginxError => SourceType::NginxError,
            Kind::Cef => SourceType::Cef,
            Kind::Batch => unreachable!(),
        };
        assert_eq!(row.source_type, expected, "{}", r.value);
        match r.kind {
            Kind::AppJson | Kind::SplunkHec | Kind::SplunkKv => {
                assert_eq!(row.service.as_deref(), Some(r.key.as_str()), "{}", r.value);
                assert!(row.level.is_some(), "{}", r.value);
                assert!(r.trace_id.is_some());
                if r.kind == Kind::AppJson {
                    app_levels.push(row.level.unwrap());
                    assert!(row.metrics.contains_key("duration_ms"));
                    let shape: String = row
                        .message
                        .split(' ')
                        .map(|w| {
                            if w.chars().any(|c| c.is_ascii_digit()) {
                                "<*>"
                            } else {
                                w
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    templates.insert(shape.chars().take(25).collect::<String>());
                }
            }
            Kind::WebAccess => {
                let http = row.http.as_ref().unwrap();
                web_status.push(http.status.unwrap());
                web_latency.push(http.latency_ms.unwrap());
                assert!(
                    http.client_ip.is_some() && http.method.is_some() && http.user_agent.is_some()
                );
            }
            Kind::Sensor => {
                assert_eq!(row.host.as_deref(), Some(r.key.as_str()));
                for m in ["temperature", "humidity", "wind_speed", "pressure"] {
                    assert!(row.metrics.contains_key(m), "{m}: {}", r.value);
                }
            }
            Kind::Sap => {
                assert_eq!(row.service.as_deref(), Some(r.key.as_str()));
                assert!(row.attributes.contains_key("msgid"));
            }
            Kind::Syslog | Kind::SyslogFile | Kind::Cef => {
                assert_eq!(row.host.as_deref(), Some(r.key.as_str()), "{}", r.value);
                assert!(row.service.is_some(), "{}", r.value);
            }
            Kind::Log4j | Kind::Logfmt => {
                assert!(row.level.is_some(), "{}", r.value);
                // Spring Boot's layout and logfmt name the service; the
                // classic log4j layout does not.
                if r.kind == Kind::Logfmt || r.value.contains(" --- [") {
                    assert_eq!(row.service.as_deref(), Some(r.key.as_str()), "{}", r.value);
                }
            }
            Kind::NginxError => {
                assert_eq!(row.service.as_deref(), Some("nginx"));
                assert!(row.level.is_some(), "{}", r.value);
            }
            Kind::Batch => {}
        }
    }
    assert_eq!(kinds.len(), Kind::ALL.len(), "{kinds:?}");

    // Realism of the baseline.
    let n = web_status.len();
    let ok = share(
        web_status
            .iter()
            .filter(|s| (200..300).contains(*s))
            .count(),
        n,
    );
    let redirect = share(
        web_status
            .iter()
            .filter(|s| (300..400).contains(*s))
            .count(),
        n,
    );
    let client = share(
        web_status
            .iter()
            .filter(|s| (400..500).contains(*s))
            .count(),
        n,
    );
    let server = share(web_status.iter().filter(|s| **s >= 500).count(), n);
    assert!((0.90..0.96).contains(&ok), "2xx {ok}");
    assert!((0.005..0.04).contains(&redirect), "3xx {redirect}");
    assert!((0.02..0.06).contains(&client), "4xx {client}");
    assert!((0.005..0.03).contains(&server), "5xx {server}");
    let p50 = median(web_latency.clone());
    assert!((20.0..80.0).contains(&p50), "p50 {p50} ms");
    web_latency.sort_by(f64::total_cmp);
    let p99 = web_latency[web_latency.len() * 99 / 100];
    assert!(p99 > 4.0 * p50, "long tail: p99 {p99} vs p50 {p50}");
    let errors = share(
        app_levels.iter().filter(|l| **l >= Level::Error).count(),
        app_levels.len(),
    );
    let infos = share(
        app_levels.iter().filter(|l| **l == Level::Info).count(),
        app_levels.len(),
    );
    assert!((0.005..0.03).contains(&errors), "app errors {errors}");
    assert!(infos > 0.75, "app info {infos}");
    assert!(
        templates.len() >= 15,
        "{} templates: {templates:?}",
        templates.len()
    );
}

#[test]
fn mix_is_respected() {
    let out = run(&request(5_000, 9));
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for r in &out {
        *counts.entry(r.kind).or_default() += 1;
    }
    for k in Kind::ALL {
        let got = share(counts.get(&k).copied().unwrap_or(0), out.len());
        let want = k.default_weight() / 100.0;
        assert!((got - want).abs() < 0.025, "{k:?}: {got} vs {want}");
    }
    for k in Kind::TEXT_FILES {
        assert!(!counts.contains_key(&k), "{k:?} is not in the default mix");
    }
    // all_formats: every kind, the text-file formats 3 % each, the others
    // in the default's proportions.
    let all = run(&GenerateRequest {
        all_formats: true,
        ..request(8_000, 9)
    });
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for r in &all {
        *counts.entry(r.kind).or_default() += 1;
    }
    let mix = all_formats_mix();
    assert!((mix.values().sum::<f64>() - 100.0).abs() < 1e-9);
    for k in Kind::ALL {
        let got = share(counts.get(&k).copied().unwrap_or(0), all.len());
        let want = mix[&k] / 100.0;
        assert!((got - want).abs() < 0.02, "{k:?}: {got} vs {want}");
    }

    for only in Kind::ALL {
        let req = GenerateRequest {
            mix: Some(BTreeMap::from([(only, 3.0)])),
            ..request(300, 1)
        };
        assert!(run(&req).iter().all(|r| r.kind == only), "{only:?}");
    }

    let req = GenerateRequest {
        mix: Some(BTreeMap::from([
            (Kind::Sap, 1.0),
            (Kind::Syslog, 3.0),
            (Kind::WebAccess, 0.0),
        ])),
        ..request(4_000, 3)
    };
    let out = run(&req);
    let sap = share(
        out.iter().filter(|r| r.kind == Kind::Sap).count(),
        out.len(),
    );
    assert!((sap - 0.25).abs() < 0.025, "{sap}");
    assert!(
        out.iter()
            .all(|r| matches!(r.kind, Kind::Sap | Kind::Syslog))
    );
}

#[test]
fn custom_services_are_used() {
    let req = GenerateRequest {
        services: Some(vec!["billing".into(), "ledger".into()]),
        mix: Some(BTreeMap::from([
            (Kind::WebAccess, 1.0),
            (Kind::AppJson, 1.0),
        ])),
        ..request(400, 4)
    };
    let keys: BTreeSet<String> = run(&req).into_iter().map(|r| r.key).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["billing".to_owned(), "ledger".to_owned()])
    );
}

#[test]
fn validation() {
    let bad_count = |count| request(count, 1).validate();
    assert!(matches!(
        bad_count(0),
        Err(GenerateError::CountOutOfRange { count: 0, .. })
    ));
    assert!(matches!(
        bad_count(100_001),
        Err(GenerateError::CountOutOfRange { count: 100_001, .. })
    ));
    assert!(bad_count(1).is_ok() && bad_count(100_000).is_ok());
    assert!(matches!(
        generate(&request(0, 1), t0(), two_minutes()),
        Err(GenerateError::CountOutOfRange { .. })
    ));

    let with_mix = |pairs: &[(Kind, f64)]| GenerateRequest {
        mix: Some(pairs.iter().copied().collect()),
        ..request(10, 1)
    };
    assert!(matches!(
        GenerateRequest {
            all_formats: true,
            ..with_mix(&[(Kind::Cef, 1.0)])
        }
        .validate(),
        Err(GenerateError::BadMix(_))
    ));
    for pairs in [
        &[(Kind::WebAccess, -1.0), (Kind::AppJson, 5.0)][..],
        &[(Kind::WebAccess, 0.0), (Kind::AppJson, 0.0)],
        &[],
        &[(Kind::Sap, f64::NAN)],
        &[(Kind::Sap, f64::INFINITY)],
    ] {
        assert!(
            matches!(with_mix(pairs).validate(), Err(GenerateError::BadMix(_))),
            "{pairs:?}"
        );
    }
    assert!(
        with_mix(&[(Kind::WebAccess, 0.0), (Kind::AppJson, 0.5)])
            .validate()
            .is_ok()
    );

    let with_anomaly = |a: Anomaly| GenerateRequest {
        anomalies: vec![a],
        ..request(10, 1)
    };
    let base = Anomaly::new(AnomalyKind::ErrorBurst);
    for (share, start) in [
        (0.0, 0.5),
        (-0.1, 0.5),
        (1.01, 0.0),
        (f64::NAN, 0.5),
        (0.2, 1.0),
        (0.2, -0.01),
        (0.2, f64::INFINITY),
    ] {
        let a = Anomaly {
            share,
            start,
            ..base.clone()
        };
        assert!(
            matches!(
                with_anomaly(a).validate(),
                Err(GenerateError::BadAnomaly(_))
            ),
            "share {share} start {start}"
        );
    }
    assert!(
        with_anomaly(Anomaly {
            share: 1.0,
            start: 0.0,
            ..base.clone()
        })
        .validate()
        .is_ok()
    );
    let unknown = Anomaly {
        target: Some("nope".into()),
        ..base.clone()
    };
    assert!(matches!(
        with_anomaly(unknown).validate(),
        Err(GenerateError::BadAnomaly(_))
    ));
    let station = Anomaly {
        kind: AnomalyKind::SensorBreach,
        target: Some("checkout".into()),
        ..base.clone()
    };
    assert!(matches!(
        with_anomaly(station).validate(),
        Err(GenerateError::BadAnomaly(_))
    ));
    for ok in ["st-012", "Oslo-Blindern", "oslo-blindern"] {
        let a = Anomaly {
            kind: AnomalyKind::SensorBreach,
            target: Some(ok.into()),
            ..base.clone()
        };
        assert!(with_anomaly(a).validate().is_ok(), "{ok}");
    }

    for services in [
        vec![],
        vec!["a b".to_owned()],
        vec!["x".into(), "x".into()],
        vec![String::new()],
    ] {
        let req = GenerateRequest {
            services: Some(services.clone()),
            ..request(10, 1)
        };
        assert!(
            matches!(req.validate(), Err(GenerateError::BadServices(_))),
            "{services:?}"
        );
    }
}

#[test]
fn request_json() {
    let req: GenerateRequest = serde_json::from_str(
        r#"{"seed":7,"mix":{"web_access":2,"sensor":1},"anomalies":[{"kind":"latency_spike","target":"search"}]}"#,
    )
    .unwrap();
    assert_eq!(req.count, 100);
    assert_eq!(req.seed, Some(7));
    assert_eq!(req.mix.as_ref().unwrap()[&Kind::WebAccess], 2.0);
    assert_eq!(req.anomalies[0].share, 0.2);
    assert_eq!(req.anomalies[0].start, 0.5);
    assert_eq!(req.anomalies[0].target.as_deref(), Some("search"));
    assert!(req.validate().is_ok());
    let empty: GenerateRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, GenerateRequest::default());

    for bad in [
        r#"{"mix":{"web_access":1,"mainframe":2}}"#,
        r#"{"count":5,"colour":"blue"}"#,
        r#"{"anomalies":[{"kind":"error_burst","length":3}]}"#,
        r#"{"anomalies":[{"kind":"meteor_strike"}]}"#,
        r#"{"count":-1}"#,
    ] {
        assert!(
            serde_json::from_str::<GenerateRequest>(bad).is_err(),
            "{bad}"
        );
    }
}

/// The same seed with and without one anomaly (window [0.5, 0.7)).
fn pair(anomaly: Anomaly, req: GenerateRequest) -> (Vec<GeneratedRecord>, Vec<GeneratedRecord>) {
    let base = run(&req);
    let with = run(&GenerateRequest {
        anomalies: vec![anomaly],
        ..req
    });
    assert_eq!(base.len(), with.len());
    (base, with)
}

fn is_error(r: &GeneratedRecord) -> bool {
    parse_one(r).level.is_some_and(|l| l >= Level::Error)
}

fn is_5xx(r: &GeneratedRecord) -> bool {
    parse_one(r)
        .http
        .and_then(|h| h.status)
        .is_some_and(|s| s >= 500)
}

fn of<'a>(recs: &[&'a GeneratedRecord], kind: Kind, key: &str) -> Vec<&'a GeneratedRecord> {
    recs.iter()
        .copied()
        .filter(|r| r.kind == kind && r.key == key)
        .collect()
}

fn rate(recs: &[&GeneratedRecord], f: fn(&GeneratedRecord) -> bool) -> f64 {
    share(recs.iter().filter(|r| f(r)).count(), recs.len())
}

#[test]
fn error_burst_raises_error_and_5xx_rates_of_the_target() {
    let (base, with) = pair(Anomaly::new(AnomalyKind::ErrorBurst), request(10_000, 11));
    let target = "checkout"; // first service
    let (bw, ww) = (in_window(&base, 0.5, 0.7), in_window(&with, 0.5, 0.7));

    let app_base = rate(&of(&bw, Kind::AppJson, target), is_error);
    let app_with = rate(&of(&ww, Kind::AppJson, target), is_error);
    assert!(app_with >= 0.5, "app error share in window {app_with}");
    assert!(app_base < 0.05, "baseline app error share {app_base}");

    let web_base = rate(&of(&bw, Kind::WebAccess, target), is_5xx);
    let web_with = rate(&of(&ww, Kind::WebAccess, target), is_5xx);
    assert!(web_with >= 0.4, "web 5xx share in window {web_with}");
    assert!(web_base < 0.05, "baseline web 5xx share {web_base}");

    // Not outside the window, not for other services.
    let outside = outside_window(&with, 0.5, 0.7);
    assert!(rate(&of(&outside, Kind::AppJson, target), is_error) < 0.05);
    assert!(rate(&of(&outside, Kind::WebAccess, target), is_5xx) < 0.05);
    assert!(rate(&of(&ww, Kind::WebAccess, "payments"), is_5xx) < 0.05);
}

#[test]
fn latency_spike_multiplies_the_targets_latency() {
    let anomaly = Anomaly {
        target: Some("search".into()),
        ..Anomaly::new(AnomalyKind::LatencySpike)
    };
    let (base, with) = pair(anomaly, request(5_000, 12));
    let web_of = |recs: &[&GeneratedRecord], service: &str| {
        median(
            of(recs, Kind::WebAccess, service)
                .iter()
                .map(|r| parse_one(r).http.unwrap().latency_ms.unwrap())
                .collect(),
        )
    };
    let app = |recs: &[&GeneratedRecord]| {
        median(
            of(recs, Kind::AppJson, "search")
                .iter()
                .map(|r| parse_one(r).metrics["duration_ms"])
                .collect(),
        )
    };
    let web = |recs: &[&GeneratedRecord]| web_of(recs, "search");
    let (bw, ww) = (in_window(&base, 0.5, 0.7), in_window(&with, 0.5, 0.7));
    let web_ratio = web(&ww) / web(&bw);
    let app_ratio = app(&ww) / app(&bw);
    assert!(web_ratio >= 5.0, "web latency median ×{web_ratio}");
    assert!(app_ratio >= 5.0, "app duration median ×{app_ratio}");
    let (bo, wo) = (
        outside_window(&base, 0.5, 0.7),
        outside_window(&with, 0.5, 0.7),
    );
    let outside_ratio = web(&wo) / web(&bo);
    assert!(
        (0.7..1.4).contains(&outside_ratio),
        "outside ×{outside_ratio}"
    );
    let other = web_of(&ww, "checkout") / web_of(&bw, "checkout");
    assert!(other < 2.0, "other service ×{other}");
}

#[test]
fn volume_drop_removes_the_targets_records() {
    let anomaly = Anomaly {
        target: Some("payments".into()),
        start: 0.3,
        share: 0.4,
        ..Anomaly::new(AnomalyKind::VolumeDrop)
    };
    let (base, with) = pair(anomaly, request(5_000, 13));
    let target_share = |recs: &[&GeneratedRecord]| {
        share(
            recs.iter().filter(|r| r.key == "payments").count(),
            recs.len(),
        )
    };
    let before = target_share(&in_window(&base, 0.3, 0.7));
    let during = target_share(&in_window(&with, 0.3, 0.7));
    assert!(before > 0.1, "baseline share {before}");
    assert!(
        during <= 0.2 * before,
        "share {during} vs baseline {before}: drop < 80%"
    );
    let outside = target_share(&outside_window(&with, 0.3, 0.7));
    assert!(outside > 0.8 * before, "outside the window {outside}");
    // The kind mix is unchanged: the slots went to other services.
    let web = |recs: &[GeneratedRecord]| recs.iter().filter(|r| r.kind == Kind::WebAccess).count();
    assert!((web(&base) as f64 - web(&with) as f64).abs() < 100.0);
}

#[test]
fn new_template_appears_only_in_the_window() {
    let anomaly = Anomaly {
        target: Some("auth".into()),
        ..Anomaly::new(AnomalyKind::NewTemplate)
    };
    let (base, with) = pair(anomaly, request(5_000, 14));
    let prefix = app::novel_prefix(0);
    assert_eq!(prefix, "circuit breaker opened for upstream ");
    let novel = |r: &GeneratedRecord| {
        matches!(r.kind, Kind::AppJson | Kind::SplunkHec | Kind::SplunkKv)
            && parse_one(r).message.contains(prefix.trim_end())
    };
    assert_eq!(base.iter().filter(|r| novel(r)).count(), 0);
    let n = with.len() as f64;
    let hits: Vec<usize> = (0..with.len()).filter(|i| novel(&with[*i])).collect();
    assert!(hits.len() >= 10, "only {} novel messages", hits.len());
    for i in &hits {
        let pos = *i as f64 / n;
        assert!((0.5..0.7).contains(&pos), "novel message at position {pos}");
        assert_eq!(with[*i].key, "auth");
    }
    let window_app = of(&in_window(&with, 0.5, 0.7), Kind::AppJson, "auth");
    let novel_share = rate(&window_app, |r| {
        parse_one(r).message.starts_with("circuit breaker")
    });
    assert!(
        novel_share >= 0.25,
        "novel share of the target's app messages {novel_share}"
    );
}

/// Sensor readings (top-level and batch elements) with their position.
fn readings(recs: &[GeneratedRecord]) -> Vec<(f64, LogRecord)> {
    let n = recs.len() as f64;
    recs.iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.kind, Kind::Sensor | Kind::Batch))
        .flat_map(|(i, r)| parse_all(r).into_iter().map(move |row| (i as f64 / n, row)))
        .filter(|(_, row)| row.source_type == SourceType::Sensor)
        .collect()
}

fn breaches(row: &LogRecord) -> bool {
    let m = &row.metrics;
    m["temperature"] > 40.0
        || m["humidity"] > 90.0
        || m["wind_speed"] > 50.0
        || m["pressure"] < 980.0
}

/// Any default sensor threshold, warnings included.
fn alerts(row: &LogRecord) -> bool {
    let m = &row.metrics;
    breaches(row) || m["temperature"] < 0.0 || m["humidity"] < 20.0 || m["pressure"] > 1040.0
}

#[test]
fn sensor_breach_only_for_the_target_inside_the_window() {
    let req = GenerateRequest {
        mix: Some(BTreeMap::from([(Kind::Sensor, 3.0), (Kind::Batch, 1.0)])),
        ..request(5_000, 0)
    };
    let mut styles = BTreeSet::new();
    for (seed, target) in [
        (21, None),
        (22, Some("st-012")),
        (23, Some("Oslo-Blindern")),
        (24, Some("athina-elliniko")),
    ] {
        let anomaly = Anomaly {
            target: target.map(str::to_owned),
            ..Anomaly::new(AnomalyKind::SensorBreach)
        };
        let (base, with) = pair(
            anomaly,
            GenerateRequest {
                seed: Some(seed),
                ..req.clone()
            },
        );
        let id = match target {
            None => "st-001",
            Some(t) => sensor::STATIONS[sensor::station_index(t).unwrap()].id,
        };
        assert!(
            readings(&base).iter().all(|(_, r)| !alerts(r)),
            "baseline alerts"
        );
        let mut inside = 0;
        for (pos, row) in readings(&with) {
            let target_in_window = row.host.as_deref() == Some(id) && (0.5..0.7).contains(&pos);
            assert_eq!(breaches(&row), target_in_window, "{pos} {}", row.raw);
            if target_in_window {
                inside += 1;
                styles.insert(row.metrics["temperature"] > 40.0);
            }
        }
        assert!(inside >= 10, "{inside} target readings in the window");
    }
    assert_eq!(styles.len(), 2, "both heat and storm breaches seen");
}

#[test]
fn default_mix_baseline_sensor_values_are_in_range() {
    let out = run(&GenerateRequest {
        mix: Some(BTreeMap::from([(Kind::Sensor, 1.0)])),
        ..request(3_000, 77)
    });
    let rows = readings(&out);
    let stations: BTreeSet<_> = rows.iter().filter_map(|(_, r)| r.host.clone()).collect();
    assert_eq!(stations.len(), 20);
    for (_, r) in &rows {
        let m = &r.metrics;
        assert!((30.0..=85.0).contains(&m["humidity"]), "{}", r.raw);
        assert!((0.0..=40.0).contains(&m["wind_speed"]), "{}", r.raw);
        assert!((995.0..=1030.0).contains(&m["pressure"]), "{}", r.raw);
        assert!(!alerts(r), "{}", r.raw);
    }
}
