//! Fixtures shared by the CLI tests, which run the real binary with the real default model.

use std::path::PathBuf;

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
