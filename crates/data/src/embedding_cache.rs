//! A persistent cache of item embeddings, keyed by the exact item text, for one model.
//!
//! Embedding a catalog is the expensive part of an evaluation or a mining run on a CPU (the
//! Home Depot catalog costs minutes), while the catalog rarely changes between runs of the
//! same model. [`CachedEncoder`] wraps any [`TextEncoder`]: item texts found in the cache are
//! answered from it, the others are embedded in chunks and each chunk is written to the cache
//! as soon as it is done, so an interrupted run resumes where it stopped and a catalog that
//! gained items costs only the new ones. Query texts always go to the model.
//!
//! The caller chooses one directory per model (and per setting that changes the vectors, such
//! as the truncation length); nothing here can tell two models apart. A directory holds
//! segment files (`*.seg`), each written to a temporary name and renamed when complete, so
//! concurrent writers and crashes never leave a half-written segment behind:
//!
//! ```text
//! b"STRATAEC" | u32 version (1) | u32 dim | u64 count | count * dim f32 | count * (u32 len, utf-8 text)
//! ```
//! (all little-endian).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail, ensure};

use crate::encoder::{Side, TextEncoder};

const MAGIC: &[u8; 8] = b"STRATAEC";
const VERSION: u32 = 1;
const SEGMENT_EXT: &str = "seg";

/// The embeddings of one model, by item text.
#[derive(Debug)]
pub struct EmbeddingCache {
    dir: PathBuf,
    dim: usize,
    rows: HashMap<String, usize>,
    vectors: Vec<f32>,
    segments: usize,
}

impl EmbeddingCache {
    /// Opens (creating it if needed) the cache directory `dir` for `dim`-dimensional vectors
    /// and reads every segment in it. A segment of another dimension or a damaged one is an
    /// error that names the file.
    pub fn open(dir: &Path, dim: usize) -> anyhow::Result<Self> {
        ensure!(dim > 0, "embedding cache {}: dimension 0", dir.display());
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the embedding cache {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the embedding cache {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == SEGMENT_EXT))
            .collect();
        paths.sort();
        let mut cache = EmbeddingCache {
            dir: dir.to_path_buf(),
            dim,
            rows: HashMap::new(),
            vectors: Vec::new(),
            segments: 0,
        };
        for path in &paths {
            cache
                .read_segment(path)
                .with_context(|| format!("embedding cache segment {}", path.display()))?;
        }
        Ok(cache)
    }

    fn read_segment(&mut self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        ensure!(r.take(8)? == MAGIC, "not a strata embedding cache segment");
        let version = r.u32()?;
        ensure!(
            version == VERSION,
            "segment version {version}, expected {VERSION}"
        );
        let dim = r.u32()? as usize;
        ensure!(
            dim == self.dim,
            "holds {dim}-dimensional vectors, the model embeds to {} (one cache directory per model)",
            self.dim
        );
        let count = usize::try_from(r.u64()?)?;
        let floats = count
            .checked_mul(dim)
            .context("segment header: count overflows")?;
        let raw = r.take(
            floats
                .checked_mul(4)
                .context("segment header: count overflows")?,
        )?;
        let start = self.vectors.len();
        self.vectors.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        for i in 0..count {
            let len = r.u32()? as usize;
            let text = std::str::from_utf8(r.take(len)?)
                .with_context(|| format!("text {i} is not UTF-8"))?;
            // A text in two segments (two runs embedded it at once) keeps its first vector.
            self.rows.entry(text.to_string()).or_insert(start / dim + i);
        }
        ensure!(
            r.pos == bytes.len(),
            "{} bytes after the last text",
            bytes.len() - r.pos
        );
        self.segments += 1;
        Ok(())
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of distinct texts held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of segment files read or written.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The vector of `text`, if cached.
    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.rows
            .get(text)
            .map(|&r| &self.vectors[r * self.dim..(r + 1) * self.dim])
    }

