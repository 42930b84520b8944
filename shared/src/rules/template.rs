//! Templates for mapped values: literal text with `{{ path | filter | filter:arg }}`
//! holes, e.g. `"[{{ issue.key }}] {{ issue.fields.summary | truncate:150 }}"`.
//!
//! They are compiled at config load — a bad path or an unknown filter is a
//! config problem with a line number — and rendered per event. A template that
//! is exactly one hole keeps the value's JSON type (so `{{ comment.body | adf }}`
//! yields an ADF object, not a string); anything else renders to a string.

use super::context::Context;
use super::path::{as_text, Path};
use serde_json::Value;

/// The filters a template may use, for messages.
pub const FILTERS: &[&str] = &[
    "text",
    "wiki",
    "adf",
    "upper",
    "lower",
    "trim",
    "truncate",
    "default",
    "date",
    "servicenow_date",
    "jira_date",
    "json",
    "join",
    "first_line",
];

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// ADF → plain text; strings pass through.
    Text,
    /// ADF → Jira wiki markup; strings pass through.
    Wiki,
    /// Plain text → ADF paragraphs; ADF passes through.
    Adf,
    Upper,
    Lower,
    Trim,
    /// Keeps at most N characters, ending with `…` when cut.
    Truncate(usize),
    /// Used when the value is missing, null or empty.
    Default(String),
    /// Any accepted timestamp → RFC 3339 UTC.
    Date,
    ServicenowDate,
    JiraDate,
    /// The value as JSON text.
    Json,
    /// Array elements (their text) joined with the separator.
    Join(String),
    FirstLine,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Hole(Path, Vec<Filter>),
}

/// A compiled template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template `{text}`: `{{{{` without `}}}}`"))?;
            let inner = &after[..close];
            let mut pieces = inner.split('|');
            let path = Path::parse(pieces.next().unwrap_or(""))
                .map_err(|e| format!("template `{text}`: {e}"))?;
            let filters = pieces
                .map(parse_filter)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("template `{text}`: {e}"))?;
            parts.push(Part::Hole(path, filters));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Every path the template reads.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole(p, _) => Some(p),
            Part::Lit(_) => None,
        })
    }

    /// Renders against an event; `Value::Null` when the template is one hole
    /// whose value is missing.
    pub fn render(&self, ctx: &Context<'_>) -> Result<Value, String> {
        if let [Part::Hole(path, filters)] = self.parts.as_slice() {
            return apply(ctx.get(path).cloned().unwrap_or(Value::Null), filters);
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Hole(path, filters) => {
                    let v = apply(ctx.get(path).cloned().unwrap_or(Value::Null), filters)?;
                    match &v {
                        Value::Object(_) | Value::Array(_) => out.push_str(&v.to_string()),
                        other => out.push_str(&as_text(other)),
                    }
                }
            }
        }
        Ok(Value::String(out))
    }
}

fn parse_filter(text: &str) -> Result<Filter, String> {
    let t = text.trim();
    let (name, arg) = match t.split_once(':') {
        Some((n, a)) => (n.trim(), Some(unquote(a.trim()))),
        None => (t, None),
    };
    let need = |a: Option<String>| {
        a.ok_or_else(|| format!("filter `{name}` needs an argument (`{name}:...`)"))
    };
    Ok(match name {
        "text" => Filter::Text,
        "wiki" => Filter::Wiki,
        "adf" => Filter::Adf,
        "upper" => Filter::Upper,
        "lower" => Filter::Lower,
        "trim" => Filter::Trim,
        "truncate" => Filter::Truncate(
            need(arg)?
                .parse()
                .map_err(|_| "filter `truncate` needs a number (`truncate:160`)".to_owned())?,
        ),
        "default" => Filter::Default(need(arg)?),
        "date" => Filter::Date,
        "servicenow_date" => Filter::ServicenowDate,
        "jira_date" => Filter::JiraDate,
        "json" => Filter::Json,
        "join" => Filter::Join(arg.unwrap_or_else(|| ", ".to_owned())),
        "first_line" => Filter::FirstLine,
        other => {
            return Err(format!(
                "unknown filter `{other}`; known filters: {}",
                FILTERS.join(", ")
            ))
        }
    })
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s)
        .to_owned()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Applies filters in order.
