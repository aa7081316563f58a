//! The item index directory: embeddings, an HNSW graph, a BM25 index and item metadata, built
//! from a catalog with a model, opened memory-mapped by the server, and updated in place.
//!
//! Layout of an index directory:
//! - `manifest.json`: [`Manifest`] (format version, model fingerprint, dimension, counts,
//!   item-text configuration, HNSW parameters, thresholds);
//! - `embeddings.f32`: one little-endian f32 row per slot (memory-mapped when serving);
//! - `embeddings.f16` or `embeddings.i8` + `embeddings.i8.scales`: the optional reduced-precision
//!   copy;
//! - `hnsw.usearch`: the HNSW graph, keyed by slot (viewed memory-mapped when serving);
//! - `hnsw_orphans.json`: the slots the graph cannot reach (scored exactly by every search);
//! - `bm25/`: the tantivy BM25 index over the item texts, keyed by slot;
//! - `items.jsonl`: one line per slot (id, text, name, taxonomy, and `deleted` for tombstones);
//! - `thresholds.json`: the relevance-strata thresholds, when given.
//!
//! Updates write a new generation of these files in `gen-N/` and switch to it with one atomic
//! rename of `manifest.json` ([`crate::generation`]): a killed update leaves the old index or
//! the new one, never a mix. `strata index verify` checks an index, `strata index repair`
//! removes leftovers and rebuilds what is derived from the items and vectors.
//!
//! A slot is a row of the embedding file. Updates append new slots and mark replaced or
//! deleted ones as tombstones; the HNSW graph and the BM25 index drop them, and exact search
//! skips them, so results equal those of a fresh build over the live items in slot order.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use strata_data::ItemTextConfig;
use strata_data::{Item, Side, TextEncoder};
use strata_retrieval::search::{UNREACHABLE_BEAM, dot};
use strata_retrieval::{
    Bm25Index, ExactIndex, FusedHit, Fusion, Hit, HnswIndex, HnswParams, Thresholds, VectorSearch,
    hybrid_rank,
};

use crate::generation::{self, commit, data_dir, failpoint};
use crate::manifest::{FORMAT_VERSION, Manifest, ModelStamp, Quantization};

pub const MANIFEST: &str = "manifest.json";
pub const ITEMS: &str = "items.jsonl";
pub const EMBEDDINGS: &str = "embeddings.f32";
pub const EMBEDDINGS_F16: &str = "embeddings.f16";
pub const EMBEDDINGS_I8: &str = "embeddings.i8";
pub const EMBEDDINGS_I8_SCALES: &str = "embeddings.i8.scales";
pub const HNSW: &str = "hnsw.usearch";
pub const BM25_DIR: &str = "bm25";
pub const THRESHOLDS: &str = "thresholds.json";
/// Slots the HNSW graph cannot reach (see [`HnswIndex::unreachable`]), scored exactly by
/// every approximate search.
pub const HNSW_ORPHANS: &str = "hnsw_orphans.json";
/// Results a self-search of each item looks at when finding unreachable graph nodes.
const ORPHAN_PROBE: usize = 32;

/// One slot of the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemMeta {
    pub id: String,
    /// The text that was embedded and indexed.
    pub text: String,
    pub name: String,
    #[serde(default)]
    pub taxonomy: Vec<String>,
    /// A tombstone: the item was deleted or replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// How an index is built.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub item_text: ItemTextConfig,
    pub hnsw: HnswParams,
    pub quantization: Option<Quantization>,
    pub thresholds: Option<Thresholds>,
    /// Texts per call to the encoder.
    pub encode_chunk: usize,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            item_text: ItemTextConfig::default(),
            hnsw: HnswParams::default(),
            quantization: None,
            thresholds: None,
            encode_chunk: 256,
            progress: false,
        }
    }
}

/// Changes applied by [`ItemIndex::update`].
#[derive(Clone, Debug, Default)]
pub struct Update {
    /// New items (their ids must not be live in the index).
    pub add: Vec<Item>,
    /// New versions of live items (matched by id).
    pub replace: Vec<Item>,
    /// Ids of live items to delete.
    pub delete: Vec<String>,
}

/// What [`ItemIndex::update`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpdateReport {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
    pub count: usize,
    pub slots: usize,
}

