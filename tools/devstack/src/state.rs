//! Where the detached stack (`logpipe-dev up`) keeps its state, and stopping
//! only what it recorded and still owns.
//!
//! Everything lives in the stack dir, `<root>/.local/stack` of the tree
//! found at run time ([`crate::root`]), or `LOGPIPE_STACK_DIR`:
//! `state.json` (the PIDs with their start times, URLs and ports), `env`
//! (the same as shell exports), `pg/` (PostgreSQL's data, socket and log)
//! and the Tansu and moto logs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::ownership::{Recorded, Verdict, verify};
use crate::process::ProcessHandle;
use crate::root::workspace_root;

/// Overrides the stack dir (then the root is not needed for it).
pub const STACK_DIR_ENV: &str = "LOGPIPE_STACK_DIR";

pub struct StackPaths {
    /// The stack dir (absolute).
    pub dir: PathBuf,
    /// The tree it belongs to, when found.
    pub root: Option<PathBuf>,
}

impl StackPaths {
    /// From the environment and the current directory.
    pub fn locate() -> Result<Self> {
        let root = workspace_root();
        let dir = match std::env::var_os(STACK_DIR_ENV).filter(|d| !d.is_empty()) {
            Some(d) => std::path::absolute(PathBuf::from(d))?,
            None => root
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .join(".local/stack"),
        };
        Ok(Self {
            dir,
            root: root.ok(),
        })
    }

    pub fn at(dir: &Path, root: Option<&Path>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            root: root.map(Path::to_path_buf),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn env_file(&self) -> PathBuf {
        self.dir.join("env")
    }

    /// Directories a process of this stack runs in: the stack dir and the
    /// tree (stacks from older versions ran with the tree as their cwd).
    pub fn scopes(&self) -> Vec<PathBuf> {
        [Some(&self.dir), self.root.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| p.canonicalize().ok())
            .collect()
    }

    /// The state file as written, without checking the processes.
    pub fn read(&self) -> Result<Value> {
        let path = self.state_file();
        let bytes = std::fs::read(&path)
            .with_context(|| format!("no stack state at {} (run `make up`)", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
    }

    /// The state of a stack that is running and ours; an error naming the
    /// problem otherwise (a copied state file names the original's servers:
    /// using them would write into the other tree's database).
    pub fn running(&self) -> Result<Value> {
        let state = self.read()?;
        let scopes = self.scopes();
        for rec in recorded(&state) {
            match verify(&rec, &scopes) {
                Verdict::Ours => {}
                Verdict::Gone => bail!(
                    "the local stack in {} is not running ({} PID {} is gone; run `make up`)",
                    self.dir.display(),
                    rec.name,
                    rec.pid
                ),
                Verdict::NotOurs(why) => bail!(
                    "the stack state {} is stale: {why}; run `make up` to start this tree's stack",
                    self.state_file().display()
                ),
            }
        }
        Ok(state)
    }

    /// Stops every recorded process that is still ours, then removes the
    /// state (also when entries were stale: they are never signalled).
    pub fn stop(&self, state: &Value) -> Vec<(Recorded, Outcome)> {
        let outcomes = stop_recorded(state, &self.scopes(), &self.state_file());
        let _ = std::fs::remove_file(self.state_file());
        let _ = std::fs::remove_file(self.env_file());
        outcomes
    }
}

/// What happened to one recorded process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stopped,
    AlreadyGone,
    /// Not signalled: the entry named someone else's process.
    Stale(String),
}

/// The state `up` writes.
pub fn new_state(
    services: &[Recorded],
    database_url: &str,
    bootstrap_servers: &str,
    aws_endpoint_url: &str,
    pg_port: u16,
) -> Value {
    json!({
        "services": services.iter().map(|r| json!({
            "name": r.name,
            "pid": r.pid,
            "start_time": r.start_time,
        })).collect::<Vec<_>>(),
        "database_url": database_url,
        "bootstrap_servers": bootstrap_servers,
        "aws_endpoint_url": aws_endpoint_url,
        "pg_port": pg_port,
    })
}

/// The recorded processes: `services`, or the bare `pids` list of older
/// versions (PostgreSQL, Tansu, moto in that order).
pub fn recorded(state: &Value) -> Vec<Recorded> {
    if let Some(services) = state["services"].as_array() {
        return services
            .iter()
            .filter_map(|s| {
                Some(Recorded {
                    name: s["name"].as_str()?.to_string(),
                    pid: i32::try_from(s["pid"].as_i64()?).ok()?,
                    start_time: s["start_time"].as_u64(),
                })
            })
            .filter(|r| r.pid > 0)
            .collect();
    }
    let names = ["postgres", "tansu", "moto"];
    state["pids"]
        .as_array()
        .map(|pids| {
            pids.iter()
                .zip(names)
                .filter_map(|(p, name)| {
                    Some(Recorded {
                        name: name.to_string(),
                        pid: i32::try_from(p.as_i64()?).ok()?,
                        start_time: None,
                    })
                })
                .filter(|r| r.pid > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// Signals only verified processes; says what it does about each.
pub fn stop_recorded(
    state: &Value,
    scopes: &[PathBuf],
    state_file: &Path,
) -> Vec<(Recorded, Outcome)> {
    let mut outcomes = Vec::new();
    for rec in recorded(state) {
        // Pinned first, verified second: the signal cannot reach a process
        // that took over the PID in between.
        let handle = ProcessHandle::open(rec.pid);
        let outcome = match verify(&rec, scopes) {
            Verdict::Ours => {
                eprintln!("stopping {} (PID {})", rec.name, rec.pid);
                // SIGINT is PostgreSQL's fast shutdown; the others exit on it too.
                handle.stop(libc::SIGINT, Duration::from_secs(15));
                Outcome::Stopped
            }
            Verdict::Gone => Outcome::AlreadyGone,
            Verdict::NotOurs(why) => {
                eprintln!(
                    "{}: the PID file entry in {} is stale ({why}); not signalling PID {}, removing the entry",
                    rec.name,
                    state_file.display(),
                    rec.pid
                );
                Outcome::Stale(why)
            }
        };
        outcomes.push((rec, outcome));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_new_and_old_state_files() {
        let state = new_state(
            &[
                Recorded {
                    name: "postgres".into(),
                    pid: 10,
                    start_time: Some(5),
                },
                Recorded {
                    name: "tansu".into(),
                    pid: 11,
                    start_time: None,
                },
            ],
            "postgres://x",
            "127.0.0.1:1",
            "http://127.0.0.1:2",
            3,
        );
        let recs = recorded(&state);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].start_time, Some(5));
        assert_eq!(recs[1].name, "tansu");

        let old = json!({"pids": [20, 0, 22]});
        let recs = recorded(&old);
        assert_eq!(
            recs.iter()
                .map(|r| (r.name.as_str(), r.pid))
                .collect::<Vec<_>>(),
            vec![("postgres", 20), ("moto", 22)]
        );
    }
}
