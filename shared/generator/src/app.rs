//! Application events, rendered as app JSON, Splunk HEC JSON or Splunk
//! key=value lines.
//!
//! Messages come from ~25 templates with variable parts (ids, amounts,
//! durations) so template mining has structure to find; the variable parts
//! are also logged as fields.

use crate::template::fill_placeholders;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::rng::{Rng, fnv1a, round_to};
use crate::web::{Endpoint, endpoints, route, sku, uuid};
use crate::{Effects, GeneratedRecord, Kind, Plan, rfc3339_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lvl {
    Debug,
    Info,
    Warn,
    Error,
}

impl Lvl {
    fn lower(self) -> &'static str {
        match self {
            Lvl::Debug => "debug",
            Lvl::Info => "info",
            Lvl::Warn => "warn",
            Lvl::Error => "error",
        }
    }

    fn upper(self) -> &'static str {
        match self {
            Lvl::Debug => "DEBUG",
            Lvl::Info => "INFO",
            Lvl::Warn => "WARN",
            Lvl::Error => "ERROR",
        }
    }
}

/// How long the logged operation took.
#[derive(Debug, Clone, Copy)]
enum Dur {
    /// Log-normal around this median (ms).
    Median(f64),
    /// Uniform in this range (ms): timeouts.
    Between(f64, f64),
}

/// A message template. Placeholders are `{field:kind}` or `{field:kind:arg}`;
/// the value also becomes a field of the event unless the field is `_`.
/// Kinds: `order`, `shipment`, `user`, `uuid`, `hex:N`, `sku`, `money`, `int:A-B`,
/// `pick:a|b|c`, `ms` (the event's duration), `route`, `call` (method and
/// route), `upstream`, `ip`, `key`.
struct Tpl {
    service: Option<&'static str>,
    level: Lvl,
    weight: f64,
    dur: Dur,
    text: &'static str,
}

const fn t(
    service: Option<&'static str>,
    level: Lvl,
    weight: f64,
    dur: Dur,
    text: &'static str,
) -> Tpl {
    Tpl {
        service,
        level,
        weight,
        dur,
        text,
    }
}

const CO: Option<&str> = Some("checkout");
const PA: Option<&str> = Some("payments");
const SE: Option<&str> = Some("search");
const AU: Option<&str> = Some("auth");
const IN: Option<&str> = Some("inventory");
const SH: Option<&str> = Some("shipping");
const ANY: Option<&str> = None;
use Dur::{Between, Median};

