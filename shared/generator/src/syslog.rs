//! RFC 5424 syslog lines from the hosts under the services:
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`.

use crate::template::fill_placeholders;
use chrono::{DateTime, Utc};

use crate::rng::Rng;
use crate::{GeneratedRecord, Kind, rfc3339_ms};

const BASTION: &[&str] = &["bastion-01"];
const NODES: &[&str] = &["k8s-node-01", "k8s-node-02", "k8s-node-03", "k8s-node-04"];
const DB: &[&str] = &["db-primary-01", "db-replica-01"];
const LB: &[&str] = &["lb-edge-01"];
const ALL: &[&str] = &[
    "bastion-01",
    "k8s-node-01",
    "k8s-node-02",
    "k8s-node-03",
    "k8s-node-04",
    "db-primary-01",
    "db-replica-01",
    "lb-edge-01",
];

// Facilities (RFC 5424 §6.2.1).
const KERN: u8 = 0;
const DAEMON: u8 = 3;
const AUTH: u8 = 4;
const CRON: u8 = 9;
const AUTHPRIV: u8 = 10;
const LOCAL0: u8 = 16;

/// A message: app-name, facility, severity (0-7), weight, hosts, msgid and
/// text (`{ip}` internal address, `{pubip}` external, `{port}`, `{pid}`,
/// `{n}`, `{secs}`).
struct Msg {
    app: &'static str,
    facility: u8,
    severity: u8,
    weight: f64,
    hosts: &'static [&'static str],
    msgid: &'static str,
    text: &'static str,
}

const fn m(
    app: &'static str,
    facility: u8,
    severity: u8,
    weight: f64,
    hosts: &'static [&'static str],
    msgid: &'static str,
    text: &'static str,
) -> Msg {
    Msg {
        app,
        facility,
        severity,
        weight,
        hosts,
        msgid,
        text,
    }
}

const MESSAGES: &[Msg] = &[
    m(
        "sshd",
        AUTH,
        6,
        8.0,
        BASTION,
        "-",
        "Accepted publickey for deploy from {ip} port {port} ssh2: ED25519 SHA256:{fp}",
    ),
    m(
        "sshd",
        AUTH,
        6,
        6.0,
        BASTION,
        "-",
        "Disconnected from user deploy {ip} port {port}",
    ),
    m(
        "sshd",
        AUTHPRIV,
        4,
        10.0,
        BASTION,
        "-",
        "Failed password for invalid user {baduser} from {pubip} port {port} ssh2",
    ),
    m(
        "sudo",
        AUTHPRIV,
        5,
        3.0,
        BASTION,
        "-",
        "deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl restart {unit}",
    ),
    m(
        "CRON",
        CRON,
        6,
        8.0,
        ALL,
        "-",
        "(root) CMD (/usr/local/bin/{script} >/dev/null 2>&1)",
    ),
    m("systemd", DAEMON, 6, 6.0, ALL, "-", "Started {unit}."),
    m(
        "systemd",
        DAEMON,
        6,
        3.0,
        ALL,
        "-",
        "{unit}: Consumed {secs}s CPU time.",
    ),
    m(
        "kubelet",
        DAEMON,
        6,
        10.0,
        NODES,
        "-",
        "Successfully pulled image \"registry.example.com/{image}\" in {secs}s",
    ),
    m(
        "kubelet",
        DAEMON,
        4,
        3.0,
        NODES,
        "-",
        "Readiness probe failed: Get \"http://{ip}:8080/health\": context deadline exceeded",
    ),
    m(
        "containerd",
        DAEMON,
        6,
        5.0,
        NODES,
        "-",
        "shim disconnected id={hex} namespace=k8s.io",
    ),
    m(
        "kernel",
        KERN,
        3,
        0.7,
        NODES,
        "-",
        "Out of memory: Killed process {pid} (java) total-vm:{kb}kB, anon-rss:{kb}kB, oom_score_adj:{n}",
    ),
    m(
        "kernel",
        KERN,
        4,
        0.8,
        LB,
        "-",
        "TCP: request_sock_TCP: Possible SYN flooding on port 443. Sending cookies.",
    ),
    m(
        "postgres",
        LOCAL0,
        6,
        6.0,
        DB,
        "-",
        "automatic vacuum of table \"shop.public.{table}\": index scans: 1",
    ),
    m(
        "postgres",
        LOCAL0,
        4,
        2.0,
        DB,
        "-",
        "checkpoints are occurring too frequently ({n} seconds apart)",
    ),
    m(
        "postgres",
        LOCAL0,
        6,
        4.0,
        DB,
        "-",
        "connection authorized: user=app database=shop application_name={app}",
    ),
    m(
        "haproxy",
        LOCAL0,
        6,
        6.0,
        LB,
        "-",
        "Server backend/{app}-{n} is UP, reason: Layer7 check passed, code: 200",
    ),
    m(
        "haproxy",
        LOCAL0,
        3,
        0.6,
        LB,
        "-",
        "Server backend/{app}-{n} is DOWN, reason: Layer4 timeout, check duration: 2001ms",
    ),
    m(
        "ntpd",
        DAEMON,
        6,
        2.0,
        ALL,
        "-",
        "adjusting local clock by 0.00{n}s",
    ),
];

const BAD_USERS: &[&str] = &["admin", "oracle", "test", "ubuntu", "postgres", "git", "pi"];
const UNITS: &[&str] = &[
    "nginx.service",
    "logrotate.service",
    "apt-daily.service",
    "node-exporter.service",
    "session-42.scope",
];
const SCRIPTS: &[&str] = &["backup.sh", "rotate-certs.sh", "cleanup-tmp.sh"];
const IMAGES: &[&str] = &[
    "checkout:2.14.3",
    "payments:1.9.0",
    "search:3.2.1",
    "auth:2.0.7",
    "inventory:1.4.2",
];
const TABLES: &[&str] = &["orders", "order_items", "stock", "sessions"];
const APPS: &[&str] = &["checkout", "payments", "search", "auth", "inventory"];

fn fill(rng: &mut Rng, text: &str) -> String {
    fill_placeholders(text, |name, out| {
        let value = match name {
            "ip" => format!("10.0.{}.{}", rng.range(0, 15), rng.range(2, 254)),
            "pubip" => format!(
                "{}.{}",
                rng.pick(&["192.0.2", "198.51.100", "203.0.113"]),
                rng.range(2, 254)
            ),
            "port" => rng.range(32768, 60999).to_string(),
            "pid" => rng.range(300, 65000).to_string(),
            "n" => rng.range(1, 9).to_string(),
            "secs" => format!("{}.{}", rng.range(0, 12), rng.range(100, 999)),
            "kb" => rng.range(400_000, 9_000_000).to_string(),
            "fp" => rng.alnum(43),
            "hex" => rng.hex(16),
            "baduser" => (*rng.pick(BAD_USERS)).to_owned(),
            "unit" => (*rng.pick(UNITS)).to_owned(),
            "script" => (*rng.pick(SCRIPTS)).to_owned(),
            "image" => (*rng.pick(IMAGES)).to_owned(),
            "table" => (*rng.pick(TABLES)).to_owned(),
            "app" => (*rng.pick(APPS)).to_owned(),
            other => other.to_owned(),
        };
        out.push_str(&value);
    })
}

pub(crate) fn record(rng: &mut Rng, time: DateTime<Utc>) -> GeneratedRecord {
    let weights: Vec<f64> = MESSAGES.iter().map(|m| m.weight).collect();
    let msg = &MESSAGES[rng.weighted(&weights)];
    let host = *rng.pick(msg.hosts);
    let pri = u16::from(msg.facility) * 8 + u16::from(msg.severity);
    let procid = if msg.app == "kernel" {
        "-".to_owned()
    } else {
        rng.range(200, 65000).to_string()
    };
    let sd = if rng.chance(0.3) {
        format!("[meta sequenceId=\"{}\"]", rng.range(1, 2_000_000))
    } else {
        "-".to_owned()
    };
    let text = fill(rng, msg.text);
    let value = format!(
        "<{pri}>1 {} {host} {} {procid} {} {sd} {text}",
        rfc3339_ms(time),
        msg.app,
        msg.msgid
    );
    GeneratedRecord {
        kind: Kind::Syslog,
        key: host.to_owned(),
        value,
        log_format: Kind::Syslog.log_format(),
        trace_id: None,
        event_time: time,
    }
}
