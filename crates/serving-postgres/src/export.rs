//! Writing items, texts and embeddings into PostgreSQL (binary COPY) and indexing them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use futures_util::pin_mut;
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use strata_data::Item;
use strata_data::progress::Progress;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Kind, ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::schema::{MAX_HNSW_DIM, Metric, Names, PgHnswParams, ident, validate_table_name};
use crate::{Error, Result};

/// Largest accepted deviation of an embedding's L2 norm from 1.
const NORM_TOLERANCE: f32 = 1e-3;
/// Rows between two progress reports during the COPY.
const PROGRESS_EVERY: usize = 1024;

/// The items to export: `texts[i]` and row `i` of `embeddings` (row-major, `dim` columns)
/// belong to `items[i]`. Embeddings must be L2-normalised (as `strata_model::Embedder`
/// produces them).
#[derive(Clone, Copy, Debug)]
pub struct ExportBatch<'a> {
    items: &'a [Item],
    texts: &'a [String],
    embeddings: &'a [f32],
    dim: usize,
}

impl<'a> ExportBatch<'a> {
    /// Checks that there is one text and one embedding per item, every embedding finite and
    /// of unit length, ids unique, and no text field holding a NUL byte (PostgreSQL rejects it).
    pub fn new(items: &'a [Item], texts: &'a [String], embeddings: &'a [f32]) -> Result<Self> {
        if items.is_empty() {
            return Err(Error::InvalidInput("no items to export".into()));
        }
        if texts.len() != items.len() {
            return Err(Error::InvalidInput(format!(
                "{} item texts for {} items",
                texts.len(),
                items.len()
            )));
        }
        if embeddings.is_empty() || !embeddings.len().is_multiple_of(items.len()) {
            return Err(Error::InvalidInput(format!(
                "{} embedding values do not split into {} rows",
                embeddings.len(),
                items.len()
            )));
        }
        let dim = embeddings.len() / items.len();
        if dim > MAX_HNSW_DIM {
            return Err(Error::InvalidInput(format!(
                "embeddings have {dim} dimensions; pgvector's HNSW index supports at most {MAX_HNSW_DIM}"
            )));
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
        for (row, (item, text)) in items.iter().zip(texts).enumerate() {
            if let Some(first) = seen.insert(item.id.as_str(), row) {
                return Err(Error::InvalidInput(format!(
                    "item {:?} appears twice (items {first} and {row}); ids must be unique",
                    item.id
                )));
            }
            for (field, value) in [("id", &item.id), ("name", &item.name), ("text", text)] {
                if value.contains('\0') {
                    return Err(Error::InvalidInput(format!(
                        "item {:?} (row {row}): field {field} holds a NUL byte",
                        item.id
                    )));
                }
            }
            if item.taxonomy.iter().any(|t| t.contains('\0')) {
                return Err(Error::InvalidInput(format!(
                    "item {:?} (row {row}): field taxonomy holds a NUL byte",
                    item.id
                )));
            }
            let e = &embeddings[row * dim..(row + 1) * dim];
            if let Some(j) = e.iter().position(|x| !x.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "item {:?} (row {row}): embedding value {j} is {}",
                    item.id, e[j]
                )));
            }
            let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            if (norm - 1.0).abs() > NORM_TOLERANCE {
                return Err(Error::InvalidInput(format!(
                    "item {:?} (row {row}): embedding has L2 norm {norm}; export L2-normalised embeddings",
                    item.id
                )));
            }
        }
        Ok(ExportBatch {
            items,
            texts,
            embeddings,
            dim,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Always false: a batch holds at least one item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// How to export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportOptions {
    /// Target table; replaced when it exists (see [`validate_table_name`]).
    pub table: String,
    /// Distance of the HNSW index.
    pub metric: Metric,
    /// HNSW build parameters.
    pub hnsw: PgHnswParams,
    /// `maintenance_work_mem` for the index builds (e.g. "1GB"); the HNSW build slows down a
    /// lot once its graph no longer fits. `None` keeps the server's setting.
    pub maintenance_work_mem: Option<String>,
    /// `max_parallel_maintenance_workers` for the index builds; `None` keeps the server's.
    pub parallel_workers: Option<u32>,
    /// Free-form metadata stored with the table (as its comment), read back as
    /// [`TableInfo::metadata`](crate::TableInfo::metadata): strata keeps the model stamp and
    /// the score thresholds there so that a server can refuse a model/table mismatch.
    pub metadata: Option<String>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            table: "strata_items".into(),
            metric: Metric::Cosine,
            hnsw: PgHnswParams::default(),
            maintenance_work_mem: Some("1GB".into()),
            parallel_workers: None,
            metadata: None,
        }
    }
}

