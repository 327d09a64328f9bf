//! Web access logs: Combined Log Format plus nginx `$request_time`.

use crate::template::fill_placeholders;
use chrono::{DateTime, Utc};

use crate::rng::Rng;
use crate::{Effects, GeneratedRecord, Kind, Plan};

/// One route of a service.
pub(crate) struct Endpoint {
    pub method: &'static str,
    /// Path template; `{x}` placeholders are filled by [`fill_path`].
    pub path: &'static str,
    pub weight: f64,
    /// Median latency in seconds.
    pub latency: f64,
    /// Median response size in bytes for a 200.
    pub size: f64,
}

const fn ep(
    method: &'static str,
    path: &'static str,
    weight: f64,
    latency: f64,
    size: f64,
) -> Endpoint {
    Endpoint {
        method,
        path,
        weight,
        latency,
        size,
    }
}

const HEALTH: Endpoint = ep("GET", "/health", 6.0, 0.002, 15.0);

const CHECKOUT: &[Endpoint] = &[
    ep("GET", "/api/v1/cart", 20.0, 0.030, 1800.0),
    ep("POST", "/api/v1/cart/items", 12.0, 0.045, 420.0),
    ep("DELETE", "/api/v1/cart/items/{sku}", 3.0, 0.035, 0.0),
    ep("POST", "/api/v1/checkout", 8.0, 0.120, 950.0),
    ep("GET", "/api/v1/orders/{id}", 15.0, 0.040, 2400.0),
    ep("GET", "/api/v1/orders?page={page}", 6.0, 0.070, 9800.0),
    HEALTH,
];
const PAYMENTS: &[Endpoint] = &[
    ep("POST", "/api/v1/payments", 12.0, 0.180, 610.0),
    ep("GET", "/api/v1/payments/{uuid}", 10.0, 0.030, 720.0),
    ep("POST", "/api/v1/payments/{uuid}/capture", 6.0, 0.150, 540.0),
    ep("POST", "/api/v1/refunds", 2.0, 0.160, 480.0),
    ep("POST", "/webhooks/psp", 4.0, 0.025, 20.0),
    HEALTH,
];
const SEARCH: &[Endpoint] = &[
    ep(
        "GET",
        "/api/v1/search?q={q}&page={page}",
        30.0,
        0.060,
        14500.0,
    ),
    ep("GET", "/api/v1/suggest?q={prefix}", 20.0, 0.012, 650.0),
    ep("GET", "/api/v1/products/{sku}", 15.0, 0.025, 5200.0),
    HEALTH,
];
const AUTH: &[Endpoint] = &[
    ep("POST", "/oauth/token", 15.0, 0.080, 1250.0),
    ep("POST", "/api/v1/login", 8.0, 0.110, 900.0),
    ep("POST", "/api/v1/logout", 3.0, 0.015, 0.0),
    ep("GET", "/api/v1/me", 12.0, 0.018, 540.0),
    ep("GET", "/.well-known/jwks.json", 4.0, 0.004, 1650.0),
    HEALTH,
];
const INVENTORY: &[Endpoint] = &[
    ep("GET", "/api/v1/stock/{sku}", 25.0, 0.020, 310.0),
    ep("PUT", "/api/v1/stock/{sku}", 5.0, 0.050, 320.0),
    ep(
        "GET",
        "/api/v1/warehouses/{wh}/stock?page={page}",
        4.0,
        0.140,
        22000.0,
    ),
    ep("POST", "/api/v1/reservations", 8.0, 0.060, 380.0),
    HEALTH,
];
const SHIPPING: &[Endpoint] = &[
    ep("POST", "/api/v1/shipments", 6.0, 0.090, 700.0),
    ep(
        "GET",
        "/api/v1/shipments/{id}/tracking",
        15.0,
        0.050,
        2100.0,
    ),
    ep("GET", "/api/v1/rates?zip={zip}", 10.0, 0.070, 860.0),
    HEALTH,
];
const GENERIC: &[Endpoint] = &[
    ep("GET", "/api/v1/items/{id}", 20.0, 0.030, 1500.0),
    ep("GET", "/api/v1/items?page={page}", 8.0, 0.060, 8200.0),
    ep("POST", "/api/v1/items", 5.0, 0.060, 500.0),
    ep("PUT", "/api/v1/items/{id}", 3.0, 0.050, 500.0),
    ep("DELETE", "/api/v1/items/{id}", 1.0, 0.040, 0.0),
    HEALTH,
];