    /// Adds `texts` with their vectors (`texts.len() * dim` floats) and writes them to a new
    /// segment; texts already held are skipped. Returns how many were added.
    pub fn insert(&mut self, texts: &[&str], vectors: &[f32]) -> anyhow::Result<usize> {
        ensure!(
            vectors.len() == texts.len() * self.dim,
            "{} vectors of dimension {} for {} texts",
            vectors.len() / self.dim.max(1),
            self.dim,
            texts.len()
        );
        let mut seen = std::collections::HashSet::new();
        let new: Vec<usize> = (0..texts.len())
            .filter(|&i| !self.rows.contains_key(texts[i]) && seen.insert(texts[i]))
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        let d = self.dim;
        let mut buf = Vec::with_capacity(24 + new.len() * (d * 4 + 40));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(d as u32).to_le_bytes());
        buf.extend_from_slice(&(new.len() as u64).to_le_bytes());
        for &i in &new {
            for v in &vectors[i * d..(i + 1) * d] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        for &i in &new {
            let t = texts[i].as_bytes();
            let len = u32::try_from(t.len()).context("an item text over 4 GiB")?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(t);
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{stamp:032}-{}-{}", std::process::id(), self.segments);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}.{SEGMENT_EXT}"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write the embedding cache {}", path.display()))?;
        let start = self.vectors.len() / d;
        for (j, &i) in new.iter().enumerate() {
            self.vectors.extend_from_slice(&vectors[i * d..(i + 1) * d]);
            self.rows.insert(texts[i].to_string(), start + j);
        }
        self.segments += 1;
        Ok(new.len())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "truncated: needs {n} bytes at offset {}, the file has {}",
                self.pos,
                self.bytes.len()
            );
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
}

/// What a [`CachedEncoder`] did with the item texts it was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Item texts answered from the cache.
    pub hits: usize,
    /// Distinct item texts the model embedded (and the cache now holds).
    pub embedded: usize,
}

/// A [`TextEncoder`] that answers item texts from an [`EmbeddingCache`] and embeds (and
/// caches) the rest in chunks; query texts go straight to the model.
pub struct CachedEncoder<'a> {
    inner: &'a dyn TextEncoder,
    cache: Mutex<EmbeddingCache>,
    chunk: usize,
    stats: Mutex<CacheStats>,
}

impl<'a> CachedEncoder<'a> {
    /// Wraps `inner` with `cache`, which must hold vectors of `inner`'s dimension.
    pub fn new(inner: &'a dyn TextEncoder, cache: EmbeddingCache) -> anyhow::Result<Self> {
        ensure!(
            cache.dim() == inner.dim(),
            "embedding cache {} holds {}-dimensional vectors, the model embeds to {}",
            cache.dir().display(),
            cache.dim(),
            inner.dim()
        );
        Ok(CachedEncoder {
            inner,
            cache: Mutex::new(cache),
            chunk: 8192,
            stats: Mutex::new(CacheStats::default()),
        })
    }

