//! Reconciliation: the sweep that finds what webhooks never delivered.
//!
//! Jira gives up on a webhook after a few retries, never retries a 4xx, and
//! promises no order; an update that never arrived is simply missing on the
//! other side. A sweep asks Jira for the issues of an endpoint updated since
//! the last finished sweep, compares each with its paired ServiceNow record,
//! and enqueues an envelope (`origin: reconcile`) for whatever is missing or
//! behind. The worker then applies those envelopes exactly like webhooks:
//! same whitelist, same rules, same idempotent writes.
//!
//! How an issue is compared, without any state of our own:
//!
//! 1. The issue (all fields, from Jira's search) is turned into the webhook
//!    payloads Jira would have sent: `jira:issue_created` (the user is the
//!    issue's creator, so the echo guard drops issues the integration user
//!    created, as it drops their webhooks), `jira:issue_updated` with a
//!    changelog that restates every field the endpoint's rules watch with
//!    `changed:` (`status`, `resolution`, …) at its current value,
//!    `comment_created` per comment and `attachment_created` per attachment.
//! 2. Each payload is planned by the rules engine, as the worker would.
//! 3. The plans are compared with the record found by the pairing rule's
//!    `correlate` (the first create rule of the endpoint into ServiceNow):
//!    no record → `missing` (the create, the update, every comment and
//!    attachment are enqueued, in that order, in the issue's FIFO group);
//!    a planned field whose value differs from the record's → `fields`
//!    (the update is enqueued); a planned journal entry the record does not
//!    have (same field, same text) → `comment`; a planned attachment whose
//!    name (and size) the record does not have → `attachment`.
//!    Fields mapped from who made a change (`actor.*`, `user.*`) are not
//!    compared: a sweep cannot know who made a change it never heard of.
//!
//! Identity: each synthesised payload carries the ids Jira's own would (the
//! issue id, the comment id, the attachment id; the restated changelog gets
//! the id `reconcile-<updated>-<digest of the fields>`), so its envelope's change id — and hence its
//! queue deduplication id — equals the webhook's for the same change
//! ([`crate::intake::envelope::Envelope::change_id`]). Past the dedup window the
//! writes themselves are idempotent (lookup-then-create, PATCH to the same
//! values, journal and attachment checks).
//!
//! Window and resumption: the JQL is the endpoint's filter plus
//! `updated >= "-<N>m"`, a relative date (Jira reads absolute JQL dates in
//! the searching user's time zone; a relative one has no zone), ordered by
//! `created, key` so that issues updated while the sweep pages do not move
//! between pages. After every page the sweep records how far it got
//! ([`Progress`]: the window's start and the creation time of the last
//! issue done); a sweep that stops (deadline, Jira or ServiceNow down, the
//! queue refusing) is resumed from there by the next run. Only a finished
//! sweep moves the watermark (to its own start time); the next sweep starts
//! `overlap` before it. Two sweeps of one endpoint never run at once: the
//! store's lease (and on AWS the function's reserved concurrency of 1).

use super::spec::ReconcileSpec;
use super::store::{Progress, StoreError, Watermark, WatermarkStore};
use crate::config::model::{Endpoint, SourceKind};
use crate::config::Config;
use crate::intake::envelope::{DeliveryHeaders, Envelope, Origin};
use crate::outbound::connector::{Budget, Call, CallBody, CallError, Connector};
use crate::outbound::executor::Connectors;
use crate::queue::port::{OutgoingMessage, Queue};
use crate::rules::context::Context;
use crate::rules::engine::plan_event;
use crate::rules::model::{Action, Condition, Rule, Source};
use crate::rules::path::as_text;
use crate::rules::plan::{Body, Decision, Method, Plan, RuleStatus};
use crate::support::clock::Clock;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// A sweep does not start a page with less time than this left.
const MIN_PAGE_TIME: Duration = Duration::from_secs(20);
/// Journal entries and attachments per ServiceNow list request.
const LIST_LIMIT: usize = 1000;

