//! The worker core: queued envelopes in, changes in the paired system out.
//! Hosts (the Lambda function, `relay serve`) hand it batches of messages and
//! an [`Inbox`] for what only the queue can do (dead-letter, delay).
//!
//! Per message: decode the envelope → plan (whitelist, rules, mapping) →
//! [`execute`] → an [`Outcome`]. Per batch:
//!
//! - Messages are grouped by FIFO group. Groups run concurrently (up to
//!   [`BatchSettings::parallel_groups`]); the messages of one group run one
//!   after another, and once one fails every later message of that group in
//!   the batch is reported failed too, unprocessed, so order is never broken.
//! - `retry` → the message is reported failed and the queue redelivers it
//!   after the visibility timeout; when the target named a wait
//!   (`Retry-After`) the message's visibility is set to that wait.
//! - `dead` → the worker moves the message to the dead-letter queue itself,
//!   with the reason as a message attribute, and reports it done. A permanent
//!   failure therefore costs one receive, not the whole retry budget.
//! - A retryable failure on the last receive the queue allows
//!   ([`BatchSettings::max_receive_count`]) is dead-lettered the same way with
//!   reason `retries_exhausted: …`, so the reason survives (the queue's own
//!   redrive keeps no reason; it remains the backstop if the worker dies).
//! - No message is started once the budget's remaining time is below
//!   [`BatchSettings::min_message_time`]; such messages are reported failed
//!   (redelivered), not half done.

use crate::config::Config;
use crate::intake::envelope::Envelope;
use crate::journal::{calls, Delivery, JournalSink, NoJournal};
use crate::outbound::connector::Budget;
use crate::outbound::executor::{execute, Connectors, Exec, Outcome};
use crate::queue::port::{InMessage, Inbox};

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Batch behaviour.
#[derive(Clone, Debug)]
pub struct BatchSettings {
    /// The queue's `maxReceiveCount`: on this receive a retry becomes a dead letter.
    pub max_receive_count: Option<u32>,
    /// Groups processed at once. Calls to one connection are limited by its
    /// adaptive concurrency limit, not by this: the default is a whole batch.
    pub parallel_groups: usize,
    /// A message is not started with less time than this left.
    pub min_message_time: Duration,
    /// How often the park's upkeep runs ([`Worker::maybe_replay_parked`]):
    /// events in line behind a replay that must be retried wait this long.
    pub park_pass_every: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_receive_count: None,
            // SQS and the embedded queue hand out at most 10 per receive.
            parallel_groups: 10,
            min_message_time: Duration::from_secs(2),
            park_pass_every: Duration::from_secs(5),
        }
    }
}

/// The worker: config, connectors, settings; built once per process.
pub struct Worker {
    config: Arc<Config>,
    connectors: Connectors,
    settings: BatchSettings,
    links: crate::links::store::Links,
    /// Where each attempt is recorded (`relay serve`'s delivery journal).
    journal: Arc<dyn JournalSink>,
    /// When the park's upkeep last ran (see [`Worker::maybe_replay_parked`]).
    park_pass: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Completes Jira payloads before planning (the issue of a bare
    /// comment, field display names).
    jira_payload: crate::prepare::JiraPayload,
}

/// What a batch came to.
#[derive(Clone, Debug, Default)]
pub struct BatchReport {
    /// Message ids to report as failed (redelivered by the queue).
    pub failed: Vec<String>,
    /// (message id, outcome label) in input order, incl. `held` and `deadline`.
    pub outcomes: Vec<(String, String)>,
}

/// The envelope fields logs carry.
#[derive(Default)]
struct Meta {
    endpoint: String,
    event: String,
    delivery_id: String,
    source_key: String,
    origin: &'static str,
    /// The change id (deduplication id) the event stands for.
    change: String,
    event_type: String,
    received_at: String,
}

impl Meta {
    fn of(env: &Envelope, change: &str) -> Self {
        Meta {
            endpoint: env.endpoint.clone(),
            event: env.event.clone(),
            delivery_id: env.delivery_id.clone(),
            source_key: env.source_key.clone().unwrap_or_default(),
            origin: match env.origin {
                crate::intake::envelope::Origin::Webhook => "webhook",
                crate::intake::envelope::Origin::Reconcile => "reconcile",
            },
            change: change.to_owned(),
            event_type: env.event_type.clone().unwrap_or_default(),
            received_at: env.received_at.to_string(),
        }
    }
}

impl Worker {
    pub fn new(config: Arc<Config>, connectors: Connectors, settings: BatchSettings) -> Self {
        Self {
            config,
            connectors,
            settings,
            links: crate::links::Links::memory(),
            journal: Arc::new(NoJournal),
            park_pass: std::sync::Mutex::new(None),
            jira_payload: Default::default(),
        }
    }

