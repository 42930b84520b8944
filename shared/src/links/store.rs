//! The link store: what the relay remembers between events, so that a record
//! stays paired both ways and no write is repeated blindly.
//!
//! The paired records stay the truth: ServiceNow's `correlation_id`, a Jira
//! custom field and the `jira-relay` issue property hold the other side's id,
//! and every entry here can be rebuilt from them. The store caches and
//! extends that:
//!
//! - **Record pairs** ([`Scope`] → [`Pair`]): "the record that connection
//!   `servicenow` holds with `correlation_id = SUP-7`" → its sys_id and number.
//!   Written as soon as a create succeeds or a lookup finds the record, in
//!   both directions when the rule writes the pairing back. A hit spares the
//!   lookup, which matters where the lookup is a search that lags (Jira's JQL
//!   index) — the store is read-after-write consistent.
//! - **Item pairs** (a source comment or attachment → its twin), so that
//!   redeliveries, edits and deletes find the twin.
//! - **Deliveries seen** for [`LinkSettings::seen_for`] (2 h by default): a
//!   Jira retry 80 minutes later, past any queue's deduplication window, is
//!   recognised as a duplicate.
//! - **Uncertain writes**: a create whose answer was lost (timeout after
//!   sending, connection reset, 5xx) is marked with the time it was sent; it
//!   is not sent again until a lookup had time to see it.
//! - **Parked events**: an update that arrives before its record exists is
//!   kept here instead of holding its queue group, and replayed once the
//!   record is paired (or dead-lettered when it never is).
//!
//! One port, [`LinkBackend`] — a sorted key/value map with per-entry expiry —
//! with three adapters: [`MemoryBackend`] (tests, one process),
//! [`sqlite::SqliteBackend`] (`relay serve`, beside the embedded queue) and
//! `dynamo::DynamoBackend` (AWS, one on-demand DynamoDB table with TTL).
//! Expired entries read as absent whether or not the backend removed them
//! yet (DynamoDB's TTL deletes within days, not seconds).

use super::backend::{Entry, LinkBackend, LinkError, MemoryBackend};
use crate::support::clock::{Clock, SystemClock};

use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::time::Duration;

/// How long entries live.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// Deliveries seen are recognised for this long (Jira retries for ~75 min).
    pub seen_for: Duration,
    /// Record and item pairs are kept this long after their last write
    /// (the records' own correlation fields hold them beyond that).
    pub pairs_for: Duration,
    /// A parked event waits this long for its record, then is dead-lettered.
    pub park_for: Duration,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            seen_for: Duration::from_secs(2 * 3600),
            pairs_for: Duration::from_secs(400 * 86400),
            park_for: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where a target record is found: connection, correlation field, key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub connection: String,
    pub field: String,
    pub key: String,
}

impl Scope {
    pub fn new(connection: &str, field: &str, key: &str) -> Self {
        Self {
            connection: connection.to_owned(),
            field: field.to_owned(),
            key: key.to_owned(),
        }
    }

    /// `connection/field/key`, each part percent-encoded: unambiguous and readable.
    pub fn encoded(&self) -> String {
        format!(
            "{}/{}/{}",
            enc(&self.connection),
            enc(&self.field),
            enc(&self.key)
        )
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}={}", self.connection, self.field, self.key)
    }
}

fn enc(s: &str) -> String {
    crate::support::url::encode_segment(s)
}

/// The target record of a pair: its id (sys_id, Jira issue id) and its
/// human key (number, Jira key); at least one is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An event kept until its record exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// The sort key (scope, arrival in µs, change id): what `unpark` takes.
    #[serde(skip)]
    pub slot: String,
    pub scope: Scope,
    /// The event's change id (its deduplication id).
    pub change: String,
    /// The queue message body (the encoded envelope), replayed as is.
    pub body: String,
    /// Unix milliseconds it was parked at.
    pub since_ms: i64,
    /// Unix milliseconds after which it is dead-lettered.
    pub until_ms: i64,
    /// Why it waits (the rule and what was not found).
    pub reason: String,
}

const SINGLE: &str = "-";
const PARK: &str = "park";

/// The link store the worker uses: typed operations over a backend.
#[derive(Clone)]
pub struct Links {
    backend: Arc<dyn LinkBackend>,
    clock: Arc<dyn Clock>,
    settings: LinkSettings,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Links {
    pub fn new(backend: Arc<dyn LinkBackend>, settings: LinkSettings) -> Self {
        Self {
            backend,
            clock: Arc::new(SystemClock),
            settings,
        }
    }

    /// An in-memory store (tests; a process that keeps nothing).
    pub fn memory() -> Self {
        Self::new(Arc::new(MemoryBackend::default()), LinkSettings::default())
    }

    /// The same store read through another clock (tests move time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().as_millisecond()
    }

