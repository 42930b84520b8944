//! The user sweep (`endpoints[].reconcile_users` of a ServiceNow endpoint):
//! ServiceNow's active members of each mapped group against the members of
//! the Jira group it maps to, and what differs queued as the events
//! ServiceNow would have sent.
//!
//! A membership event lost on the way (a business rule that did not fire, a
//! webhook refused for hours, a group changed by an import that skips
//! business rules) leaves a person in the wrong Jira groups with nothing to
//! heal it. The sweep reads both sides and compares by e-mail address
//! (case-insensitive):
//!
//! - the groups come from the `group_member` rule the section names: its
//!   `map.group` value table says which ServiceNow group feeds which Jira
//!   group (several ServiceNow groups may feed one);
//! - ServiceNow: `sys_user_group` by name, its `sys_user_grmember` rows, the
//!   active `sys_user`s among them;
//! - Jira: `GET /group/member?groupname=&includeInactiveUsers=false`, paged;
//! - **missing**: an active ServiceNow member with no Jira membership: a
//!   `sys_user.updated` (the joiner rule finds or creates the account) and a
//!   `sys_user_grmember.created` are queued, in that order, in the person's
//!   FIFO group;
//! - **extra**: a Jira member whose address belongs to a ServiceNow user
//!   who is not an active member of any ServiceNow group feeding that Jira
//!   group: a `sys_user_grmember.deleted` is queued (the rule that handles
//!   leaving a group applies it);
//! - **unmanaged**: a Jira member ServiceNow does not know (an admin, a
//!   service account, an address Jira hides): reported, never touched.
//!
//! The queued events carry `sys_updated_by: relay.reconcile` and go through
//! the whitelist and rules as the business rule's would; every write they
//! lead to reads before it writes, so a sweep that repeats changes nothing.
//! `apply: false` (the default) and `--dry-run` report and queue nothing:
//! the report is what an operator reads before turning it on. The section
//! itself is read in [`super::users_spec`].

use super::sweep::{answer, list_all, send, Reconciler, SweepError};
use super::users_spec::group_table;
use crate::config::model::SourceKind;
use crate::intake::envelope::{DeliveryHeaders, Envelope, Origin};
use crate::outbound::connections::JiraApi;
use crate::outbound::connector::{Budget, Call, CallBody, Connector};
use crate::queue::port::OutgoingMessage;
use crate::rules::model::Rule;
use crate::rules::plan::Method;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who the queued events say made the change (not the integration user,
/// so the echo guard lets them through).
pub const SWEEP_ACTOR: &str = "relay.reconcile";
/// Ids per `sys_idIN` / `emailIN` query.
const IN_CHUNK: usize = 100;
/// Members per Jira group page.
const JIRA_PAGE: usize = 50;

/// One Jira group compared with the ServiceNow groups that feed it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupDrift {
    pub jira_group: String,
    pub servicenow_groups: Vec<String>,
    /// Active ServiceNow members (with an address).
    pub expected: usize,
    /// Active Jira members.
    pub members: usize,
    /// Addresses to add.
    pub missing: Vec<String>,
    /// Addresses to remove.
    pub extra: Vec<String>,
    /// Jira members ServiceNow does not know (or whose address Jira hides):
    /// left alone.
    pub unmanaged: usize,
    /// Why nobody was taken out of this group (a feeding ServiceNow group
    /// ServiceNow does not have: its members are unknown, not absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removals_held: Option<String>,
}

/// What one user sweep found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UserSweepReport {
    pub dry_run: bool,
    pub groups: Vec<GroupDrift>,
    /// ServiceNow groups the table names that ServiceNow does not have.
    pub unknown_servicenow_groups: Vec<String>,
    /// Jira groups the table names that Jira does not have (not compared).
    pub unknown_jira_groups: Vec<String>,
    /// Active ServiceNow members without an e-mail address (cannot be matched).
    pub without_email: usize,
    pub enqueued: u64,
    pub already_queued: u64,
    pub servicenow_requests: u64,
    pub jira_requests: u64,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl UserSweepReport {
    pub fn drift(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.missing.len() + g.extra.len())
            .sum()
    }
}

/// A ServiceNow user as the sweep needs it.
#[derive(Clone, Debug)]
struct SnUser {
    sys_id: String,
    user_name: String,
    email: String,
    name: String,
    active: bool,
}

impl SnUser {
    fn from(v: &Value) -> Self {
        let s = |k: &str| text(&v[k]);
        SnUser {
            sys_id: s("sys_id"),
            user_name: s("user_name"),
            email: s("email"),
            name: s("name"),
            active: s("active") == "true",
        }
    }
}