/// What an export wrote, and how long each part took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    pub table: String,
    pub items: u64,
    pub dim: usize,
    pub metric: Metric,
    pub hnsw: PgHnswParams,
    /// Seconds spent creating the staging table and copying the rows in.
    pub copy_seconds: f64,
    /// Seconds spent building the primary key, HNSW and full-text indexes.
    pub index_seconds: f64,
    /// Seconds for the whole export, swap included.
    pub total_seconds: f64,
}

/// Opens one connection to `url` (a `postgres://` URL or a `key=value` connection string)
/// and drives it on the current tokio runtime.
pub(crate) async fn connect_one(url: &str) -> Result<Client> {
    let config = parse_url(url)?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(Error::db(format!("connecting to {}", redact(url))))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}

pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| Error::InvalidInput(format!("invalid database URL {}: {e}", redact(url))))
}

/// The connection a database URL names, for messages: user, hosts, ports and database,
/// rebuilt from the parsed configuration, so no password (`user:pass@`, `?password=`, a
/// `password=` key-value pair, or one containing `@`) nor any other parameter is ever printed.
/// A string that does not parse is not echoed at all.
pub(crate) fn redact(url: &str) -> String {
    use tokio_postgres::config::Host;
    let Ok(cfg) = url.parse::<tokio_postgres::Config>() else {
        return "<an unparsable database URL>".to_string();
    };
    let ports = cfg.get_ports();
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(s) => s.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    let user = cfg.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = cfg
        .get_dbname()
        .map(|d| format!("/{d}"))
        .unwrap_or_default();
    format!("postgres://{user}{}{db}", hosts.join(","))
}

/// Exports `batch` into `options.table` of the database at `url`: creates the pgvector
/// extension if needed, writes the rows into a staging table with binary COPY, builds the
/// primary key, the HNSW index and the full-text GIN index, then replaces the target table
/// with the staging table in one transaction. Re-running it replaces the table again; a
/// failed export leaves the previous table in place.
///
/// `progress` receives the stages "copy rows" (items) and "build HNSW index" (items, as
/// reported by the server).
pub async fn export(
    url: &str,
    batch: &ExportBatch<'_>,
    options: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    validate_table_name(&options.table)?;
    options.hnsw.validate()?;
    let start = Instant::now();
    let client = connect_one(url).await?;
    let staging = Names::staging(&options.table);
    let result = export_into(&client, url, batch, options, &staging, progress).await;
    if result.is_err() {
        // Best effort: the previous table is untouched; drop the partial staging table.
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", ident(&staging.table)))
            .await;
    }
    let (copy_seconds, index_seconds) = result?;
    Ok(ExportReport {
        table: options.table.clone(),
        items: batch.len() as u64,
        dim: batch.dim,
        metric: options.metric,
        hnsw: options.hnsw,
        copy_seconds,
        index_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    })
}

