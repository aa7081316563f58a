//! Weight averaging (`strata_model::average_models`, `strata model average`): the soup's
//! tensors are the element-wise means of its sources', it loads and embeds as an ordinary
//! model, and mismatched or misplaced inputs are refused with errors that name the file at
//! fault, leaving nothing behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use strata_model::average::{AVERAGED, average_models};
use strata_model::{Embedder, LoadOptions, Side, TwoTower};
use strata_testkit::{fixture_words, tiny_tower, vocab_size, word_tokenizer};

fn tiny_model(root: &Path, name: &str, seed: u64, projection_dim: Option<usize>) -> PathBuf {
    let dir = root.join(name);
    let device = Device::flex();
    device.seed(seed);
    let words = fixture_words();
    let cfg = tiny_tower(vocab_size(&words), projection_dim);
    let model = TwoTower::init(&cfg, &device);
    strata_model::save_model(&dir, &model, &cfg, &word_tokenizer(&words, 16)).unwrap();
    dir
}

/// Every tensor of a safetensors file as f32 values (f32 files only).
fn read_f32(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            assert_eq!(v.dtype(), Dtype::F32, "{n}");
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, (v.shape().to_vec(), vals))
        })
        .collect()
}

#[test]
fn the_soup_of_strata_models_is_the_mean_of_their_weights_and_embeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3)
        .map(|k| tiny_model(tmp.path(), &format!("seed{k}"), 11 + k, Some(16)))
        .collect();
    let out = tmp.path().join("soups").join("soup");
    let report = average_models(&dirs, &out).unwrap();
    assert_eq!(report.models, 3);
    assert_eq!(report.weight_files, 1);
    assert_eq!(report.copied_tensors, 0);

    let sources: Vec<_> = dirs
        .iter()
        .map(|d| read_f32(&d.join("model.safetensors")))
        .collect();
    let soup = read_f32(&out.join("model.safetensors"));
    assert_eq!(soup.len(), sources[0].len());
    assert_eq!(report.averaged_tensors, soup.len());
    let mut differing = 0;
    for (name, (shape, vals)) in &soup {
        let (s0, v0) = &sources[0][name];
        assert_eq!(shape, s0, "{name}");
        for (i, x) in vals.iter().enumerate() {
            let want = sources.iter().map(|s| s[name].1[i] as f64).sum::<f64>() / 3.0;
            assert!(
                (*x as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{name}[{i}]: {x}, want {want}"
            );
        }
        if vals != v0 {
            differing += 1;
        }
    }
    // The seeds differ, so most tensors of the soup differ from every source.
    assert!(differing * 2 > soup.len(), "{differing} of {}", soup.len());

    // The configuration and tokenizer are the sources'; the provenance names every source.
    for f in ["strata.json", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(dirs[0].join(f)).unwrap(),
            "{f}"
        );
    }
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(AVERAGED)).unwrap()).unwrap();
    let models = prov["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for (m, d) in models.iter().zip(&dirs) {
        assert_eq!(m["path"], d.display().to_string());
        assert_eq!(
            m["fingerprint"],
            strata_model::model_fingerprint(d).unwrap()
        );
    }
    // Nothing but the soup was written next to it.
    let siblings: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(siblings.len(), 1);

    // It is an ordinary strata model.
    let e = Embedder::load(&out, &LoadOptions::default()).unwrap();
    let v = e.embed(&["red drill", "blue saw"], Side::Query).unwrap();
    assert_eq!(v.len(), 2 * 16);
    for row in v.chunks(16) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn the_soup_of_a_model_with_itself_is_that_model() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tiny_model(tmp.path(), "a", 5, Some(16));
    let copy = tmp.path().join("a-copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["strata.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(a.join(f), copy.join(f)).unwrap();
    }
    let out = tmp.path().join("soup");
    average_models(&[a.clone(), copy], &out).unwrap();
    assert_eq!(
        read_f32(&out.join("model.safetensors")),
        read_f32(&a.join("model.safetensors"))
    );
    let texts = ["red drill", "green hammer"];
    let want = Embedder::load(&a, &LoadOptions::default())
        .unwrap()
        .embed(&texts, Side::Item)
        .unwrap();
    let got = Embedder::load(&out, &LoadOptions::default())
        .unwrap()
        .embed(&texts, Side::Item)
        .unwrap();
    assert_eq!(got, want);
}

fn write_tensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, dt, s, b)| (n.to_string(), TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bf16s(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect()
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A Hugging Face / sentence-transformers-shaped folder with an f32, a bf16 and an i64 tensor,
/// and a nested Dense head.
fn hf_folder(
    root: &Path,
    name: &str,
    w: &[f32],
    h: &[f32],
    ids: &[i64],
    dense: &[f32],
    readme: &str,
) -> PathBuf {
    let dir = root.join(name);
    write_tensors(
        &dir.join("model.safetensors"),
        &[
            ("encoder.weight", Dtype::F32, vec![2, 2], f32s(w)),
            ("encoder.half", Dtype::BF16, vec![2], bf16s(h)),
            ("embeddings.position_ids", Dtype::I64, vec![1, 3], i64s(ids)),
        ],
    );
    write_tensors(
        &dir.join("2_Dense").join("model.safetensors"),
        &[("linear.weight", Dtype::F32, vec![2], f32s(dense))],
    );
    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": 2, "model_type": "bert"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer.json"), r#"{"version": "1.0"}"#).unwrap();
    std::fs::write(
        dir.join("2_Dense").join("config.json"),
        r#"{"out_features": 2}"#,
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), readme).unwrap();
    dir
}

