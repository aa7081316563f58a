//! Model directories: loading a Hugging Face folder, saving and loading strata models, and
//! exporting a sentence-transformers folder.
//!
//! A strata model directory holds:
//! - `strata.json`: the [`TowerConfig`];
//! - `model.safetensors`: every weight in PyTorch layout with Hugging Face names
//!   (`encoder.embeddings.word_embeddings.weight`, `query_head.weight` `[out, in]`, ...);
//! - `tokenizer.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::{DType, Device, Tensor};
use burn_store::{
    BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};

use crate::bert::BertEncoder;
use crate::config::EncoderConfig;
use crate::tokenize::TextTokenizer;
use crate::tower::{HeadInit, TowerConfig, TwoTower};

/// File names inside a strata model directory.
pub const STRATA_CONFIG: &str = "strata.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";

/// Options used when a plain Hugging Face folder is turned into a two-tower model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Projection head output dimension for a fresh model (`None`: no head).
    pub projection_dim: Option<usize>,
    /// Untied encoders (asymmetric variant) for a fresh model.
    pub asymmetric: bool,
    /// Prefixes for a fresh model; `None` picks "query: "/"passage: " for e5 models, else "".
    pub query_prefix: Option<String>,
    pub item_prefix: Option<String>,
    /// Truncation length for a fresh model (default 128, capped by the position table).
    pub max_len: Option<usize>,
    /// How the projection heads of a fresh model start.
    pub head_init: HeadInit,
    /// Seed of the random projection heads of a fresh model.
    pub seed: u64,
    /// Inference on strata's CPU engine at this precision ([`crate::engine`]); `None` runs the
    /// tensor model. On a GPU, `F32` means the tensor model and `Int8` is an error.
    pub precision: Option<crate::engine::Precision>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            projection_dim: None,
            asymmetric: false,
            query_prefix: None,
            item_prefix: None,
            max_len: None,
            head_init: HeadInit::Random,
            seed: 42,
            precision: None,
        }
    }
}

/// A loaded model: weights, configuration and tokenizer.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub model: TwoTower,
    pub config: TowerConfig,
    pub tokenizer_path: PathBuf,
}

/// What kind of model directory `dir` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelDirKind {
    /// A directory written by strata (`strata.json`).
    Strata,
    /// A Hugging Face folder (`config.json` + `model.safetensors` + `tokenizer.json`).
    HuggingFace,
}

/// Inspects `dir`, with a clear error when it is not a usable model directory.
pub fn model_dir_kind(dir: &Path) -> anyhow::Result<ModelDirKind> {
    if !dir.exists() {
        bail!("model directory {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("model path {} is not a directory", dir.display());
    }
    let has = |f: &str| dir.join(f).is_file();
    if has(STRATA_CONFIG) {
        for f in [WEIGHTS, TOKENIZER] {
            if !has(f) {
                bail!("strata model directory {} lacks {f}", dir.display());
            }
        }
        return Ok(ModelDirKind::Strata);
    }
    let missing: Vec<&str> = ["config.json", WEIGHTS, TOKENIZER]
        .into_iter()
        .filter(|f| !has(f))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a model directory: it lacks {} (expected a strata model with {STRATA_CONFIG}, or a Hugging Face folder with config.json, model.safetensors and tokenizer.json)",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(ModelDirKind::HuggingFace)
}

fn to_burn() -> impl ModuleAdapter + 'static {
    PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32))
}

/// Renames between Hugging Face keys and strata's module paths, on load.
const HF_TO_STRATA: [(&str, &str); 3] = [
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"LayerNorm\.", "layer_norm."),
    (r"^layer_norm\.", "layer_norm."),
];
/// And on save.
const STRATA_TO_HF: [(&str, &str); 2] = [
    (r"\.attention\.self_attn\.", ".attention.self."),
    (r"layer_norm\.", "LayerNorm."),
];