    /// The link store to use (default: in memory, kept by this process only).
    pub fn with_links(mut self, links: crate::links::store::Links) -> Self {
        self.links = links;
        self
    }

    /// Records every attempt in `journal` too (default: the log line only).
    pub fn with_journal(mut self, journal: Arc<dyn JournalSink>) -> Self {
        self.journal = journal;
        self
    }

    pub fn links(&self) -> &crate::links::store::Links {
        &self.links
    }

    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// One message body (an encoded envelope) to an outcome.
    pub async fn process(&self, body: &str, budget: &Budget) -> Outcome {
        self.process_inner(body, budget, false, None).await.0
    }

    /// Decode → duplicate check → plan → (behind parked events of the same
    /// record?) → execute → park or remember. `replaying`: the event comes
    /// out of the park, in its turn. `queued`: the message as received (its
    /// receive count says whether the queue hands it out for the first
    /// time), whose send may still be syncing ([`Inbox::durable`]); nothing
    /// is written, here or in the paired system, before it is durable.
    async fn process_inner(
        &self,
        body: &str,
        budget: &Budget,
        replaying: bool,
        queued: Option<(&dyn Inbox, &InMessage)>,
    ) -> (Outcome, Meta) {
        let env = match Envelope::decode(body) {
            Ok(e) => e,
            Err(e) => return (Outcome::from_error(&e), Meta::default()),
        };
        let change = env
            .change_id
            .clone()
            .unwrap_or_else(|| env.delivery_id.clone());
        let meta = Meta::of(&env, &change);
        // Past any queue's deduplication window (SQS FIFO: 5 min), a Jira
        // retry of the same change is still recognised here.
        match self.links.seen(&change).await {
            Ok(true) => {
                return (
                    Outcome::Duplicate {
                        reason: format!("duplicate: change `{change}` was handled already"),
                    },
                    meta,
                )
            }
            Ok(false) => {}
            Err(e) => return (Outcome::from_error(&e), meta),
        }
        let env = match self
            .jira_payload
            .prepare(&self.config, &self.connectors, env, budget)
            .await
        {
            Ok(e) => e,
            Err(o) => return (o, meta),
        };
        let plan = match crate::rules::engine::plan_envelope(&self.config, &env) {
            Ok(p) => p,
            Err(e) => return (Outcome::from_error(&e), meta),
        };
        // Events of a record that has events parked (waiting for it, or for
        // a replay that failed) queue up behind them: the record's order holds.
        let behind = if replaying {
            None
        } else {
            match self.parked_ahead(&plan).await {
                Ok(b) => b,
                Err(e) => return (Outcome::from_error(&e), meta),
            }
        };
        // The source record's creation, from its webhook, on the first
        // receive: no earlier attempt can have written its twin.
        let first_receive = queued.is_some_and(|(_, m)| m.receive_count <= 1);
        let first_sight = first_receive
            && !replaying
            && env.origin == crate::intake::envelope::Origin::Webhook
            && crate::intake::body::is_creation(&change);
        // Up to here only reads (and Jira lookups); from here on writes.
        if let Some((inbox, m)) = queued {
            if let Err(e) = inbox.durable(m).await {
                return (
                    Outcome::Retry {
                        reason: format!(
                            "not_queued: the send of this message did not commit, \
                             its sender got the error and retries: {e}"
                        ),
                        after: None,
                    },
                    meta,
                );
            }
        }
        let exec = Exec {
            connectors: &self.connectors,
            links: &self.links,
            budget,
            change: &change,
            first_sight,
        };
        let executed = match behind {
            Some(w) => w,
            None => execute(&plan, &exec).await,
        };
        let outcome = match executed {
            Outcome::Waiting { scope, reason } => {
                match self.links.park(&scope, &change, body, &reason).await {
                    Ok(_) => Outcome::Parked {
                        reason: format!("parked until {scope} exists: {reason}"),
                        scope,
                    },
                    Err(e) => Outcome::Retry {
                        reason: format!("link_store_unavailable: could not park: {e}; {reason}"),
                        after: None,
                    },
                }
            }
            o => o,
        };
        if matches!(
            outcome,
            Outcome::Applied { .. } | Outcome::Filtered { .. } | Outcome::NoRule
        ) {
            if let Err(e) = self.links.mark_seen(&change, outcome.label()).await {
                tracing::warn!(error = %e, change = %change, "could not remember the change as handled");
            }
        }
        (outcome, meta)
    }