const TEMPLATES: &[Tpl] = &[
    t(
        CO,
        Lvl::Info,
        10.0,
        Median(60.0),
        "order {order_id:order} created for customer {customer_id:user} with {items:int:1-6} items total {amount:money} EUR",
    ),
    t(
        CO,
        Lvl::Info,
        12.0,
        Median(15.0),
        "cart {cart_id:hex:12} updated: added {sku:sku} quantity {quantity:int:1-3}",
    ),
    t(
        PA,
        Lvl::Info,
        10.0,
        Median(140.0),
        "payment {payment_id:uuid} authorized for {amount:money} {currency:pick:EUR|EUR|EUR|USD|GBP} via {provider:pick:adyen|stripe|paypal}",
    ),
    t(
        PA,
        Lvl::Info,
        8.0,
        Median(90.0),
        "payment {payment_id:uuid} captured in {_:ms} ms",
    ),
    t(
        SE,
        Lvl::Info,
        12.0,
        Median(45.0),
        "search query returned {hits:int:0-480} results in {_:ms} ms from index {index:pick:products-v7|products-v8}",
    ),
    t(
        SE,
        Lvl::Info,
        10.0,
        Median(8.0),
        "autocomplete served {suggestions:int:0-10} suggestions for prefix length {prefix_len:int:1-8}",
    ),
    t(
        AU,
        Lvl::Info,
        10.0,
        Median(70.0),
        "user {user_id:user} logged in via {auth_method:pick:password|sso|passkey|refresh_token}",
    ),
    t(
        AU,
        Lvl::Info,
        10.0,
        Median(12.0),
        "issued access token for client {client_id:pick:web-shop|ios-app|android-app|partner-api} expires in {expires_in:pick:900|3600} s",
    ),
    t(
        IN,
        Lvl::Info,
        12.0,
        Median(10.0),
        "stock level for {sku:sku} at warehouse {warehouse:pick:BER1|HAM2|MUC1|FRA3|WAW1} is {quantity:int:0-950}",
    ),
    t(
        IN,
        Lvl::Info,
        8.0,
        Median(35.0),
        "reservation {reservation_id:hex:10} holds {quantity:int:1-5} units of {sku:sku}",
    ),
    t(
        SH,
        Lvl::Info,
        10.0,
        Median(80.0),
        "shipment {shipment_id:shipment} handed to carrier {carrier:pick:DHL|UPS|DPD|GLS} tracking {tracking:hex:16}",
    ),
    t(
        SH,
        Lvl::Info,
        8.0,
        Median(55.0),
        "rate quote for zone {zone:int:1-9} computed: {amount:money} EUR",
    ),
    t(
        ANY,
        Lvl::Info,
        10.0,
        Median(25.0),
        "request completed: {_:call} status 200 in {_:ms} ms",
    ),
    t(
        ANY,
        Lvl::Info,
        5.0,
        Median(1.5),
        "cache {cache_result:pick:hit|hit|hit|miss} for key {cache_key:key}",
    ),
    t(
        ANY,
        Lvl::Info,
        4.0,
        Median(4.0),
        "published {event_type:pick:OrderCreated|PaymentCaptured|StockReserved|UserLoggedIn} event to topic {topic:pick:domain-events|audit} partition {partition:int:0-11}",
    ),
    t(
        ANY,
        Lvl::Debug,
        6.0,
        Median(6.0),
        "db query {query:pick:select_order_by_id|select_cart_items|update_stock|insert_audit_row} took {_:ms} ms rows={rows:int:0-250}",
    ),
    t(
        ANY,
        Lvl::Debug,
        3.0,
        Median(0.3),
        "feature flag {flag:pick:new-checkout-flow|fast-search|passkeys} evaluated to {flag_value:pick:true|false} for user {user_id:user}",
    ),
    t(
        ANY,
        Lvl::Warn,
        5.0,
        Median(900.0),
        "retrying call to {upstream:upstream} (attempt {attempt:int:2-3} of 3) after {error:pick:timeout|connection reset|503 Service Unavailable}",
    ),
    t(
        ANY,
        Lvl::Warn,
        3.0,
        Median(40.0),
        "connection pool {pool:pick:postgres-main|redis-cache} nearly exhausted: {pool_used:int:45-50}/50 in use",
    ),
    t(
        AU,
        Lvl::Warn,
        6.0,
        Median(90.0),
        "invalid credentials for user {user_id:user} from {client_ip:ip}",
    ),
    t(
        CO,
        Lvl::Warn,
        3.0,
        Median(20.0),
        "cart {cart_id:hex:12} contains unavailable {sku:sku}, removed",
    ),
    t(
        ANY,
        Lvl::Error,
        5.0,
        Median(300.0),
        "request failed: upstream {upstream:upstream} returned {upstream_status:pick:500|502|503|504} after {_:ms} ms",
    ),
    t(
        ANY,
        Lvl::Error,
        3.0,
        Between(5000.0, 5050.0),
        "database query {query:pick:select_order_by_id|select_cart_items|update_stock|insert_audit_row} timed out after {_:ms} ms",
    ),
    t(
        PA,
        Lvl::Error,
        6.0,
        Median(160.0),
        "payment {payment_id:uuid} declined by provider {provider:pick:adyen|stripe|paypal}: {decline_reason:pick:insufficient_funds|card_expired|do_not_honor|fraud_suspected}",
    ),
    t(
        ANY,
        Lvl::Error,
        2.0,
        Median(30.0),
        "unhandled exception in handler {route:route}: {exception:pick:IllegalStateException|NullPointerException|SerializationException}",
    ),
];

