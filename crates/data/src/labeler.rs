//! Relevance labelers: anything that labels (query, item id) pairs 0, 1 or 2, in batches.
//!
//! [`JudgmentLookupLabeler`] answers from known judgments; the synthetic marketplace's
//! [`OracleLabeler`](crate::marketplace::OracleLabeler) labels any pair by policy; and
//! [`CachedLabeler`] wraps any labeler with a persistent append-only cache so that no pair is
//! labeled twice across runs (a file, or a directory shared by many worker processes).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use anyhow::Context;

use crate::hash::{fnv1a64, mix64};
use crate::record::{Judgment, MAX_LABEL};
use crate::split::normalize_query;

/// A label with the labeler's per-class probabilities (index = label).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredLabel {
    pub label: u8,
    /// Probabilities of labels 0, 1 and 2 (summing to 1).
    pub probs: [f32; 3],
}

impl ScoredLabel {
    /// A label held with certainty (probability 1 on `label`).
    pub fn certain(label: u8) -> Self {
        let mut probs = [0.0; 3];
        probs[usize::from(label.min(MAX_LABEL))] = 1.0;
        ScoredLabel { label, probs }
    }

    /// The probability of the chosen label.
    pub fn confidence(&self) -> f32 {
        self.probs[usize::from(self.label.min(MAX_LABEL))]
    }
}

/// Labels (query, item id) pairs. `None` means the labeler abstains on that pair.
pub trait Labeler: Send + Sync {
    /// One label (or `None`) per pair, in order.
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>>;
    /// A stable description of the labeler (model, version, settings); part of cache keys.
    fn identity(&self) -> String;
    /// Labels with per-class probabilities, for labelers that have them (a cross-encoder's
    /// softmax, an LLM's token probabilities). The default wraps [`Labeler::label`] with
    /// certainty ([`ScoredLabel::certain`]).
    fn label_scored(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<ScoredLabel>>> {
        Ok(self
            .label(pairs)?
            .into_iter()
            .map(|l| l.map(ScoredLabel::certain))
            .collect())
    }
    /// Whether an abstention (`None`) is this labeler's answer for the pair, given again every
    /// time it is asked (a deterministic model under a confidence threshold), so a label cache
    /// may keep it. The default, `false`, suits labelers whose abstentions are failures to
    /// answer (an LLM that gave no usable label): a cache asks them again next time.
    fn abstentions_are_final(&self) -> bool {
        false
    }
}

/// Boxes, `Arc`s and references of a labeler label as the labeler does.
macro_rules! forward_labeler {
    ($($wrapper:ty),*) => {$(
        impl<L: Labeler + ?Sized> Labeler for $wrapper {
            fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
                (**self).label(pairs)
            }
            fn identity(&self) -> String {
                (**self).identity()
            }
            fn label_scored(
                &self,
                pairs: &[(String, String)],
            ) -> anyhow::Result<Vec<Option<ScoredLabel>>> {
                (**self).label_scored(pairs)
            }
            fn abstentions_are_final(&self) -> bool {
                (**self).abstentions_are_final()
            }
        }
    )*};
}

forward_labeler!(Box<L>, std::sync::Arc<L>, &L);

/// A labeler that abstains (`None`) where the labeler it wraps is unsure: a pair whose chosen
/// label has a probability below `min` ([`ScoredLabel::confidence`]) stays unlabeled instead of
/// being trained on with a doubtful label. Mining counts such pairs as unlabeled. Labelers
/// without probabilities answer with certainty and are never held back.
pub struct MinConfidence<L> {
    inner: L,
    min: f32,
}

impl<L: Labeler> MinConfidence<L> {
    /// Wraps `inner`; `min` must lie in (0, 1].
    pub fn new(inner: L, min: f32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            min > 0.0 && min <= 1.0,
            "min_confidence must be in (0, 1], got {min}"
        );
        Ok(MinConfidence { inner, min })
    }

    /// The threshold.
    pub fn min(&self) -> f32 {
        self.min
    }
}

impl<L: Labeler> Labeler for MinConfidence<L> {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        Ok(self
            .label_scored(pairs)?
            .into_iter()
            .map(|l| l.map(|l| l.label))
            .collect())
    }

    fn identity(&self) -> String {
        format!("{} min_confidence={}", self.inner.identity(), self.min)
    }

    fn label_scored(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<ScoredLabel>>> {
        Ok(self
            .inner
            .label_scored(pairs)?
            .into_iter()
            .map(|l| l.filter(|l| l.confidence() >= self.min))
            .collect())
    }

    /// Held back below the threshold is final when the wrapped labeler's own abstentions are.
    fn abstentions_are_final(&self) -> bool {
        self.inner.abstentions_are_final()
    }
}