    fn now_s(&self) -> i64 {
        self.clock.now().as_second()
    }

    fn until(&self, d: Duration) -> i64 {
        self.now_s().saturating_add(d.as_secs() as i64)
    }

    // --- record pairs -----------------------------------------------------

    /// The target record paired with `scope`, if known.
    pub async fn record(&self, scope: &Scope) -> Result<Option<Pair>, LinkError> {
        let pk = format!("rec/{}", scope.encoded());
        match self.backend.get(&pk, SINGLE, self.now_s()).await? {
            Some(e) => serde_json::from_str(&e.value)
                .map(Some)
                .map_err(|err| LinkError::Corrupt(format!("{pk}: {err}"))),
            None => Ok(None),
        }
    }

    /// Remembers that `scope` is the record `pair`.
    pub async fn pair(&self, scope: &Scope, pair: &Pair) -> Result<(), LinkError> {
        let value = serde_json::to_string(pair).unwrap_or_default();
        self.backend
            .put(&Entry {
                pk: format!("rec/{}", scope.encoded()),
                sk: SINGLE.into(),
                value,
                expires_at: Some(self.until(self.settings.pairs_for)),
            })
            .await
    }

    /// Forgets a record pair (the record was not where the store said).
    pub async fn unpair(&self, scope: &Scope) -> Result<(), LinkError> {
        self.backend
            .delete(&format!("rec/{}", scope.encoded()), SINGLE)
            .await
    }

    // --- item pairs (comments, attachments) ----------------------------------

    /// The twin of source item `item` (a change id such as
    /// `issue:10001:comment:10500`) on `connection`.
    pub async fn item(&self, connection: &str, item: &str) -> Result<Option<String>, LinkError> {
        let pk = format!("item/{}/{}", enc(connection), enc(item));
        Ok(self
            .backend
            .get(&pk, SINGLE, self.now_s())
            .await?
            .map(|e| e.value))
    }

    pub async fn pair_item(
        &self,
        connection: &str,
        item: &str,
        twin: &str,
    ) -> Result<(), LinkError> {
        self.backend
            .put(&Entry {
                pk: format!("item/{}/{}", enc(connection), enc(item)),
                sk: SINGLE.into(),
                value: twin.to_owned(),
                expires_at: Some(self.until(self.settings.pairs_for)),
            })
            .await
    }

    // --- deliveries seen -------------------------------------------------------

    /// Whether change `id` was handled within [`LinkSettings::seen_for`].
    pub async fn seen(&self, id: &str) -> Result<bool, LinkError> {
        Ok(self
            .backend
            .get(&format!("seen/{}", enc(id)), SINGLE, self.now_s())
            .await?
            .is_some())
    }

    /// Marks change `id` handled, with the outcome label for the log.
    pub async fn mark_seen(&self, id: &str, outcome: &str) -> Result<(), LinkError> {
        self.backend
            .put(&Entry {
                pk: format!("seen/{}", enc(id)),
                sk: SINGLE.into(),
                value: outcome.to_owned(),
                expires_at: Some(self.until(self.settings.seen_for)),
            })
            .await
    }

    // --- uncertain writes --------------------------------------------------------

    /// When a write for `what` was last sent without an answer (Unix ms).
    pub async fn uncertain_since(&self, what: &str) -> Result<Option<i64>, LinkError> {
        match self
            .backend
            .get(&format!("unsure/{}", enc(what)), SINGLE, self.now_s())
            .await?
        {
            Some(e) => e
                .value
                .parse()
                .map(Some)
                .map_err(|_| LinkError::Corrupt(format!("unsure/{what}: {}", e.value))),
            None => Ok(None),
        }
    }

    /// Marks a write for `what` as sent with its outcome unknown (first
    /// time only: the oldest send is the one a lookup must wait for).
    pub async fn mark_uncertain(&self, what: &str) -> Result<i64, LinkError> {
        let now = self.now_ms();
        let entry = Entry {
            pk: format!("unsure/{}", enc(what)),
            sk: SINGLE.into(),
            value: now.to_string(),
            expires_at: Some(self.until(Duration::from_secs(86400))),
        };
        if self.backend.put_new(&entry, self.now_s()).await? {
            Ok(now)
        } else {
            Ok(self.uncertain_since(what).await?.unwrap_or(now))
        }
    }

    pub async fn clear_uncertain(&self, what: &str) -> Result<(), LinkError> {
        self.backend
            .delete(&format!("unsure/{}", enc(what)), SINGLE)
            .await
    }