/// What [`ItemIndex::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Generation the manifest names.
    pub generation: u64,
    /// Live items and slots the manifest records.
    pub count: usize,
    pub slots: usize,
    /// Inconsistencies between the manifest and the data files (empty: the index is sound).
    pub problems: Vec<String>,
    /// Leftovers of interrupted mutations (harmless; `strata index repair` removes them).
    pub leftovers: Vec<String>,
}

/// What [`ItemIndex::repair`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Leftovers removed.
    pub removed: Vec<String>,
    /// The problems found before repairing (empty: only leftovers were removed).
    pub problems: Vec<String>,
    /// How the data files were brought back in line, if they had to be.
    pub action: Option<String>,
    pub count: usize,
    pub slots: usize,
}

/// The f32 embedding file, memory-mapped.
pub struct F32Map(Mmap);

impl F32Map {
    fn open(path: &Path) -> anyhow::Result<Self> {
        ensure!(
            cfg!(target_endian = "little"),
            "embedding files are little-endian; this machine is not"
        );
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: a generation's files are never modified once the manifest names it: updates
        // write a new generation (`crate::generation`) and replace files only by rename.
        let map = unsafe { Mmap::map(&f) }
            .with_context(|| format!("cannot memory-map {}", path.display()))?;
        ensure!(
            map.len().is_multiple_of(4) && (map.as_ptr() as usize).is_multiple_of(4),
            "{}: not a file of f32 values",
            path.display()
        );
        Ok(F32Map(map))
    }
}

impl AsRef<[f32]> for F32Map {
    fn as_ref(&self) -> &[f32] {
        // SAFETY: length and alignment were checked in `open`; any bit pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<f32>(), self.0.len() / 4) }
    }
}

/// An opened index directory.
pub struct ItemIndex {
    dir: PathBuf,
    /// Directory of the current generation's data files.
    data: PathBuf,
    manifest: Manifest,
    items: Vec<ItemMeta>,
    by_id: HashMap<String, u32>,
    vectors: ExactIndex<F32Map>,
    ann: HnswIndex,
    /// Live slots the graph cannot reach.
    orphans: Vec<u32>,
    bm25: Bm25Index,
    tombstones: usize,
}

/// Finds the live slots `ann` cannot reach and writes them to `dir/HNSW_ORPHANS`.
fn write_orphans(
    dir: &Path,
    ann: &HnswIndex,
    slots: &[u32],
    data: &[f32],
) -> anyhow::Result<Vec<u32>> {
    let orphans = ann
        .unreachable(slots, data, ORPHAN_PROBE)
        .context("checking the HNSW graph's reachability")?;
    write_atomic(
        &dir.join(HNSW_ORPHANS),
        serde_json::to_string(&orphans)?.as_bytes(),
    )?;
    Ok(orphans)
}

