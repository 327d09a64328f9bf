//! Child processes that die with their parent.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
    ProcessHandle::open(pid).stop(signal, timeout);
}

/// Whether a process with this pid exists and has not exited (a zombie,
/// ours or anyone's, counts as gone).
pub fn alive(pid: i32) -> bool {
    // Reap it if it is our child, so it does not linger as a zombie.
    unsafe {
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_state(&stat), Some('Z' | 'X')),
        Err(_) => unsafe { libc::kill(pid, 0) == 0 },
    }
}

/// The state letter of a `/proc/<pid>/stat` line (after the `(comm)`,
/// which may itself contain spaces and parentheses).
pub(crate) fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A process to signal, pinned by a pidfd when the kernel has them: once
/// opened, a signal can only reach this very process, even if it exits and
/// its PID is reused while we look at `/proc`.
pub struct ProcessHandle {
    pid: i32,
    fd: Option<OwnedFd>,
}

impl ProcessHandle {
    pub fn open(pid: i32) -> Self {
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) });
        Self { pid, fd }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn signal(&self, signal: i32) {
        match &self.fd {
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            },
            None => unsafe {
                libc::kill(self.pid, signal);
            },
        }
    }

    fn exited_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(fd) = &self.fd {
                // Readable once the process has exited.
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                unsafe { libc::poll(&mut p, 1, 20) };
                if p.revents != 0 {
                    // Reap it if it is our child.
                    unsafe {
                        let mut status = 0;
                        libc::waitpid(self.pid, &mut status, libc::WNOHANG);
                    }
                    return true;
                }
            } else if !alive(self.pid) {
                return true;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// `signal`, up to `timeout` to exit, then SIGKILL.
    pub fn stop(&self, signal: i32, timeout: Duration) {
        self.signal(signal);
        if !self.exited_within(timeout) {
            self.signal(libc::SIGKILL);
            self.exited_within(Duration::from_secs(5));
        }
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