/// A field as text: a string, a reference (`{value}`), a number or bool.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("value").map(text).unwrap_or_default(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

struct Reads<'a> {
    sn: &'a Arc<dyn Connector>,
    jira: &'a Arc<dyn Connector>,
    api: &'static str,
    budget: &'a Budget,
}

impl Reads<'_> {
    /// A GET whose 404 is an answer (`None`), not an error.
    async fn get_found(
        &self,
        conn: &Arc<dyn Connector>,
        path: &str,
        query: Vec<(String, String)>,
        counter: &mut u64,
    ) -> Result<Option<Value>, String> {
        let call = Call {
            method: Method::Get,
            once: false,
            path: path.to_owned(),
            query,
            headers: Vec::new(),
            body: CallBody::None,
        };
        let reply = send(conn, &call, self.budget, counter).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        answer(conn, &call, reply).map(Some)
    }

    /// Every row of a ServiceNow table query.
    async fn table(
        &self,
        table: &str,
        query: &str,
        fields: &str,
        counter: &mut u64,
    ) -> Result<Vec<Value>, String> {
        let path = format!("/api/now/table/{table}");
        list_all(self.sn, &path, query, fields, self.budget, counter).await
    }

    /// Users by a field's values (`sys_id` or `email`), in chunks.
    async fn users_by(
        &self,
        field: &str,
        values: &[String],
        counter: &mut u64,
    ) -> Result<Vec<SnUser>, String> {
        let mut out = Vec::new();
        for chunk in values.chunks(IN_CHUNK) {
            let q = format!("{field}IN{}", chunk.join(","));
            let rows = self
                .table(
                    "sys_user",
                    &q,
                    "sys_id,user_name,email,name,active",
                    counter,
                )
                .await?;
            out.extend(rows.iter().map(SnUser::from));
        }
        Ok(out)
    }

    /// The active members of a Jira group: (lowercased address or `None`
    /// when Jira hides it); `None` when the group does not exist.
    async fn jira_members(
        &self,
        group: &str,
        counter: &mut u64,
    ) -> Result<Option<Vec<Option<String>>>, String> {
        let mut out = Vec::new();
        loop {
            let q = vec![
                ("groupname".into(), group.to_owned()),
                ("includeInactiveUsers".into(), "false".into()),
                ("startAt".into(), out.len().to_string()),
                ("maxResults".into(), JIRA_PAGE.to_string()),
            ];
            let path = format!("{}/group/member", self.api);
            let Some(v) = self.get_found(self.jira, &path, q, counter).await? else {
                return Ok(None);
            };
            let page = v["values"].as_array().cloned().unwrap_or_default();
            let n = page.len();
            out.extend(page.iter().map(|m| {
                m["emailAddress"]
                    .as_str()
                    .filter(|e| e.contains('@'))
                    .map(str::to_lowercase)
            }));
            if n == 0 || v["isLast"].as_bool().unwrap_or(n < JIRA_PAGE) {
                return Ok(Some(out));
            }
        }
    }
}

impl Reconciler {
    /// Whether a run for `endpoint` (every endpoint: `None`) has issue
    /// sweeps to do; an endpoint in neither section is the issue sweep's
    /// to refuse.
    pub fn sweeps_issues(&self, endpoint: Option<&str>) -> bool {
        let config = self.config();
        match endpoint {
            None => !config.reconcile.is_empty(),
            Some(e) => config.reconcile.contains_key(e) || !config.reconcile_users.contains_key(e),
        }
    }

    /// The user sweeps of every endpoint with `reconcile_users:` (or only
    /// `endpoint`), one after another.
    pub async fn sweep_users_all(
        &self,
        endpoint: Option<&str>,
        dry_run: bool,
        budget: &Budget,
    ) -> Vec<(String, Result<UserSweepReport, SweepError>)> {
        let mut out = Vec::new();
        for name in self.config().reconcile_users.keys() {
            if endpoint.is_some_and(|e| e != name) {
                continue;
            }
            out.push((name.clone(), self.sweep_users(name, dry_run, budget).await));
        }
        out
    }

