//! Whether a recorded PID is still a process this stack started.
//!
//! A PID in a state file can be stale in two ways: the process is gone and
//! the number was reused, or the file was copied along with the tree (a
//! copied checkout then "owns" the original's servers). Before anything is
//! signalled, the process must name the expected program on its command
//! line and run inside this stack: its working directory (or, for
//! PostgreSQL, its `-D` data directory) under one of the given scopes. The
//! start time recorded at `up` also has to match when there is one.

use std::path::{Path, PathBuf};

/// One process `up` started, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `postgres`, `tansu` or `moto`.
    pub name: String,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` when it was started (clock ticks
    /// since boot); absent in state files from older versions.
    pub start_time: Option<u64>,
}

impl Recorded {
    /// Records a process just started, with its start time.
    pub fn now(name: &str, pid: u32) -> Self {
        let pid = pid as i32;
        Self {
            name: name.to_string(),
            pid,
            start_time: read_proc(pid).map(|p| p.start_time),
        }
    }

    /// The program names the command line may show for this service.
    pub fn programs(&self) -> &'static [&'static str] {
        match self.name.as_str() {
            "postgres" => &["postgres", "postmaster"],
            "tansu" => &["tansu"],
            // A Python entry point: argv[0] is the interpreter.
            "moto" => &["moto_server"],
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Running, and the one we started: safe to signal.
    Ours,
    /// No such process (or only a zombie).
    Gone,
    /// Some other process: never signal it. The reason says why.
    NotOurs(String),
}

/// What `/proc` says about a process.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub start_time: u64,
    pub state: char,
    pub cmdline: Vec<String>,
    /// `None` when it cannot be read (another user's process).
    pub cwd: Option<PathBuf>,
}

/// `None` when there is no such process.
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = crate::process::stat_state(&stat)?;
    // Fields after "(comm)": state is field 3, starttime field 22.
    let start_time = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    Some(ProcInfo {
        start_time,
        state,
        cmdline,
        cwd,
    })
}

/// Checks `rec` against the live process. `scopes` are the directories the
/// stack lives in (canonical paths: the stack dir and the tree root).
pub fn verify(rec: &Recorded, scopes: &[PathBuf]) -> Verdict {
    let Some(info) = read_proc(rec.pid) else {
        return Verdict::Gone;
    };
    if matches!(info.state, 'Z' | 'X') {
        return Verdict::Gone;
    }
    if let Some(recorded) = rec.start_time
        && recorded != info.start_time
    {
        return Verdict::NotOurs(format!(
            "PID {} was reused: started at tick {}, not {recorded}",
            rec.pid, info.start_time
        ));
    }
    let programs = rec.programs();
    let names_program = info.cmdline.iter().take(2).any(|arg| {
        Path::new(arg)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| programs.contains(&n))
    });
    if !names_program {
        return Verdict::NotOurs(format!(
            "PID {} runs `{}`, not {}",
            rec.pid,
            shorten(&info.cmdline.join(" ")),
            programs.join("/")
        ));
    }
    let mut places: Vec<PathBuf> = info.cwd.iter().cloned().collect();
    if rec.name == "postgres"
        && let Some(data) = data_dir_arg(&info.cmdline)
        && !places.contains(&data)
    {
        places.push(data);
    }
    if places.is_empty() {
        return Verdict::NotOurs(format!(
            "cannot read where PID {} runs (/proc/{}/cwd)",
            rec.pid, rec.pid
        ));
    }
    let inside = places.iter().any(|p| {
        let p = p.canonicalize().unwrap_or_else(|_| p.clone());
        scopes.iter().any(|s| p.starts_with(s))
    });
    if !inside {
        return Verdict::NotOurs(format!(
            "PID {} ({}) runs in {}, outside {}",
            rec.pid,
            rec.name,
            places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            scopes
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    Verdict::Ours
}

/// The value of `-D DIR` or `-DDIR` (PostgreSQL's data directory).
fn data_dir_arg(cmdline: &[String]) -> Option<PathBuf> {
    let mut it = cmdline.iter();
    while let Some(a) = it.next() {
        if a == "-D" {
            return it.next().map(PathBuf::from);
        }
        if let Some(rest) = a.strip_prefix("-D")
            && !rest.is_empty()
        {
            return Some(PathBuf::from(rest));
        }
    }
    None
}

fn shorten(s: &str) -> String {
    const MAX: usize = 120;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A real long-running process called `name` (a copy of `sleep`), with
    /// its working directory in `cwd`.
    fn spawn_named(bin_dir: &Path, name: &str, cwd: &Path) -> Child {
        std::fs::create_dir_all(bin_dir).unwrap();
        let bin = bin_dir.join(name);
        if !bin.exists() {
            std::fs::copy("/bin/sleep", &bin).unwrap();
        }
        // ETXTBSY: a test on another thread forked while this copy was still
        // open for writing, and its child holds the write descriptor until
        // it execs. That passes in a moment.
        let mut tries = 0;
        let child = loop {
            match Command::new(&bin).arg("300").current_dir(cwd).spawn() {
                Ok(child) => break child,
                Err(e) if e.raw_os_error() == Some(26) && tries < 200 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("spawning {}: {e}", bin.display()),
            }
        };
        wait_for_exec(child.id(), &bin);
        child
    }

    /// `spawn` returns once the exec has begun, but the new command line is
    /// set up a moment later (empty until then): wait for it to name `bin`.
    fn wait_for_exec(pid: u32, bin: &Path) {
        let want = bin.as_os_str().as_encoded_bytes();
        while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.starts_with(want)) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn scopes(dir: &Path) -> Vec<PathBuf> {
        vec![dir.canonicalize().unwrap()]
    }

    #[test]
    fn a_process_of_this_stack_is_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("stack");
        std::fs::create_dir_all(&stack).unwrap();
        let mut child = spawn_named(&tmp.path().join("bin"), "tansu", &stack);
        let rec = Recorded::now("tansu", child.id());
        assert!(rec.start_time.is_some());
        assert_eq!(verify(&rec, &scopes(&stack)), Verdict::Ours);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(verify(&rec, &scopes(&stack)), Verdict::Gone);
    }

    #[test]
    fn the_same_program_in_another_tree_is_not_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("copy/.local/stack");
        let original = tmp.path().join("original/.local/stack");
        std::fs::create_dir_all(&stack).unwrap();
        std::fs::create_dir_all(&original).unwrap();
        let mut child = spawn_named(&tmp.path().join("bin"), "tansu", &original);
        let rec = Recorded::now("tansu", child.id());
        let verdict = verify(&rec, &scopes(&stack));
        child.kill().unwrap();
        child.wait().unwrap();
        match verdict {
            Verdict::NotOurs(why) => assert!(why.contains("outside"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_program_or_a_reused_pid_is_not_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = spawn_named(&tmp.path().join("bin"), "sleep", tmp.path());
        let as_moto = Recorded::now("moto", child.id());
        let wrong_program = verify(&as_moto, &scopes(tmp.path()));
        let as_moto_later = Recorded {
            name: "moto".into(),
            pid: child.id() as i32,
            start_time: as_moto.start_time.map(|t| t + 1),
        };
        let reused = verify(&as_moto_later, &scopes(tmp.path()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            matches!(&wrong_program, Verdict::NotOurs(why) if why.contains("not moto_server")),
            "{wrong_program:?}"
        );
        assert!(
            matches!(&reused, Verdict::NotOurs(why) if why.contains("reused")),
            "{reused:?}"
        );
    }

    #[test]
    fn the_postgres_data_dir_argument_counts_as_its_place() {
        let cmd: Vec<String> = ["/usr/lib/postgresql/16/bin/postgres", "-D", "/t/pg/data"]
            .map(String::from)
            .to_vec();
        assert_eq!(data_dir_arg(&cmd), Some(PathBuf::from("/t/pg/data")));
        assert_eq!(
            data_dir_arg(&["postgres".into(), "-D/x".into()]),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(data_dir_arg(&["postgres".into()]), None);
    }

    #[test]
    fn no_process_is_gone() {
        let rec = Recorded {
            name: "tansu".into(),
            pid: i32::MAX,
            start_time: None,
        };
        assert_eq!(verify(&rec, &[]), Verdict::Gone);
    }
}
