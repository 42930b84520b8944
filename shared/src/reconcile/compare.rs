//! One page of a sweep: each issue turned into the webhooks Jira would have
//! sent, planned by the rules, compared with the paired record, and the
//! drift enqueued.

use crate::config::model::SourceKind;
use crate::intake::envelope::{DeliveryHeaders, Envelope, Origin};
use crate::queue::port::OutgoingMessage;
use crate::rules::context::Context;
use crate::rules::engine::plan_event;
use crate::rules::model::{Action, Rule, Source};
use crate::rules::path::as_text;
use crate::rules::plan::{Body, Decision, Method, Plan, RuleStatus};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};

use super::sweep::*;

/// The synthesised events of one issue, planned.
struct IssueEvents {
    id: String,
    key: String,
    corr: String,
    created: (Value, Plan),
    updated: (Value, Plan),
    comments: Vec<(String, Value, Plan)>,
    attachments: Vec<(String, Value, Plan)>,
    /// Created by the integration user (the echo guard drops its create): an
    /// issue born on the other side. Paired (`pair_back`), its comments and
    /// attachments are compared; its fields are not (the other side owns
    /// them), and no record is ever created for it.
    echo_born: bool,
}

/// The paired record and what it holds.
#[derive(Default)]
struct Record {
    sys_id: String,
    fields: Map<String, Value>,
    journal: HashSet<(String, String)>,
    files: Vec<(String, Option<u64>)>,
}