    /// One user sweep of a ServiceNow endpoint. Queues what differs when the
    /// section says `apply: true` and `dry_run` is false.
    pub async fn sweep_users(
        &self,
        endpoint: &str,
        dry_run: bool,
        budget: &Budget,
    ) -> Result<UserSweepReport, SweepError> {
        let started = Instant::now();
        let config = self.config();
        let spec = config
            .reconcile_users
            .get(endpoint)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let rule = config
            .rules
            .iter()
            .find(|r| r.name == spec.rule)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let connector = |name: &str| {
            self.connector(name)
                .ok_or_else(|| SweepError::NoConnector(name.to_owned()))
        };
        let sn = connector(&spec.connection)?;
        let jira = connector(&rule.to)?;
        let api = config
            .connection(&rule.to)
            .map_or(JiraApi::V3, |c| c.api)
            .prefix();
        let reads = Reads {
            sn: &sn,
            jira: &jira,
            api,
            budget,
        };
        let dry_run = dry_run || !spec.apply;
        let mut report = UserSweepReport {
            dry_run,
            ..UserSweepReport::default()
        };
        let result = self
            .compare_users(endpoint, rule, &reads, dry_run, &mut report)
            .await;
        report.duration = started.elapsed();
        let dims = [("Endpoint", endpoint)];
        match result {
            Ok(()) => {
                tracing::info!(
                    endpoint,
                    groups = report.groups.len(),
                    drift = report.drift(),
                    enqueued = report.enqueued,
                    already_queued = report.already_queued,
                    dry_run,
                    servicenow_requests = report.servicenow_requests,
                    jira_requests = report.jira_requests,
                    duration_ms = report.duration.as_millis() as u64,
                    outcome = "swept",
                    "user sweep"
                );
                if !dry_run {
                    crate::support::metrics::count_n(
                        "ReconcileDrift",
                        &dims,
                        report.drift() as u64,
                    );
                    crate::support::metrics::count_n("ReconcileEnqueued", &dims, report.enqueued);
                }
                Ok(report)
            }
            Err(why) => {
                tracing::warn!(endpoint, outcome = "stopped", reason = %why, "user sweep");
                crate::support::metrics::count("ReconcileFailed", &dims);
                Err(SweepError::Stopped(why))
            }
        }
    }

