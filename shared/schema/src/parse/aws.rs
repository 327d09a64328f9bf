//! AWS log formats: Application Load Balancer and Classic Load Balancer
//! access logs, VPC flow logs (default version 2 format).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ParseError, fields, level, new_record, text, time, useragent};
use crate::record::{HttpFields, LogRecord, SourceType};

pub(crate) const ALB: &str = "aws-alb";
pub(crate) const ELB: &str = "aws-elb";
pub(crate) const VPC: &str = "vpc-flow";

/// Space-separated fields, `"quoted"` ones unescaped. `None` on an open quote.
fn fields_of(line: &str) -> Option<Vec<Cow<'_, str>>> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Some(out);
        }
        if rest.starts_with('"') {
            let (v, r) = text::quoted(rest, &['"', '\\'])?;
            out.push(Cow::Owned(v));
            rest = r;
        } else {
            let (v, r) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(Cow::Borrowed(v));
            rest = r;
        }
    }
}

const ALB_TYPES: [&str; 6] = ["http", "https", "h2", "grpcs", "ws", "wss"];

/// Whether a value starts like an ALB line (cheap prefix check for sniffing).
pub(crate) fn looks_like_alb(line: &str) -> bool {
    line.split_once(' ')
        .is_some_and(|(t, rest)| ALB_TYPES.contains(&t) && rest.as_bytes().get(4) == Some(&b'-'))
}

/// `type time elb client:port target:port request_processing_time
/// target_processing_time response_processing_time elb_status_code
/// target_status_code received_bytes sent_bytes "request" "user_agent"
/// ssl_cipher ssl_protocol target_group_arn "trace_id" "domain_name" …`
pub(crate) fn parse_alb(line: &str, raw: &str) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(ALB, reason);
    let f = fields_of(line).ok_or_else(|| bad("unterminated quoted field"))?;
    if f.len() < 16 {
        return Err(bad("expected at least 16 fields"));
    }
    let get = |i: usize| f.get(i).map(|c| c.as_ref()).unwrap_or("-");
    if !ALB_TYPES.contains(&get(0)) {
        return Err(bad("unknown request type"));
    }
    let mut r = load_balancer(SourceType::AwsAlb, &f, 1, ALB)?;
    r.raw = raw.to_owned();
    r.attributes.insert("type".into(), Value::from(get(0)));
    for (i, key) in [
        (16, "target_group_arn"),
        (17, "trace_id"),
        (18, "domain_name"),
        (21, "request_creation_time"),
        (22, "actions_executed"),
        (24, "error_reason"),
        (27, "classification"),
    ] {
        if let Some(v) = f.get(i).filter(|v| v.as_ref() != "-" && !v.is_empty()) {
            r.attributes.insert(key.into(), Value::from(v.as_ref()));
        }
    }
    if let Some(d) = f.get(18).filter(|v| v.as_ref() != "-") {
        r.host = Some(d.to_string());
    }
    Ok(r)
}

/// Classic ELB: `timestamp elb client:port backend:port request_processing_time
/// backend_processing_time response_processing_time elb_status_code
/// backend_status_code received_bytes sent_bytes "request" "user_agent"
/// ssl_cipher ssl_protocol`.
pub(crate) fn parse_elb(line: &str, raw: &str) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(ELB, reason);
    let f = fields_of(line).ok_or_else(|| bad("unterminated quoted field"))?;
    if !(13..=15).contains(&f.len()) {
        return Err(bad("expected 13 to 15 fields"));
    }
    let mut r = load_balancer(SourceType::AwsElb, &f, 0, ELB)?;
    r.raw = raw.to_owned();
    Ok(r)
}

