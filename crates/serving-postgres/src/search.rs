//! Searching an exported table: semantic, lexical and hybrid.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use strata_retrieval::hybrid::Fusion;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::export::{parse_url, redact};
use crate::schema::{Metric, TableInfo, describe, ident, lexical_score, or_tsquery, rank};
use crate::{Error, Result};

/// pgvector's largest `hnsw.ef_search`; also the largest `k` and candidate count accepted.
const MAX_EF_SEARCH: usize = 1000;

/// Which scores rank the results: semantic (nearest embeddings through the HNSW index; score =
/// cosine similarity), lexical (Postgres full-text search; any query token can match; score =
/// `ts_rank_cd` normalised by text length) or hybrid (the union of both candidate sets,
/// blended with a [`Fusion`]).
pub use strata_retrieval::SearchMode;

/// One result row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Item id.
    pub id: String,
    /// Item text.
    pub text: String,
    /// The score that ranks the results: the semantic score, the lexical score or the fused
    /// score, by mode.
    pub score: f32,
    /// Cosine similarity of the query and item embeddings; `None` when the search was given
    /// no query embedding (lexical search).
    pub semantic: Option<f32>,
    /// `ts_rank_cd(tsv, query, 1)` of the item text against the query's tokens (0 when none
    /// matches).
    pub lexical: f32,
}

/// Connection and search settings of a [`PgBackend`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendOptions {
    /// Most connections held open; concurrent searches beyond it wait for a free one.
    pub pool_size: usize,
    /// `hnsw.ef_search`: the HNSW candidate list size (higher = better recall, slower).
    /// Raised for a single search when it asks for more results than this.
    pub ef_search: u32,
    /// Semantic and lexical candidates each for hybrid search (at least `k` are used).
    pub hybrid_candidates: usize,
    /// Disables index scans, so semantic search is exact (a sequential scan): for checks and
    /// recall measurements, not for serving.
    pub exact: bool,
    /// Longest wait for a pooled connection.
    pub wait_timeout: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            pool_size: 8,
            ef_search: 100,
            hybrid_candidates: 100,
            exact: false,
            wait_timeout: Duration::from_secs(30),
        }
    }
}

/// Searches one exported table through a pool of connections (see the crate docs for the
/// table layout).
pub struct PgBackend {
    pool: Pool,
    table: String,
    dim: usize,
    metric: Metric,
    options: BackendOptions,
    sql: Statements,
}

/// The SQL of each kind of search for one table.
struct Statements {
    /// $1 query vector, $2 query text, $3 limit.
    semantic: String,
    /// $1 query text, $2 limit.
    lexical: String,
    /// $1 query text, $2 limit, $3 query vector.
    lexical_with_vector: String,
    /// $1 query vector, $2 query text, $3 candidates per side.
    hybrid: String,
    count: String,
}

impl Statements {
    fn new(table: &str, metric: Metric) -> Statements {
        let t = ident(table);
        let op = metric.operator();
        let q = or_tsquery("$2");
        let semantic = format!(
            "SELECT s.id, s.text, ({sim})::real, {lex}
             FROM (SELECT id, text, tsv, embedding {op} $1 AS d FROM {t}
                   ORDER BY embedding {op} $1 LIMIT $3) s
             ORDER BY s.d, s.id",
            sim = metric.similarity("s.d"),
            lex = lexical_score("s.tsv", &q),
        );
        let q1 = or_tsquery("$1");
        let lexical_sql = |sim: &str| {
            format!(
                "SELECT id, text, {sim}, {r} AS l FROM {t}
                 WHERE tsv @@ {q1} ORDER BY l DESC, id LIMIT $2",
                r = rank("tsv", &q1)
            )
        };
        let hybrid = format!(
            "WITH sem AS (SELECT id FROM {t} ORDER BY embedding {op} $1 LIMIT $3),
                  lex AS (SELECT id FROM {t} WHERE tsv @@ {q}
                          ORDER BY {r} DESC, id LIMIT $3)
             SELECT c.id, c.text, ({sim})::real, {lex}
             FROM {t} c WHERE c.id IN (SELECT id FROM sem UNION SELECT id FROM lex)
             ORDER BY c.id",
            sim = metric.similarity(&format!("c.embedding {op} $1")),
            lex = lexical_score("c.tsv", &q),
            r = rank("tsv", &q),
        );
        Statements {
            semantic,
            lexical: lexical_sql("NULL::real"),
            lexical_with_vector: lexical_sql(&format!(
                "({})::real",
                metric.similarity(&format!("embedding {op} $3"))
            )),
            hybrid,
            count: format!("SELECT count(*) FROM {t}"),
        }
    }
}

impl PgBackend {
    /// Connects to `url` and checks that `table` is an exported strata table, with default
    /// [`BackendOptions`].
    pub async fn connect(url: &str, table: &str) -> Result<PgBackend> {
        PgBackend::connect_with(url, table, BackendOptions::default()).await
    }

