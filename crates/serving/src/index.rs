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
use strata_data::{Item, Side, TextEncoder};
use strata_eval::from_data::{ItemText, item_text};
use strata_eval::search::dot;
use strata_eval::{
    Bm25Index, ExactIndex, FusedHit, Fusion, Hit, HnswIndex, HnswParams, Thresholds, VectorSearch,
    hybrid_rank,
};

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
    pub item_text: ItemText,
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
            item_text: ItemText::default(),
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

/// The f32 embedding file, memory-mapped.
pub struct F32Map(Mmap);

impl F32Map {
    fn open(path: &Path) -> anyhow::Result<Self> {
        ensure!(
            cfg!(target_endian = "little"),
            "embedding files are little-endian; this machine is not"
        );
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: the file is only modified by `ItemIndex::update`, which appends and then
        // reopens the index; a map is never used across that change.
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
    write_atomic(
        &dir.join(MANIFEST),
        serde_json::to_string_pretty(m)?.as_bytes(),
    )
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

fn item_meta(item: &Item, how: ItemText) -> ItemMeta {
    ItemMeta {
        id: item.id.clone(),
        text: item_text(item, how),
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
        let metas: Vec<ItemMeta> = items.iter().map(|i| item_meta(i, opts.item_text)).collect();
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
        };
        write_manifest(dir, &manifest)?;
        Self::open(dir)
    }

    /// Opens an index directory: embeddings and the HNSW graph memory-mapped, BM25 on disk.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let manifest = Manifest::read(dir)?;
        let items = read_items(dir)?;
        ensure!(
            items.len() == manifest.slots,
            "{}: {} item records, the manifest says {} slots",
            dir.join(ITEMS).display(),
            items.len(),
            manifest.slots
        );
        let emb = dir.join(EMBEDDINGS);
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
        let ann = HnswIndex::open(&dir.join(HNSW), manifest.dim, manifest.hnsw, true)
            .with_context(|| format!("{}", dir.join(HNSW).display()))?;
        let orphans = read_orphans(dir)?;
        ensure!(
            orphans.iter().all(|&s| (s as usize) < items.len()),
            "{}: a slot beyond the {} slots of the index",
            dir.join(HNSW_ORPHANS).display(),
            items.len()
        );
        let bm25 = Bm25Index::open(&dir.join(BM25_DIR))?;
        let mut by_id = HashMap::new();
        let mut tombstones = 0;
        for (slot, it) in items.iter().enumerate() {
            if it.deleted {
                tombstones += 1;
            } else if by_id.insert(it.id.clone(), slot as u32).is_some() {
                bail!(
                    "{}: item id {:?} is live twice",
                    dir.join(ITEMS).display(),
                    it.id
                );
            }
        }
        ensure!(
            by_id.len() == manifest.count && bm25.len() == manifest.count,
            "{}: the manifest counts {} items, the item file {} and the BM25 index {}; the index is inconsistent, rebuild it",
            dir.display(),
            manifest.count,
            by_id.len(),
            bm25.len()
        );
        Ok(ItemIndex {
            dir: dir.to_path_buf(),
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
        let mut manifest = Manifest::read(dir)?;
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
        let how: ItemText = manifest
            .item_text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", dir.join(MANIFEST).display()))?;
        let mut items = read_items(dir)?;
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
            .map(|i| item_meta(i, how))
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

        // Embeddings: append.
        let emb = dir.join(EMBEDDINGS);
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&emb)
                .with_context(|| format!("cannot open {}", emb.display()))?;
            f.write_all(&f32_bytes(&new_vecs))
                .and_then(|_| f.sync_data())
                .with_context(|| format!("cannot append to {}", emb.display()))?;
        }
        if let Some(q) = manifest.quantization {
            let all = std::fs::read(&emb)?;
            let v: Vec<f32> = all
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            write_quantized(dir, q, &v, manifest.dim)?;
        }
        // HNSW: remove tombstoned keys, add new rows.
        let mut ann = HnswIndex::open(&dir.join(HNSW), manifest.dim, manifest.hnsw, false)?;
        for &s in &tomb {
            ann.remove(s)?;
        }
        if !new_slots.is_empty() {
            ann.add(&new_slots, &new_vecs)?;
        }
        let tmp = dir.join("hnsw.usearch.tmp");
        ann.save(&tmp)?;
        {
            let all = std::fs::read(&emb)?;
            let v: Vec<f32> = all
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let dead: HashSet<u32> = tomb.iter().copied().collect();
            let mut live_slots = Vec::new();
            let mut live_rows = Vec::new();
            for (slot, row) in v.chunks_exact(manifest.dim).enumerate() {
                let slot = slot as u32;
                let deleted = items.get(slot as usize).is_some_and(|m| m.deleted);
                if !deleted && !dead.contains(&slot) {
                    live_slots.push(slot);
                    live_rows.extend_from_slice(row);
                }
            }
            write_orphans(dir, &ann, &live_slots, &live_rows)?;
        }
        drop(ann);
        std::fs::rename(&tmp, dir.join(HNSW))?;
        // BM25: delete terms and add documents.
        let bm25 = Bm25Index::open(&dir.join(BM25_DIR))?;
        bm25.update(&tomb, new_slots.iter().copied().zip(texts.iter().copied()))?;
        // Metadata and manifest.
        for &s in &tomb {
            items[s as usize].deleted = true;
        }
        items.extend(new_metas);
        write_items(dir, &items)?;
        manifest.slots = items.len();
        manifest.count = items.iter().filter(|i| !i.deleted).count();
        write_manifest(dir, &manifest)?;
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
        let mut manifest = idx.manifest().clone();
        drop(idx);
        let pb = bar(progress, 1, "HNSW graph");
        let ann = HnswIndex::build_keyed(&data, dim, params, |i| live[i])
            .context("building the HNSW graph")?;
        let tmp = dir.join("hnsw.usearch.tmp");
        ann.save(&tmp)?;
        write_orphans(dir, &ann, &live, &data)?;
        drop(ann);
        std::fs::rename(&tmp, dir.join(HNSW))?;
        pb.finish_and_clear();
        manifest.hnsw = params;
        write_manifest(dir, &manifest)?;
        Self::open(dir)
    }