#[test]
fn hugging_face_folders_average_every_weight_file_and_copy_integer_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = hf_folder(
        tmp.path(),
        "a",
        &[1.0, 2.0, -0.0, -4.0],
        &[1.0, 0.5],
        &[0, 1, 2],
        &[10.0, 0.0],
        "trained with seed 1",
    );
    // Formatting differences in the configuration do not matter. The mean of -0.0 and -0.0
    // keeps its sign (a model averaged with itself is that model, bit for bit).
    let b = hf_folder(
        tmp.path(),
        "b",
        &[3.0, 5.0, -0.0, 4.0],
        &[2.0, 0.25],
        &[0, 1, 2],
        &[0.0, -1.0],
        "trained with seed 2",
    );
    std::fs::write(
        b.join("config.json"),
        "{\n  \"model_type\": \"bert\",\n  \"hidden_size\": 2\n}\n",
    )
    .unwrap();
    let out = tmp.path().join("soup");
    let r = average_models(&[a.clone(), b], &out).unwrap();
    assert_eq!(r.weight_files, 2);
    assert_eq!(r.averaged_tensors, 3);
    assert_eq!(r.copied_tensors, 1);

    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("encoder.weight").unwrap().data(),
        f32s(&[2.0, 3.5, -0.0, 0.0])
    );
    let half = st.tensor("encoder.half").unwrap();
    assert_eq!(half.dtype(), Dtype::BF16);
    assert_eq!(half.data(), bf16s(&[1.5, 0.375]));
    let ids = st.tensor("embeddings.position_ids").unwrap();
    assert_eq!((ids.dtype(), ids.shape()), (Dtype::I64, &[1usize, 3][..]));
    assert_eq!(ids.data(), i64s(&[0, 1, 2]));
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let dense = std::fs::read(out.join("2_Dense").join("model.safetensors")).unwrap();
    let dense = SafeTensors::deserialize(&dense).unwrap();
    assert_eq!(
        dense.tensor("linear.weight").unwrap().data(),
        f32s(&[5.0, -0.5])
    );
    // Other files come from the first model.
    assert_eq!(
        std::fs::read_to_string(out.join("README.md")).unwrap(),
        "trained with seed 1"
    );
    assert_eq!(
        std::fs::read(out.join("2_Dense").join("config.json")).unwrap(),
        std::fs::read(a.join("2_Dense").join("config.json")).unwrap()
    );
}

/// `average_models` fails with a message containing every part of `want`, and writes nothing.
fn refused(dirs: &[PathBuf], out: &Path, want: &[&str]) {
    let parent = out.parent().unwrap();
    let before: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let err = format!("{:#}", average_models(dirs, out).unwrap_err());
    for w in want {
        assert!(err.contains(w), "{err:?} lacks {w:?}");
    }
    let after: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len(), "{after:?}");
}

#[test]
fn mismatched_models_and_an_existing_output_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = tiny_model(root, "a", 1, Some(16));
    let b = tiny_model(root, "b", 2, Some(16));
    let out = root.join("soup");

    refused(
        std::slice::from_ref(&a),
        &out,
        &["at least two models, got 1"],
    );

    // Another head size: the configuration names the field.
    let c = tiny_model(root, "c", 3, Some(8));
    refused(
        &[a.clone(), c.clone()],
        &out,
        &[
            &c.join("strata.json").display().to_string(),
            "\"projection_dim\"",
        ],
    );

    // Same configuration, another tokenizer.
    let d = tiny_model(root, "d", 4, Some(16));
    std::fs::write(
        d.join("tokenizer.json"),
        strata_testkit::word_tokenizer_json(&["red", "drill"]),
    )
    .unwrap();
    refused(
        &[a.clone(), d],
        &out,
        &[
            "tokenizer.json differs from",
            "one architecture and tokenizer",
        ],
    );

    // Same configuration, a tensor of another shape: the file and the tensor are named.
    let e = hf_folder(root, "e", &[1.0; 4], &[1.0; 2], &[0, 1, 2], &[1.0; 2], "");
    let f = hf_folder(root, "f", &[1.0; 4], &[1.0; 2], &[0, 1, 2], &[1.0; 2], "");
    write_tensors(
        &f.join("2_Dense").join("model.safetensors"),
        &[("linear.weight", Dtype::F32, vec![1, 2], f32s(&[1.0; 2]))],
    );
    refused(
        &[e.clone(), f.clone()],
        &out,
        &[
            &f.join("2_Dense")
                .join("model.safetensors")
                .display()
                .to_string(),
            "tensor linear.weight",
            "F32[1, 2]",
        ],
    );

    // Integer tensors that differ cannot be averaged.
    let g = hf_folder(root, "g", &[1.0; 4], &[1.0; 2], &[0, 1, 5], &[1.0; 2], "");
    refused(
        &[e.clone(), g],
        &out,
        &["embeddings.position_ids", "must be equal in every model"],
    );

    // A weight file only one model has.
    let h = hf_folder(root, "h", &[1.0; 4], &[1.0; 2], &[0, 1, 2], &[1.0; 2], "");
    std::fs::remove_file(h.join("2_Dense").join("model.safetensors")).unwrap();
    refused(
        &[e.clone(), h],
        &out,
        &["2_Dense/model.safetensors", "does not"],
    );

    // A strata model and a Hugging Face folder.
    refused(
        &[a.clone(), e.clone()],
        &out,
        &["is a strata model", "is a Hugging Face folder"],
    );

    // The same model twice.
    refused(&[a.clone(), a.clone()], &out, &["given twice"]);

    // An existing output folder is kept as it was.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    refused(&[a.clone(), b.clone()], &out, &["exists", "never replaces"]);
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}
