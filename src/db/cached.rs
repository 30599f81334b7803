//! Prepared once per connection, as PostgreSQL allows, what diesel would prepare (and
//! PostgreSQL parse and plan) again on every execution.
//!
//! diesel refuses to cache two kinds of statement whose SQL text can vary from one
//! execution to the next under the same Rust type: every `UPDATE` (an `Option` in a
//! changeset drops its column) and every `INSERT` of a struct with an `Option` field
//! (`None` is written `DEFAULT`, `Some` a parameter). Caching them by their type would
//! be wrong; caching them by their SQL text and parameter types is not, since that text
//! then names exactly one statement. [`Cached`] does that for the statements of the hot
//! paths (sign-in, registration), whose shapes are few: a sign-in made two statements
//! PostgreSQL parsed and planned each time, a registration four, where the independent
//! ceiling prepares each once. (A refresh's writes are one constant statement,
//! `refresh_tokens::record_rotation`.)

use diesel::{
    pg::Pg,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
};

/// `Q`, cached by its SQL text. Only for statements whose text takes a few shapes at
/// most: each distinct text stays prepared on every connection that ran it.
#[derive(Clone, Copy, Debug)]
pub struct Cached<Q>(pub Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache then keys the statement by its SQL text and parameter types.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}
