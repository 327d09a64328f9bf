//! The built binary on files in a temp dir.

use std::fmt::Write as _;
use std::process::Command;

fn backtest() -> Command {
    Command::new(env!("CARGO_BIN_EXE_logpipe-backtest"))
}

#[test]
fn binary_scores_a_csv_file_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("series.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..200 {
        // a deterministic wobble around 50, and one spike
        let v = if i == 150 {
            500.0
        } else {
            50.0 + ((i * 7) % 11) as f64
        };
        writeln!(csv, "{},{v}", 1_763_805_600 + 60 * i).unwrap();
    }
    std::fs::write(&input, &csv).unwrap();
    let output = dir.path().join("scored.csv");

    let run = backtest()
        .args(["--window", "30"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("200 rows, 1 flagged, 0 bad lines"),
        "{stderr}"
    );
    let scored = std::fs::read_to_string(&output).unwrap();
    let spike = scored.lines().nth(151).unwrap();
    assert!(spike.starts_with("1763814600,500,"), "{spike}");
    assert_eq!(spike.split(',').nth(3), Some("1"));

    // a bad line: exit 1 and the line number; --skip-bad: counted, exit 0
    std::fs::write(&input, format!("{csv}1763900000,x\n")).unwrap();
    let run = backtest().arg(&input).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr.contains("line 202: value \"x\" is not a number"),
        "{stderr}"
    );
    let run = backtest().arg("--skip-bad").arg(&input).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success());
    assert!(stderr.contains("skipped line 202"), "{stderr}");
    assert!(
        stderr.contains("200 rows, 1 flagged, 1 bad lines"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).lines().count(), 201);

    // usage errors exit 2; --help exits 0
    assert_eq!(
        backtest().arg("--nope").output().unwrap().status.code(),
        Some(2)
    );
    let help = backtest().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("USAGE:"));
}