    /// Texts embedded between two cache writes (default 8,192): the most work an interrupted
    /// run loses.
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// Hits and embedded texts so far.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Distinct texts the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl TextEncoder for CachedEncoder<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn encode(&self, texts: &[&str], side: Side) -> anyhow::Result<Vec<f32>> {
        if side == Side::Query {
            return self.inner.encode(texts, side);
        }
        let d = self.dim();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| cache.get(t).is_none() && seen.insert(*t))
            .collect();
        let hits = texts.iter().filter(|t| cache.get(t).is_some()).count();
        if !missing.is_empty() {
            tracing::debug!(
                "embedding cache {}: {} of {} item texts cached, embedding {}",
                cache.dir().display(),
                hits,
                texts.len(),
                missing.len()
            );
        }
        for chunk in missing.chunks(self.chunk) {
            let v = self.inner.encode(chunk, Side::Item)?;
            ensure!(
                v.len() == chunk.len() * d,
                "the model returned {} floats for {} texts of dimension {d}",
                v.len(),
                chunk.len()
            );
            cache.insert(chunk, &v)?;
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .embedded += chunk.len();
        }
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).hits += hits;
        let mut out = Vec::with_capacity(texts.len() * d);
        for t in texts {
            let v = cache
                .get(t)
                .context("an item text missing from the embedding cache after embedding")?;
            out.extend_from_slice(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Deterministic vectors from the text; counts the texts it embeds.
    struct Counting {
        dim: usize,
        calls: AtomicUsize,
        texts: AtomicUsize,
    }

    impl Counting {
        fn new(dim: usize) -> Self {
            Counting {
                dim,
                calls: AtomicUsize::new(0),
                texts: AtomicUsize::new(0),
            }
        }
    }

    impl TextEncoder for Counting {
        fn dim(&self) -> usize {
            self.dim
        }
        fn name(&self) -> String {
            "counting".into()
        }
        fn encode(&self, texts: &[&str], side: Side) -> anyhow::Result<Vec<f32>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            let off = if side == Side::Query { 0.5 } else { 0.0 };
            Ok(texts
                .iter()
                .flat_map(|t| (0..self.dim).map(move |j| t.len() as f32 + j as f32 + off))
                .collect())
        }
    }

    #[test]
    fn second_run_embeds_nothing_and_returns_the_same_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let model = Counting::new(3);
        let texts = ["drill", "saw blade", "drill", "hammer"];
        let first = {
            let enc = CachedEncoder::new(&model, EmbeddingCache::open(dir.path(), 3).unwrap())
                .unwrap()
                .with_chunk(2);
            let v = enc.encode(&texts, Side::Item).unwrap();
            // "drill" twice in the input: embedded once; 3 distinct texts in chunks of 2.
            assert_eq!(
                enc.stats(),
                CacheStats {
                    hits: 0,
                    embedded: 3
                }
            );
            assert_eq!(model.texts.load(Ordering::SeqCst), 3);
            assert_eq!(model.calls.load(Ordering::SeqCst), 2);
            v
        };
        assert_eq!(first, model_vectors(&texts, 3));
        let cache = EmbeddingCache::open(dir.path(), 3).unwrap();
        assert_eq!((cache.len(), cache.segments()), (3, 2));
        let enc = CachedEncoder::new(&model, cache).unwrap();
        let again = enc.encode(&texts, Side::Item).unwrap();
        assert_eq!(again, first);
        assert_eq!(
            enc.stats(),
            CacheStats {
                hits: 4,
                embedded: 0
            }
        );
        assert_eq!(model.texts.load(Ordering::SeqCst), 3, "nothing re-embedded");
    }

    fn model_vectors(texts: &[&str], dim: usize) -> Vec<f32> {
        texts
            .iter()
            .flat_map(|t| (0..dim).map(move |j| t.len() as f32 + j as f32))
            .collect()
    }

    #[test]
    fn only_new_items_are_embedded_and_queries_bypass_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let model = Counting::new(2);
        let enc = CachedEncoder::new(&model, EmbeddingCache::open(dir.path(), 2).unwrap()).unwrap();
        enc.encode(&["a", "bb"], Side::Item).unwrap();
        let v = enc.encode(&["bb", "ccc", "a"], Side::Item).unwrap();
        assert_eq!(v, model_vectors(&["bb", "ccc", "a"], 2));
        assert_eq!(
            enc.stats(),
            CacheStats {
                hits: 2,
                embedded: 3
            }
        );
        let q = enc.encode(&["a"], Side::Query).unwrap();
        assert_eq!(q, vec![1.5, 2.5], "query tower, not the cached item vector");
        assert_eq!(enc.cached(), 3);
    }

    #[test]
    fn damaged_or_foreign_segments_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = Counting::new(4);
        let enc = CachedEncoder::new(&model, EmbeddingCache::open(dir.path(), 4).unwrap()).unwrap();
        enc.encode(&["x", "yy"], Side::Item).unwrap();
        // Another model's dimension.
        let err = format!("{:#}", EmbeddingCache::open(dir.path(), 8).unwrap_err());
        assert!(
            err.contains(".seg") && err.contains("4-dimensional"),
            "{err}"
        );
        // A truncated segment.
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[..bytes.len() - 1]).unwrap();
        let err = format!("{:#}", EmbeddingCache::open(dir.path(), 4).unwrap_err());
        assert!(
            err.contains(&seg.display().to_string()) && err.contains("truncated"),
            "{err}"
        );
        // Not a segment at all.
        std::fs::write(&seg, b"hello world, not a cache").unwrap();
        let err = format!("{:#}", EmbeddingCache::open(dir.path(), 4).unwrap_err());
        assert!(
            err.contains("not a strata embedding cache segment"),
            "{err}"
        );
        // A leftover temporary file is ignored.
        std::fs::remove_file(&seg).unwrap();
        std::fs::write(dir.path().join(".123-1-0.tmp"), b"partial").unwrap();
        assert!(EmbeddingCache::open(dir.path(), 4).unwrap().is_empty());
    }

    #[test]
    fn a_dimension_mismatch_with_the_model_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = Counting::new(4);
        let err = CachedEncoder::new(&model, EmbeddingCache::open(dir.path(), 3).unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("embeds to 4"), "{err}");
    }

    #[test]
    fn an_interrupted_run_keeps_its_finished_chunks() {
        struct FailsOn<'a>(&'a Counting, &'static str);
        impl TextEncoder for FailsOn<'_> {
            fn dim(&self) -> usize {
                self.0.dim
            }
            fn name(&self) -> String {
                "fails".into()
            }
            fn encode(&self, texts: &[&str], side: Side) -> anyhow::Result<Vec<f32>> {
                if texts.contains(&self.1) {
                    bail!("interrupted");
                }
                self.0.encode(texts, side)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let model = Counting::new(2);
        let failing = FailsOn(&model, "e");
        let enc = CachedEncoder::new(&failing, EmbeddingCache::open(dir.path(), 2).unwrap())
            .unwrap()
            .with_chunk(2);
        let texts = ["a", "b", "c", "d", "e", "f"];
        assert!(enc.encode(&texts, Side::Item).is_err());
        let enc = CachedEncoder::new(&model, EmbeddingCache::open(dir.path(), 2).unwrap())
            .unwrap()
            .with_chunk(2);
        enc.encode(&texts, Side::Item).unwrap();
        assert_eq!(
            enc.stats(),
            CacheStats {
                hits: 4,
                embedded: 2
            },
            "the two chunks finished before the failure were kept"
        );
    }
}
