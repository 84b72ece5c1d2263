//! Mandate's domain: the model, permissions, the authorization policy, the ports that
//! storage adapters implement, and the use cases that call them.
//!
//! This crate performs no I/O and depends on no runtime, web framework or database driver,
//! so that a platform team can embed it with adapters of its own.

#![warn(missing_docs)]

pub mod agents;
pub mod auth;
pub mod claims;
pub mod customers;
pub mod events;
pub mod ids;
pub mod keys;
pub mod model;
pub mod operations;
pub mod payments;
pub mod policy;
pub mod ports;
pub mod principal;
pub mod sessions;
pub mod usecases;
pub mod values;
pub mod webhooks;

/// The current time at the precision every store keeps (microseconds), so that what a write
/// returns equals what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// An error and its causes, `: `-separated: what the adapters log (the causes of a store error
/// say what went wrong underneath).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