/// What a sweep is asked to do.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Scan from here instead of the watermark (a hand run).
    pub since: Option<jiff::Timestamp>,
    /// Compare and report, enqueue nothing, store nothing.
    pub dry_run: bool,
    /// Only this endpoint (default: every endpoint with `reconcile:`).
    pub endpoint: Option<String>,
    /// Who holds the lease (a request id, a host name + pid).
    pub owner: String,
}

/// One difference between Jira and the paired record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub key: String,
    pub issue_id: String,
    #[serde(flatten)]
    pub kind: DriftKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum DriftKind {
    /// No record is paired with the issue.
    Missing,
    /// The record's values differ from what the rules make of the issue.
    Fields { fields: Vec<FieldDiff> },
    /// A comment the record has no journal entry for.
    Comment { comment_id: String },
    /// An attachment the record does not have.
    Attachment {
        attachment_id: String,
        file_name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    /// What the rules make of the issue.
    pub jira: String,
    /// What the record holds.
    pub target: String,
}

/// What one sweep of one endpoint did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepReport {
    /// Start of the scanned window (`updated >=`).
    pub from: Option<jiff::Timestamp>,
    pub started_at: Option<jiff::Timestamp>,
    /// Continued an unfinished sweep.
    pub resumed: bool,
    pub dry_run: bool,
    pub pages: u64,
    pub scanned: u64,
    /// Issues the echo guard or the rules leave alone (e.g. created by the
    /// integration user).
    pub not_synced: u64,
    pub drift: Vec<Drift>,
    pub enqueued: u64,
    /// Envelopes the queue already held (same change within the dedup window).
    pub already_queued: u64,
    /// Payloads over `limits.max_body_bytes`, reported and not queued.
    pub too_large: u64,
    /// The whole window was scanned (the watermark moved).
    pub complete: bool,
    /// Why the sweep stopped before the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub jira_requests: u64,
    pub target_requests: u64,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Why a sweep did not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("another sweep of `{0}` holds the lease")]
    Busy(String),
    #[error("endpoint `{0}` has no `reconcile:` section")]
    NotConfigured(String),
    #[error("connection `{0}` is not configured")]
    NoConnector(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result for one endpoint.
#[derive(Debug)]
pub struct SweepResult {
    pub endpoint: String,
    pub outcome: Result<SweepReport, SweepError>,
}

/// Runs sweeps; built once per process.
pub struct Reconciler {
    config: Arc<Config>,
    connectors: Connectors,
    queue: Arc<dyn Queue>,
    store: Arc<dyn WatermarkStore>,
    clock: Arc<dyn Clock>,
    /// How long a sweep's lease lasts (renewed after every page).
    pub lease: Duration,
}

impl Reconciler {
    pub fn new(
        config: Arc<Config>,
        connectors: Connectors,
        queue: Arc<dyn Queue>,
        store: Arc<dyn WatermarkStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            connectors,
            queue,
            store,
            clock,
            lease: Duration::from_secs(15 * 60),
        }
    }

    /// Sweeps every endpoint with a `reconcile:` section, or only
    /// `opts.endpoint`, one after another.
    pub async fn sweep_all(&self, opts: &SweepOptions, budget: &Budget) -> Vec<SweepResult> {
        let names: Vec<String> = match &opts.endpoint {
            Some(e) => vec![e.clone()],
            None => self.config.reconcile.keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let outcome = self.sweep(&name, opts, budget).await;
            let dims = [("Endpoint", name.as_str())];
            match &outcome {
                Ok(r) => {
                    tracing::info!(
                        endpoint = %name,
                        scanned = r.scanned,
                        drift = r.drift.len(),
                        enqueued = r.enqueued,
                        already_queued = r.already_queued,
                        complete = r.complete,
                        resumed = r.resumed,
                        dry_run = r.dry_run,
                        stopped = r.stopped.as_deref().unwrap_or(""),
                        jira_requests = r.jira_requests,
                        target_requests = r.target_requests,
                        duration_ms = r.duration.as_millis() as u64,
                        outcome = if r.complete { "swept" } else { "stopped" },
                        "reconcile sweep"
                    );
                    if !r.dry_run {
                        crate::support::metrics::count_n("ReconcileScanned", &dims, r.scanned);
                        crate::support::metrics::count_n(
                            "ReconcileDrift",
                            &dims,
                            r.drift.len() as u64,
                        );
                        crate::support::metrics::count_n("ReconcileEnqueued", &dims, r.enqueued);
                    }
                    if !r.complete {
                        crate::support::metrics::count("ReconcileFailed", &dims);
                    }
                }
                Err(e) => {
                    tracing::warn!(endpoint = %name, outcome = "not_run", reason = %e, "reconcile sweep");
                    if !matches!(e, SweepError::Busy(_)) {
                        crate::support::metrics::count("ReconcileFailed", &dims);
                    }
                }
            }
            out.push(SweepResult {
                endpoint: name,
                outcome,
            });
        }
        out
    }

    /// One sweep of one endpoint.
    pub async fn sweep(
        &self,
        endpoint: &str,
        opts: &SweepOptions,
        budget: &Budget,
    ) -> Result<SweepReport, SweepError> {
        let spec = self
            .config
            .reconcile
            .get(endpoint)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let ep = self
            .config
            .endpoint(endpoint)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let pair = self
            .config
            .rules
            .iter()
            .find(|r| r.name == spec.pair_rule)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let connector = |name: &str| {
            self.connectors
                .get(name)
                .cloned()
                .ok_or_else(|| SweepError::NoConnector(name.to_owned()))
        };
        let sweep = Sweep {
            config: &self.config,
            ep,
            spec,
            pair,
            jira: connector(&spec.connection)?,
            target: connector(&pair.to)?,
            table: pair
                .table
                .clone()
                .or_else(|| self.config.connection(&pair.to).map(|c| c.table.clone()))
                .unwrap_or_else(|| "incident".into()),
            corr_field: pair
                .correlate
                .as_ref()
                .map_or_else(|| "correlation_id".to_owned(), |c| c.field.clone()),
            watched: watched_fields(&self.config, endpoint),
            budget,
            queue: self.queue.as_ref(),
            clock: self.clock.as_ref(),
            dry_run: opts.dry_run,
        };
        if !opts.dry_run
            && !self
                .store
                .try_lock(endpoint, &opts.owner, self.lease)
                .await?
        {
            return Err(SweepError::Busy(endpoint.to_owned()));
        }
        let result = self.run(&sweep, endpoint, opts).await;
        if !opts.dry_run {
            if let Err(e) = self.store.unlock(endpoint, &opts.owner).await {
                tracing::warn!(endpoint, reason = %e, "reconcile lease not released; it expires by itself");
            }
        }
        result
    }

    async fn run(
        &self,
        sweep: &Sweep<'_>,
        endpoint: &str,
        opts: &SweepOptions,
    ) -> Result<SweepReport, SweepError> {
        let started = std::time::Instant::now();
        let now = self.clock.now();
        let mut wm = self.store.load(endpoint).await?;
        let mut report = SweepReport {
            dry_run: opts.dry_run,
            ..SweepReport::default()
        };
        let mut progress = match (opts.since, wm.progress.take()) {
            (None, Some(p)) => {
                report.resumed = true;
                p
            }
            (since, _) => {
                let from = since
                    .or_else(|| wm.since.map(|w| sub(w, sweep.spec.overlap)))
                    .unwrap_or_else(|| sub(now, sweep.spec.lookback));
                Progress {
                    started_at: now,
                    from,
                    jql: String::new(),
                    created_from: None,
                    scanned: 0,
                }
            }
        };
        report.from = Some(progress.from);
        report.started_at = Some(progress.started_at);
        let mut page_token: Option<String> = None;
        loop {
            if sweep.budget.remaining() < MIN_PAGE_TIME {
                report.stopped = Some("deadline: not enough time left for another page".into());
                break;
            }
            progress.jql = sweep.jql(self.clock.now(), &progress);
            let page = match sweep
                .search(&progress.jql, page_token.as_deref(), &mut report)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    report.stopped = Some(format!("jira search: {e}"));
                    break;
                }
            };
            report.pages += 1;
            let n = page.issues.len() as u64;
            if let Err(e) = sweep.page(&page.issues, &mut report).await {
                report.stopped = Some(e);
                break;
            }
            report.scanned += n;
            progress.scanned += n;
            // Resume point: the creation time of the last issue done. Issues
            // of that same minute are scanned again on resumption (harmless).
            if let Some(c) = page.issues.last().and_then(created_of) {
                progress.created_from = Some(c);
            }
            match page.next {
                Some(t) if n > 0 => page_token = Some(t),
                _ => {
                    report.complete = true;
                    break;
                }
            }
            if !opts.dry_run {
                self.store
                    .save(
                        endpoint,
                        &Watermark {
                            since: wm.since,
                            progress: Some(progress.clone()),
                        },
                    )
                    .await?;
                // Renew the lease for the next page.
                self.store
                    .try_lock(endpoint, &opts.owner, self.lease)
                    .await?;
            }
        }
        if !opts.dry_run {
            let next = if report.complete {
                // A hand run from a later `since` must not skip what lies
                // between the old watermark and it.
                let covers = wm.since.is_none_or(|w| progress.from <= w);
                Watermark {
                    since: if covers {
                        Some(progress.started_at)
                    } else {
                        wm.since
                    },
                    progress: None,
                }
            } else {
                Watermark {
                    since: wm.since,
                    progress: Some(progress),
                }
            };
            self.store.save(endpoint, &next).await?;
        }
        report.duration = started.elapsed();
        Ok(report)
    }
}

