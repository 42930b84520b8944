//! Reconciliation: the sweep that finds what webhooks never delivered.
pub mod store;

pub use store::{MemoryStore, Progress, StoreError, Watermark, WatermarkStore};
