//! SAP system log / security audit lines in the layout of FORMATS.md:
//! `YYYY-MM-DD HH:MM:SS <SID> <instance> <client> <user> <tcode> <msgid> <severity> <text>`.

use crate::template::fill_placeholders;
use chrono::{DateTime, Utc};

use crate::rng::Rng;
use crate::{GeneratedRecord, Kind};

/// Who triggers an event.
#[derive(Clone, Copy, PartialEq)]
enum Actor {
    Dialog,
    Rfc,
    Batch,
    System,
}

/// An audit / system log event: message id, severity, actor, transaction
/// codes (`-` = none), text template (`{tcode}`, `{user}`, `{other}`, `{fm}`,
/// `{prog}`, `{job}`, `{hex}`, `{n}`, `{dumpid}`).
struct Event {
    msgid: &'static str,
    severity: char,
    weight: f64,
    actor: Actor,
    tcodes: &'static [&'static str],
    text: &'static str,
}

const fn ev(
    msgid: &'static str,
    severity: char,
    weight: f64,
    actor: Actor,
    tcodes: &'static [&'static str],
    text: &'static str,
) -> Event {
    Event {
        msgid,
        severity,
        weight,
        actor,
        tcodes,
        text,
    }
}

const NONE: &[&str] = &["-"];
const BUSINESS: &[&str] = &[
    "VA01", "VA02", "VA03", "ME21N", "ME23N", "MIGO", "FB60", "MM03", "VL01N", "FBL1N",
];

const EVENTS: &[Event] = &[
    ev(
        "AU1",
        'I',
        22.0,
        Actor::Dialog,
        NONE,
        "Logon successful (type=A, method=A)",
    ),
    ev(
        "AU2",
        'W',
        3.0,
        Actor::Dialog,
        NONE,
        "Logon failed (reason=1, type=A)",
    ),
    ev(
        "AU3",
        'I',
        30.0,
        Actor::Dialog,
        BUSINESS,
        "Transaction {tcode} started",
    ),
    ev(
        "AU5",
        'I',
        8.0,
        Actor::Rfc,
        NONE,
        "RFC/CPIC logon successful (type=B, method=A)",
    ),
    ev(
        "AU6",
        'W',
        0.8,
        Actor::Rfc,
        NONE,
        "RFC/CPIC logon failed, reason=1, type=B",
    ),
    ev(
        "AU7",
        'I',
        0.6,
        Actor::Dialog,
        &["SU01"],
        "User {other} created",
    ),
    ev(
        "AUB",
        'I',
        0.8,
        Actor::Dialog,
        &["SU01", "PFCG"],
        "Authorizations for user {other} changed",
    ),
    ev(
        "AUK",
        'I',
        10.0,
        Actor::Rfc,
        NONE,
        "Successful RFC call {fm}",
    ),
    ev(
        "AUM",
        'E',
        0.4,
        Actor::Dialog,
        NONE,
        "User {user} locked in client {client} after erroneous password checks",
    ),
    ev(
        "AUW",
        'I',
        4.0,
        Actor::Dialog,
        &["SE38", "SA38"],
        "Report {prog} started",
    ),
    ev(
        "AU8",
        'I',
        5.0,
        Actor::Batch,
        &["SM37"],
        "Background job {job} started (job count {n})",
    ),
    ev(
        "BU4",
        'I',
        1.5,
        Actor::System,
        NONE,
        "Dynamic ABAP code: event E, event type K, check sum {hex}",
    ),
    ev(
        "BU1",
        'W',
        1.0,
        Actor::Dialog,
        NONE,
        "Password check failed for user {user} in client {client}",
    ),
    ev(
        "CUK",
        'W',
        0.3,
        Actor::Dialog,
        &["SE38", "SE80"],
        "C debugging activated",
    ),
    ev(
        "R49",
        'E',
        0.8,
        Actor::System,
        NONE,
        "Communication error, CPIC return code 020, SAP return code 223",
    ),
    ev(
        "AB0",
        'E',
        0.6,
        Actor::Dialog,
        BUSINESS,
        "Run-time error \"TSV_TNEW_PAGE_ALLOC_FAILED\" occurred",
    ),
    ev(
        "AB1",
        'E',
        0.4,
        Actor::Dialog,
        BUSINESS,
        "> Short dump \"{dumpid}\" generated",
    ),
    ev(
        "BZY",
        'W',
        0.6,
        Actor::System,
        NONE,
        "Unexpected return value {n} when calling an external program",
    ),
    ev(
        "Q0I",
        'E',
        0.3,
        Actor::System,
        NONE,
        "Operating system call recv failed (error no. 104)",
    ),
    ev(
        "GI0",
        'W',
        0.5,
        Actor::System,
        &["SM21"],
        "Error calling the central lock handler: {n} retries",
    ),
];

