//! Table naming, SQL fragments shared by export and search, and the table's description.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::{Error, Result};

/// Longest accepted table name: leaves room for the staging and index suffixes within
/// PostgreSQL's 63-byte identifiers.
const MAX_TABLE_NAME: usize = 48;

/// The largest dimension pgvector's HNSW index accepts for the `vector` type.
pub(crate) const MAX_HNSW_DIM: usize = 2000;

/// Checks a table name: 1 to 48 characters from `a-z`, `0-9` and `_`, not starting with a
/// digit (schema-qualified names are not accepted; the table lives on the connection's
/// `search_path`).
pub fn validate_table_name(table: &str) -> Result<()> {
    let ok = !table.is_empty()
        && table.len() <= MAX_TABLE_NAME
        && table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !table.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid table name {table:?}: use 1 to {MAX_TABLE_NAME} characters from a-z, 0-9 and _, not starting with a digit"
        )))
    }
}

/// Double-quotes a validated identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{name}\"")
}

/// Names of the objects that make up one exported table.
pub(crate) struct Names {
    pub table: String,
    pub pkey: String,
    pub hnsw: String,
    pub fts: String,
}

impl Names {
    pub fn new(table: &str) -> Names {
        Names {
            table: table.to_string(),
            pkey: format!("{table}_pkey"),
            hnsw: format!("{table}_hnsw"),
            fts: format!("{table}_fts"),
        }
    }

    /// Where a new export is built before it replaces `table`.
    pub fn staging(table: &str) -> Names {
        Names::new(&format!("{table}__new"))
    }
}

/// How embeddings are compared; both rank L2-normalised embeddings identically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine distance (`<=>`, `vector_cosine_ops`).
    #[default]
    Cosine,
    /// Negative inner product (`<#>`, `vector_ip_ops`); the embeddings must be normalised.
    InnerProduct,
}

impl Metric {
    /// The pgvector operator class for the HNSW index.
    pub fn opclass(self) -> &'static str {
        match self {
            Metric::Cosine => "vector_cosine_ops",
            Metric::InnerProduct => "vector_ip_ops",
        }
    }

    /// The pgvector distance operator (smaller is closer).
    pub fn operator(self) -> &'static str {
        match self {
            Metric::Cosine => "<=>",
            Metric::InnerProduct => "<#>",
        }
    }

    /// SQL turning the distance expression `d` into a cosine similarity (for unit vectors).
    pub(crate) fn similarity(self, d: &str) -> String {
        match self {
            Metric::Cosine => format!("1 - ({d})"),
            Metric::InnerProduct => format!("-({d})"),
        }
    }

    fn from_opclass(name: &str) -> Option<Metric> {
        match name {
            "vector_cosine_ops" => Some(Metric::Cosine),
            "vector_ip_ops" => Some(Metric::InnerProduct),
            _ => None,
        }
    }
}

/// pgvector's HNSW build parameters (its `m` and `ef_construction`, within pgvector's ranges);
/// not strata-retrieval's `HnswParams`, which configure usearch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgHnswParams {
    /// Maximum connections per layer (pgvector's default 16, allowed 2 to 100).
    pub m: u32,
    /// Candidate list size while building (default 64, at least 2 * m, at most 1000).
    pub ef_construction: u32,
}

impl Default for PgHnswParams {
    fn default() -> Self {
        PgHnswParams {
            m: 16,
            ef_construction: 64,
        }
    }
}

impl PgHnswParams {
    /// Checks the ranges pgvector accepts.
    pub fn validate(&self) -> Result<()> {
        if !(2..=100).contains(&self.m) {
            return Err(Error::InvalidInput(format!(
                "hnsw m must lie in [2, 100], got {}",
                self.m
            )));
        }
        if !(4..=1000).contains(&self.ef_construction) || self.ef_construction < 2 * self.m {
            return Err(Error::InvalidInput(format!(
                "hnsw ef_construction must lie in [2 * m, 1000] = [{}, 1000], got {}",
                2 * self.m,
                self.ef_construction
            )));
        }
        Ok(())
    }
}

/// What an exported table holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Table name.
    pub table: String,
    /// Number of items (rows).
    pub items: u64,
    /// Embedding dimension.
    pub dim: usize,
    /// Distance of the HNSW index.
    pub metric: Metric,
    /// Build parameters of the HNSW index (pgvector's defaults where not set explicitly).
    pub hnsw: PgHnswParams,
    /// Whether the full-text (GIN) index is present.
    pub text_index: bool,
    /// Size of the table with its indexes and TOAST data, in bytes.
    pub bytes: u64,
    /// The metadata stored at export ([`ExportOptions::metadata`](crate::ExportOptions::metadata)).
    pub metadata: Option<String>,
}

/// The SQL `tsquery` for `text_param` (e.g. `$2`): the query's tokens under the `simple`
/// configuration, joined with OR so that any token can match.
pub(crate) fn or_tsquery(text_param: &str) -> String {
    // plainto_tsquery joins lexemes with " & " (quoted lexemes never contain spaces), so
    // swapping that operator for " | " turns AND into OR without re-parsing the text.
    format!("replace(plainto_tsquery('simple', {text_param})::text, ' & ', ' | ')::tsquery")
}

/// The lexical rank of a matching row: cover density (`ts_rank_cd`) divided by
/// 1 + log(text length), so that of two texts matching the same tokens the shorter ranks first.
pub(crate) fn rank(tsv: &str, q: &str) -> String {
    format!("ts_rank_cd({tsv}, {q}, 1)")
}