/// What a lookup labeler answers for a pair it has no judgment for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownPair {
    /// Abstain (`None`).
    Abstain,
    /// A fixed label, e.g. 0 to treat unjudged pairs as irrelevant.
    Fixed(u8),
}

/// Looks labels up in known judgments (queries compared after [`normalize_query`]).
pub struct JudgmentLookupLabeler {
    labels: HashMap<String, HashMap<String, u8>>,
    unknown: UnknownPair,
    fingerprint: u64,
    pairs: usize,
}

impl JudgmentLookupLabeler {
    /// Indexes `judgments`; conflicting labels for the same (normalised) pair are an error.
    pub fn new(judgments: &[Judgment], unknown: UnknownPair) -> anyhow::Result<Self> {
        if let UnknownPair::Fixed(l) = unknown {
            anyhow::ensure!(l <= MAX_LABEL, "fixed label {l} is not 0, 1 or 2");
        }
        let mut labels: HashMap<String, HashMap<String, u8>> = HashMap::new();
        let mut fingerprint = 0u64;
        let mut pairs = 0;
        for j in judgments {
            let q = normalize_query(&j.query);
            let h = mix64(
                fnv1a64(q.as_bytes()) ^ mix64(fnv1a64(j.item_id.as_bytes())) ^ u64::from(j.label),
            );
            let slot = labels.entry(q).or_default();
            match slot.get(&j.item_id) {
                Some(&l) if l != j.label => anyhow::bail!(
                    "conflicting labels {l} and {} for ({:?}, {:?})",
                    j.label,
                    j.query,
                    j.item_id
                ),
                Some(_) => {}
                None => {
                    slot.insert(j.item_id.clone(), j.label);
                    fingerprint = fingerprint.wrapping_add(h);
                    pairs += 1;
                }
            }
        }
        Ok(JudgmentLookupLabeler {
            labels,
            unknown,
            fingerprint,
            pairs,
        })
    }

    /// The label of one pair, if judged.
    pub fn lookup(&self, query: &str, item_id: &str) -> Option<u8> {
        self.labels
            .get(&normalize_query(query))
            .and_then(|m| m.get(item_id))
            .copied()
    }
}

impl Labeler for JudgmentLookupLabeler {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        Ok(pairs
            .iter()
            .map(|(q, i)| {
                self.lookup(q, i).or(match self.unknown {
                    UnknownPair::Abstain => None,
                    UnknownPair::Fixed(l) => Some(l),
                })
            })
            .collect())
    }

    fn identity(&self) -> String {
        let unknown = match self.unknown {
            UnknownPair::Abstain => "abstain".to_string(),
            UnknownPair::Fixed(l) => format!("fixed-{l}"),
        };
        format!(
            "judgment-lookup pairs={} fingerprint={:016x} unknown={unknown}",
            self.pairs, self.fingerprint
        )
    }
}

/// One line of the cache file.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheLine {
    labeler: String,
    guideline: String,
    query: String,
    item_id: String,
    /// `None` (`null`): a final abstention. The field must be present.
    #[serde(deserialize_with = "Option::deserialize")]
    label: Option<u8>,
}

/// The in-memory side of a [`CachedLabeler`]: known labels and pairs being labeled now.
#[derive(Default)]
struct CacheState {
    /// Cached answers: labels, and final abstentions (`None`).
    labels: HashMap<(String, String), Option<u8>>,
    in_flight: HashSet<(String, String)>,
}

/// A labeler with a persistent cache: an append-only JSONL file keyed by labeler identity,
/// guideline version, query and item id, loaded when opened. Definite labels are cached, and
/// abstentions too when they are final ([`Labeler::abstentions_are_final`]: a line with
/// `"label": null`); any other abstention is asked again next time.
///
/// Pairs missing from the cache go to the inner labeler in chunks of
/// [`chunk_size`](Self::with_chunk_size) pairs, and each chunk's labels are written and flushed
/// before the next chunk is asked, so an error (or an interrupted run) loses at most one chunk.
/// The labeler may be shared between threads: a pair that another thread is labeling right
/// now is waited for rather than asked again, so no pair is paid for twice.
pub struct CachedLabeler<L> {
    inner: L,
    identity: String,
    guideline: String,
    path: PathBuf,
    state: Mutex<CacheState>,
    settled: Condvar,
    file: Mutex<BufWriter<File>>,
    chunk: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Removes claimed pairs from the in-flight set when dropped (after success or failure) and
/// wakes the threads waiting for them.
struct Claim<'a, L> {
    owner: &'a CachedLabeler<L>,
    pairs: Vec<(String, String)>,
}

