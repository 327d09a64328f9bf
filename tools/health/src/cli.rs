//! `logpipe-dev health` arguments.

use std::time::Duration;

use crate::{GroupSpec, HealthError, HealthOptions};

pub const USAGE: &str = "usage: logpipe-dev health [--group GROUP[=TOPIC,...]]... [--json] \
[--samples N] [--interval SECS] [--dlq-timeout SECS]
  groups default to logpipe-ingest=log-ingestion and logpipe-detect=log-processing;
  exit 0: every group OK, 3: worst is WARN, 4: a group is STOP/STALL/REWIND/NOTFOUND,
  1: health could not be read (broker unreachable, ...), 2: bad arguments";

#[derive(Debug, Clone)]
pub struct HealthArgs {
    pub options: HealthOptions,
    pub json: bool,
    /// `--help`: print [`USAGE`] and do nothing else.
    pub help: bool,
}

impl HealthArgs {
    pub fn parse(args: &[String]) -> Result<Self, HealthError> {
        let mut options = HealthOptions::default();
        let mut groups = Vec::new();
        let mut json = false;
        let mut help = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| HealthError::Options(format!("{arg} needs a value")))
            };
            match arg.as_str() {
                "--group" => groups.push(GroupSpec::parse(value()?)?),
                "--json" => json = true,
                "--help" | "-h" => help = true,
                "--samples" => {
                    let v = value()?;
                    options.samples = v.parse().map_err(|_| {
                        HealthError::Options(format!("--samples {v:?} is not a number"))
                    })?;
                }
                "--interval" => options.interval = parse_seconds(arg, value()?)?,
                "--dlq-timeout" => options.dlq_scan_timeout = parse_seconds(arg, value()?)?,
                other => return Err(HealthError::Options(format!("unknown argument {other}"))),
            }
        }
        if !groups.is_empty() {
            options.groups = groups;
        }
        if options.samples < 2 {
            return Err(HealthError::Options(
                "--samples must be at least 2 (the rules judge a trend)".into(),
            ));
        }
        Ok(Self {
            options,
            json,
            help,
        })
    }
}

/// `1`, `1.5`, `1s`, `500ms`.
fn parse_seconds(flag: &str, v: &str) -> Result<Duration, HealthError> {
    let bad = || {
        HealthError::Options(format!(
            "{flag} {v:?}: expected seconds like 1, 0.5, 2s or 500ms"
        ))
    };
    let secs = if let Some(ms) = v.strip_suffix("ms") {
        ms.parse::<f64>().map_err(|_| bad())? / 1000.0
    } else {
        v.strip_suffix('s')
            .unwrap_or(v)
            .parse::<f64>()
            .map_err(|_| bad())?
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<HealthArgs, HealthError> {
        HealthArgs::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_flags() {
        let d = parse(&[]).unwrap();
        assert_eq!(d.options.groups, GroupSpec::pipeline_defaults());
        assert_eq!(d.options.samples, 5);
        assert!(!d.json);
        let a = parse(&[
            "--group",
            "g=t",
            "--group",
            "h",
            "--json",
            "--samples",
            "3",
            "--interval",
            "500ms",
        ])
        .unwrap();
        assert_eq!(a.options.groups.len(), 2);
        assert_eq!(a.options.samples, 3);
        assert_eq!(a.options.interval, Duration::from_millis(500));
        assert!(a.json);
        assert_eq!(
            parse(&["--interval", "2s"]).unwrap().options.interval,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse(&["--samples", "1"]).is_err());
        assert!(parse(&["--samples"]).is_err());
        assert!(parse(&["--interval", "soon"]).is_err());
        assert!(parse(&["--interval", "-1"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
    }
}