fn check_applied(result: burn_store::ApplyResult, what: &str, file: &Path) -> anyhow::Result<()> {
    if !result.errors.is_empty() {
        let msgs: Vec<String> = result
            .errors
            .iter()
            .take(5)
            .map(|e| format!("{e:?}"))
            .collect();
        bail!(
            "{}: cannot load {what}: {}",
            file.display(),
            msgs.join("; ")
        );
    }
    if !result.missing.is_empty() {
        let names: Vec<&str> = result
            .missing
            .iter()
            .take(8)
            .map(|(n, _)| n.as_str())
            .collect();
        bail!(
            "{}: {} tensor(s) of the {what} are missing from the file, e.g. {}",
            file.display(),
            result.missing.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Loads Hugging Face BERT-family weights (`model.safetensors`) into an encoder.
pub fn load_hf_encoder(encoder: &mut BertEncoder, file: &Path) -> anyhow::Result<()> {
    read_hf_weights(
        encoder,
        file,
        Some(r"^(bert|roberta|model|transformer)\."),
        "encoder",
    )
}

/// Reads Hugging Face-named weights from `file` into `module` (after stripping `prefix`, a
/// key pattern, when given); every parameter must be present. `what` names the module in
/// errors.
fn read_hf_weights<M: Module>(
    module: &mut M,
    file: &Path,
    prefix: Option<&str>,
    what: &str,
) -> anyhow::Result<()> {
    let mut store = SafetensorsStore::from_file(file)
        .with_from_adapter(to_burn())
        .allow_partial(true);
    if let Some(p) = prefix {
        store = store.with_key_remapping(p, "");
    }
    for (from, to) in HF_TO_STRATA {
        store = store.with_key_remapping(from, to);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{}: cannot read weights: {e}", file.display()))?;
    check_applied(result, what, file)
}

/// Loads a model directory (strata or Hugging Face) onto `device`.
pub fn load_model(dir: &Path, opts: &LoadOptions, device: &Device) -> anyhow::Result<LoadedModel> {
    match model_dir_kind(dir)? {
        ModelDirKind::Strata => load_strata(dir, device),
        ModelDirKind::HuggingFace => load_hf(dir, opts, device),
    }
}

fn load_hf(dir: &Path, opts: &LoadOptions, device: &Device) -> anyhow::Result<LoadedModel> {
    let encoder = EncoderConfig::from_hf_file(&dir.join("config.json"))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let e5 = name.contains("e5");
    let max_len = opts.max_len.unwrap_or(128).min(encoder.max_input_tokens());
    let config = TowerConfig {
        projection_dim: opts.projection_dim,
        asymmetric: opts.asymmetric,
        query_prefix: opts
            .query_prefix
            .clone()
            .unwrap_or_else(|| if e5 { "query: ".into() } else { String::new() }),
        item_prefix: opts.item_prefix.clone().unwrap_or_else(|| {
            if e5 {
                "passage: ".into()
            } else {
                String::new()
            }
        }),
        max_len,
        base_model: dir.display().to_string(),
        item_text: None,
        encoder,
    };
    if let Some(d) = config.projection_dim {
        anyhow::ensure!(d > 0, "projection dimension must be positive");
    }
    let mut model = crate::device::with_seed(device, opts.seed, || TwoTower::init(&config, device));
    if opts.head_init == HeadInit::Identity {
        model.set_identity_heads()?;
    }
    load_hf_encoder(&mut model.encoder, &dir.join(WEIGHTS))?;
    let model = model.copy_encoder_to_item_encoder();
    Ok(LoadedModel {
        model,
        config,
        tokenizer_path: dir.join(TOKENIZER),
    })
}

fn load_strata(dir: &Path, device: &Device) -> anyhow::Result<LoadedModel> {
    let cfg_path = dir.join(STRATA_CONFIG);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("cannot read {}", cfg_path.display()))?;
    let config: TowerConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid strata model config", cfg_path.display()))?;
    let mut model = TwoTower::init(&config, device);
    load_hf_module(&mut model, &dir.join(WEIGHTS), "model")?;
    Ok(LoadedModel {
        model,
        config,
        tokenizer_path: dir.join(TOKENIZER),
    })
}

fn hf_store(file: &Path) -> SafetensorsStore {
    let mut store = SafetensorsStore::from_file(file)
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true);
    for (from, to) in STRATA_TO_HF {
        store = store.with_key_remapping(from, to);
    }
    store
}

/// Writes every parameter of `module` to a safetensors file in PyTorch layout with Hugging Face
/// names (`...attention.self.query.weight` `[out, in]`, `...LayerNorm.weight`): the module's
/// field names give the rest of each key.
pub fn save_hf_module<M: Module>(module: &M, file: &Path) -> anyhow::Result<()> {
    let mut store = hf_store(file);
    module
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))
}

