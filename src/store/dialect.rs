//! The seam between the SQL both backends share and the little where they differ. Postgres and SQLite accept the
//! same statements for everything in this crate (`$n` parameters, `RETURNING`, `ON CONFLICT`, savepoints), so
//! each aggregate's store is written once, generic over the database; a [`Dialect`] supplies only what differs.
//!
//! Generic sqlx code needs its capabilities spelled out as bounds (which types a database binds and decodes);
//! each aggregate's `impl` lists those it uses, in the same order, so they read as one list.

use sqlx::{Database, Encode, Type};

/// What differs between the SQL backends.
pub trait Dialect: Database {
    /// The backend's name in `/readyz` and logs.
    const BACKEND: &'static str;
    /// A subquery yielding one row per element, in column `value`, of the JSON array of integers bound as `$1`
    /// (see [`super::json_ids`]).
    const ID_SET: &'static str;
    /// Like [`Dialect::ID_SET`] for a JSON array of strings.
    const TEXT_SET: &'static str;

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl Dialect for sqlx::Postgres {
    const BACKEND: &'static str = "postgres";
    const ID_SET: &'static str = "SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)";
    const TEXT_SET: &'static str = "SELECT value FROM jsonb_array_elements_text($1::jsonb)";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Dialect for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";
    const ID_SET: &'static str = "SELECT value FROM json_each($1)";
    const TEXT_SET: &'static str = "SELECT value FROM json_each($1)";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// A value the database binds as a query parameter living for `'q` (one bound instead of three at every use).
pub trait Param<'q, DB: Database>: Encode<'q, DB> + Type<DB> + Send + 'q {}

impl<'q, DB: Database, T> Param<'q, DB> for T where T: Encode<'q, DB> + Type<DB> + Send + 'q {}