    async fn compare_users(
        &self,
        endpoint: &str,
        rule: &Rule,
        reads: &Reads<'_>,
        dry_run: bool,
        report: &mut UserSweepReport,
    ) -> Result<(), String> {
        let table = group_table(rule);
        // The members (user sys_ids) of each ServiceNow group.
        let mut member_ids: BTreeMap<&String, BTreeSet<String>> = BTreeMap::new();
        let mut n_sn = 0;
        for group in table.keys() {
            let found = reads
                .table(
                    "sys_user_group",
                    &format!("name={group}"),
                    "sys_id,name",
                    &mut n_sn,
                )
                .await?;
            let Some(gid) = found.first().map(|g| text(&g["sys_id"])) else {
                report.unknown_servicenow_groups.push(group.clone());
                continue;
            };
            let rows = reads
                .table(
                    "sys_user_grmember",
                    &format!("group={gid}"),
                    "sys_id,user",
                    &mut n_sn,
                )
                .await?;
            let ids = rows
                .iter()
                .map(|r| text(&r["user"]))
                .filter(|s| !s.is_empty())
                .collect();
            member_ids.insert(group, ids);
        }
        // Each person read once, however many groups they are in.
        let everyone: Vec<String> = member_ids
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let users: BTreeMap<String, SnUser> = reads
            .users_by("sys_id", &everyone, &mut n_sn)
            .await?
            .into_iter()
            .filter(|u| u.active)
            .map(|u| (u.sys_id.clone(), u))
            .collect();
        report.without_email = users.values().filter(|u| !u.email.contains('@')).count();
        // Active ServiceNow members by address, per ServiceNow group.
        let sn_members: BTreeMap<String, BTreeMap<String, SnUser>> = member_ids
            .into_iter()
            .map(|(group, ids)| {
                let by_email = ids
                    .iter()
                    .filter_map(|id| users.get(id))
                    .filter(|u| u.email.contains('@'))
                    .map(|u| (u.email.to_lowercase(), u.clone()))
                    .collect();
                (group.clone(), by_email)
            })
            .collect();
        // Jira group → the ServiceNow groups feeding it.
        let mut feeds: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (sn_group, jira_groups) in &table {
            for j in jira_groups {
                feeds.entry(j.clone()).or_default().push(sn_group.clone());
            }
        }
        let mut n_jira = 0;
        let mut to_queue: Vec<(SnUser, &'static str, String)> = Vec::new();
        for (jira_group, sn_groups) in &feeds {
            let mut expected: BTreeMap<String, (SnUser, String)> = BTreeMap::new();
            for g in sn_groups {
                for (email, u) in sn_members.get(g).into_iter().flatten() {
                    expected
                        .entry(email.clone())
                        .or_insert_with(|| (u.clone(), g.clone()));
                }
            }
            let Some(members) = reads.jira_members(jira_group, &mut n_jira).await? else {
                // Nothing can be added to a group that is not there: said,
                // and the other groups are still compared.
                report.unknown_jira_groups.push(jira_group.clone());
                continue;
            };
            let mut drift = GroupDrift {
                jira_group: jira_group.clone(),
                servicenow_groups: sn_groups.clone(),
                expected: expected.len(),
                members: members.len(),
                ..GroupDrift::default()
            };
            let present: BTreeSet<&String> = members.iter().flatten().collect();
            drift.unmanaged = members.iter().filter(|m| m.is_none()).count();
            for (email, (u, g)) in &expected {
                if !present.contains(email) {
                    drift.missing.push(email.clone());
                    to_queue.push((u.clone(), "sys_user.updated", String::new()));
                    to_queue.push((u.clone(), "sys_user_grmember.created", g.clone()));
                }
            }
            let unknown: Vec<&String> = sn_groups
                .iter()
                .filter(|g| report.unknown_servicenow_groups.contains(g))
                .collect();
            let candidates: Vec<String> = if unknown.is_empty() {
                present
                    .iter()
                    .filter(|e| !expected.contains_key(**e))
                    .map(|e| (*e).clone())
                    .collect()
            } else {
                // A misspelt group would otherwise empty the Jira group.
                drift.removals_held = Some(format!(
                    "ServiceNow has no group {}: nobody is taken out of {jira_group}",
                    unknown
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                Vec::new()
            };
            // Only people ServiceNow knows are taken out; the rest is not
            // ServiceNow's business.
            let known = reads.users_by("email", &candidates, &mut n_sn).await?;
            let known: BTreeMap<String, SnUser> = known
                .into_iter()
                .map(|u| (u.email.to_lowercase(), u))
                .collect();
            // Leaving through a group that feeds only this Jira group, where
            // there is one, so the removal touches nothing else.
            let via = sn_groups
                .iter()
                .find(|g| table.get(*g).is_some_and(|j| j.len() == 1))
                .unwrap_or(&sn_groups[0])
                .clone();
            for email in candidates {
                match known.get(&email) {
                    Some(u) => {
                        drift.extra.push(email);
                        to_queue.push((u.clone(), "sys_user_grmember.deleted", via.clone()));
                    }
                    None => drift.unmanaged += 1,
                }
            }
            report.groups.push(drift);
        }
        report.servicenow_requests = n_sn;
        report.jira_requests = n_jira;
        if dry_run {
            return Ok(());
        }
        let stamp = self.now().strftime("%Y-%m-%d %H:%M:%S").to_string();
        let minute = &stamp[..16];
        for (u, event, group) in to_queue {
            let mut body = json!({
                "event": event, "sys_id": u.sys_id, "user_name": u.user_name,
                "email": u.email, "name": u.name,
                "active": if u.active { "true" } else { "false" },
                "sys_updated_by": SWEEP_ACTOR, "sys_updated_on": stamp,
            });
            if event == "sys_user.updated" {
                body["changes"] = json!([]);
            } else {
                body["group"] = Value::String(group.clone());
                body["membership"] = Value::String(format!("reconcile:{group}"));
            }
            let id = format!("reconcile:users:{event}:{}:{group}:{minute}", u.sys_id);
            let duplicate = self.enqueue_users(endpoint, &body, id).await?;
            if duplicate {
                report.already_queued += 1;
            } else {
                report.enqueued += 1;
            }
        }
        Ok(())
    }

    async fn enqueue_users(
        &self,
        endpoint: &str,
        body: &Value,
        delivery_id: String,
    ) -> Result<bool, String> {
        let text = body.to_string();
        let mut env = Envelope::build(
            endpoint,
            SourceKind::Servicenow,
            text.as_bytes(),
            &DeliveryHeaders::default(),
            self.now(),
        )
        .map_err(|e| format!("user sweep event: {e}"))?;
        env.origin = Origin::Reconcile;
        env.delivery_id = delivery_id;
        let mut message = OutgoingMessage::of(&env);
        message.attributes.push(("origin", "reconcile".to_owned()));
        let receipt = self
            .queue()
            .send(message)
            .await
            .map_err(|e| format!("queue: {e}"))?;
        tracing::info!(
            endpoint,
            event = %env.event,
            delivery_id = %env.delivery_id,
            message_id = %receipt.message_id,
            origin = "reconcile",
            outcome = if receipt.duplicate { "duplicate" } else { "enqueued" },
            "user sweep envelope"
        );
        Ok(receipt.duplicate)
    }
}
