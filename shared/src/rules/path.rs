//! Paths into a webhook payload: `issue.fields.customfield_10072`,
//! `changelog.items[field=status].toString`, `comment.body`, `items[0].id`.
//!
//! Operators write these in conditions, whitelists, mappings and templates, so
//! they are parsed once at config load (a bad path is a config problem with a
//! line number) and evaluated many times against `serde_json::Value`s without
//! allocating. A filter segment `[name=value]` picks the first array element
//! whose `name` equals `value`, compared case-insensitively because Jira sends
//! `Status` from one place and `status` from another.

use serde_json::Value;
use std::fmt;

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
    /// The first array element whose `key` field equals `value` (ASCII
    /// case-insensitive). For Jira changelog items, `field` also matches
    /// `fieldId`, so `[field=status]` finds Cloud and Server items alike.
    Filter { key: String, value: String },
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    text: String,
    segments: Vec<Segment>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Parses `a.b[0].c[field=status].d`. Keys are letters, digits, `_`, `-`,
    /// `:` and `$`; a key with other characters can be written `["key"]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("bad path `{text}`: {why}");
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        let bytes = t.as_bytes();
        let mut segments = Vec::new();
        let mut i = 0;
        let mut expect_key = true;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    if expect_key {
                        return Err(bad("empty segment (two dots, or a leading dot)"));
                    }
                    expect_key = true;
                    i += 1;
                }
                b'[' => {
                    let close = t[i..]
                        .find(']')
                        .map(|p| p + i)
                        .ok_or_else(|| bad("`[` without `]`"))?;
                    let inner = t[i + 1..close].trim();
                    if let Some(quoted) = inner
                        .strip_prefix('"')
                        .and_then(|s| s.strip_suffix('"'))
                    {
                        segments.push(Segment::Key(quoted.to_owned()));
                    } else if let Ok(n) = inner.parse::<usize>() {
                        segments.push(Segment::Index(n));
                    } else if let Some((k, v)) = inner.split_once('=') {
                        let (k, v) = (k.trim(), v.trim());
                        if k.is_empty()
                            || k.starts_with('.')
                            || k.ends_with('.')
                            || k.contains("..")
                            || !k.bytes().all(|b| is_key_byte(b) || b == b'.')
                        {
                            return Err(bad("filter `[name=value]` needs a field name"));
                        }
                        let v = v
                            .strip_prefix('"')
                            .and_then(|s| s.strip_suffix('"'))
                            .unwrap_or(v);
                        segments.push(Segment::Filter {
                            key: k.to_owned(),
                            value: v.to_owned(),
                        });
                    } else {
                        return Err(bad(
                            "`[...]` holds an index, `name=value` or a quoted key",
                        ));
                    }
                    expect_key = false;
                    i = close + 1;
                }
                b if is_key_byte(b) => {
                    if !expect_key {
                        return Err(bad("missing `.` between segments"));
                    }
                    let start = i;
                    while i < bytes.len() && is_key_byte(bytes[i]) {
                        i += 1;
                    }
                    segments.push(Segment::Key(t[start..i].to_owned()));
                    expect_key = false;
                }
                _ => {
                    return Err(bad(&format!(
                        "unexpected `{}` (keys are letters, digits, `_`, `-`, `:`; quote others as [\"key\"])",
                        &t[i..].chars().next().unwrap_or(' ')
                    )))
                }
            }
        }
        if expect_key {
            return Err(bad("it ends with `.`"));
        }
        Ok(Self {
            text: t.to_owned(),
            segments,
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first key, which decides the root (`actor`, `item`, or the payload).
    pub fn head(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Evaluates the path from `root`; `None` when a step is missing.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        get_segments(root, &self.segments)
    }
}

/// Evaluates `segments` from `root`.
pub fn get_segments<'v>(root: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in segments {
        cur = match seg {
            Segment::Key(k) => cur.as_object()?.get(k)?,
            Segment::Index(n) => cur.as_array()?.get(*n)?,
            Segment::Filter { key, value } => cur
                .as_array()?
                .iter()
                .find(|el| filter_matches(el, key, value))?,
        };
    }
    Some(cur)
}

fn filter_matches(el: &Value, key: &str, value: &str) -> bool {
    let eq = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.eq_ignore_ascii_case(value),
        Some(Value::Number(n)) => n.to_string() == value,
        Some(Value::Bool(b)) => (if *b { "true" } else { "false" }) == value,
        _ => false,
    };
    if key.contains('.') {
        // `[properties.0.value.change=X]`: a path inside the element.
        let mut cur = Some(el);
        for part in key.split('.') {
            cur = cur.and_then(|v| match (v, part.parse::<usize>()) {
                (Value::Array(a), Ok(n)) => a.get(n),
                (Value::Object(m), _) => m.get(part),
                _ => None,
            });
        }
        return eq(cur);
    }
    eq(el.get(key)) || (key == "field" && eq(el.get("fieldId")))
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'$')
}

/// Renders a JSON value as the text a condition or template compares: strings
/// as themselves, numbers and booleans in JSON form, `null` as empty.
pub fn as_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_on_a_path_inside_the_element() {
        let v = json!({"comments": [
            {"id": "1", "properties": []},
            {"id": "2", "properties": [{"key": "jira-relay", "value": {"change": "issue:1:comment:7:created"}}]}
        ]});
        let p = Path::parse("comments[properties.0.value.change=issue:1:comment:7:created].id")
            .unwrap();
        assert_eq!(p.get(&v), Some(&json!("2")));
        let p = Path::parse("comments[properties.0.value.change=other].id").unwrap();
        assert_eq!(p.get(&v), None);
        assert!(Path::parse("comments[.a=1]").is_err());
        assert!(Path::parse("comments[a..b=1]").is_err());
    }

    #[test]
    fn parses_and_evaluates() {
        let v = json!({"changelog": {"items": [
            {"field": "resolution", "toString": "Done"},
            {"field": "Status", "fieldId": "status", "toString": "Closed"}
        ]}, "a": {"b-c": [1, 2]}, "x y": 3});
        let p = Path::parse("changelog.items[field=status].toString").unwrap();
        assert_eq!(p.get(&v), Some(&json!("Closed")));
        assert_eq!(Path::parse("a.b-c[1]").unwrap().get(&v), Some(&json!(2)));
        assert_eq!(Path::parse("[\"x y\"]").unwrap().get(&v), Some(&json!(3)));
        assert_eq!(Path::parse("a.nope").unwrap().get(&v), None);
        assert_eq!(
            Path::parse("changelog.items[field=priority]")
                .unwrap()
                .get(&v),
            None
        );
    }

    #[test]
    fn fieldid_is_matched_for_field_filters() {
        let v = json!([{"field": "MJK - Number Field", "fieldId": "customfield_10072", "toString": "5"}]);
        let p = Path::parse("[field=customfield_10072].toString").unwrap();
        assert_eq!(p.get(&v), Some(&json!("5")));
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "a..b", ".a", "a.", "a[", "a[]", "a b", "a[=x]", "a]b"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}
