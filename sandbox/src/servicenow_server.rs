//! `ServiceNowServer`: an in-memory stand-in for a ServiceNow instance's
//! Table API and Attachment API (plus `/oauth_token.do`), shaped like the
//! real responses in `<fixtures>/servicenow/`. Test support only.
//!
//! Every value is stored and returned as a string; reference fields
//! (`caller_id`, `opened_by`, `assigned_to`, `assignment_group`,
//! `sys_domain`) come back as `{"link", "value"}`; `comments` and
//! `work_notes` are journal fields (they read back as `""`, see
//! [`ServiceNowServer::journal`]). Order per request: record, added latency
//! ([`ServiceNowServer::set_latency`]), auth, faults, handler (the OAuth
//! endpoint skips auth), then (a successful write taken by a
//! [`Fault::AnswerLost`](crate::faults::Fault::AnswerLost)) the answer lost.

mod meta;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::{HeaderValue, Method};
use serde_json::{json, Map, Value};

use crate::faults::{
    self, credentials, empty_response, error_response, json_response, lock, parse_query, snow_time,
    unauthorized, Credentials, Faults, Flavor, Recorded, XorShift,
};

/// Default Basic credentials.
pub const DEFAULT_USER: &str = "relay.integration";
pub const DEFAULT_PASSWORD: &str = "snow-password";
/// Default OAuth client.
pub const DEFAULT_CLIENT_ID: &str = "snow-client-id";
pub const DEFAULT_CLIENT_SECRET: &str = "snow-client-secret";

/// Reference fields and the table they point at.
const REFERENCES: &[(&str, &str)] = &[
    ("caller_id", "sys_user"),
    ("opened_by", "sys_user"),
    ("assigned_to", "sys_user"),
    ("assignment_group", "sys_user_group"),
    ("sys_domain", "sys_user_group"),
];

const JOURNAL_FIELDS: &[&str] = &["comments", "work_notes"];

/// The fields of an incident (from the fixture); also used for `problem`
/// and `change_request`. Other tables accept any field.
const TASK_FIELDS: &[&str] = &[
    "active",
    "activity_due",
    "additional_assignee_list",
    "approval",
    "approval_history",
    "approval_set",
    "assigned_to",
    "assignment_group",
    "business_duration",
    "business_service",
    "business_stc",
    "calendar_duration",
    "calendar_stc",
    "caller_id",
    "category",
    "caused_by",
    "child_incidents",
    "close_code",
    "close_notes",
    "closed_at",
    "closed_by",
    "cmdb_ci",
    "comments",
    "comments_and_work_notes",
    "company",
    "contact_type",
    "correlation_display",
    "correlation_id",
    "delivery_plan",
    "delivery_task",
    "description",
    "due_date",
    "escalation",
    "expected_start",
    "follow_up",
    "group_list",
    "hold_reason",
    "impact",
    "incident_state",
    "knowledge",
    "location",
    "made_sla",
    "notify",
    "number",
    "opened_at",
    "opened_by",
    "order",
    "parent",
    "parent_incident",
    "priority",
    "problem_id",
    "reassignment_count",
    "reopen_count",
    "reopened_by",
    "reopened_time",
    "resolved_at",
    "resolved_by",
    "rfc",
    "severity",
    "short_description",
    "sla_due",
    "state",
    "subcategory",
    "sys_class_name",
    "sys_created_by",
    "sys_created_on",
    "sys_domain",
    "sys_domain_path",
    "sys_id",
    "sys_mod_count",
    "sys_tags",
    "sys_updated_by",
    "sys_updated_on",
    "time_worked",
    "upon_approval",
    "upon_reject",
    "urgency",
    "user_input",
    "watch_list",
    "work_end",
    "work_notes",
    "work_notes_list",
    "work_start",
];

const TASK_TABLES: &[&str] = &[
    "incident",
    "problem",
    "change_request",
    "sc_req_item",
    "sc_task",
];

/// One journal entry (`comments` / `work_notes`).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub field: String,
    pub value: String,
    pub created_by: String,
    pub created_on: String,
}

/// One stored attachment.
#[derive(Debug, Clone)]
pub struct SnAttachment {
    pub sys_id: String,
    pub table_name: String,
    pub table_sys_id: String,
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Token {
    access: String,
    refresh: String,
    user: String,
    expires: Instant,
}

#[derive(Debug)]
struct SnState {
    tables: BTreeMap<String, Vec<Map<String, Value>>>,
    numbers: BTreeMap<String, u64>,
    journal: Vec<(String, String, JournalEntry)>,
    attachments: Vec<SnAttachment>,
    ignored: Vec<(String, String)>,
    extra_fields: BTreeMap<String, BTreeSet<String>>,
    basic: (String, String),
    oauth_client: (String, String),
    /// Put before every access and refresh token issued.
    token_prefix: String,
    tokens: Vec<Token>,
    requests: Vec<Recorded>,
    /// When each record was inserted (sys_id → wall clock), finer than
    /// `sys_created_on`'s seconds; for the benchmarks' webhook-to-record time.
    created_at: BTreeMap<String, SystemTime>,
    /// When the `POST` that created each record had arrived (sys_id → wall
    /// clock), before the added latency: a caller's own share of
    /// webhook-to-record ends here.
    create_arrived_at: BTreeMap<String, SystemTime>,
    rng: XorShift,
    /// Choices added by tests (the dictionary is computed, see `meta`).
    meta: meta::Catalog,
}

struct Shared {
    base: String,
    state: Mutex<SnState>,
    faults: Faults,
    /// Added to every answer (milliseconds), like a remote instance's round trip.
    latency_ms: AtomicU64,
    /// The instance's `API_INT` semaphore, when set ([`ServiceNowServer::set_capacity`]).
    capacity: Mutex<Option<Arc<Capacity>>>,
    /// Requests refused with 429 because the semaphore's queue was full.
    refused: AtomicU64,
}

/// A semaphore like ServiceNow's `API_INT`: `threads` requests are handled
/// at once, up to `queue` more wait for a thread, the rest get a 429.
struct Capacity {
    threads: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    queue: usize,
}

/// Handle on a running ServiceNow stand-in (cheap to clone).
#[derive(Clone)]
pub struct ServiceNowServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServiceNowServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceNowServer")
            .field("base", &self.shared.base)
            .finish()
    }
}