/// The fields ALB and classic ELB share, starting at `at` (the timestamp).
fn load_balancer(
    source_type: SourceType,
    f: &[Cow<'_, str>],
    at: usize,
    format: &'static str,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(format, reason);
    let get = |i: usize| f.get(at + i).map(|c| c.as_ref()).unwrap_or("-");
    let t = get(0);
    if !t.contains('T') {
        return Err(bad("expected an ISO 8601 timestamp"));
    }
    let event_time = time::parse_str(t).ok_or_else(|| bad("invalid timestamp"))?;
    let client = get(2);
    let client_ip = fields::parse_ip(client).ok_or_else(|| bad("client must be ip:port"))?;
    let target = get(3);
    if target != "-" && fields::parse_ip(target).is_none() {
        return Err(bad("target must be ip:port or -"));
    }
    let secs = |i: usize| -> Result<Option<f64>, ParseError> {
        let v: f64 = get(i)
            .parse()
            .map_err(|_| bad("processing times must be numbers"))?;
        Ok((v >= 0.0).then_some(v))
    };
    let times = [secs(4)?, secs(5)?, secs(6)?];
    let status = match get(7) {
        "-" => None,
        s => Some(
            s.parse::<u16>()
                .map_err(|_| bad("status must be a number or -"))?,
        ),
    };
    let bytes = |i: usize| get(i).parse::<i64>().ok();
    let request = get(11);
    let mut parts = request.splitn(3, ' ');
    let method = parts.next().filter(|m| !m.is_empty() && *m != "-");
    let url = parts.next();
    let protocol = parts.next();
    let path = url.map(|u| match u.split_once("://") {
        Some((_, after)) => after.find('/').and_then(|i| after.get(i..)).unwrap_or("/"),
        None => u,
    });
    let ua = get(12);
    let latency = times.iter().flatten().sum::<f64>() * 1000.0;
    let message = format!("{request} {}", status.map_or("-".into(), |s| s.to_string()));
    let mut r = new_record(source_type, event_time, message, "");
    r.service = Some(get(1).to_owned());
    r.level = status.map(level::from_http_status);
    r.http = Some(HttpFields {
        method: method.map(str::to_owned),
        path: path.map(str::to_owned),
        protocol: protocol.map(str::to_owned),
        status,
        bytes: bytes(10),
        referrer: None,
        user_agent: Some(ua.to_owned()).filter(|u| u != "-"),
        client_ip: Some(client_ip),
        latency_ms: times.iter().all(Option::is_some).then_some(latency),
    });
    if target != "-" {
        r.attributes.insert("target".into(), Value::from(target));
    }
    if let Ok(ts) = get(8).parse::<u16>() {
        r.attributes.insert("target_status".into(), Value::from(ts));
    }
    if let Some(received) = bytes(9) {
        r.metrics.insert("received_bytes".into(), received as f64);
    }
    for (i, key) in [(13, "ssl_cipher"), (14, "ssl_protocol")] {
        if get(i) != "-" {
            r.attributes.insert(key.into(), Value::from(get(i)));
        }
    }
    useragent::annotate(&mut r);
    Ok(r)
}

/// VPC flow log v2: `version account-id interface-id srcaddr dstaddr srcport
/// dstport protocol packets bytes start end action log-status`.
pub(crate) fn parse_vpc(line: &str, raw: &str) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(VPC, reason);
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    let [
        version,
        account,
        eni,
        src,
        dst,
        sport,
        dport,
        proto,
        packets,
        bytes,
        start,
        end,
        action,
        status,
    ] = f.as_slice()
    else {
        return Err(bad("expected the 14 fields of the version 2 format"));
    };
    if *version != "2" {
        return Err(bad("version must be 2"));
    }
    if !(account.bytes().all(|b| b.is_ascii_digit()) || *account == "-") {
        return Err(bad("account-id must be digits"));
    }
    if !(eni.starts_with("eni-") || *eni == "-") {
        return Err(bad("interface-id must start with eni-"));
    }
    if !matches!(*status, "OK" | "NODATA" | "SKIPDATA") {
        return Err(bad("log-status must be OK, NODATA or SKIPDATA"));
    }
    if !matches!(*action, "ACCEPT" | "REJECT" | "-") {
        return Err(bad("action must be ACCEPT, REJECT or -"));
    }
    let start_t = start
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| bad("start must be epoch seconds"))?;
    let end_t = end
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let message = format!("{action} {src}:{sport} -> {dst}:{dport} proto {proto} {status}");
    let mut r = new_record(SourceType::VpcFlow, start_t, message, raw);
    r.service = Some("vpc-flow-logs".into());
    r.host = Some((*eni).to_owned());
    r.level = Some(if *action == "REJECT" {
        crate::record::Level::Warn
    } else {
        crate::record::Level::Info
    });
    let ip_ok = |s: &str| s == "-" || fields::parse_ip(s).is_some();
    if !ip_ok(src) || !ip_ok(dst) {
        return Err(bad("srcaddr and dstaddr must be IP addresses or -"));
    }
    for (k, v) in [
        ("account_id", *account),
        ("srcaddr", *src),
        ("dstaddr", *dst),
        ("action", *action),
        ("log_status", *status),
    ] {
        r.attributes.insert(k.into(), Value::from(v));
    }
    for (k, v) in [
        ("srcport", sport),
        ("dstport", dport),
        ("protocol", proto),
        ("packets", packets),
        ("bytes", bytes),
    ] {
        match v.parse::<f64>() {
            Ok(n) => {
                r.metrics.insert(k.into(), n);
            }
            Err(_) if *v == "-" => {}
            Err(_) => return Err(bad("numeric fields must be numbers or -")),
        }
    }
    if let Some(e) = end_t {
        r.metrics
            .insert("duration_s".into(), (e - start_t).num_seconds() as f64);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn alb_documented_example() {
        let line = r#"http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::AwsAlb);
        assert_eq!(r.event_time, utc("2018-07-02T22:23:00.186641Z"));
        assert_eq!(
            r.service.as_deref(),
            Some("app/my-loadbalancer/50dc6c495c0c9188")
        );
        let http = r.http.as_ref().unwrap();
        assert_eq!(http.status, Some(200));
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.method.as_deref(), Some("GET"));
        assert_eq!(http.bytes, Some(366));
        assert_eq!(http.latency_ms, Some(1.0));
        assert_eq!(http.client_ip.unwrap().to_string(), "192.168.131.39");
        assert_eq!(
            r.attributes["trace_id"],
            json!("Root=1-58337262-36d228ad5d99923122bbe354")
        );
        assert_eq!(r.attributes["ua_name"], json!("curl"));
        for bad in [
            "http 2018-07-02T22:23:00.186641Z app/x 192.168.131.39:2817",
            "http 2018-07-02T22:23:00.186641Z app/x nohost 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"GET / HTTP/1.1\" \"c\" - -",
            "http 2018-07-02T22:23:00.186641Z app/x 1.2.3.4:1 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"GET / HTTP/1.1",
        ] {
            assert_eq!(err_class(bad, Some("aws-alb")), "invalid_line", "{bad}");
        }
    }

    #[test]
    fn classic_elb_documented_example() {
        let line = r#"2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.38.0" - -"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::AwsElb);
        assert_eq!(r.http.as_ref().unwrap().status, Some(200));
        let r = parse1(
            r#"2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 - -1 -1 -1 504 0 0 0 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.38.0" - -"#,
            None,
        );
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.http.unwrap().latency_ms, None);
        assert_eq!(
            err_class(
                "2015-05-13T23:39:43.945958Z my-loadbalancer x",
                Some("aws-elb")
            ),
            "invalid_line"
        );
    }

    #[test]
    fn vpc_flow_documented_examples() {
        let r = parse1(
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
            None,
        );
        assert_eq!(r.source_type, SourceType::VpcFlow);
        assert_eq!(r.event_time, utc("2014-12-14T04:06:50Z"));
        assert_eq!(r.metrics["bytes"], 4249.0);
        assert_eq!(r.metrics["duration_s"], 60.0);
        let r = parse1(
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
            None,
        );
        assert_eq!(r.attributes["log_status"], json!("NODATA"));
        for bad in [
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139",
            "3 123456789010 eni-1 1.1.1.1 1.1.1.1 1 2 6 1 1 1418530010 1418530070 ACCEPT OK",
            "2 123456789010 eni-1 1.1.1.1 1.1.1.1 1 2 6 1 1 1418530010 1418530070 MAYBE OK",
        ] {
            assert_eq!(err_class(bad, Some("vpc-flow")), "invalid_line", "{bad}");
        }
    }
}
