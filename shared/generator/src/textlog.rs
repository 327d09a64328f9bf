//! Plain-text formats written to files and shipped line by line: syslog
//! files (`Mmm dd hh:mm:ss host program[pid]: msg`), log4j / Spring Boot,
//! logfmt, nginx error logs and ArcSight CEF from a firewall. Each line
//! carries the record's time in the format's own layout and precision.

use chrono::{DateTime, Utc};

use crate::rng::Rng;
use crate::template::fill_placeholders;
use crate::{Effects, GeneratedRecord, Kind};

const HOSTS: &[&str] = &[
    "bastion-01",
    "k8s-node-01",
    "k8s-node-02",
    "k8s-node-03",
    "db-primary-01",
];
const WEB_HOSTS: &[&str] = &["web-01", "web-02", "web-03"];
const FIREWALLS: &[&str] = &["fw-edge-01", "fw-edge-02"];

/// Common placeholders: `{ip}` internal address, `{pubip}` external,
/// `{port}`, `{n}`, `{ms}`, `{hex}`, `{user}`, `{order}`, `{route}`,
/// `{unit}`.
fn fill(rng: &mut Rng, text: &str) -> String {
    fill_placeholders(text, |name, out| match name {
        "ip" => out.push_str(&format!("10.0.{}.{}", rng.range(0, 15), rng.range(2, 254))),
        "pubip" => out.push_str(&format!(
            "{}.{}.{}.{}",
            rng.pick(&[45u64, 81, 103, 185, 193, 203]),
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(1, 254)
        )),
        "port" => out.push_str(&rng.range(1024, 65_000).to_string()),
        "n" => out.push_str(&rng.range(1, 500).to_string()),
        "ms" => out.push_str(&(rng.log_normal(40.0, 0.8).round() as u64).to_string()),
        "hex" => out.push_str(&rng.hex(12)),
        "user" => out.push_str(&format!("u-{}", rng.digits(5))),
        "order" => out.push_str(&format!("ORD-{}", rng.digits(8))),
        "route" => out.push_str(rng.pick::<&str>(&[
            "/api/cart",
            "/api/orders",
            "/api/search",
            "/api/payments/authorize",
            "/api/items",
        ])),
        "unit" => out.push_str(rng.pick::<&str>(&[
            "nginx.service",
            "kubelet.service",
            "logrotate.service",
            "postgresql.service",
        ])),
        other => {
            out.push('{');
            out.push_str(other);
            out.push('}');
        }
    })
}

fn record(kind: Kind, key: &str, value: String, time: DateTime<Utc>) -> GeneratedRecord {
    GeneratedRecord {
        kind,
        key: key.to_owned(),
        value,
        log_format: kind.log_format(),
        trace_id: None,
        event_time: time,
    }
}

/// (program, weight, message) of the syslog files.
const SYSLOG_FILE: &[(&str, f64, &str)] = &[
    (
        "sshd",
        10.0,
        "Failed password for invalid user admin from {pubip} port {port} ssh2",
    ),
    (
        "sshd",
        6.0,
        "Accepted publickey for deploy from {ip} port {port} ssh2",
    ),
    (
        "sshd",
        3.0,
        "pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)",
    ),
    (
        "CRON",
        8.0,
        "(root) CMD (cd / && run-parts --report /etc/cron.hourly)",
    ),
    ("systemd", 8.0, "Started {unit}."),
    ("systemd", 3.0, "{unit}: Deactivated successfully."),
    (
        "kernel",
        2.0,
        "[UFW BLOCK] IN=eth0 OUT= SRC={pubip} DST={ip} PROTO=TCP SPT={port} DPT=22",
    ),
    (
        "sudo",
        2.0,
        "deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl restart {unit}",
    ),
];