impl Sweep<'_> {
    fn plan(&self, event: &str, event_type: Option<&str>, payload: &Value) -> Option<Plan> {
        plan_event(self.config, self.ep, event, event_type, payload).ok()
    }

    /// The payloads Jira would have sent for this issue, planned.
    fn events(&self, issue: &Value, comments: Vec<Value>) -> Option<IssueEvents> {
        // Comments and worklogs travel as events of their own; inside the
        // issue they would only make every envelope of a busy issue large.
        let mut issue = issue.clone();
        if let Some(f) = issue.get_mut("fields").and_then(Value::as_object_mut) {
            f.remove("comment");
            f.remove("worklog");
        }
        let issue = &issue;
        let id = issue["id"].as_str()?.to_owned();
        let key = issue["key"].as_str().unwrap_or_default().to_owned();
        let fields = &issue["fields"];
        let updated = fields["updated"].as_str().unwrap_or_default().to_owned();
        let ms = |v: &Value| {
            crate::support::timefmt::parse_value(v)
                .map(|t| t.as_millisecond())
                .unwrap_or_default()
        };
        let creator = fields
            .get("creator")
            .filter(|v| v.is_object())
            .or_else(|| fields.get("reporter").filter(|v| v.is_object()));
        let mut created = json!({
            "timestamp": ms(&fields["created"]),
            "webhookEvent": "jira:issue_created",
            "issue_event_type_name": "issue_created",
            "issue": issue,
        });
        if let Some(c) = creator {
            created["user"] = c.clone();
        }
        let items: Vec<Value> = self
            .watched
            .iter()
            .filter_map(|f| changelog_item(issue, f))
            .collect();
        let updated_payload = json!({
            "timestamp": ms(&fields["updated"]),
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_updated",
            "issue": issue,
            "changelog": {"id": restated_id(&updated, fields), "items": items},
        });
        let created_plan = self.plan("jira:issue_created", Some("issue_created"), &created)?;
        let ctx = Context::new(&created, "jira:issue_created", SourceKind::Jira);
        let corr = self
            .pair
            .correlate
            .as_ref()?
            .key
            .render(&ctx)
            .ok()
            .map(|v| as_text(&v).into_owned())
            .filter(|s| !s.is_empty())?;
        let updated_plan = self.plan(
            "jira:issue_updated",
            Some("issue_updated"),
            &updated_payload,
        )?;
        let head = json!({"id": id, "key": key, "self": issue["self"], "fields": fields});
        // `comment_created` / `attachment_created` for one child of the issue.
        let child = |event: &str, field: &str, c: Value| {
            let cid = as_text(&c["id"]).into_owned();
            let p = json!({
                "timestamp": ms(&c["created"]),
                "webhookEvent": event,
                field: c,
                "issue": head,
            });
            let plan = self.plan(event, None, &p)?;
            Some((cid, p, plan))
        };
        let comments = comments
            .into_iter()
            .filter_map(|c| child("comment_created", "comment", c))
            .collect();
        let attachments = fields["attachment"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| child("attachment_created", "attachment", a.clone()))
            .collect();
        let echo_born = matches!(created_plan.decision, Decision::Filtered { .. });
        Some(IssueEvents {
            echo_born,
            id,
            key,
            corr,
            created: (created, created_plan),
            updated: (updated_payload, updated_plan),
            comments,
            attachments,
        })
    }

    /// Compares one page of issues with their records and enqueues the drift.
    pub(super) async fn page(
        &self,
        issues: &[Value],
        report: &mut SweepReport,
    ) -> Result<(), String> {
        let mut work = Vec::new();
        for issue in issues {
            let comments = self.comments(issue, report).await?;
            match self.events(issue, comments) {
                Some(ev) => work.push(ev),
                None => report.not_synced += 1,
            }
        }
        if work.is_empty() {
            return Ok(());
        }
        let compared = self.compared_fields(&work);
        let mut records = self.records(&work, &compared, report).await?;
        let want_journal = work.iter().any(|w| !w.comments.is_empty());
        let want_files = work.iter().any(|w| !w.attachments.is_empty());
        self.record_details(&mut records, want_journal, want_files, report)
            .await?;
        for ev in &work {
            // Born on the other side and not paired (yet): not ours to sync.
            if ev.echo_born && !records.contains_key(&ev.corr) {
                report.not_synced += 1;
                continue;
            }
            let (drift, send) = self.diff(ev, records.get(&ev.corr));
            report.drift.extend(drift);
            for (payload, event) in send {
                self.enqueue(ev, &payload, event, report).await?;
            }
        }
        Ok(())
    }

    /// Target fields the update plans write to the record (compared).
    fn compared_fields(&self, work: &[IssueEvents]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for ev in work {
            for (field, _) in self.planned_fields(&ev.updated.1) {
                out.insert(field);
            }
        }
        out
    }

    /// (field, value) that the plan's ready update rules into the paired
    /// connection write, without fields mapped from the actor.
    fn planned_fields(&self, plan: &Plan) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for rp in &plan.rules {
            if rp.connection != self.pair.to
                || rp.status != RuleStatus::Ready
                || !matches!(
                    rp.action,
                    Action::Update | Action::Upsert | Action::Transition
                )
            {
                continue;
            }
            let Some(rule) = self.config.rules.iter().find(|r| r.name == rp.rule) else {
                continue;
            };
            for step in &rp.steps {
                if step.method != Method::Patch {
                    continue;
                }
                if let Body::Json {
                    json: Value::Object(m),
                } = &step.body
                {
                    for (k, v) in m {
                        if !from_actor(rule, k) {
                            out.push((k.clone(), as_text(v).into_owned()));
                        }
                    }
                }
            }
        }
        out
    }

    /// The paired records of a page, by correlation value: one list request
    /// (`<field>IN<a>,<b>,…`) per page where the values allow it.
    async fn records(
        &self,
        work: &[IssueEvents],
        compared: &BTreeSet<String>,
        report: &mut SweepReport,
    ) -> Result<HashMap<String, Record>, String> {
        let mut fields: Vec<String> = vec!["sys_id".into(), self.corr_field.clone()];
        fields.extend(compared.iter().cloned());
        let fields = fields.join(",");
        let (batch, single): (Vec<&str>, Vec<&str>) = work
            .iter()
            .map(|w| w.corr.as_str())
            .partition(|c| !c.contains([',', '^']));
        let mut queries: Vec<String> = Vec::new();
        if !batch.is_empty() {
            queries.push(format!("{}IN{}", self.corr_field, batch.join(",")));
        }
        for s in single {
            queries.push(format!("{}={}", self.corr_field, s.replace('^', "^^")));
        }
        let mut out = HashMap::new();
        for q in queries {
            let rows = self
                .list(
                    &format!("/api/now/table/{}", self.table),
                    &q,
                    &fields,
                    report,
                )
                .await?;
            for row in rows {
                let Value::Object(m) = row else { continue };
                let corr = m
                    .get(&self.corr_field)
                    .map(|v| as_text(v).into_owned())
                    .unwrap_or_default();
                let sys_id = m
                    .get("sys_id")
                    .map(|v| as_text(v).into_owned())
                    .unwrap_or_default();
                // The first record wins, as the worker's lookup (limit 1).
                out.entry(corr).or_insert(Record {
                    sys_id,
                    fields: m,
                    ..Record::default()
                });
            }
        }
        Ok(out)
    }

    /// A ServiceNow list of the target read to the end.
    async fn list(
        &self,
        path: &str,
        query: &str,
        fields: &str,
        report: &mut SweepReport,
    ) -> Result<Vec<Value>, String> {
        list_all(
            &self.target,
            path,
            query,
            fields,
            self.budget,
            &mut report.target_requests,
        )
        .await
    }

    /// Journal entries and attachments of the found records.
    async fn record_details(
        &self,
        records: &mut HashMap<String, Record>,
        journal: bool,
        files: bool,
        report: &mut SweepReport,
    ) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let mut by_id: HashMap<String, String> = HashMap::new();
        for (corr, r) in records.iter() {
            by_id.insert(r.sys_id.clone(), corr.clone());
        }
        let ids: Vec<&str> = by_id.keys().map(String::as_str).collect();
        let ids = ids.join(",");
        if journal {
            let rows = self
                .list(
                    "/api/now/table/sys_journal_field",
                    &format!("element_idIN{ids}^elementINcomments,work_notes"),
                    "element_id,element,value",
                    report,
                )
                .await?;
            for row in rows {
                let s = |k: &str| as_text(&row[k]).into_owned();
                if let Some(r) = by_id.get(&s("element_id")).and_then(|c| records.get_mut(c)) {
                    r.journal.insert((s("element"), s("value")));
                }
            }
        }
        if files {
            let rows = self
                .list(
                    "/api/now/attachment",
                    &format!("table_sys_idIN{ids}"),
                    "table_sys_id,file_name,size_bytes",
                    report,
                )
                .await?;
            for row in rows {
                let s = |k: &str| as_text(&row[k]).into_owned();
                if let Some(r) = by_id
                    .get(&s("table_sys_id"))
                    .and_then(|c| records.get_mut(c))
                {
                    r.files
                        .push((s("file_name"), s("size_bytes").parse::<u64>().ok()));
                }
            }
        }
        Ok(())
    }

    /// The drift of one issue and the payloads to enqueue, in order.
    fn diff(
        &self,
        ev: &IssueEvents,
        record: Option<&Record>,
    ) -> (Vec<Drift>, Vec<(Value, &'static str)>) {
        let drift = |kind| Drift {
            key: ev.key.clone(),
            issue_id: ev.id.clone(),
            kind,
        };
        let ready = |p: &Plan| {
            matches!(p.decision, Decision::Matched { .. })
                && p.rules.iter().any(|r| r.status == RuleStatus::Ready)
        };
        let Some(record) = record else {
            if !ready(&ev.created.1) {
                return (Vec::new(), Vec::new());
            }
            let mut send = vec![(ev.created.0.clone(), "jira:issue_created")];
            if ready(&ev.updated.1) {
                send.push((ev.updated.0.clone(), "jira:issue_updated"));
            }
            send.extend(
                ev.comments
                    .iter()
                    .filter(|c| ready(&c.2))
                    .map(|c| (c.1.clone(), "comment_created")),
            );
            send.extend(
                ev.attachments
                    .iter()
                    .filter(|a| ready(&a.2))
                    .map(|a| (a.1.clone(), "attachment_created")),
            );
            return (vec![drift(DriftKind::Missing)], send);
        };
        let mut out = Vec::new();
        let mut send = Vec::new();
        // The record is there; does the issue know it?
        if let Some(field) = &self.pair_back {
            let held = &ev.created.0["issue"]["fields"][field.as_str()];
            if !ev.echo_born
                && ready(&ev.created.1)
                && (held.is_null() || as_text(held).trim().is_empty())
            {
                out.push(drift(DriftKind::Unpaired {
                    field: field.clone(),
                }));
                send.push((ev.created.0.clone(), "jira:issue_created"));
            }
        }
        let planned = if ev.echo_born {
            Vec::new()
        } else {
            self.planned_fields(&ev.updated.1)
        };
        let diffs: Vec<FieldDiff> = planned
            .into_iter()
            .filter_map(|(field, jira)| {
                let target = record
                    .fields
                    .get(&field)
                    .map(|v| as_text(v).into_owned())
                    .unwrap_or_default();
                (!same_text(&target, &jira)).then_some(FieldDiff {
                    field,
                    jira,
                    target,
                })
            })
            .collect();
        if !diffs.is_empty() {
            out.push(drift(DriftKind::Fields { fields: diffs }));
            send.push((ev.updated.0.clone(), "jira:issue_updated"));
        }
        for (cid, payload, plan) in &ev.comments {
            let entries = self.planned_journal(plan);
            if entries.is_empty() {
                continue;
            }
            let missing = entries.iter().any(|(field, text)| {
                !record
                    .journal
                    .iter()
                    .any(|(f, t)| f == field && same_text(t, text))
            });
            if missing {
                out.push(drift(DriftKind::Comment {
                    comment_id: cid.clone(),
                }));
                send.push((payload.clone(), "comment_created"));
            }
        }
        for (aid, payload, plan) in &ev.attachments {
            let Some(name) = self.planned_file(plan) else {
                continue;
            };
            let size = payload["attachment"]["size"].as_u64();
            let have = record.files.iter().any(|(n, s)| {
                *n == name
                    && match (size, s) {
                        (Some(a), Some(b)) => a == *b,
                        _ => true,
                    }
            });
            if !have {
                out.push(drift(DriftKind::Attachment {
                    attachment_id: aid.clone(),
                    file_name: name,
                }));
                send.push((payload.clone(), "attachment_created"));
            }
        }
        (out, send)
    }

    /// (journal field, text) the plan's ready comment rules write.
    fn planned_journal(&self, plan: &Plan) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for rp in &plan.rules {
            if rp.connection != self.pair.to
                || rp.status != RuleStatus::Ready
                || rp.action != Action::Comment
            {
                continue;
            }
            for step in &rp.steps {
                if let (
                    Method::Patch,
                    Body::Json {
                        json: Value::Object(m),
                    },
                ) = (step.method, &step.body)
                {
                    for f in ["comments", "work_notes"] {
                        if let Some(v) = m.get(f) {
                            out.push((f.to_owned(), as_text(v).into_owned()));
                        }
                    }
                }
            }
        }
        out
    }

    /// The file name the plan's ready attach rule uploads.
    fn planned_file(&self, plan: &Plan) -> Option<String> {
        plan.rules
            .iter()
            .filter(|rp| {
                rp.connection == self.pair.to
                    && rp.status == RuleStatus::Ready
                    && rp.action == Action::Attach
            })
            .flat_map(|rp| rp.steps.iter())
            .find_map(|s| match &s.body {
                Body::Download { file_name, .. } => Some(file_name.clone()),
                _ => None,
            })
    }

    async fn enqueue(
        &self,
        ev: &IssueEvents,
        payload: &Value,
        event: &str,
        report: &mut SweepReport,
    ) -> Result<(), String> {
        if self.dry_run {
            return Ok(());
        }
        let body = payload.to_string();
        if body.len() > self.config.limits.max_body_bytes {
            // The intake would refuse this as a webhook (413); the queue
            // would too. Reported, not queued; the sweep goes on.
            report.too_large += 1;
            tracing::warn!(
                endpoint = %self.ep.name,
                event,
                source_key = %ev.key,
                bytes = body.len(),
                limit = self.config.limits.max_body_bytes,
                outcome = "too_large",
                "reconcile envelope not queued: payload over limits.max_body_bytes"
            );
            return Ok(());
        }
        let mut env = Envelope::build(
            &self.ep.name,
            SourceKind::Jira,
            body.as_bytes(),
            &DeliveryHeaders::default(),
            self.clock.now(),
        )
        .map_err(|e| format!("{event} of {}: {e}", ev.key))?;
        env.origin = Origin::Reconcile;
        // Deterministic, readable, and the same for every sweep that sees
        // this change.
        env.delivery_id = format!(
            "reconcile:{}",
            env.change_id.as_deref().unwrap_or(&env.delivery_id)
        );
        let mut message = OutgoingMessage::of(&env);
        message.attributes.push(("origin", "reconcile".to_owned()));
        let receipt = self
            .queue
            .send(message)
            .await
            .map_err(|e| format!("queue: {e}"))?;
        if receipt.duplicate {
            report.already_queued += 1;
        } else {
            report.enqueued += 1;
        }
        tracing::info!(
            endpoint = %env.endpoint,
            event = %env.event,
            delivery_id = %env.delivery_id,
            source_key = %ev.key,
            message_id = %receipt.message_id,
            origin = "reconcile",
            outcome = if receipt.duplicate { "duplicate" } else { "enqueued" },
            "reconcile envelope"
        );
        Ok(())
    }
}