    /// `Waiting` if a rule of this plan waits for a record that has events
    /// parked: the event must not overtake them.
    async fn parked_ahead(
        &self,
        plan: &crate::rules::plan::Plan,
    ) -> Result<Option<Outcome>, crate::links::backend::LinkError> {
        for r in &plan.rules {
            // A membership change of a person whose earlier changes are
            // parked keeps its place behind them even when it would not wait
            // itself (a removal, a leaver): applied first, the parked add
            // would undo it on replay.
            let waits = r
                .steps
                .iter()
                .any(|s| s.on_empty == Some(crate::rules::plan::OnEmpty::RetryLater))
                || r.action == crate::rules::model::Action::GroupMember;
            let Some(scope) = r.link.as_ref().filter(|_| waits) else {
                continue;
            };
            let ahead = self.links.parked(scope).await?;
            if !ahead.is_empty() {
                return Ok(Some(Outcome::Waiting {
                    scope: scope.clone(),
                    reason: format!(
                        "in_order: behind {} parked event(s) of the same record (rule `{}`)",
                        ahead.len(),
                        r.rule
                    ),
                }));
            }
        }
        Ok(None)
    }

    /// Replays the events parked for `scopes` whose record exists, in the
    /// order they arrived, one replayer per scope at a time (a lock in the
    /// link store). A replay that must be retried stops its scope there:
    /// what came after it stays parked behind it.
    async fn replay(
        &self,
        inbox: &dyn Inbox,
        scopes: &[crate::links::store::Scope],
        budget: &Budget,
    ) -> usize {
        let mut replayed = 0;
        for scope in scopes {
            // Most records have nothing parked: one read, no lock taken and
            // released. (An event parked after this read replays itself: it
            // reads the record after writing its park, see `handle`.)
            match self.links.parked(scope).await {
                Ok(p) if !p.is_empty() => {}
                _ => continue,
            }
            match self.links.record(scope).await {
                Ok(Some(_)) => {}
                _ => continue,
            }
            let lock = format!("replay/{}", scope.encoded());
            match self.links.try_lock(&lock, Duration::from_secs(120)).await {
                Ok(true) => {}
                Ok(false) => continue, // another worker replays this record
                Err(e) => {
                    tracing::warn!(error = %e, scope = %scope, "could not lock the replay; the replay pass retries");
                    continue;
                }
            }
            // Re-read after each round: events parked meanwhile behind the
            // ones replayed are next.
            'rounds: for _ in 0..8 {
                let parked = match self.links.parked(scope).await {
                    Ok(p) if !p.is_empty() => p,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, scope = %scope, "could not read parked events; the replay pass retries");
                        break;
                    }
                };
                for p in parked {
                    if budget.remaining() < self.settings.min_message_time
                        || !self.replay_one(inbox, p, budget).await
                    {
                        break 'rounds;
                    }
                    replayed += 1;
                }
            }
            if let Err(e) = self.links.unlock(&lock).await {
                tracing::warn!(error = %e, "could not release the replay lock; it expires by itself");
            }
        }
        replayed
    }

    /// One parked event, processed in its turn; unparked unless it must be
    /// tried again. Returns whether it left the park.
    async fn replay_one(
        &self,
        inbox: &dyn Inbox,
        p: crate::links::store::Parked,
        budget: &Budget,
    ) -> bool {
        let started = tokio::time::Instant::now();
        let msg = parked_message(&p);
        let ((outcome, meta), calls) =
            calls::capture(self.process_inner(&p.body, budget, true, None)).await;
        let done = match &outcome {
            Outcome::Retry { .. } => false,
            // Waits for another record now: parked under that one.
            Outcome::Parked { scope, .. } => *scope != p.scope,
            Outcome::Dead { reason } => inbox.dead_letter(&msg, reason).await.is_ok(),
            _ => true,
        };
        if done {
            if let Err(e) = self.links.unpark(&p).await {
                tracing::warn!(error = %e, "could not unpark a replayed event");
            }
        }
        let d = log_delivery(&msg, &meta, &outcome, None, started, "replayed");
        self.journal.record(Delivery { calls, ..d });
        done
    }

    /// The park's upkeep, for hosts to call now and then: events whose
    /// record has appeared meanwhile (or whose replay failed before) are
    /// replayed, events that waited past
    /// [`crate::links::LinkSettings::park_for`] go to the dead-letter queue
    /// with reason `never_correlated`. Returns (replayed, dead-lettered).
    pub async fn replay_parked(&self, inbox: &dyn Inbox, budget: &Budget) -> (usize, usize) {
        let all = match self.links.all_parked(500).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the parked events");
                return (0, 0);
            }
        };
        let now = self.links.now_millis();
        let mut dead = 0;
        let mut scopes: Vec<crate::links::store::Scope> = Vec::new();
        for p in all {
            if p.until_ms <= now {
                let msg = parked_message(&p);
                let reason = format!(
                    "never_correlated: no record for {} appeared within {} s; {}",
                    p.scope,
                    self.links.settings().park_for.as_secs(),
                    p.reason
                );
                if inbox.dead_letter(&msg, &reason).await.is_ok() {
                    let _ = self.links.unpark(&p).await;
                    dead += 1;
                    let meta = Envelope::decode(&p.body)
                        .map(|e| Meta::of(&e, &p.change))
                        .unwrap_or_default();
                    let outcome = Outcome::Dead { reason };
                    let d = log_delivery(
                        &msg,
                        &meta,
                        &outcome,
                        Some((true, "")),
                        tokio::time::Instant::now(),
                        "parked event expired",
                    );
                    self.journal.record(d);
                }
                continue;
            }
            if !scopes.contains(&p.scope) {
                scopes.push(p.scope);
            }
        }
        let replayed = self.replay(inbox, &scopes, budget).await;
        (replayed, dead)
    }

    /// [`Worker::replay_parked`] at most every
    /// [`BatchSettings::park_pass_every`] (each batch calls it; an idle host
    /// calls it from its poll loop).
    pub async fn maybe_replay_parked(&self, inbox: &dyn Inbox, budget: &Budget) {
        {
            let mut last = self.park_pass.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < self.settings.park_pass_every) {
                return;
            }
            *last = Some(now);
        }
        let (replayed, dead) = self.replay_parked(inbox, budget).await;
        if replayed + dead > 0 {
            tracing::info!(replayed, dead_lettered = dead, "parked events");
        }
    }

    /// Processes a batch; see the module docs for the rules.
    pub async fn run_batch(
        &self,
        inbox: &dyn Inbox,
        messages: &[InMessage],
        budget: &Budget,
    ) -> BatchReport {
        // Groups in order of first appearance, each in message order.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let g = m.group_id.clone().unwrap_or_else(|| format!("\0{}", m.id));
            match groups.iter_mut().find(|(k, _)| *k == g) {
                Some((_, v)) => v.push(i),
                None => groups.push((g, vec![i])),
            }
        }
        let results: Vec<Vec<(usize, bool, String)>> = futures_util::stream::iter(groups)
            .map(|(_, idx)| self.run_group(inbox, messages, idx, budget))
            .buffer_unordered(self.settings.parallel_groups.max(1))
            .collect()
            .await;
        let mut flat: Vec<(usize, bool, String)> = results.into_iter().flatten().collect();
        flat.sort_by_key(|(i, _, _)| *i);
        self.maybe_replay_parked(inbox, budget).await;
        let mut report = BatchReport::default();
        for (i, ok, label) in flat {
            if !ok {
                report.failed.push(messages[i].id.clone());
            }
            report.outcomes.push((messages[i].id.clone(), label));
        }
        report
    }

    async fn run_group(
        &self,
        inbox: &dyn Inbox,
        messages: &[InMessage],
        idx: Vec<usize>,
        budget: &Budget,
    ) -> Vec<(usize, bool, String)> {
        let mut out = Vec::with_capacity(idx.len());
        let mut failed = false;
        for i in idx {
            let m = &messages[i];
            if failed {
                tracing::info!(message_id = %m.id, outcome = "held",
                    "not processed: an earlier message of its group failed in this batch");
                out.push((i, false, "held".to_owned()));
                continue;
            }
            if budget.remaining() < self.settings.min_message_time {
                tracing::warn!(message_id = %m.id, outcome = "deadline",
                    remaining_ms = budget.remaining().as_millis() as u64,
                    "not processed: not enough time left in this invocation");
                failed = true;
                out.push((i, false, "deadline".to_owned()));
                continue;
            }
            let span = tracing::info_span!("message", message_id = %m.id);
            let (ok, label) = self.handle(inbox, m, budget).instrument(span).await;
            failed = !ok;
            out.push((i, ok, label));
        }
        out
    }

    /// One message: process, then act on the outcome. Returns (handled, label).
    async fn handle(&self, inbox: &dyn Inbox, m: &InMessage, budget: &Budget) -> (bool, String) {
        let started = tokio::time::Instant::now();
        let ((outcome, meta), calls) =
            calls::capture(self.process_inner(&m.body, budget, false, Some((inbox, m)))).await;
        let last_receive = self
            .settings
            .max_receive_count
            .is_some_and(|max| m.receive_count >= max);
        let (outcome, dead_reason) = match outcome {
            Outcome::Retry { reason, .. } if last_receive => {
                let r = format!(
                    "retries_exhausted: {} receives; last: {reason}",
                    m.receive_count
                );
                (Outcome::Dead { reason: r.clone() }, Some(r))
            }
            Outcome::Dead { reason } => (
                Outcome::Dead {
                    reason: reason.clone(),
                },
                Some(reason),
            ),
            o => (o, None),
        };
        let mut handled = !matches!(outcome, Outcome::Retry { .. });
        let mut dlq_error = None;
        if let Some(reason) = &dead_reason {
            if let Err(e) = inbox.dead_letter(m, reason).await {
                handled = false;
                dlq_error = Some(e.to_string());
            }
        }
        if let Outcome::Retry {
            after: Some(after), ..
        } = &outcome
        {
            if let Err(e) = inbox.delay(m, *after).await {
                tracing::warn!(error = %e, "could not set the redelivery delay");
            }
        }
        if handled {
            if let Err(e) = inbox.handled(m).await {
                tracing::warn!(error = %e, "could not acknowledge the message yet; the host retries after the batch");
            }
        }
        record_metrics(
            &outcome,
            dead_reason.is_some() && dlq_error.is_none(),
            started.elapsed(),
        );
        let d = log_delivery(
            m,
            &meta,
            &outcome,
            dlq_error
                .as_deref()
                .map(|e| (dead_reason.is_some(), e))
                .or(Some((dead_reason.is_some(), ""))),
            started,
            "processed",
        );
        self.journal.record(Delivery { calls, ..d });
        if let Outcome::Applied { applied, .. } = &outcome {
            let scopes: Vec<crate::links::store::Scope> = applied
                .iter()
                .flat_map(|a| a.paired.iter().cloned())
                .collect();
            if !scopes.is_empty() {
                self.replay(inbox, &scopes, budget).await;
            }
        }
        // Parked behind others of a record that exists: their replay failed
        // before; try the line again now.
        if let Outcome::Parked { scope, .. } = &outcome {
            self.replay(inbox, std::slice::from_ref(scope), budget)
                .await;
        }
        (handled, outcome.label().to_owned())
    }
}