/// A syslog-file line, BSD timestamp (whole seconds, day space-padded).
pub(crate) fn syslog_file(rng: &mut Rng, time: DateTime<Utc>) -> GeneratedRecord {
    let host = *rng.pick(HOSTS);
    let weights: Vec<f64> = SYSLOG_FILE.iter().map(|(_, w, _)| *w).collect();
    let (program, _, text) = SYSLOG_FILE[rng.weighted(&weights)];
    let text = fill(rng, text);
    let stamp = time.format("%b %e %H:%M:%S");
    let value = if program == "kernel" {
        format!("{stamp} {host} kernel: {text}")
    } else {
        format!(
            "{stamp} {host} {program}[{}]: {text}",
            rng.range(300, 65_000)
        )
    };
    record(Kind::SyslogFile, host, value, time)
}

/// (level, logger, message) of the Java services.
const JAVA: &[(&str, &str, f64, &str)] = &[
    (
        "INFO",
        "c.e.shop.web.OrderController",
        12.0,
        "Order {order} accepted for user {user} in {ms} ms",
    ),
    (
        "INFO",
        "o.s.web.servlet.DispatcherServlet",
        3.0,
        "Completed initialization in {n} ms",
    ),
    (
        "DEBUG",
        "c.e.shop.cache.PriceCache",
        4.0,
        "Cache refresh finished: {n} entries",
    ),
    (
        "WARN",
        "com.zaxxer.hikari.pool.HikariPool",
        1.5,
        "HikariPool-1 - Connection is not available, request timed out after {ms}ms.",
    ),
    (
        "WARN",
        "o.a.kafka.clients.NetworkClient",
        1.0,
        "[Producer clientId=producer-1] Connection to node {n} could not be established. Broker may not be available.",
    ),
    (
        "ERROR",
        "c.e.shop.payment.PaymentClient",
        0.5,
        "Payment authorization failed for order {order}: upstream returned 503",
    ),
];

/// Spring Boot's default console layout (service = application name), or
/// classic log4j `%d{ISO8601} %-5p [%t] %c - %m`; milliseconds.
pub(crate) fn log4j(
    rng: &mut Rng,
    service: &str,
    effects: Effects,
    time: DateTime<Utc>,
) -> GeneratedRecord {
    let weights: Vec<f64> = JAVA.iter().map(|(_, _, w, _)| *w).collect();
    let (mut level, mut logger, _, mut text) = JAVA[rng.weighted(&weights)];
    if effects.error_burst && rng.chance(0.5) {
        (level, logger, _, text) = JAVA[JAVA.len() - 1];
    }
    let text = fill(rng, text);
    let thread = format!("http-nio-8080-exec-{}", rng.range(1, 10));
    let value = if rng.chance(0.7) {
        // `%5p %pid --- [%app] [%15.15t] %-40.40logger{39} : %m`: the
        // thread name cut to its last 15 characters.
        let cut = thread.len().saturating_sub(15);
        format!(
            "{}  {level:>5} {} --- [{service}] [{:>15}] {logger:<40} : {text}",
            time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            1000 + crate::rng::fnv1a(service) % 30_000,
            &thread[cut..]
        )
    } else {
        format!(
            "{} {level:<5} [{thread}] {logger} - {text}",
            time.format("%Y-%m-%d %H:%M:%S,%3f")
        )
    };
    record(Kind::Log4j, service, value, time)
}

/// (level, message, extra pairs) of the Go services (logrus style).
const LOGFMT: &[(&str, f64, &str, &str)] = &[
    (
        "info",
        12.0,
        "request served",
        "method=GET path={route} status=200 duration_ms={ms}",
    ),
    ("info", 4.0, "cache warmed", "entries={n} duration_ms={ms}"),
    ("debug", 3.0, "lease renewed", "lease_id={hex} ttl_s=30"),
    (
        "warn",
        1.5,
        "slow query",
        "table=orders duration_ms={ms} rows={n}",
    ),
    (
        "error",
        0.5,
        "upstream call failed",
        "upstream=http://{ip}:8080 error=\"context deadline exceeded\" attempt=3",
    ),
];