    /// Now, in Unix milliseconds, by the store's clock.
    pub fn now_millis(&self) -> i64 {
        self.now_ms()
    }

    /// The store's clock (the worker's: tests move it).
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    // --- the delete cap -----------------------------------------------------------------

    /// Takes one of the `cap` delete slots of `connection` for the current
    /// minute (by the store's clock) on behalf of `holder` (the change and
    /// rule that deletes). `true` if `holder` has a slot, taken now or by an
    /// earlier attempt of the same delivery (a redelivery takes no second
    /// one); `false` when all `cap` are held by others.
    ///
    /// Each slot is its own entry written only if absent (`put_new`, a
    /// conditional write on DynamoDB), so concurrent workers and Lambda
    /// instances never hand out more than `cap` in one minute.
    pub async fn take_delete_slot(
        &self,
        connection: &str,
        holder: &str,
        cap: u32,
    ) -> Result<bool, LinkError> {
        let minute = self.now_ms().div_euclid(60_000);
        let pk = format!("cap/delete/{}/{minute}", enc(connection));
        let now = self.now_s();
        let held = self.backend.query(&pk, "", cap as usize + 1, now).await?;
        if held.iter().any(|e| e.value == holder) {
            return Ok(true);
        }
        for n in held.len() as u32..cap {
            let entry = Entry {
                pk: pk.clone(),
                sk: format!("{n:05}"),
                value: holder.to_owned(),
                expires_at: Some(now + 180),
            };
            if self.backend.put_new(&entry, now).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    // --- locks ------------------------------------------------------------------------

    /// Takes the lock `name` for `ttl` (it expires by itself if the holder
    /// dies); `false` if someone holds it.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, LinkError> {
        let entry = Entry {
            pk: format!("lock/{}", enc(name)),
            sk: SINGLE.into(),
            value: self.now_ms().to_string(),
            expires_at: Some(self.until(ttl).max(self.now_s() + 1)),
        };
        self.backend.put_new(&entry, self.now_s()).await
    }

    pub async fn unlock(&self, name: &str) -> Result<(), LinkError> {
        self.backend
            .delete(&format!("lock/{}", enc(name)), SINGLE)
            .await
    }

    // --- parked events --------------------------------------------------------------

    /// Parks an event until `scope` is paired. `false` if this change is
    /// parked already (a redelivery).
    pub async fn park(
        &self,
        scope: &Scope,
        change: &str,
        body: &str,
        reason: &str,
    ) -> Result<bool, LinkError> {
        let prefix = format!("{}|", scope.encoded());
        let existing = self
            .backend
            .query(PARK, &prefix, 1000, self.now_s())
            .await?;
        if existing
            .iter()
            .any(|e| e.sk.ends_with(&format!("|{}", enc(change))))
        {
            return Ok(false);
        }
        let now = self.now_ms();
        // Microseconds in the slot: events of one record are parked one
        // after another, so their slots sort in arrival order.
        let at_us = self.clock.now().as_microsecond();
        let p = Parked {
            slot: String::new(),
            scope: scope.clone(),
            change: change.to_owned(),
            body: body.to_owned(),
            since_ms: now,
            until_ms: now + self.settings.park_for.as_millis() as i64,
            reason: reason.to_owned(),
        };
        let value = serde_json::to_string(&p).unwrap_or_default();
        let entry = Entry {
            pk: PARK.into(),
            sk: format!("{prefix}{at_us:016}|{}", enc(change)),
            value,
            // Kept a week past its deadline so the expiry pass can dead-letter it.
            expires_at: Some(self.until(self.settings.park_for + Duration::from_secs(7 * 86400))),
        };
        self.backend.put_new(&entry, self.now_s()).await
    }

    fn parked_from(e: Entry) -> Result<Parked, LinkError> {
        let mut p: Parked = serde_json::from_str(&e.value)
            .map_err(|err| LinkError::Corrupt(format!("park {}: {err}", e.sk)))?;
        p.slot = e.sk;
        Ok(p)
    }

    /// The events parked for `scope`, oldest first.
    pub async fn parked(&self, scope: &Scope) -> Result<Vec<Parked>, LinkError> {
        let prefix = format!("{}|", scope.encoded());
        self.backend
            .query(PARK, &prefix, 1000, self.now_s())
            .await?
            .into_iter()
            .map(Self::parked_from)
            .collect()
    }

    /// Every parked event (up to `limit`), for the replay and expiry pass.
    pub async fn all_parked(&self, limit: usize) -> Result<Vec<Parked>, LinkError> {
        self.backend
            .query(PARK, "", limit, self.now_s())
            .await?
            .into_iter()
            .map(Self::parked_from)
            .collect()
    }

    pub async fn unpark(&self, p: &Parked) -> Result<(), LinkError> {
        self.backend.delete(PARK, &p.slot).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::clock::FixedClock;

    use crate::links::testing::backend_contract;

    #[tokio::test]
    async fn memory_backend_contract() {
        backend_contract(Arc::new(MemoryBackend::default())).await;
    }

    #[tokio::test]
    async fn seen_lasts_two_hours_by_the_clock() {
        let t0: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        let clock = Arc::new(FixedClock::new(t0));
        let links = Links::memory().with_clock(clock.clone());
        assert!(!links.seen("issue:1:created").await.unwrap());
        links.mark_seen("issue:1:created", "applied").await.unwrap();
        clock.set(t0 + jiff::SignedDuration::from_mins(80));
        assert!(links.seen("issue:1:created").await.unwrap(), "80 min later");
        clock.set(t0 + jiff::SignedDuration::from_mins(121));
        assert!(!links.seen("issue:1:created").await.unwrap(), "past 2 h");
    }

    #[tokio::test]
    async fn pairs_parking_and_uncertain_writes() {
        let links = Links::memory();
        let s = Scope::new("servicenow", "correlation_id", "SUP/1 x");
        assert_eq!(links.record(&s).await.unwrap(), None);
        let p = Pair {
            id: Some("abc".into()),
            key: Some("INC1".into()),
        };
        links.pair(&s, &p).await.unwrap();
        assert_eq!(links.record(&s).await.unwrap(), Some(p));
        let other = Scope::new("servicenow", "correlation_id", "SUP/1");
        assert_eq!(links.record(&other).await.unwrap(), None, "no prefix bleed");

        assert!(links.park(&s, "c1", "{b1}", "why").await.unwrap());
        assert!(
            !links.park(&s, "c1", "{b1}", "why").await.unwrap(),
            "redelivery"
        );
        assert!(links.park(&s, "c2", "{b2}", "why").await.unwrap());
        assert!(links.park(&other, "c3", "{b3}", "why").await.unwrap());
        let got = links.parked(&s).await.unwrap();
        assert_eq!(
            got.iter().map(|p| p.change.as_str()).collect::<Vec<_>>(),
            ["c1", "c2"]
        );
        links.unpark(&got[0]).await.unwrap();
        assert_eq!(links.parked(&s).await.unwrap().len(), 1);
        assert_eq!(links.all_parked(10).await.unwrap().len(), 2);

        assert_eq!(links.uncertain_since("w").await.unwrap(), None);
        let t = links.mark_uncertain("w").await.unwrap();
        assert_eq!(links.mark_uncertain("w").await.unwrap(), t, "oldest kept");
        links.clear_uncertain("w").await.unwrap();
        assert_eq!(links.uncertain_since("w").await.unwrap(), None);

        links
            .pair_item("jira", "issue:1:comment:9", "10200")
            .await
            .unwrap();
        assert_eq!(
            links
                .item("jira", "issue:1:comment:9")
                .await
                .unwrap()
                .as_deref(),
            Some("10200")
        );
    }
    #[tokio::test]
    async fn the_delete_cap_hands_out_slots_per_minute_once_per_holder() {
        let t0: jiff::Timestamp = "2026-12-04T10:00:10Z".parse().unwrap();
        let clock = Arc::new(FixedClock::new(t0));
        let links = Links::memory().with_clock(clock.clone());
        assert!(links.take_delete_slot("jira", "a", 2).await.unwrap());
        assert!(links.take_delete_slot("jira", "b", 2).await.unwrap());
        assert!(
            !links.take_delete_slot("jira", "c", 2).await.unwrap(),
            "the third in a minute"
        );
        assert!(
            links.take_delete_slot("jira", "a", 2).await.unwrap(),
            "a redelivery keeps its slot"
        );
        assert!(
            links.take_delete_slot("servicenow", "c", 2).await.unwrap(),
            "per connection"
        );
        assert!(
            !links.take_delete_slot("jira", "d", 0).await.unwrap(),
            "0 refuses all"
        );
        clock.set(t0 + jiff::SignedDuration::from_secs(50));
        assert!(
            links.take_delete_slot("jira", "c", 2).await.unwrap(),
            "the next minute"
        );
    }

    #[tokio::test]
    async fn concurrent_deleters_never_pass_the_cap() {
        let links = Links::memory();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let l = links.clone();
            tasks.push(tokio::spawn(async move {
                l.take_delete_slot("jira", &format!("h{i}"), 7)
                    .await
                    .unwrap()
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        // A minute boundary may fall between the first and last task: at
        // most two minutes' worth.
        assert!((7..=14).contains(&granted), "{granted}");
    }
}