/// Loads a file written by [`save_hf_module`] into `module` (same architecture); every
/// parameter must be present. `what` names the module in errors.
pub fn load_hf_module<M: Module>(module: &mut M, file: &Path, what: &str) -> anyhow::Result<()> {
    read_hf_weights(module, file, None, what)
}

/// Writes a strata model directory (creating it if needed).
pub fn save_model(
    dir: &Path,
    model: &TwoTower,
    config: &TowerConfig,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Write into temporary names first so an interrupted save never leaves a half model.
    let tmp_weights = dir.join(format!("{WEIGHTS}.tmp"));
    save_hf_module(model, &tmp_weights)?;
    tokenizer
        .inner()
        .save(dir.join(TOKENIZER), false)
        .map_err(|e| anyhow::anyhow!("cannot write tokenizer in {}: {e}", dir.display()))?;
    let cfg = serde_json::to_string_pretty(config)?;
    std::fs::write(dir.join(format!("{STRATA_CONFIG}.tmp")), cfg)?;
    std::fs::rename(&tmp_weights, dir.join(WEIGHTS))?;
    std::fs::rename(
        dir.join(format!("{STRATA_CONFIG}.tmp")),
        dir.join(STRATA_CONFIG),
    )?;
    Ok(())
}

fn tensor_to_f32(t: Tensor<2>) -> anyhow::Result<(Vec<f32>, [usize; 2])> {
    let dims = t.dims();
    let v = t
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("tensor conversion: {e:?}"))?;
    Ok((v, dims))
}

/// Exports the query tower as a sentence-transformers folder: Transformer -> mean Pooling ->
/// Dense (the query head, if any) -> Normalize. Python users load it with
/// `SentenceTransformer(dir)`; text-embeddings-inference serves it.
pub fn export_sentence_transformers(
    dir: &Path,
    model: &TwoTower,
    config: &TowerConfig,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<()> {
    use serde_json::json;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_hf_module(&model.encoder, &dir.join(WEIGHTS))?;
    let write = |rel: &str, v: serde_json::Value| -> anyhow::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("cannot write {}", p.display()))
    };
    write("config.json", config.encoder.to_hf_json())?;
    tokenizer
        .inner()
        .save(dir.join(TOKENIZER), false)
        .map_err(|e| anyhow::anyhow!("cannot write tokenizer: {e}"))?;
    write(
        "sentence_bert_config.json",
        json!({"max_seq_length": config.max_len, "do_lower_case": false}),
    )?;
    let h = config.encoder.hidden_size;
    write(
        "1_Pooling/config.json",
        json!({
            "word_embedding_dimension": h,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if let Some(head) = &model.query_head {
        let (w, [din, dout]) = tensor_to_f32(head.weight.val())?;
        // burn stores [in, out]; PyTorch's Linear wants [out, in].
        let mut wt = vec![0f32; w.len()];
        for i in 0..din {
            for o in 0..dout {
                wt[o * din + i] = w[i * dout + o];
            }
        }
        let bias: Vec<f32> = match &head.bias {
            Some(b) => b
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            None => vec![0.0; dout],
        };
        std::fs::create_dir_all(dir.join("2_Dense"))?;
        write_safetensors(
            &dir.join("2_Dense").join(WEIGHTS),
            &[
                ("linear.weight", &wt, vec![dout, din]),
                ("linear.bias", &bias, vec![dout]),
            ],
        )?;
        write(
            "2_Dense/config.json",
            json!({"in_features": din, "out_features": dout, "bias": true,
                   "activation_function": "torch.nn.modules.linear.Identity"}),
        )?;
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}));
    }
    let n = modules.len();
    modules.push(json!({"idx": n, "name": n.to_string(), "path": format!("{n}_Normalize"), "type": "sentence_transformers.models.Normalize"}));
    std::fs::create_dir_all(dir.join(format!("{n}_Normalize")))?;
    write("modules.json", serde_json::Value::Array(modules))?;
    let mut st = json!({"similarity_fn_name": "cosine"});
    if !config.query_prefix.is_empty() {
        st["prompts"] = json!({"query": config.query_prefix, "document": config.item_prefix});
        st["default_prompt_name"] = json!("query");
    }
    write("config_sentence_transformers.json", st)?;
    Ok(())
}

