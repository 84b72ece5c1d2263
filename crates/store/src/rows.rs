//! What every aggregate's rows share: the column types that hold the domain's values.
//!
//! Rows hold the domain's ids and values: a text column is read through the type's
//! `TryFrom<String>` (`#[diesel(deserialize_as = String)]`) and written through its
//! `From<… > for String` (`serialize_as = String`); a nullable one through [`Maybe`], a
//! timestamp through [`At`], an enumeration through [`Spelled`]. A stored value that breaks a
//! domain rule (a malformed id or slug, an unknown status) fails the read of its row with
//! [`Error::Data`](crate::errors::Error::Data), never a panic.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::Selectable;
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow, Queryable};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Nullable, SingleValue, SqlType, Text, Timestamp, is_nullable::NotNull};
use mandate_domain::claims::{ClaimStatus, LedgerAction, LedgerStatus};
use mandate_domain::model::ClientStatus;
use mandate_domain::payments::{Direction, RequestStatus};

use crate::errors::Error;

/// Reads and writes the column type `$wrapper` as the value it wraps, on either backend.
macro_rules! column_through {
    ($wrapper:ident($inner:ty): $sql:ty) => {
        impl<DB: Backend> FromSql<$sql, DB> for $wrapper
        where
            $inner: FromSql<$sql, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                <$inner>::from_sql(bytes).map($wrapper)
            }
        }

        impl<DB: Backend> ToSql<$sql, DB> for $wrapper
        where
            $inner: ToSql<$sql, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.0.to_sql(out)
            }
        }
    };
}

/// A timestamp column: UTC without a zone, cut to microseconds (PostgreSQL keeps no more, so
/// SQLite keeps the same).
#[derive(Debug, Clone, Copy, AsExpression, FromSqlRow)]
#[diesel(sql_type = Timestamp)]
pub(crate) struct At(NaiveDateTime);

impl From<DateTime<Utc>> for At {
    fn from(at: DateTime<Utc>) -> Self {
        At(to_naive(at))
    }
}

impl From<At> for DateTime<Utc> {
    fn from(at: At) -> Self {
        at.0.and_utc()
    }
}

column_through!(At(NaiveDateTime): Timestamp);

/// A nullable column of `S` (`String`, [`At`], [`Spelled`]) holding an optional domain value.
#[derive(Debug)]
pub(crate) struct Maybe<S>(Option<S>);

impl<S> Maybe<S> {
    /// The domain's value, as `#[diesel(deserialize_as = Maybe<…>)]` converts it.
    pub(crate) fn try_into<T: TryFrom<S>>(self) -> Result<Option<T>, T::Error> {
        self.0.map(T::try_from).transpose()
    }
}

impl<S, T: Into<S>> From<Option<T>> for Maybe<S> {
    fn from(value: Option<T>) -> Self {
        Maybe(value.map(Into::into))
    }
}

impl<S, ST, DB> FromSql<Nullable<ST>, DB> for Maybe<S>
where
    DB: Backend,
    ST: SqlType<IsNull = NotNull> + SingleValue,
    S: FromSql<ST, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        S::from_sql(bytes).map(|value| Maybe(Some(value)))
    }

    fn from_nullable_sql(bytes: Option<DB::RawValue<'_>>) -> deserialize::Result<Self> {
        bytes.map(S::from_sql).transpose().map(Maybe)
    }
}

impl<S, ST, DB> Queryable<Nullable<ST>, DB> for Maybe<S>
where
    DB: Backend,
    ST: SqlType<IsNull = NotNull> + SingleValue,
    S: FromSql<ST, DB>,
{
    type Row = Self;

    fn build(row: Self) -> deserialize::Result<Self> {
        Ok(row)
    }
}

impl<S, ST> AsExpression<Nullable<ST>> for Maybe<S>
where
    ST: SqlType<IsNull = NotNull> + SingleValue,
    Option<S>: AsExpression<Nullable<ST>>,
{
    type Expression = <Option<S> as AsExpression<Nullable<ST>>>::Expression;

    fn as_expression(self) -> Self::Expression {
        self.0.as_expression()
    }
}

/// An enumeration's column: its spelling.
#[derive(Debug, Clone, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) struct Spelled(String);

column_through!(Spelled(String): Text);

/// A stored spelling that names no value of its enumeration.
#[derive(Debug, thiserror::Error)]
#[error("stored {what} {value:?} is unknown")]
pub(crate) struct Unknown {
    what: &'static str,
    value: String,
}

