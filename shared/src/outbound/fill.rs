//! A plan step made into a [`Call`]: its `{{step.var}}` placeholders filled
//! from the answers of the steps before it (path segments percent-encoded,
//! whole-value placeholders in JSON bodies keeping their type).

use super::connector::{Call, CallBody, Connector, FileSource};
use crate::rules::path::as_text;
use crate::rules::plan::{Body, Method, Step};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// What a step left for later steps.
#[derive(Default)]
pub(crate) struct StepResult {
    pub(crate) found: bool,
    pub(crate) vars: HashMap<String, Value>,
}

impl StepResult {
    /// A step answered from the link store: found, with the twin's `id`.
    pub(crate) fn found_id(id: String) -> Self {
        let mut r = Self {
            found: true,
            ..Default::default()
        };
        r.vars.insert("id".into(), Value::String(id));
        r
    }
}

/// Whether a step is a write that must not run twice: a POST (create,
/// comment, upload, transition), a ServiceNow journal write (a PATCH of
/// `comments` / `work_notes` appends an entry each time), or the removal of
/// a Jira group membership (sent again after a lost answer it is refused with
/// 400 "not a member": the rule reads the membership again instead).
pub fn step_once(step: &Step) -> bool {
    match step.method {
        Method::Post => true,
        Method::Delete => step.path.ends_with("/group/user"),
        Method::Patch => matches!(&step.body, Body::Json { json }
            if json.get("comments").is_some() || json.get("work_notes").is_some()),
        _ => false,
    }
}

pub(crate) fn lookup_var<'r>(
    results: &'r HashMap<String, StepResult>,
    name: &str,
) -> Result<&'r Value, String> {
    let (s, var) = name
        .split_once('.')
        .ok_or_else(|| format!("placeholder `{{{{{name}}}}}` names no step variable"))?;
    results
        .get(s)
        .and_then(|r| r.vars.get(var))
        .ok_or_else(|| format!("`{{{{{name}}}}}` has no value (step `{s}` gave none)"))
}

/// Fills a step's placeholders and turns it into a [`Call`].
pub(crate) fn fill(
    step: &Step,
    results: &HashMap<String, StepResult>,
    source: &dyn Fn(&str) -> Option<Arc<dyn Connector>>,
) -> Result<Call, String> {
    let lookup = |name: &str| -> Result<&Value, String> { lookup_var(results, name) };
    let path = substitute(&step.path, &|n| {
        lookup(n).map(|v| crate::support::url::encode_segment(&as_text(v)))
    })?;
    let text = |s: &str| substitute(s, &|n| lookup(n).map(|v| as_text(v).into_owned()));
    let query = step
        .query
        .iter()
        .map(|(k, v)| Ok((k.clone(), text(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let headers = step
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), text(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let body = match &step.body {
        Body::None => CallBody::None,
        Body::Json { json } => CallBody::Json(fill_json(json, &lookup)?),
        Body::Download {
            via,
            url,
            file_name,
            content_type,
            multipart,
        } => {
            let source = source(via)
                .ok_or_else(|| format!("attachments come from unknown connection `{via}`"))?;
            CallBody::File(FileSource {
                source,
                url: text(url)?,
                file_name: text(file_name)?,
                content_type: content_type.as_deref().map(text).transpose()?,
                multipart: *multipart,
            })
        }
    };
    Ok(Call {
        method: step.method,
        once: step_once(step),
        path,
        query,
        headers,
        body,
    })
}

fn fill_json<'a>(
    v: &Value,
    lookup: &dyn Fn(&str) -> Result<&'a Value, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("{{") => {
            let t = s.trim();
            // A whole-string placeholder keeps the value's JSON type.
            if let Some(name) = t
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|n| !n.contains("{{") && !n.contains("}}"))
            {
                lookup(name.trim())?.clone()
            } else {
                Value::String(substitute(s, &|n| {
                    lookup(n).map(|v| as_text(v).into_owned())
                })?)
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| fill_json(x, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), fill_json(x, lookup)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Replaces each `{{name}}` in `s` with `f(name)`.
pub(crate) fn substitute(
    s: &str,
    f: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&f(rest[start + 2..start + 2 + len].trim())?);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders() {
        let f = |n: &str| -> Result<String, String> {
            match n {
                "lookup.sys_id" => Ok("abc".into()),
                _ => Err(format!("no {n}")),
            }
        };
        assert_eq!(
            substitute("/api/now/table/incident/{{lookup.sys_id}}", &f).unwrap(),
            "/api/now/table/incident/abc"
        );
        assert_eq!(substitute("{{ lookup.sys_id }}-x", &f).unwrap(), "abc-x");
        assert_eq!(substitute("plain", &f).unwrap(), "plain");
        assert_eq!(substitute("open {{ only", &f).unwrap(), "open {{ only");
        assert!(substitute("{{create.key}}", &f).is_err());
    }

    #[test]
    fn json_placeholders_keep_types() {
        let id = json!(31);
        let key = json!("SUP-1");
        let lookup = |n: &str| -> Result<&Value, String> {
            match n {
                "transitions.id" => Ok(&id),
                "create.key" => Ok(&key),
                _ => Err(n.to_owned()),
            }
        };
        let body = json!({"transition": {"id": "{{transitions.id}}"}, "note": "see {{create.key}}", "n": 1});
        assert_eq!(
            fill_json(&body, &lookup).unwrap(),
            json!({"transition": {"id": 31}, "note": "see SUP-1", "n": 1})
        );
    }
}
