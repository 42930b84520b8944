//! Self-healing sync: a sweep that searches Jira for recent changes, plans them
//! with the same rules as webhooks, compares with the paired records and
//! enqueues what is missing ([`sweep`]); the user sweep ([`users`]:
//! ServiceNow group members against Jira group members); its spec ([`spec`]) and the watermark
//! store port ([`store`]) with SQLite and SSM adapters.

mod compare;
pub mod spec;
#[cfg(feature = "embedded")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod ssm;
pub mod store;
pub mod sweep;
pub mod users;
pub mod users_spec;

pub use spec::{parse_duration, ReconcileSpec};
#[cfg(feature = "embedded")]
pub use sqlite::SqliteStore;
#[cfg(feature = "aws")]
pub use ssm::SsmStore;
pub use store::{MemoryStore, Progress, StoreError, Watermark, WatermarkStore};
pub use sweep::*;
pub use users::{GroupDrift, UserSweepReport};
pub use users_spec::UserSweepSpec;