static SERVERS: AtomicU64 = AtomicU64::new(1);

impl ServiceNowServer {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            state: Mutex::new(SnState {
                tables: BTreeMap::new(),
                numbers: BTreeMap::new(),
                journal: Vec::new(),
                attachments: Vec::new(),
                ignored: Vec::new(),
                extra_fields: BTreeMap::new(),
                basic: (DEFAULT_USER.into(), DEFAULT_PASSWORD.into()),
                oauth_client: (DEFAULT_CLIENT_ID.into(), DEFAULT_CLIENT_SECRET.into()),
                token_prefix: String::new(),
                tokens: Vec::new(),
                requests: Vec::new(),
                created_at: BTreeMap::new(),
                create_arrived_at: BTreeMap::new(),
                rng: XorShift::new(0x5EED_0000 + SERVERS.fetch_add(1, Ordering::Relaxed)),
                meta: meta::Catalog::default(),
            }),
            faults: Faults::default(),
            latency_ms: AtomicU64::new(0),
            capacity: Mutex::new(None),
            refused: AtomicU64::new(0),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        faults::serve(listener, app);
        ServiceNowServer { shared }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SnState> {
        lock(&self.shared.state)
    }

    /// `http://127.0.0.1:<port>` (the instance URL).
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// Basic credentials accepted from now on (the old ones stop working).
    pub fn set_basic(&self, user: &str, password: &str) {
        self.state().basic = (user.into(), password.into());
    }

    /// The OAuth client accepted by `/oauth_token.do`.
    pub fn set_oauth_client(&self, id: &str, secret: &str) {
        self.state().oauth_client = (id.into(), secret.into());
    }

    /// Every access and refresh token issued from now on starts with
    /// `prefix` (a test's canary, to find tokens where they must not be).
    pub fn set_token_prefix(&self, prefix: &str) {
        self.state().token_prefix = prefix.into();
    }

    /// Access tokens issued so far (refreshes included).
    pub fn oauth_tokens_issued(&self) -> usize {
        self.state().tokens.len()
    }

    /// Makes every access token issued so far expire now.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in &mut self.state().tokens {
            t.expires = now;
        }
    }

    /// Lets `table` accept these extra fields (e.g. `u_jira_key` on incident).
    pub fn allow_fields(&self, table: &str, fields: &[&str]) {
        self.state()
            .extra_fields
            .entry(table.into())
            .or_default()
            .extend(fields.iter().map(|f| f.to_string()));
    }

    /// Adds a value to a choice list (`sys_choice`): `table`'s `element`
    /// (a table's own list replaces the one it inherits).
    pub fn add_choice(&self, table: &str, element: &str, value: &str, label: &str) {
        self.state().meta.extra_choices.push((
            table.into(),
            element.into(),
            value.into(),
            label.into(),
        ));
    }

    /// Every request from now on is answered `latency` later (after it is
    /// recorded, before auth and handling), like a remote instance.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.shared.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// From now on at most `threads` requests are handled at once (each
    /// taking the added latency), up to `queue` more wait for a thread in
    /// arrival order, and any request beyond that is answered 429 at once,
    /// as an instance's `API_INT` semaphore does: past `threads` concurrent
    /// calls the latency grows, past `threads + queue` calls are refused.
    /// `threads == 0` removes the limit.
    pub fn set_capacity(&self, threads: usize, queue: usize) {
        *lock(&self.shared.capacity) = (threads > 0).then(|| {
            Arc::new(Capacity {
                threads: Arc::new(tokio::sync::Semaphore::new(threads)),
                waiting: Default::default(),
                queue,
            })
        });
    }

    /// Requests refused with 429 by [`ServiceNowServer::set_capacity`]'s queue.
    pub fn refused_by_capacity(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Records of `table` with the wall-clock time each was inserted.
    pub fn records_created(&self, table: &str) -> Vec<(Map<String, Value>, SystemTime)> {
        let st = self.state();
        st.tables
            .get(table)
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let id = r.get("sys_id").and_then(Value::as_str).unwrap_or_default();
                        let at = st
                            .created_at
                            .get(id)
                            .copied()
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        (r.clone(), at)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// For each record of `table` created by a `POST` (not [`Self::seed`]ed):
    /// its `sys_id` and when that request had arrived, body read, before the
    /// added latency and the semaphore ([`Self::set_latency`],
    /// [`Self::set_capacity`]).
    pub fn create_arrivals(&self, table: &str) -> BTreeMap<String, SystemTime> {
        let st = self.state();
        st.tables
            .get(table)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let id = r.get("sys_id").and_then(Value::as_str)?;
                let at = st.create_arrived_at.get(id)?;
                Some((id.to_string(), *at))
            })
            .collect()
    }

    /// The fault plan of this server.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Stored records of `table` as stored (plain strings, no reference links).
    pub fn records(&self, table: &str) -> Vec<Map<String, Value>> {
        self.state().tables.get(table).cloned().unwrap_or_default()
    }

    /// The first record of `table` whose `field` equals `value`.
    pub fn find(&self, table: &str, field: &str, value: &str) -> Option<Map<String, Value>> {
        self.state()
            .tables
            .get(table)?
            .iter()
            .find(|r| r.get(field).and_then(Value::as_str) == Some(value))
            .cloned()
    }

    /// Journal entries of one record, oldest first.
    pub fn journal(&self, table: &str, sys_id: &str) -> Vec<JournalEntry> {
        self.state()
            .journal
            .iter()
            .filter(|(t, s, _)| t == table && s == sys_id)
            .map(|(_, _, e)| e.clone())
            .collect()
    }

    /// Every stored attachment, in upload order.
    pub fn attachments(&self) -> Vec<SnAttachment> {
        self.state().attachments.clone()
    }

    /// Fields written that the table does not have (ignored, like ServiceNow):
    /// (table, field).
    pub fn ignored_fields(&self) -> Vec<(String, String)> {
        self.state().ignored.clone()
    }

    /// Requests seen, in order (Authorization redacted).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Inserts a record directly (any field accepted, journal fields too),
    /// as user `admin`; returns its sys_id.
    pub fn seed(&self, table: &str, fields: Value) -> String {
        let mut st = self.state();
        let obj = fields.as_object().cloned().unwrap_or_default();
        let rec = st.insert(table, &obj, "admin", true);
        rec["sys_id"].as_str().unwrap_or_default().to_string()
    }
}