fn read_orphans(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let path = dir.join(HNSW_ORPHANS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a list of slots", path.display()))
}

fn bar(enabled: bool, len: usize, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

fn encode(
    encoder: &dyn TextEncoder,
    texts: &[&str],
    chunk: usize,
    progress: bool,
) -> anyhow::Result<Vec<f32>> {
    let dim = encoder.dim();
    let pb = bar(progress, texts.len(), "embedding items");
    let mut out = Vec::with_capacity(texts.len() * dim);
    for c in texts.chunks(chunk.max(1)) {
        let v = encoder
            .encode(c, Side::Item)
            .with_context(|| format!("{}: embedding items", encoder.name()))?;
        ensure!(
            v.len() == c.len() * dim,
            "{}: encoder returned {} floats for {} texts of dimension {dim}",
            encoder.name(),
            v.len(),
            c.len()
        );
        out.extend_from_slice(&v);
        pb.inc(c.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Builds the HNSW graph of the rows `data` (keyed by `slots`) and writes it and its
/// unreachable slots into `dir`.
fn write_graph(
    dir: &Path,
    data: &[f32],
    dim: usize,
    params: HnswParams,
    slots: &[u32],
) -> anyhow::Result<()> {
    let ann = HnswIndex::build_keyed(data, dim, params, |i| slots[i])
        .context("building the HNSW graph")?;
    let tmp = dir.join("hnsw.usearch.tmp");
    ann.save(&tmp)?;
    write_orphans(dir, &ann, slots, data)?;
    drop(ann);
    std::fs::rename(&tmp, dir.join(HNSW))
        .with_context(|| format!("cannot write {}", dir.join(HNSW).display()))
}

/// Reads a little-endian f32 file.
fn read_f32(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        bytes.len().is_multiple_of(4),
        "{}: {} bytes is not a whole number of f32 values",
        path.display(),
        bytes.len()
    );
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn write_items(dir: &Path, items: &[ItemMeta]) -> anyhow::Result<()> {
    let path = dir.join(ITEMS);
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(
        File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?,
    );
    for it in items {
        serde_json::to_writer(&mut w, it)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

fn read_items(dir: &Path) -> anyhow::Result<Vec<ItemMeta>> {
    let path = dir.join(ITEMS);
    let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let it: ItemMeta = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an item record", path.display(), i + 1))?;
        out.push(it);
    }
    Ok(out)
}

fn write_manifest(dir: &Path, m: &Manifest) -> anyhow::Result<()> {
    generation::write_manifest(dir, m)
}

/// Writes the reduced-precision copy of the whole embedding matrix.
fn write_quantized(dir: &Path, q: Quantization, data: &[f32], dim: usize) -> anyhow::Result<()> {
    match q {
        Quantization::F16 => {
            let bytes: Vec<u8> = data
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect();
            write_atomic(&dir.join(EMBEDDINGS_F16), &bytes)
        }
        Quantization::Int8 => {
            let (q, scales) = quantize_int8(data, dim);
            let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
            write_atomic(&dir.join(EMBEDDINGS_I8), &bytes)?;
            write_atomic(&dir.join(EMBEDDINGS_I8_SCALES), &f32_bytes(&scales))
        }
    }
}

/// Symmetric per-row int8 quantization: `x ≈ q * scale`, `scale = max|x| / 127`.
pub fn quantize_int8(data: &[f32], dim: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(data.len() / dim.max(1));
    for row in data.chunks_exact(dim) {
        let m = row.iter().fold(0f32, |a, x| a.max(x.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|x| (x / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

fn item_meta(item: &Item, how: &ItemTextConfig) -> ItemMeta {
    ItemMeta {
        id: item.id.clone(),
        text: how.render(item),
        name: item.name.clone(),
        taxonomy: item.taxonomy.clone(),
        deleted: false,
    }
}

impl ItemIndex {
    /// Builds an index of `items` in `dir` (created; it must not hold an index yet) with
    /// `encoder`, the model described by `model`.
    pub fn build(
        dir: &Path,
        items: &[Item],
        encoder: &dyn TextEncoder,
        model: ModelStamp,
        opts: &BuildOptions,
    ) -> anyhow::Result<Self> {
        ensure!(!items.is_empty(), "the catalog has no items to index");
        if dir.join(MANIFEST).exists() {
            bail!(
                "{} already holds an index; remove it first or use `strata index add|replace|delete`",
                dir.display()
            );
        }
        let mut seen = HashSet::new();
        for it in items {
            ensure!(
                seen.insert(it.id.as_str()),
                "item id {:?} appears more than once in the catalog",
                it.id
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let metas: Vec<ItemMeta> = items
            .iter()
            .map(|i| item_meta(i, &opts.item_text))
            .collect();
        let texts: Vec<&str> = metas.iter().map(|m| m.text.as_str()).collect();
        let dim = encoder.dim();
        ensure!(dim > 0, "{}: encoder dimension is 0", encoder.name());
        let data = encode(encoder, &texts, opts.encode_chunk, opts.progress)?;
        write_atomic(&dir.join(EMBEDDINGS), &f32_bytes(&data))?;
        if let Some(q) = opts.quantization {
            write_quantized(dir, q, &data, dim)?;
        }
        let pb = bar(opts.progress, 1, "HNSW graph");
        let ann = HnswIndex::build(&data, dim, opts.hnsw).context("building the HNSW graph")?;
        ann.save(&dir.join(HNSW))?;
        let all: Vec<u32> = (0..(data.len() / dim) as u32).collect();
        write_orphans(dir, &ann, &all, &data)?;
        pb.finish_and_clear();
        let bm25_dir = dir.join(BM25_DIR);
        if bm25_dir.exists() {
            std::fs::remove_dir_all(&bm25_dir)
                .with_context(|| format!("cannot clear {}", bm25_dir.display()))?;
        }
        Bm25Index::create(
            &bm25_dir,
            texts.iter().enumerate().map(|(i, t)| (i as u32, *t)),
        )?;
        write_items(dir, &metas)?;
        if let Some(t) = &opts.thresholds {
            write_atomic(
                &dir.join(THRESHOLDS),
                serde_json::to_string_pretty(t)?.as_bytes(),
            )?;
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            strata_version: env!("CARGO_PKG_VERSION").to_string(),
            model,
            dim,
            count: metas.len(),
            slots: metas.len(),
            item_text: opts.item_text.to_string(),
            hnsw: opts.hnsw,
            quantization: opts.quantization,
            thresholds: opts.thresholds.clone(),
            generation: 0,
        };
        write_manifest(dir, &manifest)?;
        Self::open(dir)
    }

    /// Opens an index directory: embeddings and the HNSW graph memory-mapped, BM25 on disk.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let manifest = Manifest::read(dir)?;
        let data = data_dir(dir, manifest.generation);
        ensure!(
            data.is_dir(),
            "{}: the manifest names generation {}, but {} is missing; the index is damaged: run `strata index repair` or rebuild it",
            dir.display(),
            manifest.generation,
            data.display()
        );
        let items = read_items(&data)?;
        ensure!(
            items.len() == manifest.slots,
            "{}: {} item records, the manifest says {} slots",
            data.join(ITEMS).display(),
            items.len(),
            manifest.slots
        );
        let emb = data.join(EMBEDDINGS);
        let map = F32Map::open(&emb)?;
        ensure!(
            map.as_ref().len() == manifest.slots * manifest.dim,
            "{}: {} floats, expected {} slots x {} dimensions",
            emb.display(),
            map.as_ref().len(),
            manifest.slots,
            manifest.dim
        );
        let vectors =
            ExactIndex::new(map, manifest.dim).with_context(|| format!("{}", emb.display()))?;
        let ann = HnswIndex::open(&data.join(HNSW), manifest.dim, manifest.hnsw, true)
            .with_context(|| format!("{}", data.join(HNSW).display()))?;
        let orphans = read_orphans(&data)?;
        ensure!(
            orphans.iter().all(|&s| (s as usize) < items.len()),
            "{}: a slot beyond the {} slots of the index",
            data.join(HNSW_ORPHANS).display(),
            items.len()
        );
        let bm25 = Bm25Index::open(&data.join(BM25_DIR))?;
        let mut by_id = HashMap::new();
        let mut tombstones = 0;
        for (slot, it) in items.iter().enumerate() {
            if it.deleted {
                tombstones += 1;
            } else if by_id.insert(it.id.clone(), slot as u32).is_some() {
                bail!(
                    "{}: item id {:?} is live twice",
                    data.join(ITEMS).display(),
                    it.id
                );
            }
        }
        ensure!(
            by_id.len() == manifest.count && bm25.len() == manifest.count,
            "{}: the manifest counts {} items, the item file {} and the BM25 index {}; the index is inconsistent: run `strata index repair`",
            dir.display(),
            manifest.count,
            by_id.len(),
            bm25.len()
        );
        Ok(ItemIndex {
            dir: dir.to_path_buf(),
            data,
            manifest,
            items,
            by_id,
            vectors,
            ann,
            orphans,
            bm25,
            tombstones,
        })
    }

    /// Adds, replaces and deletes items in the index at `dir` without rebuilding it. New
    /// texts are embedded with `model`, which must be the model the index was built with (its
    /// fingerprint is checked); deletions alone need no model. Returns the reopened index and
    /// what changed.
    pub fn update(
        dir: &Path,
        update: &Update,
        model: Option<(&dyn TextEncoder, &ModelStamp)>,
        opts: &BuildOptions,
    ) -> anyhow::Result<(Self, UpdateReport)> {
        let manifest = Manifest::read(dir)?;
        if let Some((encoder, stamp)) = model {
            manifest.check_model(&stamp.path, &stamp.fingerprint)?;
            if manifest.model.precision != stamp.precision {
                bail!(
                    "precision mismatch: the index's item embeddings were computed at {}, the model is loaded at {}; pass --precision {} (mixed precisions would rank items unevenly)",
                    manifest.model.precision,
                    stamp.precision,
                    manifest.model.precision
                );
            }
            ensure!(
                encoder.dim() == manifest.dim,
                "the encoder has dimension {}, the index {}",
                encoder.dim(),
                manifest.dim
            );
        }
        let how: ItemTextConfig = manifest
            .item_text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", dir.join(MANIFEST).display()))?;
        let mut items = read_items(&data_dir(dir, manifest.generation))?;
        let live: HashMap<&str, u32> = items
            .iter()
            .enumerate()
            .filter(|(_, it)| !it.deleted)
            .map(|(s, it)| (it.id.as_str(), s as u32))
            .collect();
        let mut touched = HashSet::new();
        let mut tomb = Vec::new();
        for it in &update.add {
            ensure!(
                !live.contains_key(it.id.as_str()),
                "cannot add item {:?}: it is already in the index (use replace)",
                it.id
            );
            ensure!(
                touched.insert(it.id.clone()),
                "item {:?} appears more than once in the update",
                it.id
            );
        }
        for it in &update.replace {
            let slot = *live.get(it.id.as_str()).with_context(|| {
                format!("cannot replace item {:?}: it is not in the index", it.id)
            })?;
            ensure!(
                touched.insert(it.id.clone()),
                "item {:?} appears more than once in the update",
                it.id
            );
            tomb.push(slot);
        }
        for id in &update.delete {
            let slot = *live
                .get(id.as_str())
                .with_context(|| format!("cannot delete item {id:?}: it is not in the index"))?;
            ensure!(
                touched.insert(id.clone()),
                "item {id:?} appears more than once in the update"
            );
            tomb.push(slot);
        }
        drop(live);
        let new_metas: Vec<ItemMeta> = update
            .add
            .iter()
            .chain(&update.replace)
            .map(|i| item_meta(i, &how))
            .collect();
        let texts: Vec<&str> = new_metas.iter().map(|m| m.text.as_str()).collect();
        let new_vecs = match model {
            _ if texts.is_empty() => Vec::new(),
            Some((encoder, _)) => encode(encoder, &texts, opts.encode_chunk, opts.progress)?,
            None => bail!("adding or replacing items needs the model the index was built with"),
        };
        let first_slot = items.len() as u32;
        let new_slots: Vec<u32> = (0..new_metas.len() as u32)
            .map(|i| first_slot + i)
            .collect();

        let dim = manifest.dim;
        let manifest = commit(
            dir,
            &manifest,
            &[EMBEDDINGS, BM25_DIR],
            |stage, manifest| {
                // Embeddings: append to the staged copy.
                let emb = stage.join(EMBEDDINGS);
                {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&emb)
                        .with_context(|| format!("cannot open {}", emb.display()))?;
                    f.write_all(&f32_bytes(&new_vecs))
                        .with_context(|| format!("cannot append to {}", emb.display()))?;
                }
                let all = read_f32(&emb)?;
                ensure!(
                    all.len() == (items.len() + new_slots.len()) * dim,
                    "{}: {} floats after the append, expected {} slots x {dim}",
                    emb.display(),
                    all.len(),
                    items.len() + new_slots.len()
                );
                if let Some(q) = manifest.quantization {
                    write_quantized(stage, q, &all, dim)?;
                }
                failpoint("index-embeddings");
                // HNSW: remove tombstoned keys, add new rows.
                let mut ann = HnswIndex::open(&stage.join(HNSW), dim, manifest.hnsw, false)?;
                for &s in &tomb {
                    ann.remove(s)?;
                }
                if !new_slots.is_empty() {
                    ann.add(&new_slots, &new_vecs)?;
                }
                let tmp = stage.join("hnsw.usearch.tmp");
                ann.save(&tmp)?;
                let dead: HashSet<u32> = tomb.iter().copied().collect();
                let mut live_slots = Vec::new();
                let mut live_rows = Vec::new();
                for (slot, row) in all.chunks_exact(dim).enumerate() {
                    let slot = slot as u32;
                    let deleted = items.get(slot as usize).is_some_and(|m| m.deleted);
                    if !deleted && !dead.contains(&slot) {
                        live_slots.push(slot);
                        live_rows.extend_from_slice(row);
                    }
                }
                write_orphans(stage, &ann, &live_slots, &live_rows)?;
                drop(ann);
                std::fs::rename(&tmp, stage.join(HNSW))
                    .with_context(|| format!("cannot write {}", stage.join(HNSW).display()))?;
                failpoint("index-hnsw");
                // BM25: delete terms and add documents.
                let bm25 = Bm25Index::open(&stage.join(BM25_DIR))?;
                bm25.update(&tomb, new_slots.iter().copied().zip(texts.iter().copied()))?;
                failpoint("index-bm25");
                // Metadata.
                for &s in &tomb {
                    items[s as usize].deleted = true;
                }
                items.extend(new_metas.iter().cloned());
                write_items(stage, &items)?;
                failpoint("index-items");
                manifest.slots = items.len();
                manifest.count = items.iter().filter(|i| !i.deleted).count();
                Ok(())
            },
        )?;
        let report = UpdateReport {
            added: update.add.len(),
            replaced: update.replace.len(),
            deleted: update.delete.len(),
            count: manifest.count,
            slots: manifest.slots,
        };
        Ok((Self::open(dir)?, report))
    }

    /// Rebuilds the HNSW graph of the index in `dir` from its stored embeddings with new
    /// parameters (no model run; tombstoned slots are left out), e.g. to trade build time
    /// for recall. Returns the reopened index.
    pub fn rebuild_hnsw(dir: &Path, params: HnswParams, progress: bool) -> anyhow::Result<Self> {
        let idx = Self::open(dir)?;
        let dim = idx.dim();
        let live: Vec<u32> = idx.live_items().map(|(s, _)| s).collect();
        ensure!(
            !live.is_empty(),
            "{}: the index holds no live items",
            dir.display()
        );
        let mut data = Vec::with_capacity(live.len() * dim);
        for &s in &live {
            data.extend_from_slice(idx.vector(s));
        }
        let manifest = idx.manifest().clone();
        drop(idx);
        let pb = bar(progress, 1, "HNSW graph");
        commit(dir, &manifest, &[], |stage, manifest| {
            write_graph(stage, &data, dim, params, &live)?;
            manifest.hnsw = params;
            Ok(())
        })?;
        pb.finish_and_clear();
        Self::open(dir)
    }

    /// Sets (or with `None` removes) the thresholds of the index in `dir`, e.g. from a
    /// `strata eval` run made after the index was built; they apply from the next
    /// [`ItemIndex::open`].
    pub fn set_thresholds(dir: &Path, thresholds: Option<&Thresholds>) -> anyhow::Result<()> {
        let m = Manifest::read(dir)?;
        commit(dir, &m, &[], |stage, m| {
            let f = stage.join(THRESHOLDS);
            match thresholds {
                Some(t) => write_atomic(&f, serde_json::to_string_pretty(t)?.as_bytes())?,
                None => generation::remove_all(&[f])?,
            }
            m.thresholds = thresholds.cloned();
            Ok(())
        })?;
        Ok(())
    }

    /// Checks the index at `dir`: the manifest against the item file, the vectors, the HNSW
    /// graph and the BM25 index, and lists leftovers of interrupted mutations. An unreadable
    /// manifest is an error; everything else is reported.
    pub fn verify(dir: &Path) -> anyhow::Result<VerifyReport> {
        let manifest = Manifest::read(dir)?;
        let mut report = VerifyReport {
            generation: manifest.generation,
            count: manifest.count,
            slots: manifest.slots,
            ..Default::default()
        };
        report.leftovers = generation::stale_entries(dir, manifest.generation)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        match Self::open(dir) {
            Err(e) => report.problems.push(format!("{e:#}")),
            Ok(idx) => {
                if idx.ann.len() != manifest.count {
                    report.problems.push(format!(
                        "{}: the HNSW graph holds {} items, the manifest counts {}",
                        idx.data.join(HNSW).display(),
                        idx.ann.len(),
                        manifest.count
                    ));
                }
                let count = idx.live_items().count();
                if count != manifest.count {
                    report.problems.push(format!(
                        "{}: {count} live items, the manifest counts {}",
                        idx.data.join(ITEMS).display(),
                        manifest.count
                    ));
                }
            }
        }
        Ok(report)
    }

    /// Repairs the index at `dir`: removes leftovers of interrupted mutations and, when the
    /// data files disagree with the manifest (an index damaged by a crash of a strata older
    /// than crash-safe updates, or by hand), brings them back in line without a model: the
    /// item records decide the slots (the manifest's when the item file still has them, the
    /// item file's when it is complete and the vectors cover it), surplus vector rows are
    /// dropped, and the HNSW graph and the BM25 index are rebuilt from the items and vectors.
    /// The result is a new generation, committed like any update.
    pub fn repair(dir: &Path, progress: bool) -> anyhow::Result<RepairReport> {
        let manifest = Manifest::read(dir)?;
        let stale = generation::stale_entries(dir, manifest.generation)?;
        generation::remove_all(&stale)?;
        let mut report = RepairReport {
            removed: stale.iter().map(|p| p.display().to_string()).collect(),
            count: manifest.count,
            slots: manifest.slots,
            ..Default::default()
        };
        let found = Self::verify(dir)?;
        if found.problems.is_empty() {
            return Ok(report);
        }
        report.problems = found.problems;
        let data = data_dir(dir, manifest.generation);
        let dim = manifest.dim;
        let items = read_items(&data).with_context(|| {
            format!(
                "cannot repair {}: the item file is unreadable; rebuild the index",
                dir.display()
            )
        })?;
        let vectors = read_f32(&data.join(EMBEDDINGS)).with_context(|| {
            format!(
                "cannot repair {}: the vectors are unreadable; rebuild the index",
                dir.display()
            )
        })?;
        let rows = vectors.len() / dim.max(1);
        let (slots, action) = if items.len() == manifest.slots && rows >= manifest.slots {
            (
                manifest.slots,
                format!(
                    "kept the manifest's {} slots ({} surplus vector rows dropped); rebuilt the HNSW graph and the BM25 index",
                    manifest.slots,
                    rows - manifest.slots
                ),
            )
        } else if items.len() > manifest.slots && rows >= items.len() {
            (
                items.len(),
                format!(
                    "completed the interrupted update to the item file's {} slots ({} surplus vector rows dropped); rebuilt the HNSW graph and the BM25 index",
                    items.len(),
                    rows - items.len()
                ),
            )
        } else {
            bail!(
                "cannot repair {}: {} item records, {rows} vector rows and {} slots in the manifest do not fit together; rebuild the index",
                dir.display(),
                items.len(),
                manifest.slots
            );
        };
        let items = &items[..slots];
        let vectors = &vectors[..slots * dim];
        let live: Vec<u32> = (0..slots as u32)
            .filter(|&s| !items[s as usize].deleted)
            .collect();
        ensure!(
            !live.is_empty(),
            "cannot repair {}: no live items; rebuild the index",
            dir.display()
        );
        let mut live_rows = Vec::with_capacity(live.len() * dim);
        for &s in &live {
            live_rows.extend_from_slice(&vectors[s as usize * dim..(s as usize + 1) * dim]);
        }
        let pb = bar(progress, 1, "repairing");
        let committed = commit(dir, &manifest, &[], |stage, m| {
            write_atomic(&stage.join(EMBEDDINGS), &f32_bytes(vectors))?;
            if let Some(q) = m.quantization {
                write_quantized(stage, q, vectors, dim)?;
            }
            write_graph(stage, &live_rows, dim, m.hnsw, &live)?;
            let bm25 = stage.join(BM25_DIR);
            generation::remove_all(std::slice::from_ref(&bm25))?;
            Bm25Index::create(
                &bm25,
                live.iter().map(|&s| (s, items[s as usize].text.as_str())),
            )?;
            write_items(stage, items)?;
            m.slots = slots;
            m.count = live.len();
            Ok(())
        })?;
        pb.finish_and_clear();
        report.action = Some(action);
        report.count = committed.count;
        report.slots = committed.slots;
        let after = Self::verify(dir)?;
        ensure!(
            after.problems.is_empty(),
            "the repaired index is still inconsistent: {}",
            after.problems.join("; ")
        );
        Ok(report)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of the current generation's data files.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dim(&self) -> usize {
        self.manifest.dim
    }

    /// Live items.
    /// The live slots the HNSW graph cannot reach (scored exactly by approximate search).
    pub fn orphans(&self) -> &[u32] {
        &self.orphans
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The record of a slot.
    pub fn item(&self, slot: u32) -> &ItemMeta {
        &self.items[slot as usize]
    }

    /// The slot of a live item id.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Live items in slot order (the catalog a fresh build would index identically).
    pub fn live_items(&self) -> impl Iterator<Item = (u32, &ItemMeta)> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, it)| !it.deleted)
            .map(|(s, it)| (s as u32, it))
    }

    /// The embedding of a slot.
    pub fn vector(&self, slot: u32) -> &[f32] {
        self.vectors.row(slot as usize)
    }

    /// Cosine of a query embedding with a slot.
    pub fn semantic_score(&self, query: &[f32], slot: u32) -> f32 {
        dot(query, self.vectors.row(slot as usize))
    }

    fn check_query(&self, query: &[f32]) -> anyhow::Result<()> {
        ensure!(
            query.len() == self.dim(),
            "query embedding has dimension {}, the index {}",
            query.len(),
            self.dim()
        );
        Ok(())
    }

    /// The exact top `k` live items by cosine (the reference ranking).
    pub fn exact(&self, query: &[f32], k: usize) -> anyhow::Result<Vec<Hit>> {
        self.check_query(query)?;
        let mut hits = self
            .vectors
            .search(query, k + self.tombstones)?
            .pop()
            .unwrap_or_default();
        hits.retain(|h| !self.items[h.item as usize].deleted);
        hits.truncate(k);
        Ok(hits)
    }

    /// Searches of this opened index propose `ef` graph candidates instead of the manifest's
    /// `ef_search` (a serving-time trade of recall for latency; the files are not changed).
    /// Beams narrower than [`UNREACHABLE_BEAM`] act as that width.
    pub fn set_ef_search(&mut self, ef: usize) -> anyhow::Result<()> {
        ensure!(ef > 0, "ef_search must be positive");
        self.ann.set_expansion_search(ef);
        Ok(())
    }

    /// The approximate (HNSW) top `k` live items by cosine.
    ///
    /// The graph proposes `max(k, ef_search)` candidates, to which the items the graph cannot
    /// reach ([`HNSW_ORPHANS`], found at build time) are added; all are then scored with the
    /// stored f32 vectors by the same kernel as [`ItemIndex::exact`] (ties to the lower
    /// slot): whenever the true top `k` is among the candidates, the result equals the exact
    /// ranking bit for bit, scores included, instead of differing in the order of near-ties.
    pub fn approximate(&self, query: &[f32], k: usize) -> anyhow::Result<Vec<Hit>> {
        self.check_query(query)?;
        // Never a narrower beam than the one that found the orphans: every other item is
        // reachable with it.
        let want = k
            .max(self.ann.params().expansion_search)
            .max(UNREACHABLE_BEAM)
            .min(self.items.len());
        let mut slots: Vec<u32> = self
            .ann
            .search(query, want)?
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.item)
            .chain(self.orphans.iter().copied())
            .filter(|&s| !self.items[s as usize].deleted)
            .collect();
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        slots.sort_unstable();
        slots.dedup();
        let dim = self.dim();
        let mut rows = Vec::with_capacity(slots.len() * dim);
        for &s in &slots {
            rows.extend_from_slice(self.vectors.row(s as usize));
        }
        // The rows were checked when the index was opened.
        let scored = ExactIndex::new_prechecked(rows, dim)?
            .search(query, k.min(slots.len()))?
            .pop()
            .unwrap_or_default();
        Ok(scored
            .into_iter()
            .map(|h| Hit {
                item: slots[h.item as usize],
                score: h.score,
            })
            .collect())
    }

    /// The BM25 top `k`.
    pub fn lexical(&self, query: &str, k: usize) -> anyhow::Result<Vec<Hit>> {
        Ok(self.bm25.search(query, k)?)
    }

    /// BM25 scores of the given slots.
    pub fn lexical_scores(&self, query: &str, slots: &[u32]) -> anyhow::Result<Vec<f32>> {
        Ok(self.bm25.score_items(query, slots)?)
    }

    /// The hybrid top `k`, exactly as `strata eval --system hybrid` ranks: exact semantic and
    /// BM25 candidates (`candidates` from each), fused by `fusion`.
    pub fn hybrid(
        &self,
        query: &str,
        embedding: &[f32],
        k: usize,
        fusion: Fusion,
        candidates: usize,
    ) -> anyhow::Result<Vec<FusedHit>> {
        fusion.validate().map_err(anyhow::Error::msg)?;
        let sem = self.exact(embedding, candidates)?;
        Ok(hybrid_rank(
            query,
            &sem,
            |slot| self.semantic_score(embedding, slot),
            &self.bm25,
            candidates,
            fusion,
            k,
        )?)
    }
}