impl<L> Drop for Claim<'_, L> {
    fn drop(&mut self) {
        let mut state = self.owner.state.lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.pairs {
            state.in_flight.remove(p);
        }
        drop(state);
        self.owner.settled.notify_all();
    }
}

impl<L: Labeler> CachedLabeler<L> {
    /// Opens (or creates) the cache at `path` for `inner` under `guideline_version`.
    ///
    /// Lines of other labelers or guideline versions stay in the file but are not used. A
    /// malformed line is an error naming the file and line, except a torn last line (no
    /// trailing newline, as left by an interrupted run), which is cut off with a warning.
    ///
    /// An existing *directory* at `path` is a shared cache ([`Self::open_shared`]) that this
    /// process writes to as `<host>-<pid>`.
    pub fn open(inner: L, path: impl AsRef<Path>, guideline_version: &str) -> anyhow::Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::open_shared(inner, path, &default_writer(), guideline_version);
        }
        let identity = inner.identity();
        let mut labels = HashMap::new();
        let file = open_own_file(path, &identity, guideline_version, &mut labels)?;
        Ok(Self::with_state(
            inner,
            identity,
            guideline_version,
            path.to_path_buf(),
            labels,
            file,
        ))
    }

    /// Opens a cache shared by several processes (the workers of a Ray or Spark job, on one
    /// machine or on shared storage): the directory `dir` (created) holds one JSONL file per
    /// writer. Every `*.jsonl` file in it is read, so labels any writer had persisted when this
    /// one opened are reused; this labeler appends only to `dir/<writer>.jsonl`, so writers
    /// never interleave lines. A torn last line of another writer's file (one being written
    /// now) is ignored; a malformed complete line is an error naming the file and line.
    /// `writer` must be unique among the processes using `dir` at the same time.
    pub fn open_shared(
        inner: L,
        dir: impl AsRef<Path>,
        writer: &str,
        guideline_version: &str,
    ) -> anyhow::Result<Self> {
        let dir = dir.as_ref();
        anyhow::ensure!(
            !writer.is_empty()
                && writer
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !writer.starts_with('.'),
            "label cache writer name {writer:?}: use letters, digits, '-', '_' and '.'"
        );
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let own = dir.join(format!("{writer}.jsonl"));
        let identity = inner.identity();
        let mut labels = HashMap::new();
        let mut others: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading label cache directory {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading label cache directory {}", dir.display()))?;
        others.retain(|p| p.extension().is_some_and(|e| e == "jsonl") && *p != own);
        others.sort();
        for p in &others {
            read_cache_file(p, &identity, guideline_version, &mut labels, false)?;
        }
        let file = open_own_file(&own, &identity, guideline_version, &mut labels)?;
        Ok(Self::with_state(
            inner,
            identity,
            guideline_version,
            own,
            labels,
            file,
        ))
    }

    fn with_state(
        inner: L,
        identity: String,
        guideline_version: &str,
        path: PathBuf,
        labels: HashMap<(String, String), Option<u8>>,
        file: BufWriter<File>,
    ) -> Self {
        CachedLabeler {
            inner,
            identity,
            guideline: guideline_version.to_string(),
            path,
            state: Mutex::new(CacheState {
                labels,
                in_flight: HashSet::new(),
            }),
            settled: Condvar::new(),
            file: Mutex::new(file),
            chunk: 64,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Sets how many missing pairs are asked (and persisted) at a time (default 64).
    pub fn with_chunk_size(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// Pairs answered from the cache so far (including pairs labeled by another thread while
    /// this one waited).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Pairs sent to the inner labeler so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Cached answers usable by this labeler and guideline version (final abstentions
    /// included).
    pub fn cached(&self) -> usize {
        self.lock_state().labels.len()
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapped labeler.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the inner labeler for `distinct` pairs (claimed by this thread) chunk by chunk,
    /// persisting each chunk's labels before asking the next.
    fn ask(
        &self,
        distinct: Vec<(String, String)>,
    ) -> anyhow::Result<HashMap<(String, String), Option<u8>>> {
        let _claim = Claim {
            owner: self,
            pairs: distinct.clone(),
        };
        let mut answers = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(self.chunk) {
            self.misses.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let labels = self.inner.label(chunk)?;
            anyhow::ensure!(
                labels.len() == chunk.len(),
                "labeler {} returned {} labels for {} pairs",
                self.identity,
                labels.len(),
                chunk.len()
            );
            if let Some(bad) = labels.iter().flatten().find(|&&l| l > MAX_LABEL) {
                anyhow::bail!("labeler {} returned label {bad}", self.identity);
            }
            {
                let keep_abstentions = self.inner.abstentions_are_final();
                let mut state = self.lock_state();
                let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
                for (p, &l) in chunk.iter().zip(&labels) {
                    if l.is_some() || keep_abstentions {
                        let line = CacheLine {
                            labeler: self.identity.clone(),
                            guideline: self.guideline.clone(),
                            query: p.0.clone(),
                            item_id: p.1.clone(),
                            label: l,
                        };
                        serde_json::to_writer(&mut *file, &line)?;
                        file.write_all(b"\n")?;
                        state.labels.insert(p.clone(), l);
                    }
                }
                file.flush()
                    .with_context(|| format!("writing label cache {}", self.path.display()))?;
            }
            for (p, l) in chunk.iter().zip(labels) {
                answers.insert(p.clone(), l);
            }
        }
        Ok(answers)
    }
}

impl<L: Labeler> Labeler for CachedLabeler<L> {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        let mut out: Vec<Option<u8>> = vec![None; pairs.len()];
        let mut pending: Vec<usize> = (0..pairs.len()).collect();
        // Pairs already waited for once: if the other thread's labeler abstained or failed,
        // this thread asks them itself rather than waiting again.
        let mut waited: HashSet<(String, String)> = HashSet::new();
        while !pending.is_empty() {
            let mut claimed: Vec<(String, String)> = Vec::new();
            let mut wait_for: Vec<usize> = Vec::new();
            let mut mine: Vec<usize> = Vec::new();
            {
                let mut state = self.lock_state();
                let mut seen: HashSet<&(String, String)> = HashSet::new();
                for &i in &pending {
                    let p = &pairs[i];
                    if let Some(&l) = state.labels.get(p) {
                        out[i] = l;
                        self.hits.fetch_add(1, Ordering::Relaxed);
                    } else if state.in_flight.contains(p) && !seen.contains(p) {
                        if waited.contains(p) {
                            // Another thread took it up again after abstaining; leave it.
                            out[i] = None;
                        } else {
                            wait_for.push(i);
                        }
                    } else {
                        if seen.insert(p) {
                            state.in_flight.insert(p.clone());
                            claimed.push(p.clone());
                        }
                        mine.push(i);
                    }
                }
            }
            if !claimed.is_empty() {
                let answers = self.ask(claimed)?;
                for &i in &mine {
                    out[i] = answers.get(&pairs[i]).copied().flatten();
                }
            }
            if wait_for.is_empty() {
                break;
            }
            let mut state = self.lock_state();
            while wait_for
                .iter()
                .any(|&i| state.in_flight.contains(&pairs[i]))
            {
                state = self.settled.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            drop(state);
            for &i in &wait_for {
                waited.insert(pairs[i].clone());
            }
            pending = wait_for;
        }
        Ok(out)
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}

/// This process's writer name in a shared label cache: `<host>-<pid>`.
fn default_writer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let host = if host.is_empty() {
        "host".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// What reading a cache file found about its end.
struct FileEnd {
    /// The last line is complete but lacks its newline.
    needs_newline: bool,
    /// Offset of a torn last line.
    torn_at: Option<u64>,
}

/// Reads the usable lines of the cache file at `path` (if it exists) into `labels`. A torn
/// last line is reported (`own`: with a warning, to be cut off) or, in another writer's file,
/// ignored.
fn read_cache_file(
    path: &Path,
    identity: &str,
    guideline: &str,
    labels: &mut HashMap<(String, String), Option<u8>>,
    own: bool,
) -> anyhow::Result<FileEnd> {
    let mut end = FileEnd {
        needs_newline: false,
        torn_at: None,
    };
    if !path.exists() {
        return Ok(end);
    }
    let mut reader = BufReader::new(
        File::open(path).with_context(|| format!("opening label cache {}", path.display()))?,
    );
    let mut buf = Vec::new();
    let mut line = 0;
    let mut offset = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading label cache {}", path.display()))?;
        if n == 0 {
            break;
        }
        let start = offset;
        offset += n as u64;
        line += 1;
        let complete = buf.last() == Some(&b'\n');
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<CacheLine>(text.trim()) {
            Ok(c) => {
                if let Some(l) = c.label {
                    anyhow::ensure!(
                        l <= MAX_LABEL,
                        "{}:{line}: field `label`: unknown label {l} (expected 0, 1 or 2)",
                        path.display(),
                    );
                }
                if c.labeler == identity && c.guideline == guideline {
                    labels.insert((c.query, c.item_id), c.label);
                }
                end.needs_newline = !complete;
            }
            Err(e) if !complete => {
                if own {
                    tracing::warn!(
                        "{}:{line}: cutting off a torn last line of the label cache ({e})",
                        path.display()
                    );
                }
                end.torn_at = Some(start);
                end.needs_newline = false;
            }
            Err(e) => anyhow::bail!("{}:{line}: field `(record)`: {e}", path.display()),
        }
    }
    Ok(end)
}

/// Reads this writer's cache file into `labels`, cuts off a torn last line, and opens it
/// for appending.
fn open_own_file(
    path: &Path,
    identity: &str,
    guideline: &str,
    labels: &mut HashMap<(String, String), Option<u8>>,
) -> anyhow::Result<BufWriter<File>> {
    let end = read_cache_file(path, identity, guideline, labels, true)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(len) = end.torn_at {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(len))
            .with_context(|| format!("truncating label cache {}", path.display()))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening label cache {}", path.display()))?;
    let mut file = BufWriter::new(f);
    if end.needs_newline {
        file.write_all(b"\n")?;
    }
    Ok(file)
}

/// Labels pairs in batches of `batch` and collects the results, reporting progress per batch.
pub fn label_in_batches(
    labeler: &dyn Labeler,
    pairs: &[(String, String)],
    batch: usize,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<Vec<Option<u8>>> {
    progress.stage("labeling", pairs.len() as u64);
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch.max(1)) {
        let labels = labeler.label(chunk)?;
        anyhow::ensure!(
            labels.len() == chunk.len(),
            "labeler {} returned {} labels for {} pairs",
            labeler.identity(),
            labels.len(),
            chunk.len()
        );
        out.extend(labels);
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(out)
}
/// Which labeler a command or a configuration asks for, written `oracle`, `unjudged-zero`,
/// `judged-only`, `lookup`, `llm` or `cross-encoder=DIR`: every `--labeler` flag and the
/// pipeline's `data.labeler` parse this one type, and each says which kinds it accepts
/// ([`LabelerSpec::expect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelerSpec {
    /// The synthetic marketplace's policy oracle.
    Oracle,
    /// Every unjudged pair is irrelevant (label 0): an explicit, stated policy.
    UnjudgedZero,
    /// Only judged pairs get labels; unjudged ones stay unlabeled.
    JudgedOnly,
    /// Known judgments looked up (what unjudged pairs get is the command's choice).
    Lookup,
    /// An LLM behind an OpenAI-compatible chat-completions API.
    Llm,
    /// A cross-encoder labeler directory trained by `strata labeler train`.
    CrossEncoder(PathBuf),
}

impl LabelerSpec {
    /// The kind's name (`cross-encoder` without its directory).
    pub fn kind(&self) -> &'static str {
        match self {
            LabelerSpec::Oracle => "oracle",
            LabelerSpec::UnjudgedZero => "unjudged-zero",
            LabelerSpec::JudgedOnly => "judged-only",
            LabelerSpec::Lookup => "lookup",
            LabelerSpec::Llm => "llm",
            LabelerSpec::CrossEncoder(_) => "cross-encoder",
        }
    }

    /// Fails, naming `what` (a flag or a field) and the accepted kinds, unless this kind is
    /// one of `accepted`.
    pub fn expect(&self, what: &str, accepted: &[&str]) -> anyhow::Result<()> {
        if accepted.contains(&self.kind()) {
            Ok(())
        } else {
            Err(self.rejected(what, accepted))
        }
    }

    /// The error of a labeler that `what` does not accept.
    pub fn rejected(&self, what: &str, accepted: &[&str]) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}: labeler {self} is not accepted here (expected {})",
            accepted
                .iter()
                .map(|k| if *k == "cross-encoder" {
                    "cross-encoder=DIR"
                } else {
                    k
                })
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl std::fmt::Display for LabelerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelerSpec::CrossEncoder(dir) => write!(f, "cross-encoder={}", dir.display()),
            other => f.write_str(other.kind()),
        }
    }
}

impl std::str::FromStr for LabelerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "oracle" => LabelerSpec::Oracle,
            "unjudged-zero" => LabelerSpec::UnjudgedZero,
            "judged-only" => LabelerSpec::JudgedOnly,
            "lookup" => LabelerSpec::Lookup,
            "llm" => LabelerSpec::Llm,
            other => match other.strip_prefix("cross-encoder=") {
                Some(dir) if !dir.is_empty() => LabelerSpec::CrossEncoder(PathBuf::from(dir)),
                _ => {
                    return Err(format!(
                        "unknown labeler {other:?} (expected oracle, unjudged-zero, judged-only, lookup, llm or cross-encoder=DIR)"
                    ));
                }
            },
        })
    }
}

