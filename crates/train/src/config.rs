//! The training configuration: a TOML document (every key optional, unknown keys rejected),
//! validated before any work starts, and written back resolved into the run directory.
//!
//! ```toml
//! out = "runs/stage1"
//! seed = 42
//!
//! [data]
//! catalog = "data/products.tsv"
//! judgments = "data/judgments.tsv"   # split by query into train and dev
//! dev_fraction = 0.1
//!
//! [model]
//! init = "models/all-MiniLM-L6-v2"   # a Hugging Face folder, a strata model or a run directory
//!
//! [loss]
//! kind = "supcon"                     # supcon | circle | triplet | infonce
//!
//! [train]
//! epochs = 1
//! batch_size = 32
//! lr = 2e-5
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use strata_data::ItemTextConfig;

use crate::batch::Chunking;
use crate::losses::LossConfig;
use crate::optim::AdamWConfig;

/// Name of the resolved configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Everything a training run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Run directory: config, metrics, checkpoints, `model/` and `best/`.
    pub out: PathBuf,
    /// Seed of everything random: head initialisation, instance sampling, data order, dropout.
    pub seed: u64,
    /// Training runs averaged into the model (a weight soup, [`crate::soup`]): the runs use the
    /// seeds `seed`, `seed + 1`, ..., `seed + seeds - 1`, each in `out/seed-<S>/`, and `out/model`
    /// is the element-wise mean of their final models. 1: one run, in `out` itself.
    pub seeds: usize,
    /// Compute threads (0: one per core).
    pub threads: usize,
    /// Compute device: `cpu`; `cuda[:N]`, `vulkan[:N]` or `wgpu[:N]` in a build with that feature.
    pub device: String,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub train: OptimConfig,
    pub eval: EvalConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            out: PathBuf::from("runs/train"),
            seed: 42,
            seeds: 1,
            threads: 0,
            device: "cpu".into(),
            data: DataConfig::default(),
            model: ModelConfig::default(),
            loss: LossConfig::default(),
            train: OptimConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

/// Where the training data comes from and how instances are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Catalog file (TSV, CSV, JSONL or Parquet).
    pub catalog: PathBuf,
    /// Judgments, split by query into train and dev (`dev_fraction`).
    pub judgments: Option<PathBuf>,
    /// Explicit training judgments (instead of `judgments`).
    pub train_judgments: Option<PathBuf>,
    /// Explicit development judgments (with `train_judgments`; optional).
    pub dev_judgments: Option<PathBuf>,
    /// Fraction of queries held out for development when `judgments` is split.
    pub dev_fraction: f64,
    /// Seed of the query split.
    pub split_seed: u64,
    /// Items drawn per label (0, 1, 2) for each instance.
    pub items_per_label: [usize; 3],
    /// Most instances per query and epoch (enough to use each judged item once, up to this).
    pub instances_per_query: usize,
    /// Unjudged catalog items added to each instance as label 0 (0: the paper's instances
    /// only). See `strata_data::InstanceConfig::random_negatives`.
    pub random_negatives: usize,
    /// Grade-aware batch negatives: the items of the other instances of a batch join each
    /// instance as label 0 unless its query judges them (any label, relabels included);
    /// queries judged at one positive level only (no negatives of their own) then also yield
    /// instances. Off by default (the paper trains without in-batch negatives, section 4.4).
    /// See `crate::instances::with_batch_negatives`.
    pub batch_negatives: bool,
    /// Most batch negatives added to one instance (0: every candidate of the batch).
    pub batch_negatives_max: usize,
    /// Fraction of training queries that get a spelling variant as an additional anchor
    /// (paper section 4.2: 0.3-0.5; 0 disables the augmentation).
    pub spelling_ratio: f64,
    /// The item tower's text of an item, in its written form (`name`, `name+taxonomy` — the
    /// name and the first two taxonomy levels, the paper's —, `name+taxonomy:DEPTH`,
    /// `template:DEPTH:TEMPLATE`); recorded in the trained model's `strata.json`, so that eval,
    /// index and mine default to it.
    pub item_text: ItemTextConfig,
    /// Older configurations' form of the item text: taxonomy levels appended to the name.
    /// Read into `item_text` when the configuration is parsed; never written.
    #[serde(skip_serializing)]
    pub taxonomy_depth: Option<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            catalog: PathBuf::new(),
            judgments: None,
            train_judgments: None,
            dev_judgments: None,
            dev_fraction: 0.1,
            split_seed: 0,
            items_per_label: [4, 2, 2],
            instances_per_query: 4,
            random_negatives: 0,
            batch_negatives: false,
            batch_negatives_max: 0,
            spelling_ratio: 0.0,
            item_text: ItemTextConfig::default(),
            taxonomy_depth: None,
        }
    }
}

