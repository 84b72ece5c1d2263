//! Pages of a list: the limit and cursor of a request, and the page made of its rows.

use mandate_domain::ports::{Page, PageRequest};

use diesel::result::Error as DieselError;

use crate::errors::Error;
use crate::rows::Readable;

/// The page size asked for, within the allowed range.
pub(crate) fn page_limit(page: &PageRequest) -> usize {
    page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize
}

/// The cursor in the canonical (upper-case) spelling stored ids compare in; a cursor that is
/// no id of the kind is compared as given.
pub(crate) fn page_cursor<T: std::fmt::Display, E>(
    page: &PageRequest,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<String> {
    page.starting_after
        .as_deref()
        .map(|cursor| parse(cursor).map_or_else(|_| cursor.to_owned(), |id| id.to_string()))
}

pub(crate) fn empty_page<T>() -> Page<T> {
    Page::of(Vec::new(), false)
}

/// A page from `limit + 1` rows fetched newest first: the extra row only tells that more follow.
pub(crate) fn into_page<R, T>(mut rows: Vec<R>, limit: usize) -> Result<Page<T>, Error>
where
    T: TryFrom<R>,
    Error: From<T::Error>,
{
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok(Page::of(all(rows)?, has_more))
}

/// The domain's values of `rows`; the first that cannot be read fails them all.
pub(crate) fn all<R, T>(rows: Vec<R>) -> Result<Vec<T>, Error>
where
    T: TryFrom<R>,
    Error: From<T::Error>,
{
    rows.into_iter()
        .map(|row| T::try_from(row).map_err(Error::from))
        .collect()
}

/// Like [`into_page`], but a row that cannot be read is left out of `data`, named (by its id,
/// loaded beside it) in `unreadable` and logged as an error, instead of failing the whole page.
pub(crate) fn into_page_of_readable<R, T>(
    mut rows: Vec<(String, Readable<R>)>,
    limit: usize,
) -> Page<T>
where
    T: TryFrom<R>,
    Error: From<T::Error>,
{
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let mut page = Page::of(Vec::with_capacity(rows.len()), has_more);
    for (row_id, Readable(row)) in rows {
        let item = row
            .map_err(|cause| {
                <Error as From<DieselError>>::from(DieselError::DeserializationError(cause))
            })
            .and_then(|row| Ok(T::try_from(row)?));
        match item {
            Ok(item) => page.data.push(item),
            Err(error) => {
                tracing::error!(id = %row_id, error = %error, "a stored row cannot be read; it is left out of the list");
                page.unreadable.push(row_id);
            }
        }
    }
    page
}

/// One page of the `$row`s of `$table` the caller's `$page` asks for, newest first, keyed by
/// ids of type `$id`: `$narrow` narrows the boxed `$query` (only owned values may be captured,
/// as in [`db_run!`](crate::pool::db_run)), with the connection `$conn` at hand.
macro_rules! db_page {
    ($store:expr, $page:expr, $table:ident, $row:ty, $id:ty, |$query:ident| $narrow:block) => {
        $crate::page::db_page!($store, $page, $table, $row, $id, |conn, $query| $narrow)
    };
    (
        $store:expr, $page:expr, $table:ident, $row:ty, $id:ty,
        |$conn:ident, $query:ident| $narrow:block
    ) => {{
        let limit = $crate::page::page_limit($page);
        let cursor = $crate::page::page_cursor($page, <$id>::parse);
        $crate::pool::db_run!($store, |$conn| {
            let mut $query = $table::table
                .select(<$row>::as_select())
                .order($table::id.desc())
                .limit($crate::page::sql_limit(limit + 1))
                .into_boxed();
            $narrow
            if let Some(cursor) = &cursor {
                $query = $query.filter($table::id.lt(cursor.as_str()));
            }
            $crate::page::into_page($query.load($conn).await?, limit)
        })
    }};
}
pub(crate) use db_page;

pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