/// The lexical score of a row with tsvector column `tsv` against tsquery expression `q`
/// (0 when the row matches no query token).
pub(crate) fn lexical_score(tsv: &str, q: &str) -> String {
    format!("CASE WHEN {tsv} @@ {q} THEN {} ELSE 0 END", rank(tsv, q))
}

/// Reads the description of `table`, failing with a [`Error::Schema`] that says what is
/// missing when it is not an exported strata table.
pub(crate) async fn describe(client: &impl GenericClient, table: &str) -> Result<TableInfo> {
    validate_table_name(table)?;
    let quoted = ident(table);
    let row = client
        .query_one("SELECT to_regclass($1)::oid", &[&quoted])
        .await
        .map_err(Error::db(format!("looking up table {table:?}")))?;
    let oid: Option<u32> = row.get(0);
    let Some(oid) = oid else {
        return Err(Error::Schema(format!(
            "table {table:?} does not exist in this database; export the index into it first"
        )));
    };
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), a.atttypmod
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid],
        )
        .await
        .map_err(Error::db(format!("reading the columns of {table:?}")))?;
    let find = |name: &str| {
        columns
            .iter()
            .find(|r| r.get::<_, String>(0) == name)
            .map(|r| (r.get::<_, String>(1), r.get::<_, i32>(2)))
    };
    for (name, ty) in [("id", "text"), ("text", "text"), ("tsv", "tsvector")] {
        match find(name) {
            Some((t, _)) if t == ty => {}
            Some((t, _)) => {
                return Err(Error::Schema(format!(
                    "column {table}.{name} has type {t}, expected {ty}; re-export the table"
                )));
            }
            None => {
                return Err(Error::Schema(format!(
                    "table {table:?} has no column {name:?}; it is not a strata export (re-export it)"
                )));
            }
        }
    }
    let dim = match find("embedding") {
        Some((t, m)) if t == "vector" && m > 0 => m as usize,
        Some((t, _)) => {
            return Err(Error::Schema(format!(
                "column {table}.embedding has type {t}, expected vector(dim) with a fixed dimension"
            )));
        }
        None => {
            return Err(Error::Schema(format!(
                "table {table:?} has no column \"embedding\"; it is not a strata export (re-export it)"
            )));
        }
    };
    let indexes = client
        .query(
            "SELECT am.amname::text, opc.opcname::text, coalesce(c.reloptions, '{}')
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am am ON am.oid = c.relam
             JOIN pg_opclass opc ON opc.oid = i.indclass[0]
             WHERE i.indrelid = $1",
            &[&oid],
        )
        .await
        .map_err(Error::db(format!("reading the indexes of {table:?}")))?;
    let mut hnsw = None;
    let mut text_index = false;
    for r in &indexes {
        let am: String = r.get(0);
        let opclass: String = r.get(1);
        let options: Vec<String> = r.get(2);
        if am == "hnsw" {
            let metric = Metric::from_opclass(&opclass).ok_or_else(|| {
                Error::Schema(format!(
                    "the HNSW index of {table:?} uses operator class {opclass}; expected vector_cosine_ops or vector_ip_ops"
                ))
            })?;
            let mut params = PgHnswParams::default();
            for o in &options {
                if let Some(v) = o.strip_prefix("m=") {
                    params.m = v.parse().unwrap_or(params.m);
                } else if let Some(v) = o.strip_prefix("ef_construction=") {
                    params.ef_construction = v.parse().unwrap_or(params.ef_construction);
                }
            }
            hnsw = Some((metric, params));
        } else if am == "gin" {
            text_index = true;
        }
    }
    let Some((metric, hnsw)) = hnsw else {
        return Err(Error::Schema(format!(
            "table {table:?} has no HNSW index on its embeddings; re-export it"
        )));
    };
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), pg_total_relation_size($1::oid::regclass),
                        obj_description($1::oid, 'pg_class') FROM {quoted}"
            ),
            &[&oid],
        )
        .await
        .map_err(Error::db(format!("counting the rows of {table:?}")))?;
    let items: i64 = row.get(0);
    let bytes: i64 = row.get(1);
    let metadata: Option<String> = row.get(2);
    Ok(TableInfo {
        table: table.to_string(),
        items: items as u64,
        dim,
        metric,
        hnsw,
        text_index,
        bytes: bytes as u64,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        for ok in ["items", "_x", "catalog_2026", &"a".repeat(48)] {
            assert!(validate_table_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Items",
            "1items",
            "items; drop table x",
            "public.items",
            "it\"ems",
            &"a".repeat(49),
        ] {
            let err = validate_table_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid table name"), "{bad}: {err}");
        }
    }

    #[test]
    fn hnsw_params_are_checked() {
        assert!(PgHnswParams::default().validate().is_ok());
        assert!(
            PgHnswParams {
                m: 1,
                ef_construction: 64
            }
            .validate()
            .is_err()
        );
        assert!(
            PgHnswParams {
                m: 16,
                ef_construction: 31
            }
            .validate()
            .is_err()
        );
        assert!(
            PgHnswParams {
                m: 16,
                ef_construction: 32
            }
            .validate()
            .is_ok()
        );
        assert!(
            PgHnswParams {
                m: 16,
                ef_construction: 1001
            }
            .validate()
            .is_err()
        );
    }
}
