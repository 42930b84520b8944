//! Writing into the paired systems: the configured connections, the connector
//! port and its REST adapter, outbound authentication (basic, bearer, OAuth
//! client credentials, OAuth 2.0 3LO), rate limits, the adaptive concurrency
//! limit per connection, and the executor that runs a plan's steps against them.

#[cfg(feature = "http")]
pub mod auth;
pub mod concurrency;
pub mod connections;
pub mod connector;
pub mod executor;
pub mod fill;
pub mod limits;
#[cfg(feature = "http")]
pub mod oauth3lo;
#[cfg(feature = "http")]
pub mod rest;
pub mod users;
#[cfg(feature = "http")]
pub mod vocabulary;

pub use connector::*;
#[cfg(feature = "http")]
pub use rest::{ConnectorSettings, RestConnector};
