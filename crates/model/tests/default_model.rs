//! Integration tests with the real default model (all-MiniLM-L6-v2). They need the model
//! installed by `scripts/setup.sh`; the models directory is `$STRATA_MODELS` or `<repo>/models`.

use strata_model::{Embedder, LoadOptions, Side};

use strata_testkit::default_model;

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

#[test]
fn embedding_does_not_depend_on_the_batch() {
    let e = Embedder::load(&default_model(), &LoadOptions::default()).unwrap();
    let short = "cordless drill";
    let alone = e.embed(&[short], Side::Item).unwrap();
    let mixed = e
        .embed(
            &[
                "a considerably longer product title with many words, sizes and a brand name 12 oz",
                short,
                "x",
            ],
            Side::Item,
        )
        .unwrap();
    let d = e.config().dim();
    let diff = alone
        .iter()
        .zip(&mixed[d..2 * d])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "batch changed the embedding by {diff}");
}

/// The CPU engine against the tensor model on the real model: f32 equal to rounding, int8
/// close (cosine) and keeping the reference similarities' order.
#[test]
fn cpu_engine_matches_the_tensor_model() {
    use strata_model::Precision;
    let texts = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
        "Simpson Strong-Tie 12-Gauge Angle",
        "angle bracket",
        "Husky 52 in. 10-Drawer Mobile Workbench with Solid Wood Top, Black",
        "x",
    ];
    // A projection head and untied towers, so every part of the engine runs.
    let opts = LoadOptions {
        projection_dim: Some(64),
        asymmetric: true,
        ..Default::default()
    };
    let tensor = Embedder::load(&default_model(), &opts).unwrap();
    let f32 = Embedder::load(
        &default_model(),
        &LoadOptions {
            precision: Some(Precision::F32),
            ..opts.clone()
        },
    )
    .unwrap();
    let int8 = Embedder::load(
        &default_model(),
        &LoadOptions {
            precision: Some(Precision::Int8),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(tensor.precision(), None);
    assert_eq!(int8.precision(), Some(Precision::Int8));
    let d = 64;
    for side in [Side::Query, Side::Item] {
        let want = tensor.embed(&texts, side).unwrap();
        let got = f32.embed(&texts, side).unwrap();
        let diff = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{side:?}: f32 engine differs by {diff}");
        let q = int8.embed(&texts, side).unwrap();
        for i in 0..texts.len() {
            let c = cos(&want[i * d..(i + 1) * d], &q[i * d..(i + 1) * d]);
            assert!(c > 0.99, "{side:?} {:?}: int8 cosine {c}", texts[i]);
        }
    }
    // The plain model's reference similarities survive int8.
    let plain = Embedder::load(
        &default_model(),
        &LoadOptions {
            precision: Some(Precision::Int8),
            ..Default::default()
        },
    )
    .unwrap();
    let v = plain.embed(&texts[..3], Side::Query).unwrap();
    let r = |i: usize| &v[i * 384..(i + 1) * 384];
    let (c01, c02, c12) = (cos(r(0), r(1)), cos(r(0), r(2)), cos(r(1), r(2)));
    assert!((c01 - 0.6660).abs() < 0.02, "cos(0,1) = {c01}");
    assert!((c02 - 0.1046).abs() < 0.02, "cos(0,2) = {c02}");
    assert!((c12 - 0.1411).abs() < 0.02, "cos(1,2) = {c12}");
}

/// Identity heads on the real model: the two-tower model with 384 -> 384 heads embeds exactly
/// as the plain encoder does (the recipe's head lever starts from the pretrained geometry),
/// random heads do not, and identity heads of another size are refused.
#[test]
fn identity_heads_keep_the_pretrained_embeddings() {
    let plain = Embedder::load(&default_model(), &LoadOptions::default()).unwrap();
    let load = |head_init, projection_dim| {
        Embedder::load(
            &default_model(),
            &LoadOptions {
                projection_dim: Some(projection_dim),
                head_init,
                ..Default::default()
            },
        )
    };
    let identity = load(strata_model::HeadInit::Identity, 384).unwrap();
    let random = load(strata_model::HeadInit::Random, 384).unwrap();
    let texts = ["angle bracket", "Simpson Strong-Tie 12-Gauge Angle"];
    for side in [Side::Query, Side::Item] {
        let a = plain.embed(&texts, side).unwrap();
        let b = identity.embed(&texts, side).unwrap();
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-5,
            "{side:?}: identity heads moved embeddings by {diff}"
        );
        let r = random.embed(&texts, side).unwrap();
        assert!(
            cos(&a[..384], &r[..384]) < 0.9,
            "random heads kept the embedding"
        );
    }
    let err = format!(
        "{:#}",
        load(strata_model::HeadInit::Identity, 64).err().unwrap()
    );
    assert!(err.contains("square") && err.contains("64"), "{err}");
}