/// The model to start from and its architecture options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A Hugging Face folder, a strata model directory, or a strata run directory (its
    /// `best/` model, else its `model/`).
    pub init: PathBuf,
    /// Output dimension of the projection heads of a new model (none: no heads). A strata
    /// model keeps its own.
    pub projection_dim: Option<usize>,
    /// How the projection heads of a new model start: "random" (one shared random linear
    /// map) or "identity" (square heads equal to the identity, so training starts from the
    /// pretrained encoder's embeddings; needs `projection_dim` = the encoder's hidden size).
    pub head_init: strata_model::HeadInit,
    /// Untied query and item encoders for a new model.
    pub asymmetric: bool,
    /// Truncation length in tokens (default: the model's, 128 for a new model).
    pub max_len: Option<usize>,
    /// Dropout as the encoder's config sets it (off: no dropout, faster).
    pub dropout: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            init: PathBuf::from("models/all-MiniLM-L6-v2"),
            projection_dim: None,
            head_init: strata_model::HeadInit::Random,
            asymmetric: false,
            max_len: None,
            dropout: false,
        }
    }
}

/// Optimisation hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Passes over the training instances.
    pub epochs: usize,
    /// Instances per micro-batch (one forward and backward pass).
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each update.
    pub accumulation: usize,
    /// Peak learning rate of the encoder.
    pub lr: f64,
    /// Peak learning rate of the projection heads.
    pub head_lr: f64,
    /// Peak learning rate of the SupCon temperature (trained as log τ).
    pub temperature_lr: f64,
    /// Warmup as a fraction of all updates (ignored when `warmup_steps` is set).
    pub warmup_ratio: f64,
    /// Warmup in updates.
    pub warmup_steps: Option<u64>,
    /// Global gradient-norm bound (0: no clipping).
    pub grad_clip: f64,
    /// AdamW decoupled weight decay (not applied to biases, layer norms and the temperature).
    pub weight_decay: f64,
    /// AdamW epsilon.
    pub adam_epsilon: f64,
    /// AdamW β1.
    pub adam_beta1: f64,
    /// AdamW β2.
    pub adam_beta2: f64,
    /// Stop after this many updates (0: run every epoch).
    pub max_steps: u64,
    /// Write a checkpoint every this many updates (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest).
    pub keep_checkpoints: usize,
    /// Most texts in one forward chunk (unset: by device, see [`Chunking::for_device`]; the
    /// chunking changes speed and memory, not the gradients).
    pub chunk_texts: Option<usize>,
    /// Most padded tokens in one forward chunk (unset: by device).
    pub chunk_tokens: Option<usize>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            epochs: 1,
            batch_size: 32,
            accumulation: 1,
            lr: 2e-5,
            head_lr: 1e-3,
            temperature_lr: 1e-3,
            warmup_ratio: 0.1,
            warmup_steps: None,
            grad_clip: 1.0,
            weight_decay: 0.01,
            adam_epsilon: 1e-6,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            max_steps: 0,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            chunk_texts: None,
            chunk_tokens: None,
        }
    }
}

impl OptimConfig {
    /// The AdamW hyper-parameters.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            epsilon: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

    /// The forward chunk limits: those set, the device's defaults for the others.
    pub fn chunking(&self, device: &burn::tensor::Device) -> Chunking {
        let d = Chunking::for_device(device);
        Chunking {
            max_texts: self.chunk_texts.unwrap_or(d.max_texts),
            max_tokens: self.chunk_tokens.unwrap_or(d.max_tokens),
        }
    }
}

