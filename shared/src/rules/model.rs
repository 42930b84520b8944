//! The rules as the engine uses them, compiled: which events go where
//! ([`Rule`], [`Condition`], [`Source`]) and what they become ([`Mapping`],
//! [`Action`], [`Method`]). It depends on neither its YAML form and
//! load-time check (`check.rs`) nor its evaluation against one event
//! (`engine.rs`); both build on it.

use super::path::Path;
use super::template::Template;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// YAML form

/// A YAML scalar read as text: `1`, `true` and `"1"` are all accepted, since
/// ServiceNow values arrive as strings and operators write numbers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a rule does at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Upsert,
    Comment,
    Transition,
    Attach,
    Delete,
    /// Jira Cloud: the account of the person with the correlated e-mail
    /// address, created (with the mapped `products`) when there is none.
    User,
    /// Jira Cloud: the correlated person's account added to (`member:
    /// true`, the default) or removed from the mapped `group`(s).
    #[serde(rename = "group_member")]
    GroupMember,
}

impl Action {
    /// Identity actions: their target is a person's account, found by the
    /// e-mail address the rule correlates by.
    pub fn is_identity(self) -> bool {
        matches!(self, Action::User | Action::GroupMember)
    }
}

// ---------------------------------------------------------------------------
// Compiled form

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub from: String,
    pub to: String,
    pub action: Action,
    pub table: Option<String>,
    pub correlate: Option<Correlate>,
    pub request: Option<HttpRequest>,
    pub events: Vec<String>,
    pub conditions: Vec<Condition>,
    pub map: Vec<(String, Mapping)>,
    pub iterate: Option<Path>,
    pub wait_for_correlation: bool,
    pub stop: bool,
    pub download_from: Option<String>,
    pub pair_back: Option<PairBackRule>,
    /// Jira delete rules: delete the subtasks with it.
    pub delete_subtasks: bool,
    /// Where the rule is written in the config file.
    pub lines: RuleLines,
}

/// Lines (1-based) of a rule in its config file, for messages about it found
/// after loading (`relay check --live` names the line of a value the live
/// system does not have). `None`/absent when the rule was not read from a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleLines {
    pub rule: Option<u64>,
    /// By target field (`map.<target>`): the line of its value.
    pub map: std::collections::BTreeMap<String, u64>,
    pub correlate: Option<u64>,
    pub pair_back: Option<u64>,
}

/// Where a create writes the pairing back (see `pair_back` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairBackRule {
    pub connection: String,
    pub field: String,
}

#[derive(Clone, Debug)]
pub struct Correlate {
    pub key: Template,
    pub field: String,
}

#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub path: Template,
}

/// A `when` condition.
#[derive(Clone, Debug)]
pub enum Condition {
    Equals(Path, String),
    NotEquals(Path, String),
    In(Path, Vec<String>),
    Exists(Path, bool),
    Matches(Path, regex::Regex),
    /// A changelog item (Jira `changelog.items`, or `changes` from a ServiceNow
    /// sender) for this field, optionally from/to given display values.
    Changed {
        field: String,
        from: Option<String>,
        to: Option<String>,
    },
}

impl Condition {
    /// The payload path the condition reads (`changed:` reads the changelog).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Condition::Equals(p, _)
            | Condition::NotEquals(p, _)
            | Condition::In(p, _)
            | Condition::Exists(p, _)
            | Condition::Matches(p, _) => Some(p),
            Condition::Changed { .. } => None,
        }
    }
}

impl Source {
    /// The payload paths the value is read from.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Source::Path(p) => vec![p],
            Source::Template(t) => t.paths().collect(),
            Source::Const(_) => Vec::new(),
        }
    }
}

/// Where a target field's value comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Path(Path),
    Template(Template),
    Const(Value),
}

/// A target field's mapping.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub source: Source,
    pub table: Option<ValueTable>,
    pub required: bool,
    /// The value is a person of the source system, written as the target
    /// system's id for them (see `outbound::users`).
    pub user: bool,
}

/// A value table: source text → target value, with an optional default.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueTable {
    pub entries: HashMap<String, Value>,
    pub default: Option<Value>,
}

impl ValueTable {
    /// The mapped value; the default when the key is missing or unlisted.
    pub fn lookup(&self, key: Option<&str>) -> Option<&Value> {
        key.and_then(|k| self.entries.get(k))
            .or(self.default.as_ref())
    }
}

/// HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #[test]
        fn value_table_maps_listed_keys_and_defaults_the_rest(
            entries in prop::collection::hash_map("[a-zA-Z0-9 ]{1,10}", "[0-9]{1,2}", 0..8),
            probe in "[a-zA-Z0-9 ]{0,10}",
            default in prop::option::of("[a-z]{1,5}"),
        ) {
            let t = ValueTable {
                entries: entries.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
                default: default.clone().map(Value::String),
            };
            for (k, v) in &entries {
                prop_assert_eq!(t.lookup(Some(k)), Some(&json!(v)));
            }
            let expected = entries.get(&probe).map(|v| json!(v)).or(default.clone().map(Value::String));
            prop_assert_eq!(t.lookup(Some(&probe)).cloned(), expected);
            prop_assert_eq!(t.lookup(None).cloned(), default.map(Value::String));
        }
    }
}