#[test]
fn save_load_round_trip_gives_identical_embeddings() {
    let opts = LoadOptions {
        projection_dim: Some(64),
        asymmetric: true,
        ..Default::default()
    };
    let e = Embedder::load(&default_model(), &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    strata_model::save_model(&dir, e.model(), e.config(), e.tokenizer()).unwrap();
    let back = Embedder::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(back.config(), e.config());
    let texts = ["angle bracket", "Simpson Strong-Tie 12-Gauge Angle"];
    for side in [Side::Query, Side::Item] {
        let a = e.embed(&texts, side).unwrap();
        let b = back.embed(&texts, side).unwrap();
        assert_eq!(a.len(), 2 * 64);
        assert_eq!(a, b, "{side:?} embeddings differ after a round trip");
    }
}

#[test]
fn sentence_transformers_export_holds_the_query_tower() {
    let opts = LoadOptions {
        projection_dim: Some(32),
        ..Default::default()
    };
    let e = Embedder::load(&default_model(), &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("st");
    strata_model::export_sentence_transformers(&dir, e.model(), e.config(), e.tokenizer()).unwrap();
    let modules: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("modules.json")).unwrap()).unwrap();
    let types: Vec<&str> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "sentence_transformers.models.Transformer",
            "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Dense",
            "sentence_transformers.models.Normalize"
        ]
    );
    // The exported folder is itself a Hugging Face folder: its encoder must reproduce ours.
    let plain = Embedder::load(&dir, &LoadOptions::default()).unwrap();
    let original = Embedder::load(&default_model(), &LoadOptions::default()).unwrap();
    let t = ["stainless steel dishwasher"];
    assert_eq!(
        plain.embed(&t, Side::Query).unwrap(),
        original.embed(&t, Side::Query).unwrap()
    );
    // And the Dense layer holds the query head in PyTorch layout [out, in].
    let bytes = std::fs::read(dir.join("2_Dense/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("linear.weight").unwrap().shape(), &[32, 384]);
    assert_eq!(st.tensor("linear.bias").unwrap().shape(), &[32]);
}

#[test]
fn bad_model_directories_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = Embedder::load(&missing, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = format!(
        "{:#}",
        Embedder::load(&empty, &LoadOptions::default())
            .err()
            .unwrap()
    );
    assert!(
        err.contains("config.json") && err.contains("model.safetensors"),
        "{err}"
    );

    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(default_model().join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("config.json"), "{\"model_type\": \"bert\",").unwrap();
    let err = format!(
        "{:#}",
        Embedder::load(&broken, &LoadOptions::default())
            .err()
            .unwrap()
    );
    assert!(err.contains("config.json") && err.contains("JSON"), "{err}");

    std::fs::copy(
        default_model().join("config.json"),
        broken.join("config.json"),
    )
    .unwrap();
    std::fs::write(broken.join("model.safetensors"), b"garbage").unwrap();
    let err = format!(
        "{:#}",
        Embedder::load(&broken, &LoadOptions::default())
            .err()
            .unwrap()
    );
    assert!(err.contains("model.safetensors"), "{err}");
}
