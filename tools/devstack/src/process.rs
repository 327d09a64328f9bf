//! Child processes that die with their parent.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a service process is tied to whoever started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the starting process dies, even by SIGKILL (tests).
    TiedToParent,
    /// Outlives the starting process in its own session (`make up`).
    Detached,
}

/// Spawns `cmd` with output appended to `log`.
pub fn spawn(cmd: &mut Command, log: &Path, lifetime: Lifetime) -> io::Result<Child> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    match lifetime {
        Lifetime::TiedToParent => unsafe {
            // Runs after the uid change, so the setting survives it.
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        },
        Lifetime::Detached => unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        },
    }
    cmd.spawn()
}

/// A free loopback port (free when asked; good enough for tests).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} did not open port {port} within {timeout:?}"),
    ))
}

/// Sends `signal` to the process and waits up to `timeout` for it to exit,
/// then kills it.
pub fn stop_pid(pid: i32, signal: i32, timeout: Duration) {
    unsafe {
        libc::kill(pid, signal);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Whether a process with this pid exists (and is not a zombie we own).
pub fn alive(pid: i32) -> bool {
    // Reap it if it is our child, so a zombie does not look alive.
    unsafe {
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::WNOHANG);
        libc::kill(pid, 0) == 0
    }
}

/// Stops a child we spawned and reaps it.
pub fn stop_child(child: &mut Child, signal: i32, timeout: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    stop_pid(child.id() as i32, signal, timeout);
    let _ = child.wait();
}