/// logrus / go-kit logfmt with the time first; milliseconds.
pub(crate) fn logfmt(
    rng: &mut Rng,
    service: &str,
    effects: Effects,
    time: DateTime<Utc>,
) -> GeneratedRecord {
    let weights: Vec<f64> = LOGFMT.iter().map(|(_, w, _, _)| *w).collect();
    let mut pick = LOGFMT[rng.weighted(&weights)];
    if effects.error_burst && rng.chance(0.5) {
        pick = LOGFMT[LOGFMT.len() - 1];
    }
    let (level, _, msg, extra) = pick;
    let extra = fill(rng, extra);
    let value = format!(
        "time=\"{}\" level={level} msg=\"{msg}\" service={service} {extra}",
        time.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
    record(Kind::Logfmt, service, value, time)
}

/// (level, weight, message) of nginx's error log.
const NGINX: &[(&str, f64, &str)] = &[
    (
        "error",
        6.0,
        "*{n} open() \"/usr/share/nginx/html/favicon.ico\" failed (2: No such file or directory), client: {pubip}, server: shop.example.com, request: \"GET /favicon.ico HTTP/1.1\", host: \"shop.example.com\"",
    ),
    (
        "error",
        4.0,
        "*{n} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {pubip}, server: shop.example.com, request: \"GET {route} HTTP/1.1\", upstream: \"http://{ip}:8080{route}\", host: \"shop.example.com\"",
    ),
    (
        "warn",
        3.0,
        "*{n} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000000{n} while reading upstream, client: {pubip}, server: shop.example.com, request: \"GET /api/export HTTP/1.1\", upstream: \"http://{ip}:8080/api/export\", host: \"shop.example.com\"",
    ),
    ("notice", 1.0, "signal process started"),
];

/// An nginx error-log line (`yyyy/MM/dd HH:mm:ss`, whole seconds).
pub(crate) fn nginx_error(rng: &mut Rng, time: DateTime<Utc>) -> GeneratedRecord {
    let host = *rng.pick(WEB_HOSTS);
    let weights: Vec<f64> = NGINX.iter().map(|(_, w, _)| *w).collect();
    let (level, _, text) = NGINX[rng.weighted(&weights)];
    let text = fill(rng, text);
    let pid = 20 + crate::rng::fnv1a(host) % 80;
    let value = format!(
        "{} [{level}] {pid}#{pid}: {text}",
        time.format("%Y/%m/%d %H:%M:%S")
    );
    record(Kind::NginxError, host, value, time)
}

/// (signature id, name, severity, action, destination port) of the firewall.
const CEF: &[(&str, &str, u8, &str, u16, f64)] = &[
    ("TRAFFIC", "end", 3, "allow", 443, 20.0),
    ("TRAFFIC", "deny", 5, "deny", 22, 6.0),
    (
        "THREAT",
        "SSH brute force attempt",
        8,
        "reset-both",
        22,
        1.5,
    ),
    ("THREAT", "SQL injection attempt", 9, "block-ip", 443, 0.5),
];

/// A firewall event in CEF, bare or behind a syslog-file header; `rt` is the
/// event time in epoch milliseconds.
pub(crate) fn cef(rng: &mut Rng, time: DateTime<Utc>) -> GeneratedRecord {
    let fw = *rng.pick(FIREWALLS);
    let weights: Vec<f64> = CEF.iter().map(|c| c.5).collect();
    let (sig, name, severity, act, dpt, _) = CEF[rng.weighted(&weights)];
    let src = fill(rng, "{pubip}");
    let dst = fill(rng, "{ip}");
    let body = format!(
        "CEF:0|Palo Alto Networks|PAN-OS|10.2.4|{sig}|{name}|{severity}|rt={} deviceExternalId=0079{} src={src} spt={} dst={dst} dpt={dpt} proto=TCP act={act} dvchost={fw}",
        time.timestamp_millis(),
        crate::rng::fnv1a(fw) % 100_000,
        rng.range(1024, 65_000)
    );
    let value = if rng.chance(0.5) {
        format!("{} {fw} {body}", time.format("%b %e %H:%M:%S"))
    } else {
        body
    };
    record(Kind::Cef, fw, value, time)
}
