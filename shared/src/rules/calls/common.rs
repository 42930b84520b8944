//! What every target's steps are made of: a step, a download body, text
//! converted to suit the target (ADF, wiki markup, plain text), nested fields.

use crate::outbound::connections::{Connection, ConnectionKind, JiraApi};
use crate::rules::path::as_text;
use crate::rules::plan::{Body, Method, RunIf, Step};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Fields whose Jira v3 value must be ADF.
pub(crate) const ADF_FIELDS: &[&str] = &[
    "body",
    "fields.description",
    "fields.environment",
    "update.comment.add.body",
];

/// Text ⇄ ADF to suit the target: v3 rich-text fields get ADF, v2 gets wiki
/// markup, ServiceNow and HTTP get plain text for an ADF value. Jira
/// `fields.labels` given as text becomes an array of its words.
pub(crate) fn convert_text(conn: &Connection, target: &str, v: Value) -> Value {
    let rich = ADF_FIELDS.contains(&target);
    match conn.kind {
        // Jira labels are an array of words; a templated string becomes one.
        ConnectionKind::Jira if target == "fields.labels" => match v {
            Value::String(s) => Value::Array(
                s.split_whitespace()
                    .map(|w| Value::String(w.to_owned()))
                    .collect(),
            ),
            other => other,
        },
        ConnectionKind::Jira if rich && conn.api == JiraApi::V3 => match v {
            Value::String(s) => crate::rules::adf::from_text(&s),
            other => other,
        },
        ConnectionKind::Jira if crate::rules::adf::is_adf(&v) => {
            Value::String(crate::rules::adf::to_wiki(&v))
        }
        ConnectionKind::Servicenow if crate::rules::adf::is_adf(&v) => {
            Value::String(crate::rules::adf::to_text(&v))
        }
        _ => v,
    }
}

pub(crate) fn take(fields: &mut Vec<(String, Value)>, name: &str) -> Option<Value> {
    let i = fields.iter().position(|(t, _)| t == name)?;
    Some(fields.remove(i).1)
}

/// `true`, `"true"`, `1`, `"yes"`: a mapped flag that is set.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
        _ => false,
    }
}

pub(crate) fn text_of(v: &Value) -> String {
    as_text(v).into_owned()
}

/// Why a rule's steps could not be planned.
pub(crate) enum Stop {
    /// The mapping or the event is unusable for this rule (permanent).
    Error(String),
    /// Nothing to do for this event, for the reason given.
    Skip(String),
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Stop::Error(s)
    }
}

impl From<&str> for Stop {
    fn from(s: &str) -> Self {
        Stop::Error(s.to_owned())
    }
}

/// Why an attachment is not fetched: the URL is missing from the event. The
/// rule is skipped with this reason. (A URL outside the `download_from`
/// connection is an error, not a skip: see `download`.)
pub(crate) struct SkipDownload(pub(crate) String);

pub(crate) fn download(
    fields: &mut Vec<(String, Value)>,
    via: Option<&Connection>,
    multipart: bool,
) -> Result<Result<Body, SkipDownload>, String> {
    let via = via.ok_or("attach rules need `download_from`")?;
    let Some(url) = take(fields, "url").map(|u| text_of(&u)) else {
        return Ok(Err(SkipDownload(
            "the attachment `url` has no value in this event".into(),
        )));
    };
    // A URL elsewhere would send the connection's credentials there: the
    // event is dead with a reason (the worker checks again before fetching).
    if !crate::support::url::url_is_under(&url, &via.base_url) {
        return Err(format!(
            "attachment_url_not_allowed: `{url}` is not under {} (connection `{}`); not fetched",
            via.base_url, via.name
        ));
    }
    let file_name =
        take(fields, "file_name").map_or_else(|| "attachment".to_owned(), |v| text_of(&v));
    Ok(Ok(Body::Download {
        via: via.name.clone(),
        url,
        file_name,
        content_type: take(fields, "content_type").map(|v| text_of(&v)),
        multipart,
    }))
}

pub(crate) fn step(id: &str, method: Method, path: String) -> Step {
    Step {
        id: id.to_owned(),
        method,
        path,
        query: Vec::new(),
        headers: BTreeMap::new(),
        body: Body::None,
        run_if: RunIf::Always,
        extract: BTreeMap::new(),
        on_empty: None,
        via: None,
        check: false,
    }
}

/// Sets `a.b.c` in a JSON object. `update.<field>.<op>[.<sub>]` becomes Jira's
/// update form `{"update": {"<field>": [{"<op>": value or {"<sub>": value}}]}}`.
pub(crate) fn set_nested(root: &mut Map<String, Value>, target: &str, value: Value) {
    let parts: Vec<&str> = target.split('.').collect();
    if parts.len() >= 3 && parts[0] == "update" {
        let inner = if parts.len() > 3 {
            let mut m = Map::new();
            set_nested(&mut m, &parts[3..].join("."), value);
            Value::Object(m)
        } else {
            value
        };
        let update = root.entry("update").or_insert_with(|| json!({}));
        if let Some(u) = update.as_object_mut() {
            let ops = u.entry(parts[1]).or_insert_with(|| json!([]));
            if let Some(arr) = ops.as_array_mut() {
                arr.push(json!({ parts[2]: inner }));
            }
        }
        return;
    }
    let mut cur = root;
    for p in &parts[..parts.len() - 1] {
        let entry = cur.entry(*p).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        cur = match entry.as_object_mut() {
            Some(m) => m,
            None => return,
        };
    }
    cur.insert(parts[parts.len() - 1].to_owned(), value);
}

pub(crate) fn nested(fields: Vec<(String, Value)>) -> Value {
    let mut root = Map::new();
    for (t, v) in fields {
        set_nested(&mut root, &t, v);
    }
    Value::Object(root)
}

/// The key a planned user value sits under (`user: true` mappings); the
/// executor replaces it with the target system's id for the person
/// (`outbound::users`).
pub const USER_MARKER: &str = "$user";

/// The planned value of a user mapping into a target of `kind`.
pub fn user_marker(kind: crate::outbound::connections::ConnectionKind, from: Value) -> Value {
    let to = match kind {
        crate::outbound::connections::ConnectionKind::Jira => "jira",
        _ => "servicenow",
    };
    json!({ USER_MARKER: { "to": to, "from": from } })
}
