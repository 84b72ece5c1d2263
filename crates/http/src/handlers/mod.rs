//! Route handlers: thin adapters from HTTP to the use cases.

pub mod admin;
pub mod claims;
pub mod clients;
pub mod customers;
pub mod destinations;
pub mod health;
mod keys;
pub mod oauth;
pub mod orchestrator;
pub mod organization;
pub mod pay;
pub mod requests;
pub mod webhooks;