/// A parked event as a message (it is in no queue: no receipt), for the
/// log line and the dead-letter queue.
fn parked_message(p: &crate::links::store::Parked) -> InMessage {
    InMessage {
        id: format!("parked:{}", p.change),
        group_id: None,
        dedup_id: Some(p.change.clone()),
        body: p.body.clone(),
        receive_count: 1,
        receipt: None,
    }
}

/// The `relay::delivery` log line of one message (the message feed), and
/// the same fields as a journal row (without its calls).
/// `dead`: (dead-lettered, the DLQ's error if it refused).
fn log_delivery(
    m: &InMessage,
    meta: &Meta,
    outcome: &Outcome,
    dead: Option<(bool, &str)>,
    started: tokio::time::Instant,
    what: &'static str,
) -> Delivery {
    let (applied, targets): (Vec<_>, Vec<_>) = match outcome {
        Outcome::Applied { applied, .. } => applied
            .iter()
            .map(|a| {
                (
                    format!("{}:{:?}", a.rule, a.action).to_lowercase(),
                    a.target.clone().unwrap_or_default(),
                )
            })
            .unzip(),
        _ => (Vec::new(), Vec::new()),
    };
    // A rule skipped is a decision, not a failure: its reason is logged
    // (an event whose every rule was skipped has the outcome `skipped`).
    let skipped = outcome.skip_reasons();
    let reason = match outcome.reason() {
        Some(r) => r.to_owned(),
        None if outcome.label() == "skipped" => format!("skipped: {skipped}"),
        None => String::new(),
    };
    let (dead_lettered, dlq_error) = dead.unwrap_or((false, ""));
    tracing::info!(
        target: "relay::delivery",
        message_id = %m.id,
        endpoint = %meta.endpoint,
        event = %meta.event,
        delivery_id = %meta.delivery_id,
        change_id = %meta.change,
        source_key = %meta.source_key,
        origin = meta.origin,
        receive_count = m.receive_count,
        outcome = outcome.label(),
        reason = %reason,
        rules = %applied.join(","),
        skipped = %skipped,
        target = %targets.join(","),
        dead_lettered = dead_lettered && dlq_error.is_empty(),
        dlq_error = dlq_error,
        duration_ms = started.elapsed().as_millis() as u64,
        "{what}"
    );
    Delivery {
        id: 0,
        at_ms: jiff::Timestamp::now().as_millisecond(),
        received_at: meta.received_at.clone(),
        message_id: m.id.clone(),
        endpoint: meta.endpoint.clone(),
        event: meta.event.clone(),
        event_type: meta.event_type.clone(),
        delivery_id: meta.delivery_id.clone(),
        change_id: meta.change.clone(),
        source_key: meta.source_key.clone(),
        origin: meta.origin.to_owned(),
        receive_count: m.receive_count,
        outcome: outcome.label().to_owned(),
        reason,
        rules: applied,
        targets: targets.iter().fold(Vec::new(), |mut v, t| {
            if !t.is_empty() && !v.contains(t) {
                v.push(t.clone());
            }
            v
        }),
        calls: Vec::new(),
        duration_ms: started.elapsed().as_millis() as u64,
        dead_lettered: dead_lettered && dlq_error.is_empty(),
        what: what.to_owned(),
    }
}

/// EMF counts for one handled message (see [`crate::support::metrics`]).
fn record_metrics(outcome: &Outcome, dead_lettered: bool, took: Duration) {
    use crate::support::metrics::{count, latency};
    match outcome {
        Outcome::Applied { applied, .. } if applied.is_empty() => count("Skipped", &[]),
        Outcome::Applied { applied, .. } => {
            for a in applied {
                let action = serde_json::to_value(a.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                count(
                    "Applied",
                    &[("Connection", &a.connection), ("Action", &action)],
                );
            }
        }
        Outcome::Filtered { .. } => count("Filtered", &[]),
        Outcome::NoRule => count("NoRule", &[]),
        Outcome::Retry { .. } => count("Retried", &[]),
        Outcome::Dead { .. } if dead_lettered => count("DeadLettered", &[]),
        // Dead but the DLQ refused it: it stays queued and comes back.
        Outcome::Dead { .. } => count("Retried", &[]),
        Outcome::Waiting { .. } | Outcome::Parked { .. } => count("Parked", &[]),
        Outcome::Duplicate { .. } => count("Duplicate", &[]),
    }
    latency(
        "HandlerLatency",
        &[("Function", "worker")],
        took.as_secs_f64() * 1000.0,
    );
}
