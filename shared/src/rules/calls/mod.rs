//! The calls a planned rule makes, per target kind.

pub mod common;
pub mod http;
pub mod identity;
pub mod jira;
pub mod servicenow;