    /// Connects to `url` and checks that `table` is an exported strata table.
    pub async fn connect_with(
        url: &str,
        table: &str,
        options: BackendOptions,
    ) -> Result<PgBackend> {
        if options.pool_size == 0 {
            return Err(Error::InvalidInput("pool_size must be at least 1".into()));
        }
        if options.ef_search == 0 || options.ef_search as usize > MAX_EF_SEARCH {
            return Err(Error::InvalidInput(format!(
                "ef_search must lie in [1, {MAX_EF_SEARCH}], got {}",
                options.ef_search
            )));
        }
        if options.hybrid_candidates == 0 || options.hybrid_candidates > MAX_EF_SEARCH {
            return Err(Error::InvalidInput(format!(
                "hybrid_candidates must lie in [1, {MAX_EF_SEARCH}], got {}",
                options.hybrid_candidates
            )));
        }
        let mut config = parse_url(url)?;
        // Session settings for every pooled connection; `hnsw.*` is a placeholder setting
        // until pgvector loads, which then adopts it.
        let mut settings = format!("-c hnsw.ef_search={}", options.ef_search);
        if options.exact {
            settings.push_str(" -c enable_indexscan=off");
        }
        let base = config.get_options().unwrap_or("").to_string();
        config.options(format!("{base} {settings}").trim());
        if config.get_application_name().is_none() {
            config.application_name("strata");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.wait_timeout))
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        let client = get(&pool, url).await?;
        let info = describe(&**client, table).await?;
        drop(client);
        Ok(PgBackend {
            pool,
            table: table.to_string(),
            dim: info.dim,
            metric: info.metric,
            sql: Statements::new(table, info.metric),
            options,
        })
    }

    /// Table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Embedding dimension of the table.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Distance of the table's HNSW index.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The settings this backend was opened with.
    pub fn options(&self) -> &BackendOptions {
        &self.options
    }

    /// Number of items in the table.
    pub async fn count(&self) -> Result<u64> {
        let client = get(&self.pool, "").await?;
        let stmt = client
            .prepare_cached(&self.sql.count)
            .await
            .map_err(Error::db("preparing the count"))?;
        let n: i64 = client
            .query_one(&stmt, &[])
            .await
            .map_err(Error::db(format!("counting the items of {}", self.table)))?
            .get(0);
        Ok(n as u64)
    }

    /// Describes the table (items, dimension, metric, index parameters, size).
    pub async fn info(&self) -> Result<TableInfo> {
        let client = get(&self.pool, "").await?;
        describe(&**client, &self.table).await
    }

    /// The `k` best items for a query, best first.
    ///
    /// `query_embedding` (the query encoded with the same model as the items, of the table's
    /// dimension; normalised here) is required for semantic and hybrid search and optional
    /// for lexical search, where it only fills [`SearchHit::semantic`]. `query_text` feeds the
    /// lexical side (and [`SearchHit::lexical`] in every mode). `fusion` is used by hybrid
    /// search only: there the candidates are the union of the semantic top-N and the lexical
    /// top-N (N = max(k, `hybrid_candidates`)), each scored on both sides, ordered by id and
    /// blended with [`Fusion::fuse`]; ties keep id order.
    pub async fn search(
        &self,
        query_text: &str,
        query_embedding: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
        fusion: Fusion,
    ) -> Result<Vec<SearchHit>> {
        if k == 0 || k > MAX_EF_SEARCH {
            return Err(Error::InvalidInput(format!(
                "k must lie in [1, {MAX_EF_SEARCH}], got {k}"
            )));
        }
        if query_text.contains('\0') {
            return Err(Error::InvalidInput("query text holds a NUL byte".into()));
        }
        let vector = query_embedding.map(|e| self.query_vector(e)).transpose()?;
        let need_vector = || {
            vector.clone().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{mode} search needs a query embedding ({} dimensions)",
                    self.dim
                ))
            })
        };
        match mode {
            SearchMode::Semantic => {
                let v = need_vector()?;
                let limit = k as i64;
                self.run(
                    &self.sql.semantic,
                    &[&v, &query_text, &limit],
                    k,
                    "semantic search",
                )
                .await
                .map(|rows| {
                    rows.into_iter()
                        .map(|h| with_score(h, |h| h.semantic.unwrap_or(0.0)))
                        .collect()
                })
            }
            SearchMode::Lexical => {
                let limit = k as i64;
                let rows = match &vector {
                    Some(v) => {
                        self.run(
                            &self.sql.lexical_with_vector,
                            &[&query_text, &limit, v],
                            0,
                            "lexical search",
                        )
                        .await?
                    }
                    None => {
                        self.run(
                            &self.sql.lexical,
                            &[&query_text, &limit],
                            0,
                            "lexical search",
                        )
                        .await?
                    }
                };
                Ok(rows
                    .into_iter()
                    .map(|h| with_score(h, |h| h.lexical))
                    .collect())
            }
            SearchMode::Hybrid => {
                fusion
                    .validate()
                    .map_err(|e| Error::InvalidInput(format!("fusion: {e}")))?;
                let v = need_vector()?;
                let n = k.max(self.options.hybrid_candidates);
                let limit = n as i64;
                let candidates = self
                    .run(
                        &self.sql.hybrid,
                        &[&v, &query_text, &limit],
                        n,
                        "hybrid search",
                    )
                    .await?;
                Ok(fuse(candidates, fusion, k))
            }
        }
    }

    /// Checks the query embedding's dimension and values and normalises it.
    fn query_vector(&self, e: &[f32]) -> Result<Vector> {
        if e.len() != self.dim {
            return Err(Error::InvalidInput(format!(
                "query embedding has {} dimensions, table {:?} holds {}-dimensional embeddings",
                e.len(),
                self.table,
                self.dim
            )));
        }
        if let Some(j) = e.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "query embedding value {j} is {}",
                e[j]
            )));
        }
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            return Err(Error::InvalidInput("query embedding is all zeros".into()));
        }
        Ok(Vector::from(e.iter().map(|x| x / norm).collect::<Vec<_>>()))
    }

    /// Runs one search statement; `hnsw_limit` is the number of HNSW results it needs, and
    /// `hnsw.ef_search` is raised for this statement when that exceeds the configured value.
    async fn run(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        hnsw_limit: usize,
        what: &str,
    ) -> Result<Vec<SearchHit>> {
        let mut client = get(&self.pool, "").await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(Error::db(format!("preparing the {what}")))?;
        let rows = if hnsw_limit > self.options.ef_search as usize && !self.options.exact {
            let tx = client
                .transaction()
                .await
                .map_err(Error::db(format!("starting the {what}")))?;
            tx.execute(
                "SELECT set_config('hnsw.ef_search', $1, true)",
                &[&hnsw_limit.to_string()],
            )
            .await
            .map_err(Error::db("raising hnsw.ef_search"))?;
            let rows = tx
                .query(&stmt, params)
                .await
                .map_err(Error::db(format!("running the {what}")))?;
            tx.commit()
                .await
                .map_err(Error::db(format!("finishing the {what}")))?;
            rows
        } else {
            client
                .query(&stmt, params)
                .await
                .map_err(Error::db(format!("running the {what}")))?
        };
        Ok(rows
            .iter()
            .map(|r| SearchHit {
                id: r.get(0),
                text: r.get(1),
                score: 0.0,
                semantic: r.get(2),
                lexical: r.get(3),
            })
            .collect())
    }
}