/// Used for slow requests (duration above 1 s), whatever the level draw.
const SLOW: Tpl = t(
    ANY,
    Lvl::Warn,
    0.0,
    Median(0.0),
    "slow request: {_:call} took {_:ms} ms (threshold 1000 ms)",
);

/// Templates that only a `new_template` anomaly uses.
const NOVEL: &[Tpl] = &[
    t(
        ANY,
        Lvl::Error,
        1.0,
        Median(2.0),
        "circuit breaker opened for upstream {upstream:upstream} after {failures:int:5-20} consecutive failures",
    ),
    t(
        ANY,
        Lvl::Error,
        1.0,
        Median(40.0),
        "TLS handshake with {upstream:upstream} failed: certificate expired {expired_days:int:1-9} days ago",
    ),
    t(
        ANY,
        Lvl::Warn,
        1.0,
        Median(5.0),
        "kafka consumer group {group:pick:orders-projector|stock-sync} rebalancing: partition {partition:int:0-11} revoked after session timeout",
    ),
    t(
        ANY,
        Lvl::Error,
        1.0,
        Median(3.0),
        "disk usage on volume {volume:pick:/var/lib/data|/tmp} above {disk_pct:int:95-99} percent, writes throttled",
    ),
];

/// The message prefix of each novel template, for tests.
#[cfg(test)]
pub(crate) fn novel_prefix(variant: usize) -> &'static str {
    let text = NOVEL[variant % NOVEL.len()].text;
    text.split('{').next().unwrap_or(text)
}

const INFRA_UPSTREAMS: &[&str] = &[
    "postgres-main",
    "redis-cache",
    "psp-gateway",
    "kafka-broker-2",
];

/// One application event, before rendering.
pub(crate) struct AppEvent {
    level: Lvl,
    message: String,
    duration_ms: f64,
    fields: Vec<(String, Value)>,
    host: String,
    trace_id: String,
    span_id: String,
    version: String,
}

/// Pod name and version of a service, stable across runs.
fn pod(rng: &mut Rng, service: &str) -> (String, String) {
    let h = fnv1a(service);
    let mut stable = Rng::new(h);
    let replica_set = stable.alnum(10);
    let pods: Vec<String> = (0..3).map(|_| stable.alnum(5)).collect();
    let version = format!("{}.{}.{}", 1 + h % 3, (h >> 8) % 30, (h >> 16) % 12);
    let name = rng.pick(&pods);
    (format!("{service}-{replica_set}-{name}"), version)
}

pub(crate) fn event(plan: &Plan, rng: &mut Rng, service: &str, effects: Effects) -> AppEvent {
    let (host, version) = pod(rng, service);
    let novel = effects
        .novel
        .filter(|_| rng.chance(0.5))
        .map(|v| &NOVEL[v % NOVEL.len()]);
    let tpl = match novel {
        Some(t) => t,
        None => {
            let level = if effects.error_burst && rng.chance(0.7) {
                Lvl::Error
            } else {
                *rng.pick_weighted(&[
                    (Lvl::Debug, 5.0),
                    (Lvl::Info, 86.5),
                    (Lvl::Warn, 7.0),
                    (Lvl::Error, 1.5),
                ])
            };
            let candidates: Vec<&Tpl> = TEMPLATES
                .iter()
                .filter(|t| t.level == level && t.service.is_none_or(|s| s == service))
                .collect();
            let weights: Vec<f64> = candidates.iter().map(|t| t.weight).collect();
            candidates[rng.weighted(&weights)]
        }
    };
    let mut duration = match tpl.dur {
        Median(m) => rng.log_normal(m, 0.8),
        Between(lo, hi) => rng.range_f64(lo, hi),
    };
    if effects.latency_spike {
        duration *= rng.range_f64(10.0, 18.0);
    }
    let duration_ms = round_to(duration.max(0.1), 1);
    let tpl = if tpl.level == Lvl::Info && duration_ms > 1000.0 && rng.chance(0.5) {
        &SLOW
    } else {
        tpl
    };
    let (message, fields) = render(plan, rng, service, tpl.text, duration_ms);
    AppEvent {
        level: tpl.level,
        message,
        duration_ms,
        fields,
        host,
        trace_id: rng.hex(32),
        span_id: rng.hex(16),
        version,
    }
}