/// Reads and writes each enumeration as its spelling.
macro_rules! spelled {
    ($($what:literal: $type:ty),* $(,)?) => {$(
        impl From<$type> for Spelled {
            fn from(value: $type) -> Self {
                Spelled(value.as_str().to_owned())
            }
        }

        impl TryFrom<Spelled> for $type {
            type Error = Unknown;
            fn try_from(Spelled(value): Spelled) -> Result<Self, Unknown> {
                <$type>::parse(&value).ok_or(Unknown { what: $what, value })
            }
        }
    )*};
}

spelled!(
    "direction": Direction,
    "request status": RequestStatus,
    "client status": ClientStatus,
    "claim status": ClaimStatus,
    "ledger status": LedgerStatus,
    "ledger action": LedgerAction,
);

/// A row that may break a domain rule, loaded without failing the rows beside it: a list
/// names it in its `unreadable` instead (see [`into_page_of_readable`](crate::page::into_page_of_readable)).
#[derive(Debug)]
pub(crate) struct Readable<R>(pub(crate) deserialize::Result<R>);

impl<R: Selectable<DB>, DB: Backend> Selectable<DB> for Readable<R> {
    type SelectExpression = R::SelectExpression;

    fn construct_selection() -> Self::SelectExpression {
        R::construct_selection()
    }
}

// The columns are converted to the domain's types as the row is built (`deserialize_as`): a
// row that breaks a domain rule is caught here. (A row with an embedded struct would fail
// before, when the embedded struct is read.)
impl<R: Queryable<ST, DB>, ST, DB: Backend> Queryable<ST, DB> for Readable<R> {
    type Row = R::Row;

    fn build(row: Self::Row) -> deserialize::Result<Self> {
        Ok(Readable(R::build(row)))
    }
}

/// `From` both ways between a row and the domain type whose fields it holds as they are.
macro_rules! same_fields {
    ($domain:ty, $row:ty { $($field:ident),* $(,)? }) => {
        impl From<&$domain> for $row {
            #[allow(clippy::clone_on_copy)]
            fn from(value: &$domain) -> Self {
                Self { $($field: value.$field.clone()),* }
            }
        }

        impl From<$row> for $domain {
            fn from(row: $row) -> Self {
                Self { $($field: row.$field),* }
            }
        }
    };
}
pub(crate) use same_fields;

/// UTC without a zone, cut to microseconds: PostgreSQL keeps no more, so SQLite keeps the same.
pub(crate) fn to_naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

pub(crate) fn to_utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

pub(crate) fn parsed<T, E: std::fmt::Display>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Error> {
    parse(value)
        .map_err(|error| Error::Data(format!("stored {what} {value:?} is invalid: {error}")))
}

pub(crate) fn to_i32(what: &str, value: u32) -> Result<i32, Error> {
    i32::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

pub(crate) fn to_u32(what: &str, value: i32) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

pub(crate) fn to_u64(what: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

pub(crate) fn optional<T, E: std::fmt::Display>(
    what: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    value.map(|value| parsed(what, value, parse)).transpose()
}

/// Enum columns: parsing returns `None` for an unknown spelling.
pub(crate) fn known<T>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Error> {
    parse(value).ok_or_else(|| Error::Data(format!("stored {what} {value:?} is unknown")))
}

#[cfg(test)]
mod tests {
    use mandate_domain::values::{Permission, PermissionSet};

    use super::*;
    use crate::clients::{permission_set, permissions_text};

    #[test]
    fn enumerations_read_back_what_they_write_and_refuse_other_spellings() {
        for status in [RequestStatus::Open, RequestStatus::PartiallyPaid] {
            assert_eq!(
                RequestStatus::try_from(Spelled::from(status)).ok(),
                Some(status)
            );
        }
        let unknown = Direction::try_from(Spelled("sideways".into())).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            r#"stored direction "sideways" is unknown"#
        );
        let nothing: Option<Direction> = Maybe::<Spelled>(None).try_into().unwrap();
        assert_eq!(nothing, None);
    }

    #[test]
    fn permissions_are_stored_sorted_and_read_back() {
        let set: PermissionSet = [Permission::ReadOutgoing, Permission::CreateIncoming]
            .into_iter()
            .collect();
        assert_eq!(permissions_text(&set), "create:incoming read:outgoing");
        assert_eq!(
            permission_set("read:outgoing create:incoming").ok(),
            Some(set)
        );
        assert_eq!(permission_set("").ok(), Some(PermissionSet::default()));
    }

    /// The endpoint list of a narrowed credential matches stored scopes with `LIKE`: that is
    /// exact only while no permission's name is part of another's.
    #[test]
    fn no_permission_name_is_part_of_another() {
        for one in Permission::ALL {
            for other in Permission::ALL {
                assert!(one == other || !other.as_str().contains(one.as_str()));
            }
        }
    }
}
