//! A PostgreSQL server from the machine's own binaries.
//!
//! `initdb` refuses to run as root, so when we are root the server runs as
//! the `postgres` user on a directory that user owns.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ownership::{Recorded, Verdict, verify};
use crate::process::{Lifetime, free_port, spawn, stop_child};

/// Superuser created by `initdb` and its password (local stack only).
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "logpipe-local";
/// Owner of the schema: migrations and partition maintenance (DDL), as the
/// maintain function's DbOwnerSecretArn user in AWS.
pub const OWNER: &str = "logpipe_owner";
pub const OWNER_PASSWORD: &str = "logpipe-owner-local";
/// The functions' login (ingest, detect): a member of `logpipe_runtime`,
/// DML only, as the DbSecretArn user in AWS.
pub const RUNTIME: &str = "logpipe_functions";
pub const RUNTIME_PASSWORD: &str = "logpipe-functions-local";

pub struct Postgres {
    dir: PathBuf,
    port: u16,
    lifetime: Lifetime,
    child: Option<Child>,
}

impl Postgres {
    /// Initializes `dir/data` when needed and starts the server on a free port.
    pub fn start(dir: &Path, lifetime: Lifetime) -> Result<Self> {
        Self::start_on(dir, free_port()?, lifetime)
    }

    pub fn start_on(dir: &Path, port: u16, lifetime: Lifetime) -> Result<Self> {
        let bin = bin_dir()?;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let data = dir.join("data");
        let owner = server_user()?;
        if owner.is_some() {
            make_reachable(dir)?;
        }
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data)?;
            chown(&data, owner)?;
            let pwfile = dir.join("pwfile");
            std::fs::write(&pwfile, SUPERUSER_PASSWORD)?;
            chown(&pwfile, owner)?;
            let mut cmd = Command::new(bin.join("initdb"));
            cmd.arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    SUPERUSER,
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                ])
                .args(["-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
                .arg(format!("--pwfile={}", pwfile.display()));
            as_user(&mut cmd, owner);
            let out = cmd.output().context("running initdb")?;
            let _ = std::fs::remove_file(&pwfile);
            if !out.status.success() {
                bail!(
                    "initdb failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut pg = Self {
            dir: dir.to_path_buf(),
            port,
            lifetime,
            child: None,
        };
        pg.start_server()?;
        Ok(pg)
    }

    fn start_server(&mut self) -> Result<()> {
        let bin = bin_dir()?;
        let owner = server_user()?;
        let socket_dir = self.dir.join("socket");
        std::fs::create_dir_all(&socket_dir)?;
        chown(&socket_dir, owner)?;
        self.clear_stale_lock()?;
        let mut cmd = Command::new(bin.join("postgres"));
        // The server chdirs into its data dir itself; start it there too.
        cmd.current_dir(&self.dir);
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A throwaway local server: durability on power loss is not needed.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=100", "-c", "shared_buffers=128MB"]);
        as_user(&mut cmd, owner);
        let child = spawn(&mut cmd, &self.dir.join("postgres.log"), self.lifetime)
            .context("starting postgres")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    /// A `postmaster.pid` naming a process that is not a server on this
    /// data dir (the dir was copied from a running tree, or the PID was
    /// reused) makes PostgreSQL refuse to start; such a lock file is stale.
    fn clear_stale_lock(&self) -> Result<()> {
        let data = self.dir.join("data");
        let lock = data.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&lock) else {
            return Ok(());
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Ok(());
        };
        let rec = Recorded {
            name: "postgres".into(),
            pid,
            start_time: None,
        };
        let scope: Vec<PathBuf> = data.canonicalize().into_iter().collect();
        match verify(&rec, &scope) {
            Verdict::Ours => bail!(
                "a PostgreSQL server (PID {pid}) is already running on {}",
                data.display()
            ),
            // PostgreSQL itself replaces a lock file whose PID is gone.
            Verdict::Gone => Ok(()),
            Verdict::NotOurs(why) => {
                eprintln!(
                    "{} is stale ({why}); removing it, PID {pid} is left alone",
                    lock.display()
                );
                std::fs::remove_file(&lock).with_context(|| format!("removing {}", lock.display()))
            }
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let bin = bin_dir()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "postgres exited with {status} during startup; see {}",
                    self.dir.join("postgres.log").display()
                );
            }
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "postgres not ready on port {} within {timeout:?}",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Superuser URL on the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for(SUPERUSER, SUPERUSER_PASSWORD, "postgres")
    }

    /// The schema owner's URL (migrations, maintenance).
    pub fn owner_url(&self) -> String {
        self.url_for(OWNER, OWNER_PASSWORD, "postgres")
    }

    /// The functions' URL (DML only).
    pub fn runtime_url(&self) -> String {
        self.url_for(RUNTIME, RUNTIME_PASSWORD, "postgres")
    }

    /// The local server speaks plaintext on loopback, so the URL says
    /// `sslmode=disable` explicitly (the functions' default is verify-full,
    /// and they never fall back to plaintext on their own).
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        url_on(self.port, user, password, db)
    }

    /// Fast shutdown: clients are disconnected, open transactions roll back.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGINT, Duration::from_secs(20));
        }
    }

    /// Immediate shutdown, as a crash would (crash recovery at next start).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGQUIT, Duration::from_secs(10));
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_server()
    }

    /// Leaves the server running after this value is dropped (`make up`).
    pub fn detach(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or(0)
    }
}

/// A local stack URL (plaintext on loopback, said explicitly).
pub fn url_on(port: u16, user: &str, password: &str, db: &str) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{port}/{db}?sslmode=disable")
}

/// The URL of `user` on the server `superuser_url` points at.
pub fn url_like(superuser_url: &str, user: &str, password: &str) -> Option<String> {
    let rest = superuser_url.split_once('@')?.1;
    Some(format!("postgres://{user}:{password}@{rest}"))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL binaries: `PG_BIN`, else the newest /usr/lib/postgresql/N/bin,
/// else whatever directory holds `initdb` on PATH.
pub fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries not found: install postgresql (apt-get install postgresql) or set PG_BIN"
    )
}

/// (uid, gid) to run the server as: ourselves, or `postgres` when we are root.
/// The `postgres` user must be able to walk to `dir`. A checkout made with
/// `mktemp -d` (mode 0700) is not walkable by others: the directories from
/// `dir` up to the checkout's root (the first with a `Cargo.toml`) get the
/// search bit for others — traverse only, not list. Above the checkout a
/// closed directory is the user's to open: say which.
fn make_reachable(dir: &Path) -> Result<()> {
    let dir = dir.canonicalize()?;
    let mut in_tree = true;
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor)?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            if !in_tree {
                bail!(
                    "the postgres user cannot reach {} (running as root, the server runs as postgres): \
                     {} is closed to others; run from a checkout elsewhere or `chmod o+x {}`",
                    dir.display(),
                    ancestor.display(),
                    ancestor.display()
                );
            }
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))
                .with_context(|| format!("chmod o+x {}", ancestor.display()))?;
        }
        if ancestor.join("Cargo.toml").is_file() {
            in_tree = false;
        }
    }
    Ok(())
}

fn server_user() -> Result<Option<(u32, u32)>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres")?;
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root and there is no `postgres` user to run the server as (useradd postgres)"
        );
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_user(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}
