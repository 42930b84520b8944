//! The per-endpoint inbound whitelist: the echo-loop guard.
//!
//! Operators coming from ONEiO paste their filters as they are:
//! `user.accountId!=ID1,!=ID2` — comma means AND, a clause that starts with an
//! operator continues the previous attribute, operators are `=`, `!=` and
//! `IN`. `IN` takes `(a,b,c)` in parentheses or `a|b|c`. Values may be quoted
//! (`"a,b"`) to hold a comma; inside quotes `\"` is a quote and `\\` a
//! backslash (any other backslash stays as written). The same filter can be
//! written as structured YAML (`[{path: actor.id, not_in: [ID1, ID2]}]`).
//! Both parse into [`Whitelist`], which an event must pass or be dropped with
//! reason `filtered`.
//!
//! A missing attribute fails `=` and `IN` and passes `!=`: a comment event
//! without a top-level `user` is not "from" the excluded user. Use `actor.id`
//! (resolved across event kinds, see [`crate::rules::model::Context`]) to catch the
//! integration user everywhere.

use crate::rules::context::Context;
use crate::rules::path::{as_text, Path};
use serde::Deserialize;
use std::fmt;

/// One comparison of a whitelist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    pub path: Path,
    pub op: Op,
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
}

/// All clauses must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whitelist {
    pub clauses: Vec<Clause>,
}