impl SnState {
    fn new_sys_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64())
    }

    fn known(&self, table: &str, field: &str) -> bool {
        if self
            .extra_fields
            .get(table)
            .is_some_and(|f| f.contains(field))
        {
            return true;
        }
        if TASK_TABLES.contains(&table) {
            TASK_FIELDS.contains(&field)
        } else {
            true
        }
    }

    /// Writes `fields` into `rec` (journal fields become journal entries,
    /// unknown fields are ignored and noted).
    fn write(
        &mut self,
        table: &str,
        rec: &mut Map<String, Value>,
        fields: &Map<String, Value>,
        user: &str,
        any_field: bool,
    ) {
        let now = snow_time();
        let sys_id = rec["sys_id"].as_str().unwrap_or_default().to_string();
        for (k, v) in fields {
            if JOURNAL_FIELDS.contains(&k.as_str()) {
                let value = stringify(v);
                if !value.is_empty() {
                    self.journal.push((
                        table.into(),
                        sys_id.clone(),
                        JournalEntry {
                            field: k.clone(),
                            value,
                            created_by: user.into(),
                            created_on: now.clone(),
                        },
                    ));
                }
                rec.insert(k.clone(), Value::String(String::new()));
            } else if k.starts_with("sys_") && !any_field {
                // System fields are not writable through the Table API.
            } else if any_field || self.known(table, k) {
                rec.insert(k.clone(), Value::String(stringify(v)));
            } else {
                self.ignored.push((table.into(), k.clone()));
            }
        }
    }

    fn insert(
        &mut self,
        table: &str,
        fields: &Map<String, Value>,
        user: &str,
        any_field: bool,
    ) -> Map<String, Value> {
        let now = snow_time();
        let sys_id = self.new_sys_id();
        let mut rec = Map::new();
        if TASK_TABLES.contains(&table) {
            for f in TASK_FIELDS {
                rec.insert((*f).into(), Value::String(String::new()));
            }
            // Each table's number prefix and the state a new record starts
            // in (its own state model: sys_choice in `meta`).
            let (prefix, state) = match table {
                "incident" => ("INC", "1"),
                "problem" => ("PRB", "101"),
                "sc_req_item" => ("RITM", "1"),
                "sc_task" => ("SCTASK", "1"),
                _ => ("CHG", "-5"),
            };
            let n = self.numbers.entry(table.into()).or_insert(10_000);
            *n += 1;
            let defaults = [
                ("number", format!("{prefix}{:07}", *n)),
                ("state", state.into()),
                ("active", "true".into()),
                ("impact", "3".into()),
                ("urgency", "3".into()),
                ("priority", "5".into()),
                ("severity", "3".into()),
                ("opened_at", now.clone()),
                ("opened_by", user_sys_id(user)),
                ("sys_domain", "global".into()),
                ("sys_domain_path", "/".into()),
                ("sys_class_name", table.into()),
                ("approval", "not requested".into()),
                ("made_sla", "true".into()),
                ("knowledge", "false".into()),
                ("escalation", "0".into()),
                ("reassignment_count", "0".into()),
                ("reopen_count", "0".into()),
                ("child_incidents", "0".into()),
            ];
            for (k, v) in defaults {
                rec.insert(k.into(), Value::String(v));
            }
            if table == "incident" {
                rec.insert("incident_state".into(), "1".into());
            }
        } else {
            let upper: String = table
                .chars()
                .filter(|c| c.is_ascii_alphabetic())
                .take(3)
                .collect::<String>()
                .to_ascii_uppercase();
            let n = self.numbers.entry(table.into()).or_insert(10_000);
            *n += 1;
            rec.insert("number".into(), Value::String(format!("{upper}{:07}", *n)));
        }
        for (k, v) in [
            ("sys_id", sys_id.clone()),
            ("sys_created_on", now.clone()),
            ("sys_updated_on", now.clone()),
            ("sys_created_by", user.into()),
            ("sys_updated_by", user.into()),
            ("sys_mod_count", "0".into()),
        ] {
            rec.insert(k.into(), Value::String(v));
        }
        self.write(table, &mut rec, fields, user, any_field);
        self.created_at.insert(sys_id, SystemTime::now());
        self.tables
            .entry(table.into())
            .or_default()
            .push(rec.clone());
        rec
    }
}

/// ServiceNow stores everything as text.
fn stringify(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => match o.get("value") {
            Some(inner) => stringify(inner),
            None => v.to_string(),
        },
        Value::Array(_) => v.to_string(),
    }
}

/// A stable fake sys_user sys_id for a user name.
fn user_sys_id(user: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}{:016x}", h.rotate_left(17) ^ 0x5555_aaaa_5555_aaaa)
}