    /// Sets (or with `None` removes) the thresholds of the index in `dir`, e.g. from a
    /// `strata eval` run made after the index was built; they apply from the next
    /// [`ItemIndex::open`].
    pub fn set_thresholds(dir: &Path, thresholds: Option<&Thresholds>) -> anyhow::Result<()> {
        let mut m = Manifest::read(dir)?;
        match thresholds {
            Some(t) => write_atomic(
                &dir.join(THRESHOLDS),
                serde_json::to_string_pretty(t)?.as_bytes(),
            )?,
            None => {
                let f = dir.join(THRESHOLDS);
                if f.exists() {
                    std::fs::remove_file(&f)
                        .with_context(|| format!("cannot remove {}", f.display()))?;
                }
            }
        }
        m.thresholds = thresholds.cloned();
        write_manifest(dir, &m)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// The approximate (HNSW) top `k` live items by cosine.
    ///
    /// The graph proposes `max(k, ef_search)` candidates, to which the items the graph cannot
    /// reach ([`HNSW_ORPHANS`], found at build time) are added; all are then scored with the
    /// stored f32 vectors by the same kernel as [`ItemIndex::exact`] (ties to the lower
    /// slot): whenever the true top `k` is among the candidates, the result equals the exact
    /// ranking bit for bit, scores included, instead of differing in the order of near-ties.
    pub fn approximate(&self, query: &[f32], k: usize) -> anyhow::Result<Vec<Hit>> {
        self.check_query(query)?;
        let want = k
            .max(self.ann.params().expansion_search)
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
        let scored = ExactIndex::new(rows, dim)?
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
