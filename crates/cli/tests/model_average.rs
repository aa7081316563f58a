//! `strata model average` run as the real binary on the real default model (installed by
//! `scripts/setup.sh`): the soup of a Hugging Face folder with a copy of itself has the same
//! tensors and files, and embeds the same; bad invocations exit with an error that names the
//! cause and leave the output folder as it was.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::default_model;

fn strata(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

/// `strata model average --out OUT MODEL...`.
fn average(out: &Path, models: &[&Path]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "model".as_ref(),
        "average".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(models.iter().map(|m| m.as_os_str()));
    strata(&args)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    v.sort();
    v
}

fn embed(model: &Path, dir: &Path) -> String {
    let input = dir.join("texts.txt");
    std::fs::write(&input, "cordless drill\ngarden hose 50 ft\n").unwrap();
    let out = dir.join(format!(
        "{}.jsonl",
        model.file_name().unwrap().to_string_lossy()
    ));
    let o = strata(&[
        "embed".as_ref(),
        "--threads".as_ref(),
        "1".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn averaging_the_default_model_with_a_copy_gives_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = default_model();
    let copy = dir.join("copy");
    copy_dir(&base, &copy);
    let soup = dir.join("soup");
    let o = average(&soup, &[&base, &copy]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("mean of 2 models"), "{stdout}");
    let (got, want) = (
        tensors(&soup.join("model.safetensors")),
        tensors(&base.join("model.safetensors")),
    );
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(g == w, "{} {:?} differs from {} {:?}", g.0, g.1, w.0, w.1);
    }
    for f in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        assert_eq!(
            std::fs::read(soup.join(f)).unwrap(),
            std::fs::read(base.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(soup.join("averaged.json").is_file());
    assert_eq!(embed(&soup, dir), embed(&base, dir));

    // One model is a usage error; an existing output folder is refused and kept.
    let o = average(&dir.join("one"), &[&base]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!dir.join("one").exists());
    let before = std::fs::read(soup.join("averaged.json")).unwrap();
    let o = average(&soup, &[&base, &copy]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("exists"), "{stderr}");
    assert_eq!(std::fs::read(soup.join("averaged.json")).unwrap(), before);
}