/// A record as the Table API returns it.
fn render(
    base: &str,
    rec: &Map<String, Value>,
    fields: Option<&[String]>,
    plain_refs: bool,
) -> Value {
    let mut out = Map::new();
    for (k, v) in rec {
        if fields.is_some_and(|f| !f.iter().any(|x| x == k)) {
            continue;
        }
        let text = v.as_str().unwrap_or_default();
        let reference = REFERENCES.iter().find(|(f, _)| f == k);
        match reference {
            Some((_, target)) if !text.is_empty() && !plain_refs => {
                out.insert(
                    k.clone(),
                    json!({"link": format!("{base}/api/now/table/{target}/{text}"), "value": text}),
                );
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn sn_error(status: u16, message: &str, detail: &str) -> Response {
    error_response(
        status,
        Flavor::ServiceNow,
        "",
        Vec::new(),
        Some(
            json!({"error": {"message": message, "detail": detail}, "status": "failure"})
                .to_string(),
        ),
    )
}

fn not_found() -> Response {
    sn_error(
        404,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
}

/// One parsed `sysparm_query` condition.
#[derive(Debug)]
enum Cond {
    Cmp(String, &'static str, String),
    Empty(String, bool),
}

#[derive(Debug, Default)]
struct Query {
    conds: Vec<Cond>,
    order: Vec<(String, bool)>,
}

const OPERATORS: &[&str] = &[
    "NOT IN",
    "IN",
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT LIKE",
    "LIKE",
    "STARTSWITH",
    "ENDSWITH",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
];

fn parse_sn_query(q: &str) -> Result<Query, String> {
    // Split on `^`; `^^` is a literal caret.
    let mut parts = vec![String::new()];
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                parts.last_mut().unwrap().push('^');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut().unwrap().push(c);
        }
    }
    let mut query = Query::default();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if let Some(f) = part.strip_prefix("ORDERBYDESC") {
            query.order.push((f.to_string(), true));
            continue;
        }
        if let Some(f) = part.strip_prefix("ORDERBY") {
            query.order.push((f.to_string(), false));
            continue;
        }
        let n = part
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
            .unwrap_or(part.len());
        let (field, rest) = part.split_at(n);
        let op = OPERATORS.iter().find(|op| rest.starts_with(**op));
        match (field.is_empty(), op) {
            (false, Some(&"ISEMPTY")) if rest == "ISEMPTY" => {
                query.conds.push(Cond::Empty(field.into(), true))
            }
            (false, Some(&"ISNOTEMPTY")) if rest == "ISNOTEMPTY" => {
                query.conds.push(Cond::Empty(field.into(), false))
            }
            (false, Some(op)) if !op.starts_with("IS") => {
                query
                    .conds
                    .push(Cond::Cmp(field.into(), op, rest[op.len()..].to_string()))
            }
            _ => return Err(format!("unsupported sysparm_query part {part:?}")),
        }
    }
    Ok(query)
}

fn matches(rec: &Map<String, Value>, q: &Query) -> bool {
    q.conds.iter().all(|c| match c {
        Cond::Empty(f, empty) => {
            rec.get(f).and_then(Value::as_str).unwrap_or("").is_empty() == *empty
        }
        Cond::Cmp(f, op, v) => {
            let have = rec.get(f).and_then(Value::as_str).unwrap_or("");
            let (hl, vl) = (have.to_lowercase(), v.to_lowercase());
            match *op {
                "=" => have == v,
                "!=" => have != v,
                ">=" => have >= v.as_str(),
                "<=" => have <= v.as_str(),
                ">" => have > v.as_str(),
                "<" => have < v.as_str(),
                "LIKE" => hl.contains(&vl),
                "NOT LIKE" => !hl.contains(&vl),
                "STARTSWITH" => hl.starts_with(&vl),
                "ENDSWITH" => hl.ends_with(&vl),
                // `fieldINa,b,c`: one of the listed values.
                "IN" => v.split(',').any(|x| x == have),
                "NOT IN" => !v.split(',').any(|x| x == have),
                _ => false,
            }
        }
    })
}

fn get_param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let arrived = SystemTime::now();
    let rec = Recorded::new(&parts, &bytes);
    lock(&sh.state).requests.push(rec);
    // Held until the answer is made.
    let capacity = lock(&sh.capacity).clone();
    let _thread = match capacity {
        None => None,
        Some(c) => match c.threads.clone().try_acquire_owned() {
            Ok(t) => Some(t),
            Err(_) => {
                if c.waiting.fetch_add(1, Ordering::SeqCst) >= c.queue {
                    c.waiting.fetch_sub(1, Ordering::SeqCst);
                    sh.refused.fetch_add(1, Ordering::Relaxed);
                    return sn_error(
                        429,
                        "Too Many Requests",
                        "the API_INT semaphore's queue is full; try again later",
                    );
                }
                let t = c.threads.clone().acquire_owned().await.ok();
                c.waiting.fetch_sub(1, Ordering::SeqCst);
                t
            }
        },
    };
    let latency = sh.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());

    if path == "/oauth_token.do" {
        return faults::serve_request(&sh.faults, Flavor::ServiceNow, &parts, &path, false, || {
            if parts.method != Method::POST {
                return sn_error(405, "Method not allowed", "");
            }
            oauth(&sh, &parts.headers, &bytes)
        })
        .await;
    }

    let user = {
        let st = lock(&sh.state);
        match credentials(&parts.headers) {
            Some(Credentials::Basic(u, p))
                if (u.as_str(), p.as_str()) == (st.basic.0.as_str(), st.basic.1.as_str()) =>
            {
                Some(u)
            }
            Some(Credentials::Bearer(t)) => {
                let now = Instant::now();
                st.tokens
                    .iter()
                    .find(|k| k.access == t && k.expires > now)
                    .map(|k| k.user.clone())
            }
            _ => None,
        }
    };
    let Some(user) = user else {
        return unauthorized(Flavor::ServiceNow);
    };
    let write = is_write(&parts.method, &path);
    faults::serve_request(&sh.faults, Flavor::ServiceNow, &parts, &path, write, || {
        dispatch(&sh, &parts, &bytes, &path, &query, &user, arrived)
    })
    .await
}

/// The writes a [`Fault::AnswerLost`](crate::faults::Fault::AnswerLost)
/// applies to: `POST /api/now/table/{table}`, `PATCH` (and `PUT`)
/// `/api/now/table/{table}/{sys_id}` (journal writes through `comments` /
/// `work_notes` included), `POST /api/now/attachment/file`.
fn is_write(method: &Method, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        (method.as_str(), segs.as_slice()),
        ("POST", ["api", "now", "table", _])
            | ("PATCH" | "PUT", ["api", "now", "table", _, _])
            | ("POST", ["api", "now", "attachment", "file"])
    )
}

