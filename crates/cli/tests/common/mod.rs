//! Fixtures shared by the CLI tests, which run the real binary with the real default model.

use std::path::{Path, PathBuf};

/// Eight product titles in four groups (drills, lights, hoses, screws).
#[allow(dead_code)] // not every test file uses them
pub const TITLES: [&str; 8] = [
    "cordless drill 20v",
    "hammer drill bit set",
    "claw hammer steel",
    "led ceiling light",
    "pendant lamp shade",
    "garden hose 50 ft",
    "hose nozzle sprayer",
    "wood screws box",
];

/// A catalog TSV of the first `n` [`TITLES`] with ids 100, 101, ...
#[allow(dead_code)]
pub fn write_catalog(path: &Path, n: usize) {
    let mut s = String::from("product_uid\tproduct_title\n");
    for (i, t) in TITLES.iter().take(n).enumerate() {
        s.push_str(&format!("{}\t{t}\n", 100 + i));
    }
    std::fs::write(path, s).unwrap();
}

/// The default model installed by `scripts/setup.sh` (`$STRATA_MODELS` or `<repo>/models`);
/// the test fails with how to install it when it is missing.
pub fn default_model() -> PathBuf {
    let base = std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let dir = base.join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "default model missing at {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}
