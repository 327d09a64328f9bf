//! `logpipe-dev` finds its tree from the current directory and never
//! signals a recorded PID that is not this tree's stack — checked with real
//! processes and the real binary.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use logpipe_devstack::ownership::Recorded;
use logpipe_devstack::state::new_state;

/// A minimal logpipe tree (the root marker) in `dir`.
fn tree(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("tools/devstack")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"tools/devstack\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("tools/devstack/Cargo.toml"), "[package]\n").unwrap();
    let stack = dir.join(".local/stack");
    std::fs::create_dir_all(&stack).unwrap();
    stack
}

/// A real long-running process whose command line names `program` (a copy
/// of `sleep`), working in `cwd`.
fn spawn_as(bin_dir: &Path, program: &str, cwd: &Path) -> Child {
    std::fs::create_dir_all(bin_dir).unwrap();
    std::fs::create_dir_all(cwd).unwrap();
    let bin = bin_dir.join(program);
    if !bin.exists() {
        std::fs::copy("/bin/sleep", &bin).unwrap();
    }
    // ETXTBSY: a test on another thread forked while this copy was still
    // open for writing; its child holds the descriptor until it execs.
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

fn logpipe_dev(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logpipe-dev"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LOGPIPE_ROOT")
        .env_remove("LOGPIPE_STACK_DIR")
        .output()
        .unwrap()
}

fn write_state(stack: &Path, services: &[Recorded]) {
    let state = new_state(
        services,
        "postgres://postgres:x@127.0.0.1:1/postgres",
        "127.0.0.1:2",
        "http://127.0.0.1:3",
        1,
    );
    std::fs::write(
        stack.join("state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
}

fn still_running(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

fn finish(mut children: Vec<Child>) {
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn down_stops_this_trees_processes_and_leaves_others_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let copy = tmp.path().join("copy");
    let stack = tree(&copy);
    let original_stack = tree(&tmp.path().join("original"));

    let mut pg = spawn_as(&bin, "postgres", &stack.join("pg/data"));
    let mut tansu = spawn_as(&bin, "tansu", &stack);
    // The original tree's broker, as a copied state file would name it.
    let mut foreign_tansu = spawn_as(&bin, "tansu", &original_stack);
    // Some unrelated program that got a recorded PID.
    let mut unrelated = spawn_as(&bin, "sleep", tmp.path());
    write_state(
        &stack,
        &[
            Recorded::now("postgres", pg.id()),
            Recorded::now("tansu", tansu.id()),
            Recorded::now("tansu", foreign_tansu.id()),
            Recorded::now("moto", unrelated.id()),
        ],
    );

    // From a nested directory: the tree is found by walking up.
    let nested = copy.join("tools/devstack");
    let out = logpipe_dev(&nested, &["down"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let foreign_alive = still_running(&mut foreign_tansu);
    let unrelated_alive = still_running(&mut unrelated);
    // `down` returns once they have exited, so they are waitable now.
    let pg_status = pg.try_wait().unwrap();
    let tansu_status = tansu.try_wait().unwrap();
    finish(vec![pg, tansu, foreign_tansu, unrelated]);

    assert_eq!(
        pg_status.and_then(|s| s.signal()),
        Some(libc::SIGINT),
        "{stderr}"
    );
    assert_eq!(
        tansu_status.and_then(|s| s.signal()),
        Some(libc::SIGINT),
        "{stderr}"
    );
    assert!(
        foreign_alive,
        "the other tree's tansu was signalled: {stderr}"
    );
    assert!(
        unrelated_alive,
        "an unrelated process was signalled: {stderr}"
    );
    assert_eq!(stderr.matches("is stale").count(), 2, "{stderr}");
    assert!(stderr.contains("outside"), "{stderr}");
    assert!(stderr.contains("not moto_server"), "{stderr}");
    assert!(!stack.join("state.json").exists(), "stale state file kept");
}

#[test]
fn a_copied_state_file_is_not_a_running_stack() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let stack = tree(&tmp.path().join("copy"));
    let original = tree(&tmp.path().join("original"));
    let foreign = spawn_as(&bin, "tansu", &original);
    write_state(&stack, &[Recorded::now("tansu", foreign.id())]);

    let out = logpipe_dev(&tmp.path().join("copy"), &["env"]);
    finish(vec![foreign]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "env used another tree's stack");
    assert!(out.stdout.is_empty(), "printed another tree's environment");
    assert!(stderr.contains("stale"), "{stderr}");
}

#[test]
fn outside_a_logpipe_tree_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = logpipe_dev(tmp.path(), &["down"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not inside a logpipe tree"), "{stderr}");
}

#[test]
fn the_override_names_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let stack = tree(&tmp.path().join("chosen"));
    let mut tansu = spawn_as(&bin, "tansu", &stack);
    write_state(&stack, &[Recorded::now("tansu", tansu.id())]);
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_logpipe-dev"))
        .arg("down")
        .current_dir(&elsewhere)
        .env("LOGPIPE_ROOT", tmp.path().join("chosen"))
        .env_remove("LOGPIPE_STACK_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let status = tansu.try_wait().unwrap();
    finish(vec![tansu]);
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGINT),
        "{stderr}"
    );
}