/// The handlers (after auth and faults).
fn dispatch(
    sh: &Shared,
    parts: &http::request::Parts,
    bytes: &[u8],
    path: &str,
    query: &[(String, String)],
    user: &str,
    arrived: SystemTime,
) -> Response {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(faults::percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &parts.method;
    match segs.as_slice() {
        ["api", "now", "table", table] => match *m {
            Method::GET => list(sh, table, query),
            Method::POST => match parse_object(bytes) {
                Ok(fields) => {
                    let plain = get_param(query, "sysparm_exclude_reference_link") == Some("true");
                    let fields_sel = sysparm_fields(query);
                    let rec = {
                        let mut st = lock(&sh.state);
                        let rec = st.insert(table, &fields, user, false);
                        if let Some(id) = rec.get("sys_id").and_then(Value::as_str) {
                            st.create_arrived_at.insert(id.to_string(), arrived);
                        }
                        rec
                    };
                    json_response(
                        201,
                        &json!({"result": render(&sh.base, &rec, fields_sel.as_deref(), plain)}),
                    )
                }
                Err(r) => *r,
            },
            _ => sn_error(
                405,
                "Method not Supported",
                "Method not supported for this API",
            ),
        },
        ["api", "now", "table", table, sys_id] => record(sh, m, table, sys_id, query, bytes, user),
        ["api", "now", "attachment", "file"] if *m == Method::POST => {
            upload(sh, &parts.headers, query, bytes.to_vec(), user)
        }
        ["api", "now", "attachment"] if *m == Method::GET => {
            let q = match parse_sn_query(get_param(query, "sysparm_query").unwrap_or("")) {
                Ok(q) => q,
                Err(e) => return sn_error(400, &e, ""),
            };
            let limit: usize = get_param(query, "sysparm_limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(1000);
            let offset: usize = get_param(query, "sysparm_offset")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let fields = sysparm_fields(query);
            let st = lock(&sh.state);
            let list: Vec<Value> = st
                .attachments
                .iter()
                .map(|a| attachment_meta(&sh.base, a, user))
                .filter(|v| v.as_object().is_some_and(|o| matches(o, &q)))
                .skip(offset)
                .take(limit)
                .map(|v| match (&fields, v) {
                    (Some(f), Value::Object(o)) => {
                        Value::Object(o.into_iter().filter(|(k, _)| f.contains(k)).collect())
                    }
                    (_, v) => v,
                })
                .collect();
            json_response(200, &json!({ "result": list }))
        }
        ["api", "now", "attachment", id] if *m == Method::GET => {
            let st = lock(&sh.state);
            match st.attachments.iter().find(|a| a.sys_id == *id) {
                Some(a) => {
                    json_response(200, &json!({"result": attachment_meta(&sh.base, a, user)}))
                }
                None => not_found(),
            }
        }
        ["api", "now", "attachment", id, "file"] if *m == Method::GET => {
            let st = lock(&sh.state);
            match st.attachments.iter().find(|a| a.sys_id == *id) {
                Some(a) => {
                    let mut resp = Response::new(Body::from(a.bytes.clone()));
                    if let Ok(v) = HeaderValue::from_str(&a.content_type) {
                        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
                    }
                    resp
                }
                None => not_found(),
            }
        }
        _ => sn_error(400, "Requested URI does not represent any resource", ""),
    }
}

fn sysparm_fields(query: &[(String, String)]) -> Option<Vec<String>> {
    get_param(query, "sysparm_fields")
        .filter(|f| !f.trim().is_empty())
        .map(|f| f.split(',').map(|x| x.trim().to_string()).collect())
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(Box::new(sn_error(
            400,
            "Exception while reading request",
            "The payload is not valid JSON.",
        ))),
    }
}

fn list(sh: &Shared, table: &str, query: &[(String, String)]) -> Response {
    let q = match parse_sn_query(get_param(query, "sysparm_query").unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return sn_error(400, &e, "not supported by the ServiceNowServer test double"),
    };
    let limit: usize = get_param(query, "sysparm_limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10_000);
    let offset: usize = get_param(query, "sysparm_offset")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let plain = get_param(query, "sysparm_exclude_reference_link") == Some("true");
    let fields = sysparm_fields(query);
    let st = lock(&sh.state);
    // Journal entries are rows of `sys_journal_field` (element_id = the
    // record's sys_id, element = the field, name = its table).
    let journal_rows: Vec<Map<String, Value>> = if table == "sys_journal_field" {
        st.journal
            .iter()
            .enumerate()
            .map(|(n, (t, id, e))| {
                let row = json!({
                    "sys_id": format!("{:032x}", n + 1),
                    "name": t, "element_id": id, "element": e.field, "value": e.value,
                    "sys_created_by": e.created_by, "sys_created_on": e.created_on,
                });
                row.as_object().cloned().unwrap_or_default()
            })
            .collect()
    } else {
        Vec::new()
    };
    let dictionary = meta::rows(&st, table);
    let mut hits: Vec<&Map<String, Value>> = if table == "sys_journal_field" {
        journal_rows.iter().filter(|r| matches(r, &q)).collect()
    } else if let Some(rows) = &dictionary {
        rows.iter().filter(|r| matches(r, &q)).collect()
    } else {
        st.tables
            .get(table)
            .map(|t| t.iter().filter(|r| matches(r, &q)).collect())
            .unwrap_or_default()
    };
    for (field, desc) in q.order.iter().rev() {
        hits.sort_by(|a, b| {
            let x = a.get(field).and_then(Value::as_str).unwrap_or("");
            let y = b.get(field).and_then(Value::as_str).unwrap_or("");
            if *desc {
                y.cmp(x)
            } else {
                x.cmp(y)
            }
        });
    }
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| render(&sh.base, r, fields.as_deref(), plain))
        .collect();
    let mut resp = json_response(200, &json!({ "result": page }));
    resp.headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total as u64));
    resp
}

fn record(
    sh: &Shared,
    m: &Method,
    table: &str,
    sys_id: &str,
    query: &[(String, String)],
    bytes: &[u8],
    user: &str,
) -> Response {
    let plain = get_param(query, "sysparm_exclude_reference_link") == Some("true");
    let fields = sysparm_fields(query);
    let mut st = lock(&sh.state);
    let Some(idx) = st
        .tables
        .get(table)
        .and_then(|t| t.iter().position(|r| r["sys_id"] == sys_id))
    else {
        return not_found();
    };
    match *m {
        Method::GET => {
            let rec = &st.tables[table][idx];
            json_response(
                200,
                &json!({"result": render(&sh.base, rec, fields.as_deref(), plain)}),
            )
        }
        Method::PATCH | Method::PUT => {
            let body = match parse_object(bytes) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let mut rec = st.tables[table][idx].clone();
            st.write(table, &mut rec, &body, user, false);
            let count = rec["sys_mod_count"]
                .as_str()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            rec.insert(
                "sys_mod_count".into(),
                Value::String((count + 1).to_string()),
            );
            rec.insert("sys_updated_on".into(), Value::String(snow_time()));
            rec.insert("sys_updated_by".into(), Value::String(user.into()));
            if let Some(t) = st.tables.get_mut(table) {
                t[idx] = rec.clone();
            }
            json_response(
                200,
                &json!({"result": render(&sh.base, &rec, fields.as_deref(), plain)}),
            )
        }
        Method::DELETE => {
            if let Some(t) = st.tables.get_mut(table) {
                t.remove(idx);
            }
            empty_response(204)
        }
        _ => sn_error(
            405,
            "Method not Supported",
            "Method not supported for this API",
        ),
    }
}

