//! SQL building blocks that keep statements prepared on PostgreSQL (see `docs/ARCHITECTURE.md`):
//! fixed index predicates, stable `UPDATE`s, and the statements both backends run.

use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, ValidGrouping, is_aggregate};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Bool;

/// A fixed SQL condition, spelled as in a partial index's predicate so that the planners of
/// both backends can prove the index applies (a bound parameter would not do). Unlike
/// `diesel::dsl::sql`, it leaves the statement cacheable: PostgreSQL then runs it as a prepared
/// statement in one round trip instead of preparing it again (a second round trip) every time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPredicate(pub(crate) &'static str);

impl Expression for IndexPredicate {
    type SqlType = Bool;
}

impl<QS> AppearsOnTable<QS> for IndexPredicate {}

impl<QS> SelectableExpression<QS> for IndexPredicate {}

impl ValidGrouping<()> for IndexPredicate {
    type IsAggregate = is_aggregate::Never;
}

// Statements holding one are cached by their SQL text, not by their type: the type does not
// tell the predicates apart.
impl QueryId for IndexPredicate {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> QueryFragment<DB> for IndexPredicate {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

/// An `UPDATE` on the way of every event, which PostgreSQL may keep prepared. Diesel never
/// caches an `UPDATE` (a changeset skipping `None` fields changes its SQL), so each would be
/// prepared again, a second round trip, every time; these statements' SQL does not change
/// with their values, and they are cached by their text. (On SQLite an `IN` list has one text
/// per length, bounded by the worker's batch size.)
#[derive(Debug)]
pub(crate) struct StableUpdate<Q>(pub(crate) Q);

impl<Q: Query> Query for StableUpdate<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> QueryFragment<DB> for StableUpdate<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for StableUpdate<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// A statement both backends run, as [`Dialect::run`](crate::dialect::Dialect::run) and
/// [`Dialect::pipeline`](crate::dialect::Dialect::pipeline) take it.
pub(crate) trait Statement:
    QueryFragment<diesel::pg::Pg> + QueryFragment<diesel::sqlite::Sqlite> + QueryId + Send
{
}

impl<S> Statement for S where
    S: QueryFragment<diesel::pg::Pg> + QueryFragment<diesel::sqlite::Sqlite> + QueryId + Send
{
}