/// Development evaluation during training (NDCG@10 by exact search over the whole catalog,
/// EVALUATION.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many updates (0: at the end of each epoch). The end of training is
    /// always evaluated when there is a dev split.
    pub every: u64,
    /// Also evaluate the starting model (zero-shot) before the first update.
    pub at_start: bool,
    /// Evaluate at most this many dev queries (0: all), chosen by a stable hash.
    pub max_queries: usize,
    /// Most texts per inference batch.
    pub batch_texts: usize,
    /// Most padded tokens per inference batch.
    pub batch_tokens: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every: 0,
            at_start: false,
            max_queries: 0,
            batch_texts: 128,
            batch_tokens: 4096,
        }
    }
}

impl TrainConfig {
    /// Parses a TOML document; errors name the offending key and line.
    pub fn from_toml_str(text: &str) -> anyhow::Result<Self> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let d = &mut cfg.data;
        d.item_text = d
            .item_text
            .clone()
            .with_legacy_depth(d.taxonomy_depth.take(), "data")?;
        Ok(cfg)
    }

    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("cannot write the configuration as TOML")
    }

    /// Checks every value and that every input file exists, naming the field at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn positive(field: &str, v: f64) -> anyhow::Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("config field `{field}` is {v}: must be a finite number > 0");
            }
            Ok(())
        }
        fn non_negative(field: &str, v: f64) -> anyhow::Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                bail!("config field `{field}` is {v}: must be a finite number >= 0");
            }
            Ok(())
        }
        fn at_least_one(field: &str, v: usize) -> anyhow::Result<()> {
            if v == 0 {
                bail!("config field `{field}` is 0: must be at least 1");
            }
            Ok(())
        }
        fn file(field: &str, p: &Path) -> anyhow::Result<()> {
            if p.as_os_str().is_empty() {
                bail!("config field `{field}` is not set");
            }
            if p.is_dir() {
                bail!(
                    "config field `{field}`: {} is a directory; give the file itself",
                    p.display()
                );
            }
            if !p.is_file() {
                bail!(
                    "config field `{field}`: file {} does not exist",
                    p.display()
                );
            }
            Ok(())
        }

        if self.out.as_os_str().is_empty() {
            bail!("config field `out` is not set");
        }
        at_least_one("seeds", self.seeds)?;
        if self.seed.checked_add(self.seeds as u64 - 1).is_none() {
            bail!(
                "config fields `seed` ({}) and `seeds` ({}): the last seed overflows",
                self.seed,
                self.seeds
            );
        }
        strata_model::parse_device(&self.device).context("config field `device`")?;

        let d = &self.data;
        file("data.catalog", &d.catalog)?;
        match (&d.judgments, &d.train_judgments) {
            (Some(_), Some(_)) => bail!(
                "config fields `data.judgments` and `data.train_judgments` are both set: give one"
            ),
            (None, None) => bail!(
                "config field `data.judgments` (or `data.train_judgments`) is not set: training needs judgments"
            ),
            (Some(j), None) => {
                file("data.judgments", j)?;
                if d.dev_judgments.is_some() {
                    bail!(
                        "config field `data.dev_judgments` goes with `data.train_judgments`, not with `data.judgments` (which is split)"
                    );
                }
            }
            (None, Some(j)) => file("data.train_judgments", j)?,
        }
        if let Some(j) = &d.dev_judgments {
            file("data.dev_judgments", j)?;
        }
        if !(d.dev_fraction.is_finite() && (0.0..1.0).contains(&d.dev_fraction)) {
            bail!(
                "config field `data.dev_fraction` is {}: must be in [0, 1)",
                d.dev_fraction
            );
        }
        for (l, &k) in d.items_per_label.iter().enumerate() {
            if k == 0 {
                bail!(
                    "config field `data.items_per_label` has 0 for label {l}: each must be at least 1"
                );
            }
        }
        at_least_one("data.instances_per_query", d.instances_per_query)?;
        if !(d.spelling_ratio.is_finite() && (0.0..=1.0).contains(&d.spelling_ratio)) {
            bail!(
                "config field `data.spelling_ratio` is {}: must be in [0, 1]",
                d.spelling_ratio
            );
        }

        let m = &self.model;
        if m.init.as_os_str().is_empty() {
            bail!("config field `model.init` is not set");
        }
        resolve_init(&m.init).context("config field `model.init`")?;
        if m.projection_dim == Some(0) {
            bail!(
                "config field `model.projection_dim` is 0: must be at least 1 (or left out for no heads)"
            );
        }
        if m.head_init == strata_model::HeadInit::Identity && m.projection_dim.is_none() {
            bail!(
                "config field `model.head_init` is \"identity\", but `model.projection_dim` is not set: identity heads need projection heads"
            );
        }
        if let Some(l) = m.max_len
            && l < 2
        {
            bail!("config field `model.max_len` is {l}: must be at least 2");
        }

        self.loss
            .validate()
            .map_err(|e| anyhow::anyhow!("config section `loss`: {e}"))?;

        let t = &self.train;
        at_least_one("train.epochs", t.epochs)?;
        at_least_one("train.batch_size", t.batch_size)?;
        at_least_one("train.accumulation", t.accumulation)?;
        positive("train.lr", t.lr)?;
        positive("train.head_lr", t.head_lr)?;
        positive("train.temperature_lr", t.temperature_lr)?;
        if !(t.warmup_ratio.is_finite() && (0.0..1.0).contains(&t.warmup_ratio)) {
            bail!(
                "config field `train.warmup_ratio` is {}: must be in [0, 1)",
                t.warmup_ratio
            );
        }
        non_negative("train.grad_clip", t.grad_clip)?;
        non_negative("train.weight_decay", t.weight_decay)?;
        positive("train.adam_epsilon", t.adam_epsilon)?;
        for (field, b) in [
            ("train.adam_beta1", t.adam_beta1),
            ("train.adam_beta2", t.adam_beta2),
        ] {
            if !(b.is_finite() && (0.0..1.0).contains(&b)) {
                bail!("config field `{field}` is {b}: must be in [0, 1)");
            }
        }
        at_least_one("train.keep_checkpoints", t.keep_checkpoints)?;
        at_least_one("train.chunk_texts", t.chunk_texts.unwrap_or(1))?;
        at_least_one("train.chunk_tokens", t.chunk_tokens.unwrap_or(1))?;

        let e = &self.eval;
        at_least_one("eval.batch_texts", e.batch_texts)?;
        at_least_one("eval.batch_tokens", e.batch_tokens)?;
        Ok(())
    }

    /// Makes every path absolute (relative paths are taken from the working directory), so
    /// that the saved configuration works from anywhere.
    pub fn absolutize(&mut self) -> anyhow::Result<()> {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        let abs = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        abs(&mut self.out);
        abs(&mut self.data.catalog);
        for p in [
            &mut self.data.judgments,
            &mut self.data.train_judgments,
            &mut self.data.dev_judgments,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        abs(&mut self.model.init);
        Ok(())
    }
}