fn attachment_meta(base: &str, a: &SnAttachment, user: &str) -> Value {
    let _ = user;
    json!({
        "sys_id": a.sys_id,
        "file_name": a.file_name,
        "table_name": a.table_name,
        "table_sys_id": a.table_sys_id,
        "size_bytes": a.bytes.len().to_string(),
        "sys_mod_count": "0",
        "average_image_color": "",
        "image_width": "",
        "sys_updated_on": snow_time(),
        "sys_tags": "",
        "image_height": "",
        "sys_updated_by": DEFAULT_USER,
        "download_link": format!("{base}/api/now/attachment/{}/file", a.sys_id),
        "content_type": a.content_type,
        "sys_created_on": snow_time(),
        "size_compressed": a.bytes.len().to_string(),
        "compressed": "true",
        "state": "",
        "chunk_size_bytes": "734003",
        "sys_created_by": DEFAULT_USER,
    })
}

fn upload(
    sh: &Shared,
    headers: &http::HeaderMap,
    query: &[(String, String)],
    bytes: Vec<u8>,
    user: &str,
) -> Response {
    let mut missing = Vec::new();
    for p in ["table_name", "table_sys_id", "file_name"] {
        if get_param(query, p).is_none_or(str::is_empty) {
            missing.push(p);
        }
    }
    if !missing.is_empty() {
        return sn_error(
            400,
            &format!("Missing parameter(s): {}", missing.join(", ")),
            "table_name, table_sys_id and file_name are required",
        );
    }
    let Some(content_type) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.is_empty())
    else {
        return sn_error(400, "Content-Type header is required", "");
    };
    let table = get_param(query, "table_name").unwrap_or_default();
    let table_sys_id = get_param(query, "table_sys_id").unwrap_or_default();
    let mut st = lock(&sh.state);
    let exists = st
        .tables
        .get(table)
        .is_some_and(|t| t.iter().any(|r| r["sys_id"] == table_sys_id));
    if !exists {
        return sn_error(
            400,
            "Invalid table name or table_sys_id",
            &format!("no record {table}/{table_sys_id}"),
        );
    }
    let a = SnAttachment {
        sys_id: st.new_sys_id(),
        table_name: table.into(),
        table_sys_id: table_sys_id.into(),
        file_name: get_param(query, "file_name").unwrap_or_default().into(),
        content_type,
        bytes,
    };
    let mut meta = attachment_meta(&sh.base, &a, user);
    meta["sys_created_by"] = Value::String(user.into());
    meta["sys_updated_by"] = Value::String(user.into());
    st.attachments.push(a);
    json_response(201, &json!({ "result": meta }))
}

