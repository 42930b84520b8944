//! What of a payload the rules of one endpoint can read, so that the worker
//! builds only that part of it.
//!
//! A Jira webhook is mostly what no rule reads: every custom field, avatar
//! URLs, the project, the reporter's time zone. Building all of it into a
//! `serde_json::Value` and dropping it again was most of what planning one
//! event cost. At config load every path the endpoint's whitelist and rules
//! can evaluate is gathered into a tree of keys ([`Projection`]); the worker
//! parses the body through it ([`Projection::parse`]): kept subtrees are built,
//! everything else is skipped by the parser without allocating.
//!
//! The rules see the same values either way: a path keeps the whole value it
//! ends on, and the whole array at its first index or filter step; keys that
//! lead to kept values keep only those. Paths the engine reads itself (the
//! actor, the event names, a comment's twin, pair-back keys, changelog items)
//! are added here, next to where they are listed.

use super::model::{Condition, Rule};
use super::path::{Path, Segment};
use super::whitelist::Whitelist;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Paths the engine reads besides those in the config: the actor
/// (`context::resolve_actor`), event names (`engine::event_names`), a comment
/// twin (`calls::jira::comment_twin`), pair-back keys
/// (`engine::pair_back_plan`) and `changed:` conditions' items.
const BUILT_IN: &[&[&str]] = &[
    &["webhookEvent"],
    &["issue_event_type_name"],
    &["event"],
    &["user"],
    &["comment", "updateAuthor"],
    &["comment", "author"],
    &["comment", "id"],
    &["worklog", "updateAuthor"],
    &["worklog", "author"],
    &["attachment", "author"],
    &["sys_updated_by"],
    &["updated_by"],
    &["sys_id"],
    &["number"],
    &["issue", "id"],
    &["issue", "key"],
];

/// Kept when any rule of the endpoint has a `changed:` condition.
const CHANGES: &[&[&str]] = &[&["changelog", "items"], &["changes"]];

/// A tree of the keys worth building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// The whole value.
    All,
    /// Only these keys of an object, each with its own projection; anything
    /// other than an object here is read by no path beyond its kind.
    Keys(BTreeMap<String, Projection>),
}

impl Default for Projection {
    fn default() -> Self {
        Projection::Keys(BTreeMap::new())
    }
}

impl Projection {
    /// What the whitelist and the rules from `endpoint` can read.
    pub fn for_endpoint(endpoint: &str, whitelist: Option<&Whitelist>, rules: &[Rule]) -> Self {
        let mut p = Projection::default();
        for keys in BUILT_IN {
            p.keep_keys(keys);
        }
        for c in whitelist.into_iter().flat_map(|w| &w.clauses) {
            p.keep(&c.path);
        }
        for rule in rules.iter().filter(|r| r.from == endpoint) {
            if let Some(it) = &rule.iterate {
                p.keep(it);
            }
            for c in &rule.conditions {
                match c.path() {
                    Some(path) => p.keep(path),
                    None => {
                        debug_assert!(matches!(c, Condition::Changed { .. }));
                        for keys in CHANGES {
                            p.keep_keys(keys);
                        }
                    }
                }
            }
            for (_, m) in &rule.map {
                for path in m.source.paths() {
                    p.keep(path);
                }
            }
            if let Some(c) = &rule.correlate {
                for path in c.key.paths() {
                    p.keep(path);
                }
            }
            if let Some(r) = &rule.request {
                for path in r.path.paths() {
                    p.keep(path);
                }
            }
        }
        p
    }

    /// Keeps what `path` reads from the payload. Paths rooted at `actor` or
    /// `item`, and the bare `event`, read derived values, not the payload
    /// (see `context::Context::get`); the actor's sources are built in and an
    /// item is an element of a kept `iterate` array.
    fn keep(&mut self, path: &Path) {
        let segs = path.segments();
        match path.head() {
            Some("actor") | Some("item") => return,
            Some("event") if segs.len() == 1 => return,
            _ => {}
        }
        let mut node = self;
        for seg in segs {
            let Segment::Key(k) = seg else {
                break; // an index or a filter: the whole array is kept
            };
            match node {
                Projection::All => return,
                Projection::Keys(m) => node = m.entry(k.clone()).or_default(),
            }
        }
        *node = Projection::All;
    }