/// Fills a template; returns the message and the fields it names.
fn render(
    plan: &Plan,
    rng: &mut Rng,
    service: &str,
    text: &str,
    duration_ms: f64,
) -> (String, Vec<(String, Value)>) {
    let mut fields = Vec::new();
    let message = fill_placeholders(text, |spec, message| {
        let mut parts = spec.splitn(3, ':');
        let name = parts.next().unwrap_or("_");
        let kind = parts.next().unwrap_or("");
        let arg = parts.next().unwrap_or("");
        if kind == "call" {
            // `METHOD /route` of one of the service's endpoints.
            let calls: Vec<&Endpoint> = endpoints(service)
                .iter()
                .filter(|e| e.path != "/health")
                .collect();
            let e = rng.pick(&calls);
            let r = route(e.path);
            message.push_str(&format!("{} {r}", e.method));
            fields.push(("method".to_owned(), Value::from(e.method)));
            fields.push(("route".to_owned(), Value::from(r)));
            return;
        }
        let value = placeholder(plan, rng, service, kind, arg, duration_ms);
        match &value {
            Value::String(s) => message.push_str(s),
            other => message.push_str(&other.to_string()),
        }
        if name != "_" {
            fields.push((name.to_owned(), value));
        }
    });
    (message, fields)
}

fn placeholder(
    plan: &Plan,
    rng: &mut Rng,
    service: &str,
    kind: &str,
    arg: &str,
    duration_ms: f64,
) -> Value {
    match kind {
        "order" => Value::from(format!("ORD-{}", rng.digits(8))),
        "shipment" => Value::from(format!("SHP-{}", rng.digits(9))),
        "user" => Value::from(format!("u-{}", rng.digits(6))),
        "uuid" => Value::from(uuid(rng)),
        "hex" => Value::from(rng.hex(arg.parse().unwrap_or(8))),
        "sku" => Value::from(sku(rng)),
        "money" => Value::from(round_to(rng.log_normal(45.0, 0.8).clamp(1.5, 2500.0), 2)),
        "int" => {
            let (lo, hi) = arg.split_once('-').unwrap_or(("0", "9"));
            let lo = lo.parse().unwrap_or(0);
            let hi = hi.parse().unwrap_or(lo).max(lo);
            Value::from(rng.range(lo, hi))
        }
        "pick" => {
            let options: Vec<&str> = arg.split('|').collect();
            Value::from(*rng.pick(&options))
        }
        "ms" => Value::from(duration_ms.round() as u64),
        "route" => {
            let routes: Vec<String> = endpoints(service)
                .iter()
                .filter(|e| e.path != "/health")
                .map(|e| route(e.path))
                .collect();
            Value::from(rng.pick(&routes).clone())
        }
        "upstream" => {
            let mut options: Vec<&str> = plan
                .services
                .iter()
                .map(String::as_str)
                .filter(|s| *s != service)
                .collect();
            options.extend_from_slice(INFRA_UPSTREAMS);
            Value::from(*rng.pick(&options))
        }
        "ip" => Value::from(format!(
            "{}.{}",
            rng.pick(&["192.0.2", "198.51.100", "203.0.113"]),
            rng.range(2, 254)
        )),
        "key" => Value::from(match rng.index(3) {
            0 => format!("product:{}", sku(rng)),
            1 => format!("session:{}", rng.hex(16)),
            _ => format!("price:{}", sku(rng)),
        }),
        _ => Value::from(kind),
    }
}

