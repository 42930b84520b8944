//! The link store: record pairs, item twins, deliveries seen, uncertain writes
//! and parked events (see [`store`]), behind one port ([`backend`]) with an
//! in-memory, a SQLite and a DynamoDB adapter.

pub mod backend;
#[cfg(feature = "aws")]
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod sqlite;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use backend::{Entry, LinkBackend, LinkError, MemoryBackend};
pub use store::*;