impl serde::Serialize for LabelerSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LabelerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod spec_tests {
    use super::LabelerSpec;
    use std::path::PathBuf;

    #[test]
    fn labeler_specs_round_trip_and_say_what_is_accepted() {
        for s in [
            "oracle",
            "unjudged-zero",
            "judged-only",
            "lookup",
            "llm",
            "cross-encoder=runs/labeler/best",
        ] {
            let spec: LabelerSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<LabelerSpec>(&json).unwrap(), spec);
        }
        assert_eq!(
            "cross-encoder=d".parse::<LabelerSpec>().unwrap(),
            LabelerSpec::CrossEncoder(PathBuf::from("d"))
        );
        for bad in ["cross-encoder=", "gpt", ""] {
            let e = bad.parse::<LabelerSpec>().unwrap_err();
            assert!(e.contains("cross-encoder=DIR"), "{e}");
        }
        let spec = LabelerSpec::Llm;
        spec.expect("--labeler", &["llm", "lookup"]).unwrap();
        let e = spec
            .expect("--labeler", &["unjudged-zero", "cross-encoder"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--labeler") && e.contains("llm") && e.contains("cross-encoder=DIR"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod min_confidence_tests {
    use super::{Labeler, MinConfidence, ScoredLabel};

    /// Answers fixed probabilities per item id.
    struct Fixed;
    impl Labeler for Fixed {
        fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
            Ok(self
                .label_scored(pairs)?
                .into_iter()
                .map(|l| l.map(|l| l.label))
                .collect())
        }
        fn identity(&self) -> String {
            "fixed".into()
        }
        fn label_scored(
            &self,
            pairs: &[(String, String)],
        ) -> anyhow::Result<Vec<Option<ScoredLabel>>> {
            Ok(pairs
                .iter()
                .map(|(_, id)| match id.as_str() {
                    "sure" => Some(ScoredLabel {
                        label: 2,
                        probs: [0.05, 0.05, 0.9],
                    }),
                    "unsure" => Some(ScoredLabel {
                        label: 0,
                        probs: [0.4, 0.35, 0.25],
                    }),
                    _ => None,
                })
                .collect())
        }
    }

    #[test]
    fn pairs_below_the_threshold_stay_unlabeled_and_the_threshold_is_part_of_the_identity() {
        let pairs: Vec<(String, String)> = ["sure", "unsure", "abstain"]
            .iter()
            .map(|id| ("q".to_string(), id.to_string()))
            .collect();
        let strict = MinConfidence::new(Fixed, 0.5).unwrap();
        assert_eq!(strict.label(&pairs).unwrap(), [Some(2), None, None]);
        let scored = strict.label_scored(&pairs).unwrap();
        assert_eq!(scored[0].unwrap().probs, [0.05, 0.05, 0.9]);
        // At the pair's own confidence it is kept (>=).
        let loose = MinConfidence::new(Fixed, 0.4).unwrap();
        assert_eq!(loose.label(&pairs).unwrap(), [Some(2), Some(0), None]);
        assert_ne!(strict.identity(), loose.identity());
        assert!(
            strict.identity().starts_with("fixed "),
            "{}",
            strict.identity()
        );
        // Certain labels (labelers without probabilities) always pass.
        struct Zero;
        impl Labeler for Zero {
            fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
                Ok(vec![Some(0); pairs.len()])
            }
            fn identity(&self) -> String {
                "zero".into()
            }
        }
        let z = MinConfidence::new(Zero, 1.0).unwrap();
        assert_eq!(z.label(&pairs).unwrap(), [Some(0); 3]);
        for bad in [0.0, -0.1, 1.5, f32::NAN] {
            let e = MinConfidence::new(Fixed, bad).err().unwrap().to_string();
            assert!(e.contains("min_confidence"), "{e}");
        }
    }
}