const DIALOG_USERS: &[&str] = &[
    "JSMITH",
    "MMUELLER",
    "ABECKER",
    "KWAGNER",
    "LNGUYEN",
    "PSCHMIDT",
    "TKOWALSKI",
    "AROSSI",
    "SFISCHER",
    "CDUBOIS",
];
const RFC_USERS: &[&str] = &["RFC_USER", "RFC_CRM", "PI_APPL"];
const BATCH_USERS: &[&str] = &["BATCH_FI", "BATCH_SD", "WF-BATCH"];
const FUNCTION_MODULES: &[(&str, &str)] = &[
    ("BAPI_SALESORDER_CREATEFROMDAT2", "2032"),
    ("BAPI_PO_CREATE1", "2012"),
    ("RFC_READ_TABLE", "SDTX"),
    ("BAPI_MATERIAL_GET_DETAIL", "MG01"),
    ("BAPI_TRANSACTION_COMMIT", "BAPT"),
];
const REPORTS: &[&str] = &["RFBIBL00", "RSUSR002", "ZSD_ORDER_EXPORT", "RM07DOCS"];
const JOBS: &[&str] = &[
    "ZFI_DAILY_CLOSE",
    "SAP_COLLECTOR_FOR_PERFMONITOR",
    "ZSD_BILLING_RUN",
];

/// System id, client, instance hosts and share of traffic.
struct System {
    sid: &'static str,
    client: &'static str,
    instances: &'static [&'static str],
    weight: f64,
}

const SYSTEMS: &[System] = &[
    System {
        sid: "PRD",
        client: "100",
        instances: &["sapprd01_PRD_00", "sapprd02_PRD_00", "sapprd03_PRD_01"],
        weight: 75.0,
    },
    System {
        sid: "QAS",
        client: "200",
        instances: &["sapqas01_QAS_10"],
        weight: 20.0,
    },
    System {
        sid: "DEV",
        client: "100",
        instances: &["sapdev01_DEV_20"],
        weight: 5.0,
    },
];

fn fill(rng: &mut Rng, text: &str, tcode: &str, user: &str, client: &str) -> String {
    fill_placeholders(text, |name, out| match name {
        "tcode" => out.push_str(tcode),
        "user" => out.push_str(user),
        "client" => out.push_str(client),
        "other" => out.push_str(rng.pick::<&str>(DIALOG_USERS)),
        "fm" => {
            let (fm, fg) = rng.pick(FUNCTION_MODULES);
            out.push_str(&format!("{fm} (function group = {fg})"));
        }
        "prog" => out.push_str(rng.pick::<&str>(REPORTS)),
        "job" => out.push_str(rng.pick::<&str>(JOBS)),
        "hex" => out.push_str(&rng.hex(8).to_uppercase()),
        "n" => out.push_str(&rng.range(1, 99).to_string()),
        "dumpid" => out.push_str(&format!("DUMP{}", rng.digits(6))),
        other => out.push_str(other),
    })
}

pub(crate) fn record(rng: &mut Rng, time: DateTime<Utc>) -> GeneratedRecord {
    let weights: Vec<f64> = SYSTEMS.iter().map(|s| s.weight).collect();
    let sys = &SYSTEMS[rng.weighted(&weights)];
    let weights: Vec<f64> = EVENTS.iter().map(|e| e.weight).collect();
    let e = &EVENTS[rng.weighted(&weights)];
    let instance = rng.pick(sys.instances);
    let user = match e.actor {
        Actor::Dialog => *rng.pick(DIALOG_USERS),
        Actor::Rfc => *rng.pick(RFC_USERS),
        Actor::Batch => *rng.pick(BATCH_USERS),
        Actor::System => *rng.pick(&["SAPSYS", "-"]),
    };
    // System-level events are logged in client 000.
    let client = if e.actor == Actor::System {
        "000"
    } else {
        sys.client
    };
    let tcode = *rng.pick(e.tcodes);
    let text = fill(rng, e.text, tcode, user, client);
    let value = format!(
        "{} {} {instance} {client} {user} {tcode} {} {} {text}",
        time.format("%Y-%m-%d %H:%M:%S"),
        sys.sid,
        e.msgid,
        e.severity,
    );
    GeneratedRecord {
        kind: Kind::Sap,
        key: format!("sap/{}", sys.sid),
        value,
        log_format: Kind::Sap.log_format(),
        trace_id: None,
        event_time: time,
    }
}
