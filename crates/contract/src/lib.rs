//! The store contract: the promises every adapter of the domain's ports keeps, as cases that
//! any adapter runs on stores of its own, and [`memory::MemoryStore`], the in-memory reference
//! adapter that keeps them.
//!
//! A case is one `async fn(Arc<dyn Store>)` in the module of its port, registered beside it
//! with `case!(name)`; it panics on a broken promise. [`trials`] turns every registered case
//! into a named trial, `<backend>::<port>::<case>`, for a test target with `harness = false`:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use mandate_contract::memory::MemoryStore;
//! use mandate_domain::ports::Store;
//!
//! let arguments = libtest_mimic::Arguments::from_args();
//! let trials = mandate_contract::trials("memory", || async {
//!     (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ())
//! });
//! libtest_mimic::run(&arguments, trials).exit();
//! ```

// Assertions are how a contract reports a broken promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libtest_mimic::{Failed, Trial};
use mandate_domain::ports::Store;

/// Registers the case `$name`, an `async fn(Arc<dyn Store>)` of the module it is written in
/// (the module names the case's port).
macro_rules! case {
    ($name:ident) => {
        ::inventory::submit! {
            $crate::Case {
                module: module_path!(),
                name: stringify!($name),
                run: |store| ::std::boxed::Box::pin($name(store)),
            }
        }
    };
}

mod claims;
mod clients;
mod customers;
mod deliveries;
mod destinations;
mod events;
pub mod fixtures;
mod health;
mod idempotency;
mod keys;
pub mod memory;
mod orchestrators;
mod organizations;
mod requests;
mod sessions;
mod webhooks;

/// What a case is run as: a future that panics on a broken promise.
type CaseFuture = Pin<Box<dyn Future<Output = ()>>>;

/// One registered case.
pub struct Case {
    module: &'static str,
    name: &'static str,
    run: fn(Arc<dyn Store>) -> CaseFuture,
}

inventory::collect!(Case);

impl Case {
    /// `<port>::<case>`: the module it is written in, then its function.
    pub fn name(&self) -> String {
        let port = self.module.rsplit("::").next().unwrap_or(self.module);
        format!("{port}::{}", self.name)
    }
}

/// Every registered case, by name.
pub fn cases() -> Vec<&'static Case> {
    let mut cases: Vec<&'static Case> = inventory::iter::<Case>.into_iter().collect();
    cases.sort_by_key(|case| case.name());
    cases
}

/// One trial per case, named `<backend>::<port>::<case>`, each on its own runtime and on a
/// fresh store from `fresh_store`: a future yielding the store and a guard that is dropped
/// (removing what the store kept) once the case has run.
pub fn trials<F, Fresh, Guard>(backend: &str, fresh_store: F) -> Vec<Trial>
where
    F: Fn() -> Fresh + Send + Sync + 'static,
    Fresh: Future<Output = (Arc<dyn Store>, Guard)>,
{
    let fresh_store = Arc::new(fresh_store);
    cases()
        .into_iter()
        .map(|case| {
            let fresh_store = fresh_store.clone();
            Trial::test(format!("{backend}::{}", case.name()), move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let (store, guard) = fresh_store().await;
                    (case.run)(store).await;
                    drop(guard);
                });
                Ok::<(), Failed>(())
            })
        })
        .collect()
}
