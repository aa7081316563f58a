//! Fixtures shared by the CLI tests, which run the real binary with the real default model.

use std::path::Path;

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

pub use strata_testkit::default_model;