async fn export_into(
    client: &Client,
    url: &str,
    batch: &ExportBatch<'_>,
    options: &ExportOptions,
    staging: &Names,
    progress: &dyn Progress,
) -> Result<(f64, f64)> {
    let start = Instant::now();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .await
        .map_err(|source| match source.as_db_error() {
            Some(db) if db.message().contains("extension \"vector\"") => Error::Schema(format!(
                "the pgvector extension is not available on the server: {} (install pgvector, e.g. with scripts/setup-postgres.sh)",
                db.message()
            )),
            _ => Error::Db {
                context: "creating the vector extension".into(),
                source,
            },
        })?;
    let vector_type = vector_type(client).await?;

    let t = ident(&staging.table);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (
                 id text NOT NULL,
                 text text NOT NULL,
                 name text NOT NULL,
                 taxonomy text NOT NULL,
                 embedding vector({dim}) NOT NULL,
                 tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
             )",
            dim = batch.dim
        ))
        .await
        .map_err(Error::db(format!("creating table {}", staging.table)))?;

    // Binary COPY of the rows.
    let sink = client
        .copy_in(&format!(
            "COPY {t} (id, text, name, taxonomy, embedding) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(Error::db("starting the COPY"))?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, vector_type],
    );
    pin_mut!(writer);
    progress.stage("copy rows", batch.len() as u64);
    for (row, (item, text)) in batch.items.iter().zip(batch.texts).enumerate() {
        let taxonomy = item.taxonomy.join(" > ");
        let embedding =
            Vector::from(batch.embeddings[row * batch.dim..(row + 1) * batch.dim].to_vec());
        let values: [&(dyn ToSql + Sync); 5] = [&item.id, text, &item.name, &taxonomy, &embedding];
        writer
            .as_mut()
            .write(&values)
            .await
            .map_err(Error::db(format!("copying item {:?} (row {row})", item.id)))?;
        if (row + 1) % PROGRESS_EVERY == 0 {
            progress.advance(PROGRESS_EVERY as u64);
        }
    }
    writer
        .finish()
        .await
        .map_err(Error::db("finishing the COPY"))?;
    progress.advance((batch.len() % PROGRESS_EVERY) as u64);
    progress.finish();
    let copy_seconds = start.elapsed().as_secs_f64();

    // Indexes.
    let index_start = Instant::now();
    if let Some(mem) = &options.maintenance_work_mem {
        set(client, "maintenance_work_mem", mem).await?;
    }
    if let Some(workers) = options.parallel_workers {
        set(
            client,
            "max_parallel_maintenance_workers",
            &workers.to_string(),
        )
        .await?;
    }
    client
        .batch_execute(&format!(
            "ALTER TABLE {t} ADD CONSTRAINT {} PRIMARY KEY (id)",
            ident(&staging.pkey)
        ))
        .await
        .map_err(Error::db("building the primary key"))?;
    let hnsw = format!(
        "CREATE INDEX {} ON {t} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})",
        ident(&staging.hnsw),
        options.metric.opclass(),
        options.hnsw.m,
        options.hnsw.ef_construction
    );
    progress.stage("build HNSW index", batch.len() as u64);
    with_index_progress(client, url, &hnsw, progress).await?;
    progress.finish();
    client
        .batch_execute(&format!(
            "CREATE INDEX {} ON {t} USING gin (tsv); ANALYZE {t}",
            ident(&staging.fts)
        ))
        .await
        .map_err(Error::db("building the full-text index"))?;
    let index_seconds = index_start.elapsed().as_secs_f64();
    if let Some(metadata) = &options.metadata {
        // COMMENT takes no bind parameters: quote the text as a literal.
        client
            .batch_execute(&format!("COMMENT ON TABLE {t} IS {}", literal(metadata)))
            .await
            .map_err(Error::db("storing the table metadata"))?;
    }

    // Swap the staging table in.
    let target = Names::new(&options.table);
    client
        .batch_execute(&format!(
            "BEGIN;
             DROP TABLE IF EXISTS {target_t};
             ALTER TABLE {t} RENAME TO {target_t};
             ALTER INDEX {sp} RENAME TO {tp};
             ALTER INDEX {sh} RENAME TO {th};
             ALTER INDEX {sf} RENAME TO {tf};
             COMMIT",
            target_t = ident(&target.table),
            sp = ident(&staging.pkey),
            tp = ident(&target.pkey),
            sh = ident(&staging.hnsw),
            th = ident(&target.hnsw),
            sf = ident(&staging.fts),
            tf = ident(&target.fts),
        ))
        .await
        .map_err(Error::db(format!(
            "replacing table {} with the new export",
            options.table
        )))?;
    Ok((copy_seconds, index_seconds))
}

/// `text` as an SQL string literal (standard_conforming_strings: only quotes are doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `vector` type as installed by pgvector (its OID differs between databases).
async fn vector_type(client: &Client) -> Result<Type> {
    let row = client
        .query_one(
            "SELECT t.oid, n.nspname::text FROM pg_type t
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE t.oid = 'vector'::regtype",
            &[],
        )
        .await
        .map_err(Error::db("looking up the vector type"))?;
    Ok(Type::new(
        "vector".into(),
        row.get(0),
        Kind::Simple,
        row.get(1),
    ))
}

