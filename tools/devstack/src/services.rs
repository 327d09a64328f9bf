//! The Tansu broker and moto's AWS API server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{Lifetime, free_port, spawn, stop_child, wait_for_port};
use crate::root::workspace_root;

/// A long-running server process on a loopback port.
pub struct Service {
    port: u16,
    child: Option<Child>,
}

impl Service {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(5));
        }
    }

    /// Leaves the process running after this value is dropped.
    pub fn detach(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or(0)
    }

    fn start(
        name: &'static str,
        mut cmd: Command,
        port: u16,
        dir: &Path,
        lifetime: Lifetime,
    ) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let log = log.as_path();
        // Run inside the stack dir: `down` checks a process's cwd before it
        // signals a recorded PID.
        cmd.current_dir(dir);
        let child = spawn(&mut cmd, log, lifetime).with_context(|| format!("starting {name}"))?;
        let mut service = Self {
            port,
            child: Some(child),
        };
        if let Err(e) = wait_for_port(port, Duration::from_secs(30), name) {
            let exited = service
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            service.stop();
            bail!("{e} (exit: {exited:?}); see {}", log.display());
        }
        Ok(service)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds a binary: the environment variable, then the given candidates, then PATH.
fn find_binary(env_var: &str, candidates: &[PathBuf], name: &str, hint: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    bail!("{name} not found ({hint}; or set {env_var})")
}

/// Starts Tansu with in-memory storage (needs its dynostore feature).
pub fn start_tansu(dir: &Path, lifetime: Lifetime) -> Result<Service> {
    start_tansu_on(dir, free_port()?, lifetime)
}

/// Starts Tansu on a given port (a restart keeps the address clients know).
/// Its storage is in memory: a restarted broker starts empty.
pub fn start_tansu_on(dir: &Path, port: u16, lifetime: Lifetime) -> Result<Service> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let bin = find_binary(
        "TANSU_BIN",
        &[home.join(".cargo/bin/tansu")],
        "tansu",
        "run `make tools` to install it",
    )?;
    std::fs::create_dir_all(dir)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
    ])
    .args(["--storage-engine", "memory://tansu/"])
    .env("RUST_LOG", "warn");
    Service::start("tansu", cmd, port, dir, lifetime)
}

/// Starts moto's server from the project venv (of the tree we run in).
pub fn start_moto(dir: &Path, lifetime: Lifetime) -> Result<Service> {
    let venv: Vec<PathBuf> = workspace_root()
        .map(|root| root.join(".venv/bin/moto_server"))
        .into_iter()
        .collect();
    let bin = find_binary(
        "MOTO_SERVER_BIN",
        &venv,
        "moto_server",
        "run `make tools` to create the project venv",
    )?;
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Service::start("moto", cmd, port, dir, lifetime)
}
