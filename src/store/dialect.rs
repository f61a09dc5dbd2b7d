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

    /// Stores a message's search tokens ([`crate::domain::search::index_tokens`]): `$1` the message id, `$2` the
    /// tokens, `$3` the text they came from (the backfill's guard against a concurrent edit). The message must
    /// have no tokens stored ([`Dialect::SEARCH_UNINDEX`] first when it may).
    const SEARCH_INDEX: &'static str;
    /// Removes message `$1` from the search index (a recall, an edit before its new text is indexed).
    const SEARCH_UNINDEX: &'static str;
    /// The search query's row source: the index joined to `messages m`.
    const SEARCH_FROM: &'static str;
    /// The condition that the tokens match `$2` (a string made by [`Dialect::search_expression`]).
    const SEARCH_MATCH: &'static str;
    /// The matched message's id as the index sees it (ordering and paging on it lets the index walk newest first).
    const SEARCH_ID: &'static str;

    /// What a `SELECT … LIMIT n` subquery of rows to claim ends with: Postgres skips rows another transaction is
    /// claiming (`FOR UPDATE SKIP LOCKED`); SQLite has one writer at a time and needs nothing.
    const SKIP_LOCKED: &'static str;

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The backend's text for "every term matches" (FTS5 query syntax, or a `tsquery` literal). Tokens hold no
    /// quote, backslash or space (see `domain::search`); quotes are escaped all the same.
    /// With `scope` (conversation tokens), the message must also be in one of those conversations.
    fn search_expression(query: &crate::domain::search::SearchQuery, scope: &[String]) -> String;
}

impl Dialect for sqlx::Postgres {
    const BACKEND: &'static str = "postgres";
    const ID_SET: &'static str = "SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)";
    const TEXT_SET: &'static str = "SELECT value FROM jsonb_array_elements_text($1::jsonb)";
    const SEARCH_INDEX: &'static str = "UPDATE messages SET search = array_to_tsvector(string_to_array($2, ' '))
                                        WHERE id = $1 AND body = $3 AND recalled_at IS NULL";
    const SEARCH_UNINDEX: &'static str = "UPDATE messages SET search = NULL WHERE id = $1 AND search IS NOT NULL";
    const SEARCH_FROM: &'static str = "messages m";
    const SEARCH_MATCH: &'static str = "m.search @@ $2::tsquery";
    const SEARCH_ID: &'static str = "m.id";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn search_expression(query: &crate::domain::search::SearchQuery, scope: &[String]) -> String {
        let terms: Vec<String> = query
            .terms
            .iter()
            .map(|t| {
                let quoted = t.text.replace('\\', "\\\\").replace('\'', "''");
                if t.prefix {
                    format!("'{quoted}':*")
                } else {
                    format!("'{quoted}'")
                }
            })
            .collect();
        let mut expression = terms.join(" & ");
        if !scope.is_empty() {
            let any: Vec<String> =
                scope.iter().map(|c| format!("'{}'", c.replace('\\', "\\\\").replace('\'', "''"))).collect();
            expression = format!("{expression} & ({})", any.join(" | "));
        }
        expression
    }
}

impl Dialect for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";
    const ID_SET: &'static str = "SELECT value FROM json_each($1)";
    const TEXT_SET: &'static str = "SELECT value FROM json_each($1)";
    const SEARCH_INDEX: &'static str = "INSERT INTO message_search (rowid, tokens) SELECT $1, $2
                                        WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND body = $3
                                                                                AND recalled_at IS NULL)";
    const SEARCH_UNINDEX: &'static str = "DELETE FROM message_search WHERE rowid = $1";
    const SEARCH_FROM: &'static str = "message_search s JOIN messages m ON m.id = s.rowid";
    const SEARCH_MATCH: &'static str = "message_search MATCH $2";
    const SEARCH_ID: &'static str = "s.rowid";
    const SKIP_LOCKED: &'static str = "";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn search_expression(query: &crate::domain::search::SearchQuery, scope: &[String]) -> String {
        let terms: Vec<String> = query
            .terms
            .iter()
            .map(|t| {
                let quoted = t.text.replace('"', "\"\"");
                if t.prefix {
                    format!("\"{quoted}\"*")
                } else {
                    format!("\"{quoted}\"")
                }
            })
            .collect();
        let mut expression = terms.join(" AND ");
        if !scope.is_empty() {
            let any: Vec<String> = scope.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
            expression = format!("{expression} AND ({})", any.join(" OR "));
        }
        expression
    }
}

/// A value the database binds as a query parameter living for `'q` (one bound instead of three at every use).
pub trait Param<'q, DB: Database>: Encode<'q, DB> + Type<DB> + Send + 'q {}

impl<'q, DB: Database, T> Param<'q, DB> for T where T: Encode<'q, DB> + Type<DB> + Send + 'q {}
