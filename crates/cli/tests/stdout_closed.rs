//! A command whose standard output is closed before it writes (`strata ... | head`) ends
//! quietly with status 0, neither panicking nor reporting an error, and the same command with
//! its output read prints in full.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn strata(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.args(args)
        .env_remove("STRATA_MODEL")
        .env("STRATA_LOG", "warn");
    c
}

/// Runs the command with standard output a pipe whose reading end is already closed.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap()
}

fn assert_quiet(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("error") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/homedepot.toml");
    let args = [
        "pipeline",
        "--config",
        recipe.to_str().unwrap(),
        "--print-config",
    ];
    let read = strata(&args).output().unwrap();
    assert!(read.status.success());
    let text = String::from_utf8(read.stdout).unwrap();
    assert!(
        text.contains("[stage1.train]") && text.len() > 1000,
        "{text}"
    );

    assert_quiet(&with_closed_stdout(strata(&args)));
}

#[test]
fn embeddings_into_a_closed_pipe_end_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("texts.txt");
    std::fs::write(&input, "cordless drill\nwood screws\n").unwrap();
    let model = strata_testkit::default_model();
    let args = [
        "--threads",
        "1",
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        "-",
    ];
    let read = strata(&args).output().unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(String::from_utf8(read.stdout).unwrap().lines().count(), 2);

    assert_quiet(&with_closed_stdout(strata(&args)));

    // Any other failure to write stays an error: a full device (Linux's /dev/full).
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = strata(&args)
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error") && err.contains("No space left"),
        "{err}"
    );
}