    fn keep_keys(&mut self, keys: &[&str]) {
        let mut node = self;
        for k in keys {
            match node {
                Projection::All => return,
                Projection::Keys(m) => node = m.entry((*k).to_owned()).or_default(),
            }
        }
        *node = Projection::All;
    }

    /// Parses a JSON body, building only what this projection keeps.
    pub fn parse(&self, body: &str) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(body);
        let v = self.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

impl<'de> DeserializeSeed<'de> for &Projection {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Projection::All => serde::Deserialize::deserialize(d),
            Projection::Keys(keys) => d.deserialize_any(Pruned(keys)),
        }
    }
}

/// Builds an object from its kept keys; scalars as they are, arrays as empty
/// (no path steps into an array at a node that is not kept whole).
struct Pruned<'p>(&'p BTreeMap<String, Projection>);

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.get(key.as_ref()) {
                Some(p) => {
                    let v = map.next_value_seed(p)?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn of(paths: &[&str]) -> Projection {
        let mut p = Projection::default();
        for t in paths {
            p.keep(&Path::parse(t).unwrap());
        }
        p
    }

    #[test]
    fn only_kept_subtrees_are_built() {
        let body = r#"{"issue":{"key":"A-1","fields":{"summary":"s","customfield_1":{"big":[1,2,3]},
            "labels":["x"]}},"user":{"accountId":"u","avatarUrls":{"48x48":"http://a"}},
            "changelog":{"items":[{"field":"status","toString":"Done"}]},"timestamp":1}"#;
        let p = of(&[
            "issue.fields.summary",
            "changelog.items[field=status].toString",
        ]);
        let v = p.parse(body).unwrap();
        assert_eq!(
            v,
            json!({"issue": {"fields": {"summary": "s"}},
                   "changelog": {"items": [{"field": "status", "toString": "Done"}]}})
        );
        let p = of(&[
            "issue.fields",
            "user.accountId",
            "actor.id",
            "item.x",
            "event",
        ]);
        let v = p.parse(body).unwrap();
        assert_eq!(
            v["issue"]["fields"]["customfield_1"]["big"],
            json!([1, 2, 3])
        );
        assert_eq!(v["user"], json!({"accountId": "u"}));
        assert!(v.get("timestamp").is_none() && v.get("changelog").is_none());
    }

    #[test]
    fn a_shorter_path_keeps_what_a_longer_one_would_prune() {
        let p = of(&["issue.fields.summary", "issue"]);
        assert_eq!(p, of(&["issue"]));
        let p = of(&["issue", "issue.fields.summary"]);
        assert_eq!(p, of(&["issue"]));
    }

    #[test]
    fn bad_json_is_still_an_error() {
        let p = of(&["a"]);
        assert!(p.parse(r#"{"a":1"#).is_err());
        assert!(p.parse(r#"{"b":[1,}"#).is_err());
        assert!(p.parse(r#"{"a":1} x"#).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn path_text() -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            "[a-c]",
            "[a-c]",
            (0usize..3).prop_map(|n| format!("[{n}]")),
            "\\[a=[a-c]\\]"
        ];
        ("[a-c]", prop::collection::vec(seg, 0..4)).prop_map(|(head, rest)| {
            let mut s = head;
            for r in rest {
                if !r.starts_with('[') {
                    s.push('.');
                }
                s.push_str(&r);
            }
            s
        })
    }

    proptest! {
        /// Every kept path reads the same value from the projected payload
        /// as from the whole one.
        #[test]
        fn kept_paths_read_the_same(v in json_value(), paths in prop::collection::vec(path_text(), 1..5)) {
            let parsed: Vec<Path> = paths.iter().map(|t| Path::parse(t).unwrap()).collect();
            let mut p = Projection::default();
            for path in &parsed {
                p.keep(path);
            }
            let projected = p.parse(&v.to_string()).unwrap();
            for path in &parsed {
                prop_assert_eq!(path.get(&projected), path.get(&v), "{}", path);
            }
        }
    }
}
