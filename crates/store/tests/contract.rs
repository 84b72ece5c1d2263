//! The domain's port contract, on both backends; every case gets a fresh database.

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod sqlite {
    mandate_domain::store_contract_tests!(crate::support::sqlite_store());
}

mod postgres {
    mandate_domain::store_contract_tests!(crate::support::postgres_store());
}