/// Writes f32 tensors to a safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &[f32], Vec<usize>)],
) -> anyhow::Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _, shape), b)| {
            Ok((
                name.to_string(),
                TensorView::new(Dtype::F32, shape.clone(), b)?,
            ))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// SHA-256 (hex) over a model directory's configuration (`strata.json` or `config.json`),
/// `tokenizer.json` and `model.safetensors`, each prefixed by its name and length: what an
/// index, an embedding cache or a server checks to know that two runs used the same model.
pub fn model_fingerprint(dir: &Path) -> anyhow::Result<String> {
    let config = if dir.join("strata.json").is_file() {
        "strata.json"
    } else {
        "config.json"
    };
    use sha2::Digest;
    use std::io::Read;
    let mut h = sha2::Sha256::new();
    for name in [config, "tokenizer.json", "model.safetensors"] {
        let path = dir.join(name);
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("cannot fingerprint the model: {}", path.display()))?;
        let len = f.metadata()?.len();
        h.update(name.as_bytes());
        h.update(len.to_le_bytes());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
/// The item text recorded in a model directory (`item_text` of a strata model's
/// `strata.json`, written by the trainer); None for a Hugging Face folder or a model saved
/// without it.
pub fn recorded_item_text(dir: &Path) -> anyhow::Result<Option<strata_data::ItemTextConfig>> {
    let path = dir.join("strata.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: TowerConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a strata model configuration", path.display()))?;
    Ok(cfg.item_text)
}

/// The item text to embed items with for `model`: `explicit` when given (with a warning when
/// the model was trained on another), else the one the model records, else the default
/// (name and two taxonomy levels).
pub fn item_text_for(
    model: Option<&Path>,
    explicit: Option<strata_data::ItemTextConfig>,
) -> anyhow::Result<strata_data::ItemTextConfig> {
    let recorded = match model {
        Some(m) => recorded_item_text(m)?,
        None => None,
    };
    Ok(match (explicit, recorded) {
        (Some(e), Some(r)) => {
            if e != r {
                tracing::warn!(
                    "item text {e} differs from {r}, the item text model {} was trained with",
                    model.map(|m| m.display().to_string()).unwrap_or_default()
                );
            }
            e
        }
        (Some(e), None) => e,
        (None, Some(r)) => r,
        (None, None) => strata_data::ItemTextConfig::default(),
    })
}

/// The default root of strata's caches: `$STRATA_CACHE`, else `$XDG_CACHE_HOME/strata`, else
/// `~/.cache/strata` (None when none of them is set).
pub fn default_cache_root() -> Option<PathBuf> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    nonempty("STRATA_CACHE")
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|p| p.join("strata")))
        .or_else(|| nonempty("HOME").map(|p| p.join(".cache").join("strata")))
}

/// Where item embeddings are kept between runs: nowhere, the default root
/// ([`default_cache_root`]) or a given root. Each model, truncation length, device and
/// precision has its own directory under the root ([`item_cache_dir`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Embed every item afresh; no cache is read or written.
    Off,
    /// `$STRATA_CACHE`, else `$XDG_CACHE_HOME/strata`, else `~/.cache/strata` (no cache when
    /// none of them is set).
    #[default]
    Default,
    /// This root.
    Root(PathBuf),
}

impl CachePolicy {
    /// The cache directory for `model` under this policy (None: no cache).
    pub fn dir(
        &self,
        model: &Path,
        max_len: usize,
        device: &str,
        precision: crate::Precision,
    ) -> anyhow::Result<Option<PathBuf>> {
        let root = match self {
            CachePolicy::Off => return Ok(None),
            CachePolicy::Default => match default_cache_root() {
                Some(r) => r,
                None => return Ok(None),
            },
            CachePolicy::Root(r) => r.clone(),
        };
        item_cache_dir(&root, model, max_len, device, precision).map(Some)
    }
}

/// The item-embedding cache directory of a model under `root`:
/// `embeddings/<fingerprint prefix>-len<max_len>-<device>[-int8]`. Vectors differ by model
/// files, truncation length and arithmetic, so each combination has its own directory (on a
/// GPU the f32 tensor model and the CPU engine's f32 give the same vectors to rounding, but
/// the device still separates them).
pub fn item_cache_dir(
    root: &Path,
    model: &Path,
    max_len: usize,
    device: &str,
    precision: crate::Precision,
) -> anyhow::Result<PathBuf> {
    let fp = model_fingerprint(model)?;
    let mut device = device.replace(':', "");
    if precision == crate::Precision::Int8 {
        device.push_str("-int8");
    }
    Ok(root
        .join("embeddings")
        .join(format!("{}-len{max_len}-{device}", &fp[..32])))
}