/// The model directory that `init` names: a model directory itself, or a run directory's
/// `best/` (preferred) or `model/`.
pub fn resolve_init(init: &Path) -> anyhow::Result<PathBuf> {
    if !init.exists() {
        bail!("{} does not exist", init.display());
    }
    if strata_model::store::model_dir_kind(init).is_ok() {
        return Ok(init.to_path_buf());
    }
    for sub in ["best", "model"] {
        let d = init.join(sub);
        if d.is_dir() && strata_model::store::model_dir_kind(&d).is_ok() {
            return Ok(d);
        }
    }
    strata_model::store::model_dir_kind(init).with_context(|| {
        format!(
            "{} is neither a model directory nor a strata run directory with best/ or model/",
            init.display()
        )
    })?;
    unreachable!("model_dir_kind failed above")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_files(dir: &Path) -> TrainConfig {
        let (catalog, judgments) = crate::testutil::synthetic_data(dir, 4);
        let init = crate::testutil::tiny_model_dir(dir, None, 1);
        let mut cfg = TrainConfig {
            out: dir.join("run"),
            ..Default::default()
        };
        cfg.data.catalog = catalog;
        cfg.data.judgments = Some(judgments);
        cfg.model.init = init;
        cfg
    }

    fn err(cfg: &TrainConfig) -> String {
        format!("{:#}", cfg.validate().unwrap_err())
    }

    #[test]
    fn defaults_parse_from_an_empty_document_and_round_trip() {
        let cfg = TrainConfig::from_toml_str("").unwrap();
        assert_eq!(cfg, TrainConfig::default());
        let text = r#"
            out = "runs/x"
            seed = 7
            [data]
            catalog = "c.tsv"
            judgments = "j.tsv"
            items_per_label = [2, 1, 1]
            [loss]
            kind = "circle"
            gamma = 64.0
            [train]
            lr = 5e-5
            batch_size = 8
        "#;
        let cfg = TrainConfig::from_toml_str(text).unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.train.lr, 5e-5);
        assert_eq!(cfg.data.items_per_label, [2, 1, 1]);
        match cfg.loss {
            LossConfig::Circle(c) => assert_eq!(c.gamma, 64.0),
            other => panic!("wrong loss {other:?}"),
        }
        let again = TrainConfig::from_toml_str(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = TrainConfig::from_toml_str("[train]\nlrr = 1e-3\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("lrr"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        let e = TrainConfig::from_toml_str("[loss]\nkind = \"supcon\"\ngama = 3.0\n").unwrap_err();
        assert!(format!("{e:#}").contains("gama"), "{e:#}");
        let e = TrainConfig::from_toml_str("[loss]\nkind = \"hinge\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("hinge"), "{e:#}");
        let e = TrainConfig::from_toml_str("bogus = 1\n").unwrap_err();
        assert!(format!("{e:#}").contains("bogus"), "{e:#}");
    }

    #[test]
    fn bad_values_and_missing_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let good = with_files(dir.path());
        good.validate().unwrap();

        let mut c = good.clone();
        c.data.catalog = dir.path().to_path_buf();
        assert!(
            err(&c).contains("`data.catalog`") && err(&c).contains("is a directory"),
            "{}",
            err(&c)
        );

        let mut c = good.clone();
        c.train.lr = -1e-3;
        assert!(err(&c).contains("train.lr"), "{}", err(&c));
        let mut c = good.clone();
        c.train.head_lr = f64::NAN;
        assert!(err(&c).contains("train.head_lr"));
        let mut c = good.clone();
        c.train.batch_size = 0;
        assert!(err(&c).contains("train.batch_size"));
        let mut c = good.clone();
        c.data.dev_fraction = 1.5;
        assert!(err(&c).contains("data.dev_fraction"));
        let mut c = good.clone();
        c.data.catalog = dir.path().join("nope.tsv");
        let e = err(&c);
        assert!(e.contains("data.catalog") && e.contains("nope.tsv"), "{e}");
        let mut c = good.clone();
        c.data.judgments = None;
        assert!(err(&c).contains("data.judgments"));
        let mut c = good.clone();
        c.model.head_init = strata_model::HeadInit::Identity;
        let e = err(&c);
        assert!(
            e.contains("model.head_init") && e.contains("projection_dim"),
            "{e}"
        );
        c.model.projection_dim = Some(8);
        c.validate().unwrap();
        let e = TrainConfig::from_toml_str("[model]\nhead_init = \"eye\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("eye"), "{e:#}");
        let mut c = good.clone();
        c.model.init = dir.path().join("no-model");
        let e = err(&c);
        assert!(e.contains("model.init") && e.contains("no-model"), "{e}");
        let mut c = good.clone();
        let mut supcon = crate::losses::SupConConfig::default();
        supcon.temperature.initial = -0.5;
        c.loss = LossConfig::Supcon(supcon);
        assert!(err(&c).contains("loss"), "{}", err(&c));
        let mut c = good.clone();
        c.device = "tpu".into();
        assert!(err(&c).contains("device"));
    }

    #[test]
    fn init_accepts_a_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::testutil::tiny_model_dir(dir.path(), None, 1);
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::rename(&model, run.join("model")).unwrap();
        assert_eq!(resolve_init(&run).unwrap(), run.join("model"));
        assert_eq!(resolve_init(&run.join("model")).unwrap(), run.join("model"));
        let e = format!("{:#}", resolve_init(dir.path()).unwrap_err());
        assert!(e.contains("run directory"), "{e}");
    }
}