/// Application JSON, keys in the usual logger order.
#[derive(Serialize)]
struct AppJson<'a> {
    timestamp: String,
    level: &'static str,
    service: &'a str,
    host: &'a str,
    message: &'a str,
    trace_id: &'a str,
    span_id: &'a str,
    duration_ms: f64,
    version: &'a str,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

fn field_map(ev: &AppEvent) -> Map<String, Value> {
    ev.fields.iter().cloned().collect()
}

fn app_struct<'a>(ev: &'a AppEvent, service: &'a str, time: DateTime<Utc>) -> AppJson<'a> {
    AppJson {
        timestamp: rfc3339_ms(time),
        level: ev.level.lower(),
        service,
        host: &ev.host,
        message: &ev.message,
        trace_id: &ev.trace_id,
        span_id: &ev.span_id,
        duration_ms: ev.duration_ms,
        version: &ev.version,
        fields: field_map(ev),
    }
}

/// The event as application JSON text (also a batch element).
pub(crate) fn app_json(ev: &AppEvent, service: &str, time: DateTime<Utc>) -> String {
    serde_json::to_string(&app_struct(ev, service, time)).unwrap_or_default()
}

#[derive(Serialize)]
struct Hec<'a> {
    time: f64,
    host: &'a str,
    source: &'a str,
    sourcetype: &'static str,
    index: &'static str,
    event: Value,
    fields: Value,
}

fn hec(rng: &mut Rng, ev: &AppEvent, service: &str, time: DateTime<Utc>) -> String {
    let (sourcetype, event) = if rng.chance(0.7) {
        let mut obj = Map::new();
        obj.insert("level".into(), Value::from(ev.level.lower()));
        obj.insert("message".into(), Value::from(ev.message.as_str()));
        obj.insert("trace_id".into(), Value::from(ev.trace_id.as_str()));
        obj.insert("duration_ms".into(), Value::from(ev.duration_ms));
        obj.extend(field_map(ev));
        ("_json", Value::Object(obj))
    } else {
        (
            "app:log",
            Value::from(format!(
                "{} {} trace_id={}",
                ev.level.upper(),
                ev.message,
                ev.trace_id
            )),
        )
    };
    serde_json::to_string(&Hec {
        time: time.timestamp_millis() as f64 / 1000.0,
        host: &ev.host,
        source: service,
        sourcetype,
        index: "main",
        event,
        fields: serde_json::json!({"env": "prod", "region": "eu-central-1"}),
    })
    .unwrap_or_default()
}

/// A Splunk value: bare when safe, else quoted with `\"` / `\\` escapes.
fn kv_value(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => return other.to_string(),
    };
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'=');
    if bare {
        s
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn splunk_kv(ev: &AppEvent, service: &str, time: DateTime<Utc>) -> String {
    let mut line = format!(
        "{} host={} source={service} sourcetype=app:kv level={} msg={} duration_ms={} trace_id={}",
        rfc3339_ms(time),
        ev.host,
        ev.level.upper(),
        kv_value(&Value::from(ev.message.as_str())),
        ev.duration_ms,
        ev.trace_id
    );
    for (k, v) in &ev.fields {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&kv_value(v));
    }
    line
}

pub(crate) fn record(
    plan: &Plan,
    rng: &mut Rng,
    kind: Kind,
    service: &str,
    effects: Effects,
    time: DateTime<Utc>,
) -> GeneratedRecord {
    let ev = event(plan, rng, service, effects);
    let value = match kind {
        Kind::SplunkHec => hec(rng, &ev, service, time),
        Kind::SplunkKv => splunk_kv(&ev, service, time),
        _ => app_json(&ev, service, time),
    };
    let kind = match kind {
        Kind::SplunkHec | Kind::SplunkKv => kind,
        _ => Kind::AppJson,
    };
    GeneratedRecord {
        kind,
        key: service.to_owned(),
        value,
        log_format: kind.log_format(),
        trace_id: Some(ev.trace_id),
        event_time: time,
    }
}