pub fn apply(mut v: Value, filters: &[Filter]) -> Result<Value, String> {
    for f in filters {
        v = match f {
            Filter::Default(d) => {
                if is_empty(&v) {
                    Value::String(d.clone())
                } else {
                    v
                }
            }
            _ if v.is_null() => Value::Null,
            Filter::Text => match &v {
                x if crate::rules::adf::is_adf(x) => Value::String(crate::rules::adf::to_text(x)),
                x => Value::String(as_text(x).into_owned()),
            },
            Filter::Wiki => match &v {
                x if crate::rules::adf::is_adf(x) => Value::String(crate::rules::adf::to_wiki(x)),
                x => Value::String(as_text(x).into_owned()),
            },
            Filter::Adf => {
                if crate::rules::adf::is_adf(&v) {
                    v
                } else {
                    crate::rules::adf::from_text(&as_text(&v))
                }
            }
            Filter::Upper => Value::String(as_text(&v).to_uppercase()),
            Filter::Lower => Value::String(as_text(&v).to_lowercase()),
            Filter::Trim => Value::String(as_text(&v).trim().to_owned()),
            Filter::FirstLine => Value::String(as_text(&v).lines().next().unwrap_or("").to_owned()),
            Filter::Truncate(n) => {
                let s = as_text(&v);
                if s.chars().count() <= *n {
                    Value::String(s.into_owned())
                } else {
                    let mut cut: String = s.chars().take(n.saturating_sub(1)).collect();
                    cut.push('…');
                    Value::String(cut)
                }
            }
            Filter::Date => Value::String(crate::support::timefmt::to_rfc3339(
                crate::support::timefmt::parse_value(&v)?,
            )),
            Filter::ServicenowDate => Value::String(crate::support::timefmt::to_servicenow(
                crate::support::timefmt::parse_value(&v)?,
            )),
            Filter::JiraDate => Value::String(crate::support::timefmt::to_jira(
                crate::support::timefmt::parse_value(&v)?,
            )),
            Filter::Json => Value::String(v.to_string()),
            Filter::Join(sep) => match &v {
                Value::Array(items) => Value::String(
                    items
                        .iter()
                        .map(|i| match i.get("name").or_else(|| i.get("value")) {
                            Some(n) => as_text(n).into_owned(),
                            None => as_text(i).into_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(sep),
                ),
                other => Value::String(as_text(other).into_owned()),
            },
        };
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::SourceKind;
    use serde_json::json;

    #[test]
    fn renders_holes_and_filters() {
        let p = json!({"issue": {"key": "SUP-1", "fields": {"summary": "Printer on fire", "labels": ["a", "b"], "created": "2019-02-15T19:01:52.971-0800"}}});
        let ctx = Context::new(&p, "jira:issue_created", SourceKind::Jira);
        let t = Template::parse("[{{ issue.key }}] {{issue.fields.summary | upper | truncate:8}}")
            .unwrap();
        assert_eq!(t.render(&ctx).unwrap(), json!("[SUP-1] PRINTER…"));
        let t = Template::parse("{{ issue.fields.labels | join:\";\" }}").unwrap();
        assert_eq!(t.render(&ctx).unwrap(), json!("a;b"));
        let t = Template::parse("{{ issue.fields.created | servicenow_date }}").unwrap();
        assert_eq!(t.render(&ctx).unwrap(), json!("2019-02-16 03:01:52"));
        let t = Template::parse("{{ issue.fields.nope | default:none }}").unwrap();
        assert_eq!(t.render(&ctx).unwrap(), json!("none"));
        let t = Template::parse("{{ issue.fields.summary | adf }}").unwrap();
        assert_eq!(t.render(&ctx).unwrap()["type"], "doc");
    }

    #[test]
    fn rejects_unknown_filters_and_bad_paths() {
        assert!(Template::parse("{{ a | shout }}")
            .unwrap_err()
            .contains("unknown filter"));
        assert!(Template::parse("{{ a..b }}").is_err());
        assert!(Template::parse("{{ a").is_err());
        assert!(Template::parse("{{ a | truncate:x }}").is_err());
    }
}