fn sub(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO);
    t.checked_sub(span).unwrap_or(jiff::Timestamp::MIN)
}

fn created_of(issue: &Value) -> Option<jiff::Timestamp> {
    crate::support::timefmt::parse_value(issue.pointer("/fields/created")?).ok()
}

/// Minutes back from `now` to `t`, rounded up, plus one for Jira's
/// minute-granular comparison.
fn minutes_back(now: jiff::Timestamp, t: jiff::Timestamp) -> i64 {
    let secs = now.duration_since(t).as_secs().max(0);
    (secs + 59) / 60 + 1
}

/// The fields rules of this endpoint watch with `changed:`, lowercased.
fn watched_fields(config: &Config, endpoint: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in config.rules.iter().filter(|r| r.from == endpoint) {
        for c in &r.conditions {
            if let Condition::Changed { field, .. } = c {
                out.insert(field.to_ascii_lowercase());
            }
        }
    }
    out.into_iter().collect()
}

/// One page of search results.
struct Page {
    issues: Vec<Value>,
    next: Option<String>,
}

/// One sweep's fixed parts.
struct Sweep<'a> {
    config: &'a Config,
    ep: &'a Endpoint,
    spec: &'a ReconcileSpec,
    pair: &'a Rule,
    jira: Arc<dyn Connector>,
    target: Arc<dyn Connector>,
    table: String,
    corr_field: String,
    watched: Vec<String>,
    budget: &'a Budget,
    queue: &'a dyn Queue,
    clock: &'a dyn Clock,
    dry_run: bool,
}

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
    fn api(&self) -> &'static str {
        match self.config.connection(&self.spec.connection) {
            Some(c) if c.api == crate::outbound::connections::JiraApi::V2 => "2",
            _ => "3",
        }
    }

    fn jql(&self, now: jiff::Timestamp, p: &Progress) -> String {
        let mut q = format!(
            "({}) AND updated >= \"-{}m\"",
            self.spec.jql,
            minutes_back(now, p.from)
        );
        if let Some(c) = p.created_from {
            q.push_str(&format!(" AND created >= \"-{}m\"", minutes_back(now, c)));
        }
        q.push_str(" ORDER BY created ASC, key ASC");
        q
    }

    async fn call(
        &self,
        conn: &Arc<dyn Connector>,
        call: Call,
        counter: &mut u64,
    ) -> Result<Value, String> {
        *counter += 1;
        match conn.call(&call, self.budget).await {
            Ok(r) if r.is_success() => Ok(r.json.unwrap_or(Value::Null)),
            Ok(r) => Err(format!(
                "{} {} answered {}: {}",
                conn.name(),
                call.path,
                r.status,
                r.error.unwrap_or_default()
            )),
            Err(CallError::Retry { reason, .. }) | Err(CallError::Permanent { reason }) => {
                Err(format!("{} {}: {reason}", conn.name(), call.path))
            }
        }
    }

    /// One page of Jira's search (enhanced `search/jql` on v3, classic
    /// `search` with `startAt` on v2 / Server).
    async fn search(
        &self,
        jql: &str,
        token: Option<&str>,
        report: &mut SweepReport,
    ) -> Result<Page, String> {
        let v3 = self.api() == "3";
        let call = if v3 {
            let mut body = json!({
                "jql": jql,
                "fields": ["*all"],
                "maxResults": self.spec.page_size,
            });
            if let Some(t) = token {
                body["nextPageToken"] = Value::String(t.to_owned());
            }
            Call {
                method: Method::Post,
                once: false,
                path: "/rest/api/3/search/jql".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: CallBody::Json(body),
            }
        } else {
            Call {
                method: Method::Post,
                once: false,
                path: "/rest/api/2/search".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: CallBody::Json(json!({
                    "jql": jql,
                    "fields": ["*all"],
                    "maxResults": self.spec.page_size,
                    "startAt": token.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0),
                })),
            }
        };
        let v = self
            .call(&self.jira, call, &mut report.jira_requests)
            .await?;
        let issues = v["issues"].as_array().cloned().unwrap_or_default();
        let next = if v3 {
            v["nextPageToken"].as_str().map(str::to_owned)
        } else {
            let start = v["startAt"].as_u64().unwrap_or(0);
            let total = v["total"].as_u64().unwrap_or(0);
            let end = start + issues.len() as u64;
            (end < total).then(|| end.to_string())
        };
        Ok(Page { issues, next })
    }

    /// Every comment of an issue: those the search returned, and the rest
    /// page by page when the search cut them short.
    async fn comments(
        &self,
        issue: &Value,
        report: &mut SweepReport,
    ) -> Result<Vec<Value>, String> {
        let field = &issue["fields"]["comment"];
        let mut out = field["comments"].as_array().cloned().unwrap_or_default();
        let total = field["total"].as_u64().unwrap_or(out.len() as u64) as usize;
        let id = issue["id"].as_str().unwrap_or_default();
        while out.len() < total {
            let call = Call {
                method: Method::Get,
                once: false,
                path: format!(
                    "/rest/api/{}/issue/{}/comment",
                    self.api(),
                    crate::support::url::encode_segment(id)
                ),
                query: vec![
                    ("startAt".into(), out.len().to_string()),
                    ("maxResults".into(), "100".into()),
                ],
                headers: Vec::new(),
                body: CallBody::None,
            };
            let v = self
                .call(&self.jira, call, &mut report.jira_requests)
                .await?;
            let more = v["comments"].as_array().cloned().unwrap_or_default();
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
        Ok(out)
    }

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
    async fn page(&self, issues: &[Value], report: &mut SweepReport) -> Result<(), String> {
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

    /// A ServiceNow list read to the end, `LIST_LIMIT` rows per request.
    async fn list(
        &self,
        path: &str,
        query: &str,
        fields: &str,
        report: &mut SweepReport,
    ) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        loop {
            let call = Call {
                method: Method::Get,
                once: false,
                path: path.to_owned(),
                query: vec![
                    ("sysparm_query".into(), query.to_owned()),
                    ("sysparm_fields".into(), fields.to_owned()),
                    ("sysparm_exclude_reference_link".into(), "true".into()),
                    ("sysparm_limit".into(), LIST_LIMIT.to_string()),
                    ("sysparm_offset".into(), out.len().to_string()),
                ],
                headers: Vec::new(),
                body: CallBody::None,
            };
            let v = self
                .call(&self.target, call, &mut report.target_requests)
                .await?;
            let rows = v["result"].as_array().cloned().unwrap_or_default();
            let n = rows.len();
            out.extend(rows);
            if n < LIST_LIMIT {
                return Ok(out);
            }
        }
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
    fn minutes_round_up_with_a_spare() {
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let t: jiff::Timestamp = "2026-11-23T11:45:00Z".parse().unwrap();
        assert_eq!(minutes_back(now, t), 16);
        let t: jiff::Timestamp = "2026-11-23T11:44:59Z".parse().unwrap();
        assert_eq!(minutes_back(now, t), 17);
        assert_eq!(minutes_back(now, now), 1);
    }

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