async fn set(client: &Client, name: &str, value: &str) -> Result<()> {
    client
        .execute("SELECT set_config($1, $2, false)", &[&name, &value])
        .await
        .map_err(|source| Error::Db {
            context: format!("setting {name} = {value:?}"),
            source,
        })?;
    Ok(())
}

/// Runs `sql` (an index build) on `client` while a second connection polls
/// `pg_stat_progress_create_index` and reports the tuples done to `progress`.
async fn with_index_progress(
    client: &Client,
    url: &str,
    sql: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(Error::db("reading the backend pid"))?
        .get(0);
    let watcher = connect_one(url).await.ok();
    let build = client.batch_execute(sql);
    let watch = async {
        let Some(watcher) = watcher else {
            return std::future::pending::<()>().await;
        };
        let mut reported = 0i64;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let row = watcher
                .query_opt(
                    "SELECT tuples_done FROM pg_stat_progress_create_index WHERE pid = $1",
                    &[&pid],
                )
                .await;
            if let Ok(Some(row)) = row {
                let done: i64 = row.get(0);
                if done > reported {
                    progress.advance((done - reported) as u64);
                    reported = done;
                }
            }
        }
    };
    pin_mut!(build, watch);
    match select(build, watch).await {
        Either::Left((result, _)) => result.map_err(Error::db("building the HNSW index")),
        Either::Right(((), _)) => unreachable!("the progress watcher never finishes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(dim: usize, hot: usize) -> Vec<f32> {
        let mut v = vec![0.0; dim];
        v[hot] = 1.0;
        v
    }

    #[test]
    fn batches_are_checked() {
        let items = vec![Item::new("a", "A"), Item::new("b", "B")];
        let texts = vec!["a".to_string(), "b".to_string()];
        let mut emb = unit(4, 0);
        emb.extend(unit(4, 1));
        let batch = ExportBatch::new(&items, &texts, &emb).unwrap();
        assert_eq!((batch.len(), batch.dim()), (2, 4));

        let err = |r: Result<ExportBatch>| r.unwrap_err().to_string();
        assert!(err(ExportBatch::new(&items, &texts[..1], &emb)).contains("1 item texts for 2"));
        assert!(err(ExportBatch::new(&items, &texts, &emb[..7])).contains("do not split"));
        let mut bad = emb.clone();
        bad[5] = 0.5;
        assert!(
            err(ExportBatch::new(&items, &texts, &bad))
                .contains("item \"b\" (row 1): embedding has L2 norm")
        );
        bad[5] = f32::NAN;
        assert!(err(ExportBatch::new(&items, &texts, &bad)).contains("embedding value 1 is NaN"));
        let dup = vec![Item::new("a", "A"), Item::new("a", "B")];
        assert!(
            err(ExportBatch::new(&dup, &texts, &emb)).contains("appears twice (items 0 and 1)")
        );
        let nul = vec!["a".to_string(), "b\0".to_string()];
        assert!(err(ExportBatch::new(&items, &nul, &emb)).contains("field text holds a NUL byte"));
        assert!(err(ExportBatch::new(&[], &[], &[])).contains("no items"));
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            (
                "postgres://me:secret@127.0.0.1:5432/db",
                "postgres://me@127.0.0.1:5432/db",
            ),
            ("postgres://me@host/db", "postgres://me@host:5432/db"),
            (
                "postgres://u@127.0.0.1:1/db?password=secret",
                "postgres://u@127.0.0.1:1/db",
            ),
            (
                "host=127.0.0.1 port=1 user=u password=secret dbname=db",
                "postgres://u@127.0.0.1:1/db",
            ),
            (
                "postgres://u:p%40ss%40secret@127.0.0.1:1/db",
                "postgres://u@127.0.0.1:1/db",
            ),
            (
                "postgresql://u:secret@h1:1,h2:2/db?sslmode=disable",
                "postgres://u@h1:1,h2:2/db",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
        for bad in [
            "postgres://u:secret@[::1/db",
            "host='unclosed password=secret",
        ] {
            let r = redact(bad);
            assert!(!r.contains("secret"), "{bad} -> {r}");
        }
        let e = parse_url("postgres://u:secret@[::1/db")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
