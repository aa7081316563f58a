//! Integration tests with the real default model (all-MiniLM-L6-v2). They need the model
//! installed by `scripts/setup.sh`; the models directory is `$STRATA_MODELS` or `<repo>/models`.

use std::path::PathBuf;

use strata_model::{Embedder, LoadOptions, Side};

fn default_model() -> PathBuf {
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

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_parity_with_reference_similarities() {
    let e = Embedder::load(&default_model(), &LoadOptions::default()).unwrap();
    let texts = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ];
    let v = e.embed(&texts, Side::Query).unwrap();
    let d = e.config().dim();
    assert_eq!(d, 384);
    let r = |i: usize| &v[i * d..(i + 1) * d];
    for i in 0..3 {
        let n: f32 = r(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "row {i} norm {n}");
    }
    let c01 = cos(r(0), r(1));
    let c02 = cos(r(0), r(2));
    let c12 = cos(r(1), r(2));
    assert!((c01 - 0.6660).abs() < 1e-3, "cos(0,1) = {c01}");
    assert!((c02 - 0.1046).abs() < 1e-3, "cos(0,2) = {c02}");
    assert!((c12 - 0.1411).abs() < 1e-3, "cos(1,2) = {c12}");
}
