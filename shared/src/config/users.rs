//! The `users:` section of the config: how people are matched between Jira
//! and ServiceNow (the matching itself is `outbound::users`).

use serde::Deserialize;
use std::collections::BTreeMap;

/// The `users:` section of the config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UsersSpec {
    /// The Jira connection that reads accounts.
    pub jira: String,
    /// The ServiceNow connection that reads `sys_user`.
    pub servicenow: String,
    /// Jira accountId → ServiceNow `user_name`.
    #[serde(default)]
    pub pairs: BTreeMap<String, String>,
    #[serde(default)]
    pub default: UserDefaults,
}

/// Who a person no step finds becomes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserDefaults {
    /// A ServiceNow `user_name`.
    #[serde(default)]
    pub servicenow: Option<String>,
    /// A Jira accountId.
    #[serde(default)]
    pub jira: Option<String>,
}
