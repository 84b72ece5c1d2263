//! Route handlers: thin adapters from HTTP to the use cases.

pub mod admin;
pub mod destinations;
pub mod health;
mod keys;
pub mod orchestrator;
pub mod organization;
