//! The operator's rules: the whitelist, conditions, field mapping, templates
//! and ADF conversion, and the engine that turns an envelope into a [`plan`]
//! of calls.

pub mod adf;
pub mod calls;
pub mod check;
pub mod context;
pub mod engine;
pub mod model;
pub mod path;
pub mod plan;
pub mod projection;
pub mod template;
pub mod whitelist;

pub use context::Context;
pub use engine::{plan, plan_envelope, PlanError};
pub use model::*;