pub(crate) fn endpoints(service: &str) -> &'static [Endpoint] {
    match service {
        "checkout" => CHECKOUT,
        "payments" => PAYMENTS,
        "search" => SEARCH,
        "auth" => AUTH,
        "inventory" => INVENTORY,
        "shipping" => SHIPPING,
        _ => GENERIC,
    }
}

const SEARCH_TERMS: &[&str] = &[
    "running+shoes",
    "rain+jacket",
    "usb-c+cable",
    "coffee+grinder",
    "wireless+headphones",
    "yoga+mat",
    "standing+desk",
    "led+bulb",
    "backpack",
    "water+bottle",
];
const WAREHOUSES: &[&str] = &["BER1", "HAM2", "MUC1", "FRA3", "WAW1"];

/// Fills a path template's placeholders with plausible values.
pub(crate) fn fill_path(rng: &mut Rng, template: &str) -> String {
    fill_placeholders(template, |name, out| match name {
        "id" => out.push_str(&rng.digits(7)),
        "uuid" => out.push_str(&uuid(rng)),
        "sku" => out.push_str(&sku(rng)),
        "q" => out.push_str(rng.pick::<&str>(SEARCH_TERMS)),
        "prefix" => {
            let term = rng.pick(SEARCH_TERMS);
            let n = rng.range(2, 4) as usize;
            out.push_str(&term[..n.min(term.len())]);
        }
        "page" => out.push_str(
            &rng.pick_weighted(&[(1, 6.0), (2, 2.0), (3, 1.0), (4, 0.5), (5, 0.5)])
                .to_string(),
        ),
        "wh" => out.push_str(rng.pick::<&str>(WAREHOUSES)),
        "zip" => out.push_str(&rng.digits(5)),
        other => out.push_str(other),
    })
}

/// The route of a path template as an app logs it: `/api/v1/orders/:id`.
pub(crate) fn route(template: &str) -> String {
    let path = template.split('?').next().unwrap_or(template);
    path.replace('{', ":").replace('}', "")
}

pub(crate) fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        rng.hex(8),
        rng.hex(4),
        rng.hex(3),
        rng.pick(&["8", "9", "a", "b"]),
        rng.hex(3),
        rng.hex(12)
    )
}

pub(crate) fn sku(rng: &mut Rng) -> String {
    format!("SKU-{}", rng.digits(5))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ClientType {
    Browser,
    MobileApp,
    Internal,
}

const BROWSER_AGENTS: &[(&str, f64)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        30.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
        12.0,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        5.0,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
        20.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
        15.0,
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        2.0,
    ),
];
const APP_AGENTS: &[(&str, f64)] = &[
    ("ShopApp/5.12.1 (iPhone; iOS 17.4.1; Scale/3.00)", 5.0),
    ("ShopApp/5.12.0 (Android 14; SM-S911B)", 4.0),
    ("okhttp/4.12.0", 2.0),
];
const INTERNAL_AGENTS: &[(&str, f64)] = &[
    ("Go-http-client/2.0", 5.0),
    ("python-requests/2.31.0", 2.0),
    ("Apache-HttpClient/4.5.14 (Java/17.0.10)", 2.0),
    ("curl/8.5.0", 1.0),
];
const PROBE_AGENT: &str = "kube-probe/1.29";
const REFERER_PAGES: &[&str] = &["", "cart", "checkout", "account", "search?q=shoes", "deals"];

/// A returning client: one address, one user agent.
pub(crate) struct Client {
    ip: String,
    agent: &'static str,
    kind: ClientType,
}

/// The run's client population: a few hundred clients from a few dozen /24s
/// (the three documentation ranges for the public internet, 10.x inside),
/// with Zipf-like activity.
pub(crate) struct Clients {
    clients: Vec<Client>,
    weights: Vec<f64>,
}

impl Clients {
    pub(crate) fn new(rng: &mut Rng) -> Clients {
        let public = ["192.0.2", "198.51.100", "203.0.113"];
        let private: Vec<String> = (0..33)
            .map(|_| format!("10.{}.{}", rng.range(0, 31), rng.range(0, 255)))
            .collect();
        let mut clients = Vec::with_capacity(300);
        for _ in 0..300 {
            let kind = *rng.pick_weighted(&[
                (ClientType::Browser, 55.0),
                (ClientType::MobileApp, 25.0),
                (ClientType::Internal, 20.0),
            ]);
            let (subnet, agent) = match kind {
                ClientType::Browser => (
                    (*rng.pick(&public)).to_owned(),
                    *rng.pick_weighted(BROWSER_AGENTS),
                ),
                ClientType::MobileApp => (
                    (*rng.pick(&public)).to_owned(),
                    *rng.pick_weighted(APP_AGENTS),
                ),
                ClientType::Internal => (
                    rng.pick(&private).clone(),
                    *rng.pick_weighted(INTERNAL_AGENTS),
                ),
            };
            let ip = format!("{subnet}.{}", rng.range(2, 254));
            clients.push(Client { ip, agent, kind });
        }
        let weights = (0..clients.len())
            .map(|i| 1.0 / (1.0 + i as f64).sqrt())
            .collect();
        Clients { clients, weights }
    }