/// The id of a restating changelog: the issue's `updated` stamp and a digest
/// of its fields, so every sweep that sees the issue unchanged makes the same
/// envelope (deduplicated), and any change makes a new one, even one that
/// left `updated` alone.
fn restated_id(updated: &str, fields: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(fields.to_string().as_bytes());
    format!("reconcile-{updated}-{}", &hex::encode(digest)[..12])
}

/// A field mapped from who made the change.
fn from_actor(rule: &Rule, target: &str) -> bool {
    let Some((_, m)) = rule.map.iter().find(|(t, _)| t == target) else {
        return false;
    };
    let actorish = |p: &crate::rules::path::Path| matches!(p.head(), Some("actor" | "user"));
    match &m.source {
        Source::Path(p) => actorish(p),
        Source::Template(t) => t.paths().any(actorish),
        Source::Const(_) => false,
    }
}

/// Equal up to surrounding white space and line-ending style (ServiceNow
/// stores `\r\n`, trims journal entries).
fn same_text(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace("\r\n", "\n").trim().to_owned();
    norm(a) == norm(b)
}

/// A changelog item restating `field`'s current value, as Jira writes them
/// (`field`, `fieldtype`, `from`/`fromString`, `to`/`toString`).
fn changelog_item(issue: &Value, field: &str) -> Option<Value> {
    let (name, value) = match field {
        "key" => ("Key", issue.get("key")?.clone()),
        _ => {
            let fields = issue.get("fields")?.as_object()?;
            let (k, v) = fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(field))?;
            (k.as_str(), v.clone())
        }
    };
    if value.is_null() {
        return None;
    }
    let (to, to_string) = match &value {
        Value::Object(o) => {
            let text = ["name", "value", "displayName", "key"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .unwrap_or_default()
                .to_owned();
            let id = o
                .get("id")
                .or_else(|| o.get("accountId"))
                .map(|v| as_text(v).into_owned());
            (id, text)
        }
        other => (None, as_text(other).into_owned()),
    };
    Some(json!({
        "field": name,
        "fieldtype": "jira",
        "fieldId": name,
        "from": null,
        "fromString": null,
        "to": to,
        "toString": to_string,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_items_restate_current_values() {
        let issue = json!({"key": "SUP-1", "fields": {
            "status": {"name": "In Progress", "id": "3"},
            "resolution": null,
            "summary": "s"}});
        let s = changelog_item(&issue, "status").unwrap();
        assert_eq!(s["field"], "status");
        assert_eq!(s["toString"], "In Progress");
        assert_eq!(s["to"], "3");
        assert!(changelog_item(&issue, "resolution").is_none());
        assert_eq!(changelog_item(&issue, "key").unwrap()["toString"], "SUP-1");
        assert_eq!(changelog_item(&issue, "summary").unwrap()["toString"], "s");
    }

    #[test]
    fn text_comparison_ignores_line_endings_and_edges() {
        assert!(same_text("a\r\nb ", "a\nb"));
        assert!(!same_text("a b", "ab"));
    }
}