impl Whitelist {
    /// Parses the ONEiO one-line form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut clauses = Vec::new();
        let mut last_path: Option<Path> = None;
        let parts = split_top(text)?;
        if parts.iter().all(|p| p.trim().is_empty()) {
            return Err("the whitelist is empty".to_owned());
        }
        for raw in parts {
            let part = raw.trim();
            if part.is_empty() {
                return Err(format!("empty clause in `{text}` (two commas in a row?)"));
            }
            let (attr, op, rest) = split_op(part)
                .ok_or_else(|| format!("clause `{part}` has no operator (`=`, `!=` or `IN`)"))?;
            let path = if attr.trim().is_empty() {
                last_path.clone().ok_or_else(|| {
                    format!(
                        "clause `{part}` starts with an operator but no attribute comes before it"
                    )
                })?
            } else {
                attribute(attr.trim(), part)?
            };
            let values = match op {
                Op::In => parse_in(rest.trim())?,
                _ => vec![unquote(rest.trim())],
            };
            last_path = Some(path.clone());
            clauses.push(Clause { path, op, values });
        }
        Ok(Self { clauses })
    }

    /// True when the event passes; otherwise the failing clause, as text.
    pub fn check(&self, ctx: &Context<'_>) -> Result<(), String> {
        for c in &self.clauses {
            let v = ctx.get(&c.path);
            let text = v.map(as_text);
            let pass = match c.op {
                Op::Eq => text.as_deref() == Some(c.values[0].as_str()),
                Op::Ne => text.as_deref() != Some(c.values[0].as_str()),
                Op::In => text
                    .as_deref()
                    .is_some_and(|t| c.values.iter().any(|x| x == t)),
            };
            if !pass {
                return Err(format!(
                    "whitelist clause `{c}` failed (value: {})",
                    text.as_deref()
                        .map_or("missing".to_owned(), |t| format!("`{t}`"))
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |v: &str| {
            if v.contains([',', '|', '(', ')', '"']) || v.trim() != v || v.is_empty() {
                format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                v.to_owned()
            }
        };
        match self.op {
            Op::Eq => write!(f, "{}={}", self.path, q(&self.values[0])),
            Op::Ne => write!(f, "{}!={}", self.path, q(&self.values[0])),
            Op::In => {
                let vs: Vec<String> = self.values.iter().map(|v| q(v)).collect();
                write!(f, "{} IN ({})", self.path, vs.join(","))
            }
        }
    }
}

impl fmt::Display for Whitelist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The attribute of a clause as a path. It must be balanced on its own
/// (quotes, parentheses, no comma outside them) so that the clause splits the
/// same way whatever follows it, and must not be the bare word `in`, which
/// reads as the `IN` operator.
fn attribute(attr: &str, part: &str) -> Result<Path, String> {
    if attr.eq_ignore_ascii_case("in") {
        return Err(format!(
            "clause `{part}`: the attribute `{attr}` reads as the operator `IN`; write it as `[\"{attr}\"]`"
        ));
    }
    if !matches!(split_top(attr).as_deref(), Ok([_])) {
        return Err(format!(
            "clause `{part}`: quotes or parentheses in the attribute `{attr}` do not pair up"
        ));
    }
    Path::parse(attr)
}

/// Splits on commas outside quotes and parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0i32, false, false, 0);
    for (i, ch) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `)` in `{text}`"));
                }
            }
            ',' if !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(format!("unclosed `\"` in `{text}`"));
    }
    if depth != 0 {
        return Err(format!("unclosed `(` in `{text}`"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// Finds the first operator outside quotes: `!=`, `=`, or the word `IN`.
fn split_op(part: &str) -> Option<(&str, Op, &str)> {
    let b = part.as_bytes();
    let mut i = 0;
    let mut bracket = false;
    while i < b.len() {
        match b[i] {
            b'[' => bracket = true,
            b']' => bracket = false,
            _ if bracket => {}
            b'"' => return None,
            b'!' if b.get(i + 1) == Some(&b'=') => {
                return Some((&part[..i], Op::Ne, &part[i + 2..]))
            }
            b'=' => return Some((&part[..i], Op::Eq, &part[i + 1..])),
            b'I' | b'i'
                if b.len() >= i + 2
                    && b[i + 1].eq_ignore_ascii_case(&b'n')
                    && (i == 0 || b[i - 1] == b' ')
                    && b.get(i + 2).is_none_or(|c| *c == b' ' || *c == b'(') =>
            {
                return Some((&part[..i], Op::In, &part[i + 2..]));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_in(rest: &str) -> Result<Vec<String>, String> {
    let values: Vec<String> = if let Some(inner) = rest.strip_prefix('(') {
        let inner = inner
            .strip_suffix(')')
            .ok_or_else(|| format!("`IN {rest}`: missing `)`"))?;
        split_top(inner)?
            .into_iter()
            .map(|v| unquote(v.trim()))
            .collect()
    } else {
        rest.split('|').map(|v| unquote(v.trim())).collect()
    };
    if values.is_empty() || (values.len() == 1 && values[0].is_empty() && !rest.contains('"')) {
        return Err(format!("`IN {rest}` lists no values"));
    }
    Ok(values)
}

/// A quoted value without its quotes, `\"` and `\\` unescaped; an unquoted
/// value as written.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next @ ('"' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The whitelist as written in YAML: a ONEiO string or a list of clauses.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum WhitelistSpec {
    Oneio(String),
    Structured(Vec<ClauseSpec>),
}

/// `{ path: actor.id, not_in: [a, b] }` and friends; exactly one operator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClauseSpec {
    pub path: String,
    #[serde(default)]
    pub equals: Option<crate::rules::model::Scalar>,
    #[serde(default)]
    pub not_equals: Option<crate::rules::model::Scalar>,
    #[serde(default, rename = "in")]
    pub in_: Option<Vec<crate::rules::model::Scalar>>,
    #[serde(default)]
    pub not_in: Option<Vec<crate::rules::model::Scalar>>,
}

impl WhitelistSpec {
    pub fn build(&self) -> Result<Whitelist, String> {
        match self {
            WhitelistSpec::Oneio(s) => Whitelist::parse(s),
            WhitelistSpec::Structured(list) => {
                let mut clauses = Vec::new();
                for c in list {
                    let path = Path::parse(&c.path)?;
                    let ops = usize::from(c.equals.is_some())
                        + usize::from(c.not_equals.is_some())
                        + usize::from(c.in_.is_some())
                        + usize::from(c.not_in.is_some());
                    if ops != 1 {
                        return Err(format!(
                            "clause on `{}` needs exactly one of equals, not_equals, in, not_in",
                            c.path
                        ));
                    }
                    let text = |v: &crate::rules::model::Scalar| v.0.clone();
                    if let Some(v) = &c.equals {
                        clauses.push(Clause {
                            path,
                            op: Op::Eq,
                            values: vec![text(v)],
                        });
                    } else if let Some(v) = &c.not_equals {
                        clauses.push(Clause {
                            path,
                            op: Op::Ne,
                            values: vec![text(v)],
                        });
                    } else if let Some(vs) = &c.in_ {
                        clauses.push(Clause {
                            path,
                            op: Op::In,
                            values: vs.iter().map(text).collect(),
                        });
                    } else if let Some(vs) = &c.not_in {
                        for v in vs {
                            clauses.push(Clause {
                                path: path.clone(),
                                op: Op::Ne,
                                values: vec![text(v)],
                            });
                        }
                    }
                }
                Ok(Whitelist { clauses })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ctx_check(w: &Whitelist, payload: &serde_json::Value) -> Result<(), String> {
        let ctx = Context::new(
            payload,
            "jira:issue_updated",
            crate::config::SourceKind::Jira,
        );
        w.check(&ctx)
    }

    #[test]
    fn oneio_continuation_and_and() {
        let w = Whitelist::parse("user.accountId!=ID1,!=ID2").unwrap();
        assert_eq!(w.clauses.len(), 2);
        assert_eq!(w.clauses[1].path.to_string(), "user.accountId");
        assert!(ctx_check(&w, &json!({"user": {"accountId": "ID3"}})).is_ok());
        assert!(ctx_check(&w, &json!({"user": {"accountId": "ID2"}})).is_err());
        assert!(ctx_check(&w, &json!({})).is_ok(), "missing passes !=");
    }

    #[test]
    fn oneio_in_forms() {
        let w = Whitelist::parse(
            "issue.fields.project.key IN (SUP, OPS),issue.fields.issuetype.name IN Bug|Task",
        )
        .unwrap();
        assert_eq!(w.clauses[0].values, ["SUP", "OPS"]);
        assert_eq!(w.clauses[1].values, ["Bug", "Task"]);
        let p = json!({"issue": {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}}}});
        assert!(ctx_check(&w, &p).is_ok());
        let p = json!({"issue": {"fields": {"project": {"key": "DEV"}, "issuetype": {"name": "Task"}}}});
        assert!(ctx_check(&w, &p).is_err());
    }

    #[test]
    fn oneio_errors() {
        for bad in [
            "",
            "!=x",
            "user.accountId",
            "a=1,,b=2",
            "a IN (x",
            "a=\"x",
            "a..b=1",
        ] {
            assert!(Whitelist::parse(bad).is_err(), "{bad}");
        }
    }

    /// Found by the whitelist fuzz target: a value holding `\"` was rendered
    /// to text that did not parse back (backslashes were not escaped).
    #[test]
    fn backslashes_round_trip() {
        for text in [
            r#"event=a"b\"c""#,
            r#"a="x\\""#,
            r#"a IN ("p\\q", "r\"s")"#,
            r"a=DOMAIN\user",
            r#"a!="\\\"""#,
        ] {
            let w = Whitelist::parse(text).unwrap();
            let rendered = w.to_string();
            let back = Whitelist::parse(&rendered).unwrap_or_else(|e| panic!("{rendered}: {e}"));
            assert_eq!(back, w, "{text} → {rendered}");
        }
        let value = |text: &str| Whitelist::parse(text).unwrap().clauses[0].values[0].clone();
        assert_eq!(value(r#"a="x\\y""#), r"x\y");
        assert_eq!(value(r#"a="x\y""#), r"x\y", "other escapes stay as written");
        assert_eq!(value(r"a=x\\y"), r"x\\y", "unquoted values are literal");
        assert_eq!(value(r#"event=a"b\"c""#), r#"a"b\"c""#);
    }

    /// Found by the whitelist fuzz target: an attribute whose quotes did not
    /// pair up was accepted when the value's quotes made up for it, and its
    /// rendering split differently. Also `in` as an attribute, which the
    /// rendering turned into the continuation form `IN …`.
    #[test]
    fn attributes_must_pair_up_on_their_own() {
        for bad in [
            r#"p["k="v"]=d,!=x"]=y"#,
            r#"p["x\"]="1""#,
            "p[x=(]=1,b=2)",
            "in=1,IN (a)",
            "IN IN (a)",
        ] {
            assert!(Whitelist::parse(bad).is_err(), "{bad}");
        }
        for good in [
            r#"p["k,(x"]=1,!=2"#,
            "changelog.items[field=Sprint (old)].toString=a",
            r#"["in"] IN (a,b)"#,
            "x.in=1",
        ] {
            let w = Whitelist::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(Whitelist::parse(&w.to_string()).unwrap(), w, "{good}");
        }
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Za-z0-9:_-]{1,12}", "[ -~]{0,10}",]
    }

    fn clause() -> impl Strategy<Value = Clause> {
        let path = prop::sample::select(vec![
            "user.accountId",
            "actor.id",
            "issue.fields.project.key",
            "changelog.items[field=status].toString",
        ]);
        (path, 0..3u8, prop::collection::vec(value(), 1..4)).prop_map(|(p, op, vs)| {
            let op = [Op::Eq, Op::Ne, Op::In][op as usize];
            let values = if op == Op::In {
                vs
            } else {
                vec![vs[0].clone()]
            };
            Clause {
                path: Path::parse(p).unwrap(),
                op,
                values,
            }
        })
    }

    proptest! {
        #[test]
        fn render_then_parse_round_trips(clauses in prop::collection::vec(clause(), 1..5)) {
            let w = Whitelist { clauses };
            let text = w.to_string();
            let back = Whitelist::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(back, w);
        }

        #[test]
        fn parser_never_panics(s in "[ -~]{0,40}") {
            let _ = Whitelist::parse(&s);
        }

        #[test]
        fn ne_list_rejects_exactly_the_listed(ids in prop::collection::vec("[a-z0-9]{1,8}", 1..5), probe in "[a-z0-9]{1,8}") {
            let text = format!("actor.id!={}", ids.join(",!="));
            let w = Whitelist::parse(&text).unwrap();
            let r = ctx_check(&w, &json!({"user": {"accountId": probe.clone()}}));
            prop_assert_eq!(r.is_ok(), !ids.contains(&probe));
        }
    }
}