    fn pick(&self, rng: &mut Rng) -> &Client {
        &self.clients[rng.weighted(&self.weights)]
    }
}

/// An HTTP status for a request; `burst` is an active error burst.
fn status(rng: &mut Rng, e: &Endpoint, burst: bool) -> u16 {
    let server_error = [(500, 3.0), (502, 2.0), (503, 4.0), (504, 1.0)];
    if burst && rng.chance(0.6) {
        return *rng.pick_weighted(&server_error);
    }
    if e.path == "/health" {
        return if rng.chance(0.998) { 200 } else { 503 };
    }
    let u = rng.f64();
    let get = e.method == "GET";
    if u < 0.015 {
        *rng.pick_weighted(&server_error)
    } else if u < 0.055 {
        if get {
            *rng.pick_weighted(&[(404, 6.0), (401, 2.0), (403, 1.0), (429, 1.0), (400, 0.5)])
        } else {
            *rng.pick_weighted(&[(400, 3.0), (422, 3.0), (401, 2.0), (409, 1.5), (429, 1.0)])
        }
    } else if u < 0.075 {
        if get {
            *rng.pick_weighted(&[(304, 6.0), (302, 2.0), (301, 1.0)])
        } else {
            303
        }
    } else {
        match e.method {
            _ if e.size == 0.0 => 204,
            "DELETE" => 204,
            "POST" if creates(e.path) => 201,
            _ => 200,
        }
    }
}

/// POST routes that create a resource (201 Created).
fn creates(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/cart/items"
            | "/api/v1/checkout"
            | "/api/v1/payments"
            | "/api/v1/refunds"
            | "/api/v1/reservations"
            | "/api/v1/shipments"
            | "/api/v1/items"
    )
}

pub(crate) fn record(
    plan: &Plan,
    rng: &mut Rng,
    service: &str,
    service_index: usize,
    effects: Effects,
    time: DateTime<Utc>,
) -> GeneratedRecord {
    let table = endpoints(service);
    let weights: Vec<f64> = table.iter().map(|e| e.weight).collect();
    let e = &table[rng.weighted(&weights)];
    let health = e.path == "/health";
    let (ip, agent, client_kind) = if health {
        (
            format!("10.{}.0.{}", 40 + service_index % 200, rng.range(2, 9)),
            PROBE_AGENT,
            ClientType::Internal,
        )
    } else {
        let c = plan.web.pick(rng);
        (c.ip.clone(), c.agent, c.kind)
    };
    let path = fill_path(rng, e.path);
    let protocol = if client_kind == ClientType::Browser && rng.chance(0.6) {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    };
    let status = status(rng, e, effects.error_burst);

    let mut latency = rng.log_normal(e.latency, 0.75);
    latency = match status {
        504 => rng.range_f64(30.0, 30.05),
        500..=599 => latency * rng.range_f64(0.3, 2.0),
        400..=499 => latency * 0.4,
        300..=399 => latency * 0.3,
        _ => latency,
    };
    if effects.latency_spike {
        latency *= rng.range_f64(10.0, 18.0);
    }
    let latency = latency.min(60.0);

    let bytes = match status {
        204 | 304 => 0,
        301..=303 => rng.range(150, 190),
        400..=499 => rng.range(60, 260),
        500..=599 => rng.range(150, 600),
        201 => rng.range(200, 900),
        _ => rng.log_normal(e.size.max(20.0), 0.5).round() as u64,
    };
    let referer = if client_kind == ClientType::Browser && e.method == "GET" && rng.chance(0.45) {
        format!("https://shop.example.com/{}", rng.pick(REFERER_PAGES))
    } else {
        "-".to_owned()
    };
    let value = format!(
        "{ip} - - [{}] \"{} {path} {protocol}\" {status} {bytes} \"{referer}\" \"{agent}\" {latency:.3}",
        time.format("%d/%b/%Y:%H:%M:%S %z"),
        e.method,
    );
    GeneratedRecord {
        kind: Kind::WebAccess,
        key: service.to_owned(),
        value,
        log_format: Kind::WebAccess.log_format(),
        trace_id: None,
        event_time: time,
    }
}