fn oauth(sh: &Shared, headers: &http::HeaderMap, bytes: &[u8]) -> Response {
    let is_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let form: BTreeMap<String, String> = if is_json {
        serde_json::from_slice::<Map<String, Value>>(bytes)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, stringify(&v)))
            .collect()
    } else {
        form_urlencoded::parse(bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let denied = || {
        json_response(
            401,
            &json!({"error_description": "access_denied", "error": "server_error"}),
        )
    };
    let mut st = lock(&sh.state);
    if (get("client_id"), get("client_secret"))
        != (st.oauth_client.0.as_str(), st.oauth_client.1.as_str())
    {
        return denied();
    }
    let user = match get("grant_type") {
        "password" => {
            if (get("username"), get("password")) != (st.basic.0.as_str(), st.basic.1.as_str()) {
                return denied();
            }
            get("username").to_string()
        }
        "client_credentials" => st.basic.0.clone(),
        "refresh_token" => match st.tokens.iter().find(|t| t.refresh == get("refresh_token")) {
            Some(t) => t.user.clone(),
            None => return denied(),
        },
        _ => {
            return json_response(
                400,
                &json!({"error_description": "invalid grant_type", "error": "invalid_request"}),
            )
        }
    };
    let prefix = st.token_prefix.clone();
    let access = format!("{prefix}sn-at-{}", st.new_sys_id());
    let refresh = if get("grant_type") == "refresh_token" {
        get("refresh_token").to_string()
    } else {
        format!("{prefix}sn-rt-{}", st.new_sys_id())
    };
    st.tokens.push(Token {
        access: access.clone(),
        refresh: refresh.clone(),
        user,
        expires: Instant::now() + Duration::from_secs(1799),
    });
    json_response(
        200,
        &json!({
            "access_token": access,
            "refresh_token": refresh,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": 1799
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{Fault, Match};

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn create_lookup_patch_journal() {
        let sn = ServiceNowServer::start().await;
        let base = sn.base_url();
        let c = client();
        let r = c
            .post(format!("{base}/api/now/table/incident"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .json(&json!({
                "short_description": "Printer on fire",
                "correlation_id": "OPS-1",
                "urgency": 2,
                "caller_id": "abc123",
                "comments": "first comment",
                "u_not_a_field": "x"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        let res = &body["result"];
        let sys_id = res["sys_id"].as_str().unwrap().to_string();
        assert_eq!(sys_id.len(), 32);
        assert!(res["number"].as_str().unwrap().starts_with("INC"));
        assert_eq!(res["number"].as_str().unwrap().len(), 10);
        assert_eq!(res["urgency"], "2");
        assert_eq!(res["state"], "1");
        assert_eq!(res["comments"], "");
        assert_eq!(res["sys_created_by"], DEFAULT_USER);
        assert_eq!(res["caller_id"]["value"], "abc123");
        assert_eq!(
            res["caller_id"]["link"],
            format!("{base}/api/now/table/sys_user/abc123")
        );
        assert!(res.get("u_not_a_field").is_none());
        assert_eq!(
            sn.ignored_fields(),
            vec![("incident".to_string(), "u_not_a_field".to_string())]
        );

        // Lookup by correlation_id, with a field list.
        let r = c
            .get(format!("{base}/api/now/table/incident"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .query(&[
                (
                    "sysparm_query",
                    "correlation_id=OPS-1^ORDERBYDESCsys_created_on",
                ),
                ("sysparm_fields", "sys_id,number"),
                ("sysparm_limit", "1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-total-count"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["result"][0]["sys_id"], sys_id.as_str());
        assert_eq!(body["result"][0].as_object().unwrap().len(), 2);
        let r = c
            .get(format!("{base}/api/now/table/incident"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .query(&[("sysparm_query", "correlation_id=OPS-2")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"result": []}));

        // Patch with a work note.
        let r = c
            .patch(format!("{base}/api/now/table/incident/{sys_id}"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .json(&json!({"state": 2, "work_notes": "on it"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["result"]["state"], "2");
        assert_eq!(body["result"]["sys_mod_count"], "1");
        let j = sn.journal("incident", &sys_id);
        assert_eq!(j.len(), 2);
        assert_eq!(
            (j[0].field.as_str(), j[0].value.as_str()),
            ("comments", "first comment")
        );
        assert_eq!(
            (j[1].field.as_str(), j[1].value.as_str()),
            ("work_notes", "on it")
        );
        assert_eq!(
            sn.find("incident", "correlation_id", "OPS-1").unwrap()["state"],
            "2"
        );

        // Unknown record.
        let r = c
            .get(format!("{base}/api/now/table/incident/{}", "0".repeat(32)))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "No Record found");

        // Attachment.
        let r = c
            .post(format!("{base}/api/now/attachment/file"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .query(&[
                ("table_name", "incident"),
                ("table_sys_id", sys_id.as_str()),
                ("file_name", "log.txt"),
            ])
            .header("Content-Type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["result"]["size_bytes"], "5");
        assert_eq!(body["result"]["table_sys_id"], sys_id.as_str());
        let a = sn.attachments();
        assert_eq!(
            (a[0].file_name.as_str(), a[0].bytes.as_slice()),
            ("log.txt", &b"hello"[..])
        );
        let r = c
            .post(format!("{base}/api/now/attachment/file"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .query(&[("table_name", "incident"), ("file_name", "log.txt")])
            .header("Content-Type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(sn
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("<redacted>")));
    }

    #[tokio::test]
    async fn added_latency_and_creation_times() {
        let sn = ServiceNowServer::start().await;
        sn.set_latency(Duration::from_millis(60));
        let before = SystemTime::now();
        let started = Instant::now();
        let r = client()
            .post(format!("{}/api/now/table/incident", sn.base_url()))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .json(&json!({"short_description": "slow", "correlation_id": "LAT-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert!(started.elapsed() >= Duration::from_millis(60));
        let created = sn.records_created("incident");
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].0["correlation_id"], "LAT-1");
        // Stored after the added latency, not when the request arrived.
        assert!(created[0].1 >= before + Duration::from_millis(60));
        assert!(created[0].1 <= SystemTime::now());
        // The arrival is before the latency.
        let sys_id = created[0].0["sys_id"].as_str().unwrap().to_string();
        let arrived = sn.create_arrivals("incident")[&sys_id];
        assert!(arrived >= before);
        assert!(arrived + Duration::from_millis(60) <= created[0].1);

        sn.set_latency(Duration::ZERO);
        let seeded = sn.seed("incident", json!({"correlation_id": "LAT-2"}));
        let created = sn.records_created("incident");
        assert_eq!(created.len(), 2);
        assert_eq!(created[1].0["sys_id"], seeded.as_str());
        assert!(created[1].1 >= created[0].1);
        // A seeded record had no request.
        assert_eq!(sn.create_arrivals("incident").len(), 1);
    }

    #[tokio::test]
    async fn a_semaphore_queues_then_refuses() {
        let sn = ServiceNowServer::start().await;
        sn.set_latency(Duration::from_millis(200));
        sn.set_capacity(2, 3);
        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..8 {
            let url = format!("{}/api/now/table/incident", sn.base_url());
            calls.spawn(async move {
                let r = client()
                    .post(url)
                    .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                    .json(
                        &json!({"short_description": "busy", "correlation_id": format!("CAP-{i}")}),
                    )
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), started.elapsed())
            });
        }
        let answers = calls.join_all().await;
        let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
        let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
        // Two handled at once, three waiting: five created, three refused at once.
        assert_eq!((ok.len(), refused.len()), (5, 3), "{answers:?}");
        assert!(refused.iter().all(|(_, t)| *t < Duration::from_millis(150)));
        // The waiting ones took a second and a third turn of 200 ms.
        let slowest = ok.iter().map(|(_, t)| *t).max().unwrap();
        assert!(slowest >= Duration::from_millis(600), "{slowest:?}");
        assert_eq!(sn.refused_by_capacity(), 3);
        assert_eq!(sn.records_created("incident").len(), 5);
        sn.set_capacity(0, 0);
        sn.set_latency(Duration::ZERO);
    }

    #[tokio::test]
    async fn query_language() {
        let sn = ServiceNowServer::start().await;
        let a = sn.seed(
            "incident",
            json!({"short_description": "a^b", "correlation_id": "X-1"}),
        );
        let b = sn.seed(
            "incident",
            json!({"short_description": "disk full", "correlation_id": "X-2"}),
        );
        let ids = |q: &str| {
            let q = parse_sn_query(q).unwrap();
            let mut out: Vec<String> = sn
                .records("incident")
                .iter()
                .filter(|r| matches(r, &q))
                .map(|r| r["sys_id"].as_str().unwrap().to_string())
                .collect();
            out.sort();
            out
        };
        assert_eq!(ids("short_description=a^^b"), vec![a.clone()]);
        assert_eq!(ids("short_descriptionLIKEDISK"), vec![b.clone()]);
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(ids("correlation_idINX-1,X-2,X-9"), both);
        assert_eq!(ids("correlation_idINX-2"), vec![b.clone()]);
        assert_eq!(ids("correlation_idNOT INX-2"), vec![a.clone()]);
        assert_eq!(
            ids("correlation_id=X-2^short_descriptionLIKEdisk"),
            vec![b.clone()]
        );
        assert_eq!(ids("sys_updated_on>=2000-01-01 00:00:00").len(), 2);
        assert!(ids("sys_updated_on>=2999-01-01 00:00:00").is_empty());
        assert!(parse_sn_query("a=1^ORb=2").is_err());
    }

    #[tokio::test]
    async fn auth_oauth_and_faults() {
        let sn = ServiceNowServer::start().await;
        let base = sn.base_url();
        let c = client();
        let url = format!("{base}/api/now/table/incident");
        sn.faults().push(
            Match::path("/api/now/table"),
            Fault::Status {
                status: 429,
                retry_after: Some("2".into()),
                headers: vec![],
                body: None,
            },
            1,
        );
        let r = c
            .get(&url)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        let r = c
            .get(&url)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sn.faults().injected().len(), 1);

        sn.set_basic(DEFAULT_USER, "rotated");
        let r = c
            .get(&url)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "User Not Authenticated");

        let r = c
            .post(format!("{base}/oauth_token.do"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("username", DEFAULT_USER),
                ("password", "rotated"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tok: Value = r.json().await.unwrap();
        assert_eq!(tok["expires_in"], 1799);
        let r = c
            .get(&url)
            .bearer_auth(tok["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        sn.expire_tokens();
        let r = c
            .get(&url)
            .bearer_auth(tok["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .post(format!("{base}/oauth_token.do"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("refresh_token", tok["refresh_token"].as_str().unwrap()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sn.oauth_tokens_issued(), 2);
        let r = c
            .post(format!("{base}/oauth_token.do"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", "wrong"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    /// The request error's chain as text (reqwest hides the cause).
    fn chain(e: &reqwest::Error) -> String {
        let mut out = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        out
    }

    #[tokio::test]
    async fn answer_lost_applies_the_write_then_loses_the_answer() {
        let sn = ServiceNowServer::start().await;
        let base = sn.base_url();
        let c = client();
        let post = |n: &str| {
            c.post(format!("{base}/api/now/table/incident"))
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .json(&json!({"short_description": n, "correlation_id": n}))
                .send()
        };
        // Drop: the connection is closed without an answer.
        sn.faults().push(
            Match::path("/api/now/table/incident"),
            Fault::answer_dropped(),
            1,
        );
        // A read passes a pending AnswerLost by (and does not use it up).
        let r = c
            .get(format!("{base}/api/now/table/incident"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let e = post("A-1").await.unwrap_err();
        assert!(e.is_request(), "{}", chain(&e));
        assert!(!e.is_timeout(), "{}", chain(&e));
        assert!(
            chain(&e).contains("connection closed before message completed"),
            "{}",
            chain(&e)
        );
        let rec = sn
            .find("incident", "correlation_id", "A-1")
            .expect("applied");
        assert_eq!(sn.faults().count("answer_lost"), 1);
        // The fault is used up: the next create is answered.
        assert_eq!(post("A-2").await.unwrap().status(), 201);

        // A refused write does not use the fault up.
        sn.faults().push(
            Match::method_path(Method::PATCH, "/api/now/table/incident"),
            Fault::answer_late(Duration::from_millis(1500)),
            1,
        );
        let patch = |sys_id: String, body: Value| {
            c.patch(format!("{base}/api/now/table/incident/{sys_id}"))
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .timeout(Duration::from_millis(300))
                .json(&body)
                .send()
        };
        let r = patch("nope".into(), json!({"comments": "x"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        // Late: a journal write is applied, the answer comes after the
        // client gave up.
        let sys_id = rec["sys_id"].as_str().unwrap().to_string();
        let e = patch(sys_id.clone(), json!({"comments": "late note"}))
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{}", chain(&e));
        let j = sn.journal("incident", &sys_id);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].value, "late note");
        assert_eq!(sn.faults().count("answer_lost"), 2);
        assert_eq!(
            sn.faults().injected()[1],
            (
                format!("PATCH /api/now/table/incident/{sys_id}"),
                "answer_lost".to_string()
            )
        );

        // Attachments too.
        sn.faults().push(Match::any(), Fault::answer_dropped(), 1);
        let e = c
            .post(format!("{base}/api/now/attachment/file"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .query(&[
                ("table_name", "incident"),
                ("table_sys_id", sys_id.as_str()),
                ("file_name", "a.txt"),
            ])
            .header("Content-Type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap_err();
        assert!(e.is_request(), "{}", chain(&e));
        assert_eq!(sn.attachments().len(), 1);
    }

    #[tokio::test]
    async fn answer_lost_rates_hit_only_writes_and_alternate() {
        let sn = ServiceNowServer::start().await;
        let base = sn.base_url();
        sn.faults().set_rates(
            crate::faults::Rates {
                answer_lost: 0.5,
                answer_lost_late_ms: 400,
                ..Default::default()
            },
            3,
        );
        let c = client();
        let mut errors = (0, 0);
        for n in 0..20 {
            let r = c
                .post(format!("{base}/api/now/table/incident"))
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .timeout(Duration::from_millis(200))
                .json(&json!({"correlation_id": format!("R-{n}")}))
                .send()
                .await;
            match r {
                Ok(r) => assert_eq!(r.status(), 201),
                Err(e) if e.is_timeout() => errors.1 += 1,
                Err(_) => errors.0 += 1,
            }
            let r = c
                .get(format!("{base}/api/now/table/incident"))
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        // Every write is applied, answered or not.
        assert_eq!(sn.records("incident").len(), 20);
        let lost = sn.faults().count("answer_lost");
        assert!(lost > 0 && lost == errors.0 + errors.1, "{lost} {errors:?}");
        assert!(errors.0 > 0 && errors.1 > 0, "{errors:?}");
        assert!(errors.0 - errors.1 <= 1, "{errors:?}");
    }
}