fn with_score(mut hit: SearchHit, score: impl Fn(&SearchHit) -> f32) -> SearchHit {
    hit.score = score(&hit);
    hit
}

/// Blends the candidates' scores (candidates in id order) and keeps the `k` best.
fn fuse(candidates: Vec<SearchHit>, fusion: Fusion, k: usize) -> Vec<SearchHit> {
    let items: Vec<u32> = (0..candidates.len() as u32).collect();
    let semantic: Vec<f32> = candidates
        .iter()
        .map(|h| h.semantic.unwrap_or(0.0))
        .collect();
    let lexical: Vec<f32> = candidates.iter().map(|h| h.lexical).collect();
    let fused = fusion.fuse(&items, &semantic, &lexical);
    let mut hits: Vec<(usize, SearchHit)> = candidates
        .into_iter()
        .zip(fused)
        .map(|(mut h, s)| {
            h.score = s;
            h
        })
        .enumerate()
        .collect();
    hits.sort_by(|(ia, a), (ib, b)| b.score.total_cmp(&a.score).then(ia.cmp(ib)));
    hits.into_iter().take(k).map(|(_, h)| h).collect()
}

async fn get(pool: &Pool, url: &str) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(source) => Error::Db {
            context: if url.is_empty() {
                "opening a connection".into()
            } else {
                format!("connecting to {}", redact(url))
            },
            source,
        },
        other => Error::Pool(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in [
            SearchMode::Semantic,
            SearchMode::Lexical,
            SearchMode::Hybrid,
        ] {
            assert_eq!(m.to_string().parse::<SearchMode>().unwrap(), m);
        }
        let err = "fuzzy".parse::<SearchMode>().unwrap_err().to_string();
        assert!(err.contains("unknown search mode \"fuzzy\""), "{err}");
    }

    #[test]
    fn fusion_keeps_the_best_k_with_ties_in_id_order() {
        let hit = |id: &str, s: f32, l: f32| SearchHit {
            id: id.into(),
            text: String::new(),
            score: 0.0,
            semantic: Some(s),
            lexical: l,
        };
        // Semantic min-max -> [1, 0, 0.5]; lexical -> [0, 1, 0.5]; alpha 0.5 -> all 0.5.
        let c = vec![hit("a", 0.9, 0.0), hit("b", 0.5, 2.0), hit("c", 0.7, 1.0)];
        let out = fuse(c.clone(), Fusion::Convex { alpha: 0.5 }, 2);
        assert_eq!(
            out.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let out = fuse(c, Fusion::Convex { alpha: 0.25 }, 3);
        assert_eq!(
            out.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        assert!((out[0].score - 0.75).abs() < 1e-6);
    }
}
