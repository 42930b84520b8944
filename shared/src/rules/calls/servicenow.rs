//! The calls a rule makes into ServiceNow's Table and Attachment APIs.

use crate::outbound::connections::Connection;
use crate::rules::model::{Action, Rule};
use crate::rules::plan::{Body, Method, OnEmpty, RunIf, Step};
use serde_json::Value;

use super::common::*;

pub(crate) fn servicenow_steps(
    rule: &Rule,
    conn: &Connection,
    via: Option<&Connection>,
    key: Option<&str>,
    mut fields: Vec<(String, Value)>,
    not_found: OnEmpty,
) -> Result<Vec<Step>, Stop> {
    let table = rule.table.as_deref().unwrap_or(&conn.table);
    let base = format!("/api/now/table/{table}");
    let corr_field = rule
        .correlate
        .as_ref()
        .map_or("correlation_id", |c| c.field.as_str());
    let key = key.ok_or("ServiceNow rules need a correlation key")?;
    let mut lookup = step("lookup", Method::Get, base.clone());
    lookup.query = vec![
        (
            "sysparm_query".into(),
            format!("{corr_field}={}", key.replace('^', "^^")),
        ),
        ("sysparm_fields".into(), "sys_id,number".into()),
        ("sysparm_limit".into(), "1".into()),
    ];
    lookup
        .extract
        .insert("sys_id".into(), "result[0].sys_id".into());
    lookup
        .extract
        .insert("number".into(), "result[0].number".into());
    lookup.on_empty = Some(not_found);
    let mut steps = vec![lookup];
    let record = format!("{base}/{{{{lookup.sys_id}}}}");
    let flat =
        |fields: Vec<(String, Value)>| -> Value { Value::Object(fields.into_iter().collect()) };
    match rule.action {
        Action::Create | Action::Upsert => {
            if !fields.iter().any(|(t, _)| t == corr_field) {
                fields.push((corr_field.to_owned(), Value::String(key.to_owned())));
            }
            // Who keeps this record in step, shown on the ServiceNow form.
            if corr_field == "correlation_id"
                && !fields.iter().any(|(t, _)| t == "correlation_display")
            {
                fields.push((
                    "correlation_display".into(),
                    Value::String("jira-relay".into()),
                ));
            }
            let body = flat(fields);
            if rule.action == Action::Upsert {
                let mut patch = step("update", Method::Patch, record);
                patch.run_if = RunIf::Found("lookup".into());
                patch.body = Body::Json { json: body.clone() };
                steps.push(patch);
            }
            let mut post = step("create", Method::Post, base);
            post.run_if = RunIf::NotFound("lookup".into());
            post.body = Body::Json { json: body };
            post.extract.insert("sys_id".into(), "result.sys_id".into());
            post.extract.insert("number".into(), "result.number".into());
            steps.push(post);
        }
        Action::Update | Action::Comment | Action::Transition => {
            if fields.is_empty() {
                return Err("nothing to update: every mapped field is empty in this event".into());
            }
            let mut patch = step("update", Method::Patch, record);
            patch.run_if = RunIf::Found("lookup".into());
            // A journal entry has no idempotency key: if the event comes back
            // after the entry was written but before the queue heard of it
            // (a crash, a lost acknowledgement), the same text would be
            // added twice. So a comment is written only if the record has no
            // entry of that field with exactly that text yet.
            let journal: Vec<(&str, String)> = fields
                .iter()
                .filter(|(t, _)| t == "comments" || t == "work_notes")
                .map(|(t, v)| (t.as_str(), text_of(v)))
                .collect();
            if rule.action == Action::Comment {
                if let [(field, text)] = journal.as_slice() {
                    let mut seen = step(
                        "seen",
                        Method::Get,
                        "/api/now/table/sys_journal_field".into(),
                    );
                    seen.run_if = RunIf::Found("lookup".into());
                    seen.query = vec![
                        (
                            "sysparm_query".into(),
                            format!(
                                "element_id={{{{lookup.sys_id}}}}^element={field}^value={}",
                                text.replace('^', "^^")
                            ),
                        ),
                        ("sysparm_fields".into(), "sys_id".into()),
                        ("sysparm_limit".into(), "1".into()),
                    ];
                    seen.extract
                        .insert("entry".into(), "result[0].sys_id".into());
                    seen.on_empty = Some(OnEmpty::Continue);
                    steps.push(seen);
                    patch.run_if = RunIf::NotFound("seen".into());
                }
            }
            patch.body = Body::Json { json: flat(fields) };
            steps.push(patch);
        }
        Action::Attach => {
            let size = take(&mut fields, "size").map(|v| text_of(&v));
            let body = download(&mut fields, via, false)?.map_err(|s| Stop::Skip(s.0))?;
            let file_name = match &body {
                Body::Download { file_name, .. } => file_name.clone(),
                _ => String::new(),
            };
            let mut post = step("attach", Method::Post, "/api/now/attachment/file".into());
            post.run_if = RunIf::Found("lookup".into());
            // With the size mapped, an attachment of the same name and size
            // already on the record is this one, written before a crash or a
            // lost acknowledgement: not uploaded again.
            if let Some(size) = size.filter(|s| s.parse::<u64>().is_ok()) {
                let mut seen = step("seen", Method::Get, "/api/now/attachment".into());
                seen.run_if = RunIf::Found("lookup".into());
                seen.query = vec![
                    (
                        "sysparm_query".into(),
                        format!(
                            "table_sys_id={{{{lookup.sys_id}}}}^file_name={}^size_bytes={size}",
                            file_name.replace('^', "^^")
                        ),
                    ),
                    ("sysparm_limit".into(), "1".into()),
                ];
                seen.extract
                    .insert("attachment".into(), "result[0].sys_id".into());
                seen.on_empty = Some(OnEmpty::Continue);
                steps.push(seen);
                post.run_if = RunIf::NotFound("seen".into());
            }
            post.query = vec![
                ("table_name".into(), table.to_owned()),
                ("table_sys_id".into(), "{{lookup.sys_id}}".into()),
                ("file_name".into(), file_name),
            ];
            post.body = body;
            steps.push(post);
        }
        Action::User | Action::GroupMember => {
            // The config check refuses these on ServiceNow connections.
            return Err(Stop::Error(
                "identity actions are for Jira Cloud; write sys_user with upsert or update"
                    .to_owned(),
            ));
        }
        Action::Delete => {
            let mut del = step("delete", Method::Delete, record);
            del.run_if = RunIf::Found("lookup".into());
            steps.push(del);
        }
    }
    Ok(steps)
}
