//! Crash-safe index mutations: every change writes a new generation of the data files beside
//! the current one and switches to it with one atomic rename of `manifest.json`.
//!
//! An index directory holds `manifest.json` and the data files of its current generation:
//! generation 0 (every index `strata index build` writes) keeps them in the index directory
//! itself, generation `n > 0` in the subdirectory `gen-n/`. A mutation ([`commit`]):
//! 1. removes leftovers of interrupted mutations (`gen-*.partial`, generations the manifest
//!    does not name);
//! 2. stages generation `n + 1` in `gen-{n+1}.partial/`: files the mutation rewrites in place
//!    are copied, the others hard-linked (they are only ever replaced by rename, so the old
//!    generation's copy never changes);
//! 3. lets the mutation write the staged files, syncs them, and renames the stage to
//!    `gen-{n+1}/`;
//! 4. writes the new manifest naming generation `n + 1` (temporary file, sync, rename, sync of
//!    the directory): **the commit point**;
//! 5. removes the old generation's files.
//!
//! A process killed anywhere before step 4 leaves the old manifest naming the old, untouched
//! generation: the index is the old one. Killed after it, the index is the new one. A server
//! that has the old generation memory-mapped keeps serving it until it reopens.
//!
//! Tests stop a mutation at each phase through the environment variable
//! `STRATA_FAILPOINT=<phase>` (the process aborts there, as a `kill -9` would); the phases are
//! listed in [`PHASES`].

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::manifest::Manifest;

/// Name of the manifest file.
pub const MANIFEST: &str = "manifest.json";
/// Manifest format version of indexes whose data live in a generation directory.
pub const GENERATION_FORMAT: u32 = 2;

/// The data files and folders of one generation.
pub const DATA_ENTRIES: [&str; 9] = [
    crate::index::ITEMS,
    crate::index::EMBEDDINGS,
    crate::index::EMBEDDINGS_F16,
    crate::index::EMBEDDINGS_I8,
    crate::index::EMBEDDINGS_I8_SCALES,
    crate::index::HNSW,
    crate::index::HNSW_ORPHANS,
    crate::index::THRESHOLDS,
    crate::index::BM25_DIR,
];

/// Failpoints of a mutation, in order: after staging, inside the mutation (after the
/// embeddings, graph, BM25 and item files), after syncing the stage, after renaming it, and
/// after the manifest switch (before the old generation is removed).
pub const PHASES: [&str; 8] = [
    "index-staged",
    "index-embeddings",
    "index-hnsw",
    "index-bm25",
    "index-items",
    "index-synced",
    "index-renamed",
    "index-committed",
];

/// Aborts the process when `STRATA_FAILPOINT` names `phase` (crash tests).
pub fn failpoint(phase: &str) {
    if std::env::var("STRATA_FAILPOINT").is_ok_and(|v| v == phase) {
        eprintln!("strata: failpoint {phase}: aborting");
        std::process::abort();
    }
}

/// Directory holding the data files of generation `generation` of the index at `dir`.
pub fn data_dir(dir: &Path, generation: u64) -> PathBuf {
    if generation == 0 {
        dir.to_path_buf()
    } else {
        dir.join(format!("gen-{generation}"))
    }
}

/// Leftovers of interrupted mutations in the index at `dir` whose manifest names generation
/// `current`: staged generations, generations other than the current one, temporary files.
pub fn stale_entries(dir: &Path, current: u64) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let stale_gen = name.strip_prefix("gen-").is_some_and(|rest| {
            rest.ends_with(".partial") || rest.parse::<u64>().is_ok_and(|g| g != current)
        });
        let stale_tmp = name.ends_with(".tmp");
        // Generation 0's files at the root after the index moved to a generation directory.
        let stale_root = current > 0 && DATA_ENTRIES.contains(&name.as_str());
        if stale_gen || stale_tmp || stale_root {
            out.push(e.path());
        }
    }
    let data = data_dir(dir, current);
    if current > 0 && data.is_dir() {
        for e in
            std::fs::read_dir(&data).with_context(|| format!("cannot list {}", data.display()))?
        {
            let e = e?;
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Removes files or folders.
pub fn remove_all(paths: &[PathBuf]) -> anyhow::Result<()> {
    for p in paths {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
    }
    Ok(())
}

/// Recreates `src` at `dst`: files hard-linked when `link` (copied where the file system
/// cannot link), else copied.
fn clone_tree(src: &Path, dst: &Path, link: bool) -> anyhow::Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
        for e in std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))? {
            let e = e?;
            clone_tree(&e.path(), &dst.join(e.file_name()), link)?;
        }
        return Ok(());
    }
    if link && std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))
}

/// Syncs every file below `path` and the folders themselves.
pub fn sync_tree(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        for e in
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
        {
            sync_tree(&e?.path())?;
        }
    }
    sync_path(path)
}

fn sync_path(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", path.display()))
}

/// Writes the manifest of the index at `dir` atomically and durably.
pub fn write_manifest(dir: &Path, m: &Manifest) -> anyhow::Result<()> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join("manifest.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(m)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    sync_path(&tmp)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    sync_path(dir)
}

/// Runs `mutate` on a staged copy of the current generation of the index at `dir` and
/// switches to the result (see the module documentation). `copied` names the data entries
/// that `mutate` changes in place (they are copied; every other entry is hard-linked and may
/// only be replaced by a rename). `mutate` gets the staging directory and the manifest to
/// write. Returns the new manifest.
pub fn commit(
    dir: &Path,
    current: &Manifest,
    copied: &[&str],
    mutate: impl FnOnce(&Path, &mut Manifest) -> anyhow::Result<()>,
) -> anyhow::Result<Manifest> {
    remove_all(&stale_entries(dir, current.generation)?)?;
    let old = data_dir(dir, current.generation);
    let next = current.generation + 1;
    let stage = dir.join(format!("gen-{next}.partial"));
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create {}", stage.display()))?;
    for name in DATA_ENTRIES {
        let src = old.join(name);
        if !src.exists() {
            continue;
        }
        clone_tree(&src, &stage.join(name), !copied.contains(&name))?;
    }
    failpoint("index-staged");
    let mut manifest = current.clone();
    mutate(&stage, &mut manifest)?;
    remove_all(&stale_tmp(&stage)?)?;
    sync_tree(&stage)?;
    failpoint("index-synced");
    let target = data_dir(dir, next);
    std::fs::rename(&stage, &target)
        .with_context(|| format!("cannot rename {} to {}", stage.display(), target.display()))?;
    sync_path(dir)?;
    failpoint("index-renamed");
    manifest.generation = next;
    manifest.format_version = GENERATION_FORMAT;
    write_manifest(dir, &manifest)?;
    failpoint("index-committed");
    // The switch is done: what remains is clean-up, which the next mutation or
    // `strata index repair` also does.
    remove_all(&stale_entries(dir, next)?)?;
    Ok(manifest)
}

fn stale_tmp(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            out.push(e.path());
        }
    }
    Ok(out)
}
