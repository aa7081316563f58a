//! Errors of the Postgres backend.

/// What went wrong talking to PostgreSQL or with the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input is invalid (a request field, an item, an option); the message names it.
    #[error("{0}")]
    InvalidInput(String),
    /// The database does not hold what is needed (a missing table, column, index or extension,
    /// a dimension mismatch); the message says what and how to fix it.
    #[error("{0}")]
    Schema(String),
    /// A statement or the connection failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// No pooled connection could be obtained.
    #[error("no database connection available: {0}")]
    Pool(String),
}

impl Error {
    /// Wraps a database error with what was being done.
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let context = context.into();
        move |source| Error::Db { context, source }
    }

    /// True for errors caused by the caller's input (a client error in a server).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput(_))
    }
}
