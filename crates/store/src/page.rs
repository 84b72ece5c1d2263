//! Pages of a list: the limit and cursor of a request, and the page made of its rows.

use mandate_domain::ports::{Page, PageRequest};

use crate::errors::Error;

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
    T: TryFrom<R, Error = Error>,
{
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let data = rows
        .into_iter()
        .map(T::try_from)
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Page::of(data, has_more))
}

/// Like [`into_page`], but a row that cannot be read is left out of `data`, named (by `id`)
/// in `unreadable` and logged as an error, instead of failing the whole page.
pub(crate) fn into_page_of_readable<R, T>(
    mut rows: Vec<R>,
    limit: usize,
    id: impl Fn(&R) -> String,
) -> Page<T>
where
    T: TryFrom<R, Error = Error>,
{
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let mut page = Page::of(Vec::with_capacity(rows.len()), has_more);
    for row in rows {
        let row_id = id(&row);
        match T::try_from(row) {
            Ok(item) => page.data.push(item),
            Err(error) => {
                tracing::error!(id = %row_id, error = %error, "a stored row cannot be read; it is left out of the list");
                page.unreadable.push(row_id);
            }
        }
    }
    page
}

pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
