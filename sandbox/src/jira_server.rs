//! `JiraServer`: an in-memory stand-in for Jira Cloud's REST API (v3, and
//! v2 paths validated against the v3 operation), which validates every
//! `/rest/api/...` request against the real OpenAPI spec from the fixtures.
//! Test support only.
//!
//! Order per request: record, faults, `/oauth/token`, auth, OpenAPI check,
//! handler, then (a successful write taken by a
//! [`Fault::AnswerLost`](crate::faults::Fault::AnswerLost)) the answer
//! lost. A contract violation answers 400 (404 for a path the spec does
//! not have) in Jira's error shape and is listed in
//! [`JiraServer::violations`]; so are v3 ADF violations, missing create
//! fields, a missing `X-Atlassian-Token` on uploads and JQL this double
//! cannot evaluate. Workflow refusals and 404s are not violations.
//!
//! Jira Cloud behaviour a test can switch on: JQL search lagging behind
//! writes ([`JiraServer::set_search_lag`], with `reconcileIssues`) and
//! attachment downloads redirected to another host
//! ([`JiraServer::set_content_redirect`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::{HeaderValue, Method};
use serde_json::{json, Map, Value};

use crate::faults::{
    self, credentials, empty_response, jira_time, json_response, lock, parse_query, percent_encode,
    unauthorized, Credentials, Faults, Flavor, Recorded, XorShift,
};

mod dc_users;
mod meta;
pub use meta::{Account, Named, Site};

/// Default Basic credentials (email, API token).
pub const DEFAULT_EMAIL: &str = "relay@example.com";
pub const DEFAULT_API_TOKEN: &str = "jira-api-token";
/// Default OAuth 2.0 client (client credentials grant at `/oauth/token`).
pub const DEFAULT_CLIENT_ID: &str = "jira-client-id";
pub const DEFAULT_CLIENT_SECRET: &str = "jira-client-secret";

/// The cloud id of the sandbox site (OAuth 2.0 3LO): the API is also served
/// under `/ex/jira/sandbox-cloud-id/...`.
pub const CLOUD_ID: &str = "sandbox-cloud-id";

/// OAuth 2.0 (3LO) state: one-use authorization codes and the refresh
/// tokens currently valid (each refresh replaces the one used).
#[derive(Debug, Default)]
struct ThreeLo {
    /// (code, client id, redirect URI)
    codes: Vec<(String, String, String)>,
    refresh_tokens: Vec<String>,
    refreshes: usize,
    /// `refresh_token` grants refused with `invalid_grant`.
    refused: usize,
}

/// A stored file (attachment content).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub filename: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// What an issue looks like in the server, for assertions.
#[derive(Debug, Clone)]
pub struct IssueSnapshot {
    pub key: String,
    pub id: String,
    /// Fields as stored (as sent, plus `status`, `created`, `updated`,
    /// `project`, `issuetype`).
    pub fields: Value,
    pub status: String,
    /// Comment objects in order (`body` as sent).
    pub comments: Vec<Value>,
    pub attachments: Vec<StoredFile>,
    pub properties: BTreeMap<String, Value>,
    /// Remote link objects as returned by `GET .../remotelink`.
    pub remote_links: Vec<Value>,
}

/// One comment as stored, for assertions ([`JiraServer::comments`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CommentSnapshot {
    pub id: String,
    /// As sent (ADF on v3, a string on v2).
    pub body: Value,
    pub author: Value,
    pub update_author: Value,
    pub created: String,
    pub updated: String,
    pub visibility: Option<Value>,
    /// Entity properties set on create or update (key → value).
    pub properties: BTreeMap<String, Value>,
}

/// A request the real Jira would reject.
#[derive(Debug, Clone)]
pub struct Violation {
    pub method: String,
    pub path: String,
    pub errors: Vec<String>,
}

/// A workflow status.
#[derive(Debug, Clone)]
pub struct StatusDef {
    pub name: String,
    pub id: String,
}

/// A workflow transition, available from every status except `to`.
#[derive(Debug, Clone)]
pub struct TransitionDef {
    pub id: String,
    pub name: String,
    /// Target status name.
    pub to: String,
    /// Fields that must be given (in `fields` or as an `update` `set`).
    pub required_fields: Vec<String>,
    /// Fields set to null by the transition (e.g. `resolution` on reopen).
    pub clears_fields: Vec<String>,
}

/// Statuses and transitions ([`Workflow::default`]: To Do, In Progress,
/// Resolved, Closed; Start Progress 21, Resolve 31 (needs `resolution`),
/// Close 41, Reopen 51, Pause 61).
#[derive(Debug, Clone)]
pub struct Workflow {
    /// As `/workflow/search` and the project's workflow scheme name it.
    pub name: String,
    pub statuses: Vec<StatusDef>,
    pub transitions: Vec<TransitionDef>,
    /// Status of new issues.
    pub initial: String,
}

impl Default for Workflow {
    fn default() -> Self {
        let st = |name: &str, id: &str| StatusDef {
            name: name.into(),
            id: id.into(),
        };
        let tr = |id: &str, name: &str, to: &str, req: &[&str], clears: &[&str]| TransitionDef {
            id: id.into(),
            name: name.into(),
            to: to.into(),
            required_fields: req.iter().map(|s| s.to_string()).collect(),
            clears_fields: clears.iter().map(|s| s.to_string()).collect(),
        };
        Workflow {
            name: "Sandbox Workflow".into(),
            statuses: vec![
                st("To Do", "10000"),
                st("In Progress", "3"),
                st("Resolved", "5"),
                st("Closed", "6"),
            ],
            transitions: vec![
                tr("21", "Start Progress", "In Progress", &[], &["resolution"]),
                tr("31", "Resolve", "Resolved", &["resolution"], &[]),
                tr("41", "Close", "Closed", &[], &[]),
                tr("51", "Reopen", "To Do", &[], &["resolution"]),
                tr("61", "Pause", "To Do", &[], &["resolution"]),
            ],
            initial: "To Do".into(),
        }
    }
}

#[derive(Debug)]
struct Issue {
    id: u64,
    key: String,
    fields: Map<String, Value>,
    comments: Vec<Value>,
    attachments: Vec<u64>,
    properties: BTreeMap<String, Value>,
    remote_links: Vec<Value>,
    /// The search index (used while a search lag is set): the fields as
    /// JQL search sees them (`None`: not indexed yet, invisible to search),
    /// and the later versions with the time each becomes visible.
    indexed: Option<Map<String, Value>>,
    pending: VecDeque<(Instant, Map<String, Value>)>,
}

impl Issue {
    /// This issue as search sees it with these fields.
    fn with_fields(&self, fields: &Map<String, Value>) -> Issue {
        Issue {
            id: self.id,
            key: self.key.clone(),
            fields: fields.clone(),
            comments: self.comments.clone(),
            attachments: self.attachments.clone(),
            properties: self.properties.clone(),
            remote_links: self.remote_links.clone(),
            indexed: None,
            pending: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
struct JiraState {
    issues: Vec<Issue>,
    next_issue_id: u64,
    next_comment_id: u64,
    next_file_id: u64,
    next_link_id: u64,
    projects: BTreeMap<String, (String, u64)>,
    files: BTreeMap<u64, StoredFile>,
    basic: Option<(String, String)>,
    bearer: Option<String>,
    oauth_client: (String, String, u64),
    /// Put before every access and refresh token issued (tests make them
    /// recognisable).
    token_prefix: String,
    tokens: Vec<(String, Instant)>,
    three_lo: ThreeLo,
    workflow: Workflow,
    /// Projects, issue types, fields, priorities, permissions.
    site: Site,
    requests: Vec<Recorded>,
    violations: Vec<Violation>,
    rng: XorShift,
    /// How long a change takes to reach JQL search (0: at once).
    search_lag: Duration,
    /// The organization admin API's key (see [`JiraServer::set_org_api_key`]).
    org_api_key: Option<String>,
    /// Where attachment downloads are redirected (`302`), if anywhere.
    content_redirect: Option<String>,
    /// Jira Service Management projects (by key): their comments carry
    /// `jsdPublic`, and a public one is mailed to the customer.
    service_desks: std::collections::BTreeSet<String>,
    /// What JSM mailed to customers: (issue key, comment id, body text).
    customer_mail: Vec<(String, String, String)>,
}

struct Shared {
    base: String,
    state: Mutex<JiraState>,
    faults: Faults,
    /// Check requests against the OpenAPI spec (tests); off in `relay demo`,
    /// where the team fixtures need not exist.
    contract_check: std::sync::atomic::AtomicBool,
    /// Admin webhooks (`/rest/webhooks/1.0/webhook`), kept apart from issues.
    webhooks: Mutex<Vec<(u64, Value)>>,
}

/// Handle on a running Jira Cloud stand-in (cheap to clone).
#[derive(Clone)]
pub struct JiraServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for JiraServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JiraServer")
            .field("base", &self.shared.base)
            .finish()
    }
}

static SERVERS: AtomicU64 = AtomicU64::new(1);

impl JiraServer {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime. Requests
    /// are validated against the fixtures' OpenAPI spec when the fixtures
    /// are present.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            state: Mutex::new(JiraState {
                issues: Vec::new(),
                next_issue_id: 10_000,
                next_comment_id: 10_000,
                next_file_id: 10_000,
                next_link_id: 10_000,
                projects: BTreeMap::new(),
                files: BTreeMap::new(),
                basic: Some((DEFAULT_EMAIL.into(), DEFAULT_API_TOKEN.into())),
                bearer: None,
                oauth_client: (DEFAULT_CLIENT_ID.into(), DEFAULT_CLIENT_SECRET.into(), 3600),
                token_prefix: String::new(),
                tokens: Vec::new(),
                three_lo: ThreeLo::default(),
                workflow: Workflow::default(),
                site: Site::default(),
                requests: Vec::new(),
                violations: Vec::new(),
                rng: XorShift::new(0x7172_0000 + SERVERS.fetch_add(1, Ordering::Relaxed)),
                search_lag: Duration::ZERO,
                org_api_key: None,
                content_redirect: None,
                service_desks: Default::default(),
                customer_mail: Vec::new(),
            }),
            faults: Faults::default(),
            contract_check: std::sync::atomic::AtomicBool::new(true),
            webhooks: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        faults::serve(listener, app);
        JiraServer { shared }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JiraState> {
        lock(&self.shared.state)
    }

    /// `http://127.0.0.1:<port>` (the site URL).
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// Basic credentials (email, API token) accepted from now on.
    pub fn set_basic(&self, email: &str, token: &str) {
        self.state().basic = Some((email.into(), token.into()));
    }

    /// A personal access token accepted as `Bearer` from now on (replaces
    /// the previous one; OAuth tokens stay valid).
    pub fn set_bearer(&self, token: &str) {
        self.state().bearer = Some(token.into());
    }

    /// The OAuth client accepted at `POST /oauth/token`, and the lifetime of
    /// the tokens it gets.
    pub fn set_oauth_client(&self, id: &str, secret: &str, expires_in_secs: u64) {
        self.state().oauth_client = (id.into(), secret.into(), expires_in_secs);
    }

    /// Every access and refresh token issued from now on starts with
    /// `prefix` (a test's canary, to find tokens where they must not be).
    pub fn set_token_prefix(&self, prefix: &str) {
        self.state().token_prefix = prefix.into();
    }

    /// Access tokens issued at `/oauth/token` so far.
    pub fn oauth_tokens_issued(&self) -> usize {
        self.state().tokens.len()
    }

    /// OAuth 2.0 (3LO): what the consent screen hands the browser for
    /// `client_id` and `redirect_uri`: an authorization code, good for one
    /// `authorization_code` exchange at `/oauth/token`.
    pub fn issue_auth_code(&self, client_id: &str, redirect_uri: &str) -> String {
        let mut st = self.state();
        let code = format!("jira-code-{:016x}", st.rng.next_u64());
        st.three_lo
            .codes
            .push((code.clone(), client_id.into(), redirect_uri.into()));
        code
    }

    /// OAuth 2.0 (3LO): the user revoked the app's consent; every refresh
    /// token stops working (access tokens run out on their own).
    pub fn revoke_consent(&self) {
        self.state().three_lo.refresh_tokens.clear();
    }

    /// OAuth 2.0 (3LO): successful `refresh_token` grants so far.
    pub fn oauth_refreshes(&self) -> usize {
        self.state().three_lo.refreshes
    }

    /// OAuth 2.0 (3LO): `refresh_token` grants refused with `invalid_grant`
    /// (a used-up, revoked or unknown refresh token).
    pub fn oauth_refusals(&self) -> usize {
        self.state().three_lo.refused
    }

    /// OAuth 2.0 (3LO): the refresh tokens valid now (normally one).
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.state().three_lo.refresh_tokens.clone()
    }

    /// Makes every OAuth access token issued so far expire now.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in &mut self.state().tokens {
            t.1 = now;
        }
    }

    /// Registered admin webhooks, as `GET /rest/webhooks/1.0/webhook` shows them.
    pub fn admin_webhooks(&self) -> Vec<Value> {
        lock(&self.shared.webhooks)
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Turns the OpenAPI contract check off (the demo) or on (the default).
    pub fn set_contract_check(&self, on: bool) {
        self.shared
            .contract_check
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Declares a project (key, display name): the metadata APIs show it
    /// before any issue exists in it. Issues may still be created in any
    /// project (which then exists too), unless the permission is denied.
    pub fn add_project(&self, key: &str, name: &str) {
        let mut st = self.state();
        let key = key.to_ascii_uppercase();
        st.project(&key);
        st.site.project_names.insert(key, name.into());
    }

    /// Adds a custom text field (`customfield_N`, display name) to the
    /// site: listed by `/field`, on every create screen.
    pub fn add_custom_field(&self, id: &str, name: &str) {
        self.state().site.custom_fields.push(Named {
            id: id.into(),
            name: name.into(),
        });
    }

    /// Makes `project` a Jira Service Management project: its comments
    /// show `jsdPublic`, and every public one (no `visibility`, no
    /// `sd.public.comment` property with `internal: true`) is mailed to the
    /// customer, as JSM does; see [`JiraServer::customer_mail`].
    pub fn make_service_desk(&self, project: &str) {
        let mut st = self.state();
        let key = project.to_ascii_uppercase();
        st.project(&key);
        st.service_desks.insert(key);
    }

    /// What JSM mailed to customers so far: (issue key, comment id, text).
    pub fn customer_mail(&self) -> Vec<(String, String, String)> {
        self.state().customer_mail.clone()
    }

    /// Adds an account; `email: None` hides its address (Jira Cloud's
    /// profile visibility).
    pub fn add_user(&self, account_id: &str, display_name: &str, email: Option<&str>) {
        self.state().site.users.push(Account {
            account_id: account_id.into(),
            display_name: display_name.into(),
            email: email.map(str::to_owned),
            products: Vec::new(),
            name: None,
            active: true,
            searchable_from: None,
        });
    }

    /// The organization API key the admin API (`/users/{id}/manage/lifecycle/…`)
    /// accepts as its bearer token (none: every call is refused).
    pub fn set_org_api_key(&self, key: &str) {
        self.state().org_api_key = Some(key.to_owned());
    }

    /// Whether the account is active (`None`: no such account).
    pub fn account_active(&self, account_id: &str) -> Option<bool> {
        self.state()
            .site
            .users
            .iter()
            .find(|a| a.account_id == account_id)
            .map(|a| a.active)
    }

    /// Users and groups on `/rest/api/2` answer as Jira Data Center's do:
    /// accounts by username (`name`, `?username=`), `applicationKeys`,
    /// `PUT /user {active}`, membership by `{name}` (see `dc_users`). The
    /// Cloud spec does not describe them, so they are checked by hand.
    pub fn set_data_center(&self, on: bool) {
        self.state().site.data_center = on;
    }

    /// Data Center accounts: (key, username, e-mail, active, application keys).
    #[allow(clippy::type_complexity)]
    pub fn dc_accounts(&self) -> Vec<(String, String, Option<String>, bool, Vec<String>)> {
        self.state()
            .site
            .users
            .iter()
            .filter_map(|a| {
                let name = a.name.clone()?;
                Some((
                    a.account_id.clone(),
                    name,
                    a.email.clone(),
                    a.active,
                    a.products.clone(),
                ))
            })
            .collect()
    }

    /// Adds an (empty) group, as an admin would.
    pub fn add_group(&self, name: &str) {
        self.state().site.groups.entry(name.to_owned()).or_default();
    }

    /// The account ids in group `name` (`None`: no such group).
    pub fn group_members(&self, name: &str) -> Option<Vec<String>> {
        self.state()
            .site
            .groups
            .get(name)
            .map(|m| m.iter().cloned().collect())
    }

    /// The accounts of the site (account id, e-mail, products).
    pub fn accounts(&self) -> Vec<(String, Option<String>, Vec<String>)> {
        self.state()
            .site
            .users
            .iter()
            .map(|a| (a.account_id.clone(), a.email.clone(), a.products.clone()))
            .collect()
    }

    /// Deletes a custom field and adds one of the same name under a new id
    /// (what an admin does who recreates a field): issues keep the old
    /// field's values under the old id, which the site no longer accepts.
    pub fn recreate_custom_field(&self, name: &str, new_id: &str) {
        let mut st = self.state();
        st.site.custom_fields.retain(|f| f.name != name);
        st.site.custom_fields.push(Named {
            id: new_id.into(),
            name: name.into(),
        });
    }

    /// The integration user loses a project permission (`CREATE_ISSUES`,
    /// `ADD_COMMENTS`, `TRANSITION_ISSUES`, `EDIT_ISSUES`,
    /// `CREATE_ATTACHMENTS`): `/mypermissions` says so, and a create in
    /// that project is refused as Jira refuses it.
    pub fn deny_permission(&self, project: &str, permission: &str) {
        self.state()
            .site
            .denied
            .insert((project.to_ascii_uppercase(), permission.into()));
    }

    /// Changes the site's issue types, priorities, resolutions or fields.
    pub fn configure_site(&self, f: impl FnOnce(&mut Site)) {
        f(&mut self.state().site);
    }

    /// Replaces the workflow (existing issues keep their status name).
    pub fn set_workflow(&self, workflow: Workflow) {
        self.state().workflow = workflow;
    }

    /// Eventual consistency of JQL search, like Jira Cloud's index: from
    /// now on a created issue is invisible to search (`/search/jql`,
    /// `/search`, v2 and v3) until `lag` after its creation, and a change
    /// (edit, transition, comment, attachment, property, remote link)
    /// reaches search only `lag` after it happened; until then search
    /// matches and shows the issue as it was indexed. Direct reads
    /// (`GET /issue/{key}`) are always current, and so are the issues a
    /// `/search/jql` request names in `reconcileIssues`. What exists when
    /// this is called counts as indexed. `Duration::ZERO` (the default)
    /// turns the lag off.
    pub fn set_search_lag(&self, lag: Duration) {
        let mut st = self.state();
        st.search_lag = lag;
        for i in 0..st.issues.len() {
            st.index_now(i);
        }
    }

    /// Attachment downloads (`GET /rest/api/{2,3}/attachment/content/{id}`
    /// and `GET /secure/attachment/{id}/{name}`) answer `302 Found` with
    /// `Location: <url>` from now on, like Jira Cloud sending downloads to
    /// its media host (after auth; a missing attachment is still 404;
    /// `?redirect=false` on `/attachment/content` gets the bytes). `{id}`
    /// and `{filename}` in `url` are replaced by the attachment's id and
    /// (percent-encoded) file name. `None`: serve the bytes (the default).
    pub fn set_content_redirect(&self, url: Option<String>) {
        self.state().content_redirect = url;
    }

    /// The fault plan of this server.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Requests seen, in order (Authorization redacted).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Requests the real Jira would have rejected.
    pub fn violations(&self) -> Vec<Violation> {
        self.state().violations.clone()
    }

    /// One issue by key or id.
    pub fn issue(&self, key_or_id: &str) -> Option<IssueSnapshot> {
        let st = self.state();
        let i = st.find(key_or_id)?;
        Some(st.snapshot(&st.issues[i], &self.shared.base))
    }

    /// The comments of one issue (key or id), in order, with their
    /// entity properties; `None` when there is no such issue.
    pub fn comments(&self, key_or_id: &str) -> Option<Vec<CommentSnapshot>> {
        let st = self.state();
        let i = st.find(key_or_id)?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Some(
            st.issues[i]
                .comments
                .iter()
                .map(|c| CommentSnapshot {
                    id: text(&c["id"]),
                    body: c["body"].clone(),
                    author: c["author"].clone(),
                    update_author: c["updateAuthor"].clone(),
                    created: text(&c["created"]),
                    updated: text(&c["updated"]),
                    visibility: c.get("visibility").cloned(),
                    properties: c["properties"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| (text(&p["key"]), p["value"].clone()))
                        .collect(),
                })
                .collect(),
        )
    }

    /// Every issue, in creation order.
    pub fn issues(&self) -> Vec<IssueSnapshot> {
        let st = self.state();
        st.issues
            .iter()
            .map(|i| st.snapshot(i, &self.shared.base))
            .collect()
    }

    /// Creates an issue directly (no validation); `fields` may set `status`
    /// (a name), `created`, `updated`. Returns the key. Search sees it at
    /// once, whatever the search lag.
    pub fn seed_issue(&self, project: &str, fields: Value) -> String {
        let mut st = self.state();
        let mut fields = fields.as_object().cloned().unwrap_or_default();
        let status = match fields.remove("status") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Object(o)) => o.get("name").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        fields
            .entry("issuetype")
            .or_insert_with(|| json!({"name": "Task"}));
        let key = st.create(project, fields);
        let i = st.find(&key).unwrap_or_default();
        if let Some(s) = status {
            let sv = st.status_value(&s);
            st.issues[i].fields.insert("status".into(), sv);
        }
        // Seeded issues are already in the search index.
        st.index_now(i);
        key
    }

    /// Stores a file that is not (yet) on an issue, e.g. one a webhook
    /// payload refers to; returns its content URL
    /// (`<base>/secure/attachment/<id>/<filename>`).
    pub fn add_file(&self, name: &str, mime: &str, bytes: Vec<u8>) -> String {
        let mut st = self.state();
        let id = st.next_file_id;
        st.next_file_id += 1;
        st.files.insert(
            id,
            StoredFile {
                filename: name.into(),
                mime: mime.into(),
                bytes,
            },
        );
        format!(
            "{}/secure/attachment/{id}/{}",
            self.shared.base,
            percent_encode(name)
        )
    }
}

impl JiraState {
    fn find(&self, key_or_id: &str) -> Option<usize> {
        if let Ok(id) = key_or_id.parse::<u64>() {
            return self.issues.iter().position(|i| i.id == id);
        }
        self.issues
            .iter()
            .position(|i| i.key.eq_ignore_ascii_case(key_or_id))
    }

    fn status_value(&self, name: &str) -> Value {
        let id = self
            .workflow
            .statuses
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        json!({"name": name, "id": id, "statusCategory": meta::category(&self.workflow, name)})
    }

    fn project(&mut self, key: &str) -> (String, u64) {
        let n = self.projects.len() as u64;
        self.projects
            .entry(key.to_ascii_uppercase())
            .or_insert_with(|| (format!("{}", 10_000 + n), 0))
            .clone()
    }

    /// Creates an issue in `project` (a key) with these fields.
    fn create(&mut self, project: &str, mut fields: Map<String, Value>) -> String {
        let project = project.to_ascii_uppercase();
        let (pid, _) = self.project(&project);
        let entry = self.projects.get_mut(&project).expect("project");
        entry.1 += 1;
        let key = format!("{project}-{}", entry.1);
        let id = self.next_issue_id;
        self.next_issue_id += 1;
        let now = jira_time();
        fields.insert("project".into(), json!({"key": project, "id": pid}));
        let initial = self.workflow.initial.clone();
        let status = self.status_value(&initial);
        fields.entry("status").or_insert(status);
        fields
            .entry("created")
            .or_insert(Value::String(now.clone()));
        fields.entry("updated").or_insert(Value::String(now));
        self.issues.push(Issue {
            id,
            key: key.clone(),
            fields,
            comments: Vec::new(),
            attachments: Vec::new(),
            properties: BTreeMap::new(),
            remote_links: Vec::new(),
            indexed: None,
            pending: VecDeque::new(),
        });
        let idx = self.issues.len() - 1;
        self.reindex(idx);
        key
    }

    /// The issue changed: with a search lag, search sees this version only
    /// `search_lag` from now.
    fn reindex(&mut self, idx: usize) {
        if self.search_lag.is_zero() {
            return;
        }
        let at = Instant::now() + self.search_lag;
        let issue = &mut self.issues[idx];
        let fields = issue.fields.clone();
        issue.pending.push_back((at, fields));
    }

    /// Search sees the issue as it is now (seeded issues, reconciled ones).
    fn index_now(&mut self, idx: usize) {
        let issue = &mut self.issues[idx];
        issue.indexed = Some(issue.fields.clone());
        issue.pending.clear();
    }

    fn snapshot(&self, i: &Issue, base: &str) -> IssueSnapshot {
        IssueSnapshot {
            key: i.key.clone(),
            id: i.id.to_string(),
            fields: Value::Object(i.fields.clone()),
            status: i
                .fields
                .get("status")
                .and_then(|s| s["name"].as_str())
                .unwrap_or_default()
                .to_string(),
            comments: i
                .comments
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if let Some(o) = c.as_object_mut() {
                        o.remove("properties");
                    }
                    c
                })
                .collect(),
            attachments: i
                .attachments
                .iter()
                .filter_map(|id| self.files.get(id).cloned())
                .collect(),
            properties: i.properties.clone(),
            remote_links: i
                .remote_links
                .iter()
                .map(|l| {
                    let mut l = l.clone();
                    l["self"] = Value::String(format!(
                        "{base}/rest/api/3/issue/{}/remotelink/{}",
                        i.id, l["id"]
                    ));
                    l
                })
                .collect(),
        }
    }

    fn add_comment(&mut self, idx: usize, body: Value, author: &Value) -> Value {
        let id = self.next_comment_id;
        self.next_comment_id += 1;
        let now = jira_time();
        let c = json!({
            "id": id.to_string(),
            "author": author,
            "updateAuthor": author,
            "body": body,
            "created": now,
            "updated": now,
            "jsdPublic": true
        });
        self.issues[idx].comments.push(c.clone());
        self.touch(idx);
        c
    }

    fn touch(&mut self, idx: usize) {
        self.issues[idx]
            .fields
            .insert("updated".into(), Value::String(jira_time()));
        self.reindex(idx);
    }
}

/// Request context after auth.
struct Ctx<'a> {
    sh: &'a Shared,
    v2: bool,
    author: Value,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
}

impl Ctx<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn api(&self) -> &'static str {
        if self.v2 {
            "2"
        } else {
            "3"
        }
    }
    fn violation(&self, errors: Vec<String>) {
        lock(&self.sh.state).violations.push(Violation {
            method: self.method.to_string(),
            path: self.path.clone(),
            errors,
        });
    }
}

/// Events an admin webhook may subscribe to (the relay's subset and kin).
const WEBHOOK_EVENTS: &[&str] = &[
    "jira:issue_created",
    "jira:issue_updated",
    "jira:issue_deleted",
    "comment_created",
    "comment_updated",
    "comment_deleted",
    "attachment_created",
    "attachment_deleted",
    "worklog_created",
    "worklog_updated",
    "worklog_deleted",
    "issuelink_created",
    "issuelink_deleted",
    "user_created",
    "user_updated",
    "user_deleted",
    "group_created",
    "group_deleted",
];

/// Checks an admin webhook registration body; returns the stored form.
fn webhook_body(sh: &Shared, id: u64, body: &Value) -> Result<Value, String> {
    let obj = body.as_object().ok_or("the body must be a JSON object")?;
    for k in obj.keys() {
        if ![
            "name",
            "url",
            "events",
            "filters",
            "excludeBody",
            "secret",
            "enabled",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("Unrecognized field \"{k}\""));
        }
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or("name is required")?;
    let url = obj
        .get("url")
        .and_then(Value::as_str)
        .ok_or("url is required")?;
    let loopback = url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
    if !url.starts_with("https://") && !loopback {
        return Err("url must be an https URL".into());
    }
    let events = obj
        .get("events")
        .and_then(Value::as_array)
        .ok_or("events must be an array")?;
    for e in events {
        let e = e.as_str().ok_or("events must be strings")?;
        if !WEBHOOK_EVENTS.contains(&e) {
            return Err(format!("unknown event {e}"));
        }
    }
    if let Some(f) = obj.get("filters") {
        let f = f.as_object().ok_or("filters must be an object")?;
        for (k, v) in f {
            if k != "issue-related-events-section" || !v.is_string() {
                return Err(format!("unsupported filter {k}"));
            }
        }
    }
    if obj.get("excludeBody").is_some_and(|v| !v.is_boolean()) {
        return Err("excludeBody must be a boolean".into());
    }
    let mut stored = json!({
        "name": name,
        "url": url,
        "events": events,
        "filters": obj.get("filters").cloned().unwrap_or_else(|| json!({"issue-related-events-section": ""})),
        "excludeBody": obj.get("excludeBody").cloned().unwrap_or(json!(false)),
        "enabled": obj.get("enabled").cloned().unwrap_or(json!(true)),
        "self": format!("{}/rest/webhooks/1.0/webhook/{id}", sh.base),
        "lastUpdatedUser": "relay@example.com",
        "lastUpdatedDisplayName": "Relay Integration",
        "lastUpdated": 1_763_900_000_000u64,
    });
    // The secret is write-only, as in Jira: stored, never shown.
    if let Some(secret) = obj.get("secret").and_then(Value::as_str) {
        stored["secretSet"] = json!(!secret.is_empty());
    }
    Ok(stored)
}

/// `GET|POST /rest/webhooks/1.0/webhook`, `GET|PUT|DELETE …/webhook/{id}`.
fn admin_webhooks(
    sh: &Shared,
    method: &Method,
    rest: &[&str],
    body: Option<Value>,
    empty: bool,
) -> Response {
    let mut hooks = lock(&sh.webhooks);
    let find = |id: &str| id.parse::<u64>().ok();
    match (method.as_str(), rest) {
        ("GET", []) => json_response(
            200,
            &Value::Array(hooks.iter().map(|(_, v)| v.clone()).collect()),
        ),
        ("POST", []) => {
            let Some(body) = body.filter(|_| !empty) else {
                return jira_error(
                    400,
                    &["A webhook registration body is required."],
                    json!({}),
                );
            };
            let id = hooks.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1;
            match webhook_body(sh, id, &body) {
                Ok(v) => {
                    hooks.push((id, v.clone()));
                    json_response(201, &v)
                }
                Err(e) => jira_error(400, &[e.as_str()], json!({})),
            }
        }
        ("GET", [id]) => match find(id).and_then(|id| hooks.iter().find(|(i, _)| *i == id)) {
            Some((_, v)) => json_response(200, v),
            None => jira_error(404, &["Webhook not found."], json!({})),
        },
        ("PUT", [id]) => {
            let Some(id) = find(id).filter(|id| hooks.iter().any(|(i, _)| i == id)) else {
                return jira_error(404, &["Webhook not found."], json!({}));
            };
            match webhook_body(sh, id, &body.unwrap_or_default()) {
                Ok(v) => {
                    for h in hooks.iter_mut().filter(|(i, _)| *i == id) {
                        h.1 = v.clone();
                    }
                    json_response(200, &v)
                }
                Err(e) => jira_error(400, &[e.as_str()], json!({})),
            }
        }
        ("DELETE", [id]) => {
            let before = hooks.len();
            if let Some(id) = find(id) {
                hooks.retain(|(i, _)| *i != id);
            }
            if hooks.len() < before {
                empty_response(204)
            } else {
                jira_error(404, &["Webhook not found."], json!({}))
            }
        }
        _ => jira_error(405, &["Method not allowed."], json!({})),
    }
}

fn jira_error(status: u16, messages: &[&str], errors: Value) -> Response {
    json_response(
        status,
        &json!({"errorMessages": messages, "errors": errors}),
    )
}

fn issue_not_found() -> Response {
    jira_error(
        404,
        &["Issue does not exist or you do not have permission to see it."],
        json!({}),
    )
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    lock(&sh.state).requests.push(Recorded::new(&parts, &bytes));
    let path = parts.uri.path().to_string();
    // OAuth 2.0 (3LO) clients call the site through the API gateway:
    // `/ex/jira/<cloudid>/rest/...` is served as `/rest/...`.
    let path = match path.strip_prefix(&format!("/ex/jira/{CLOUD_ID}")) {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => path,
    };
    let write = is_write(&parts.method, &path);
    faults::serve_request(&sh.faults, Flavor::Jira, &parts, &path, write, || {
        dispatch(&sh, &parts, &bytes, &path)
    })
    .await
}

/// The writes a [`Fault::AnswerLost`](crate::faults::Fault::AnswerLost)
/// applies to: create issue, add comment, add attachments, edit issue,
/// transition (v2 and v3).
fn is_write(method: &Method, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["rest", "api", "2" | "3", rest @ ..] => rest,
        // The organization admin API's lifecycle writes.
        ["users", _, "manage", "lifecycle", _] => return method == Method::POST,
        _ => return false,
    };
    matches!(
        (method.as_str(), rest),
        ("POST", ["issue"] | ["user"] | ["group", "user"])
            | ("DELETE", ["user"] | ["group", "user"])
            | ("PUT", ["issue", _] | ["user"])
            | (
                "POST",
                ["issue", _, "comment" | "attachments" | "transitions"]
            )
    )
}

/// The Atlassian organization admin API (`api.atlassian.com/users/{id}/manage/
/// lifecycle/disable|enable`, an organization API key as the bearer token),
/// served here for the accounts of this site: `None` for any other path.
fn org_admin(sh: &Arc<Shared>, parts: &http::request::Parts, path: &str) -> Option<Response> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["users", id, "manage", "lifecycle", verb] = segs.as_slice() else {
        return None;
    };
    let id = faults::percent_decode(id);
    let mut st = lock(&sh.state);
    let authorised = matches!(credentials(&parts.headers), Some(Credentials::Bearer(t))
        if st.org_api_key.as_deref() == Some(t.as_str()));
    if !authorised {
        return Some(json_response(
            401,
            &json!({"code": 401, "message": "Unauthorized"}),
        ));
    }
    if parts.method != Method::POST || !matches!(*verb, "disable" | "enable") {
        return Some(json_response(
            405,
            &json!({"code": 405, "message": "Method Not Allowed"}),
        ));
    }
    let Some(a) = st.site.users.iter_mut().find(|a| a.account_id == id) else {
        return Some(json_response(
            404,
            &json!({"code": 404, "message": "The account was not found or is not managed by this organization"}),
        ));
    };
    a.active = *verb == "enable";
    Some(faults::empty_response(204))
}

/// Everything after the faults: OAuth, auth, the contract check, the handler.
fn dispatch(sh: &Arc<Shared>, parts: &http::request::Parts, bytes: &[u8], path: &str) -> Response {
    let path = path.to_string();
    if path == "/oauth/token" && parts.method == Method::POST {
        return oauth(sh, &parts.headers, bytes);
    }
    if let Some(r) = org_admin(sh, parts, &path) {
        return r;
    }
    let author = {
        let st = lock(&sh.state);
        let now = Instant::now();
        match credentials(&parts.headers) {
            Some(Credentials::Basic(u, p))
                if st.basic.as_ref().is_some_and(|(a, b)| *a == u && *b == p) =>
            {
                Some(json!({
                    "accountId": "5b10a2844c20165700ede21g",
                    "emailAddress": u,
                    "displayName": "Relay Integration",
                    "active": true,
                    "accountType": "atlassian"
                }))
            }
            Some(Credentials::Bearer(t))
                if st.bearer.as_deref() == Some(t.as_str())
                    || st.tokens.iter().any(|(k, exp)| *k == t && *exp > now) =>
            {
                Some(json!({
                    "accountId": "712020:relay-app",
                    "displayName": "Relay App",
                    "active": true,
                    "accountType": "app"
                }))
            }
            _ => None,
        }
    };
    let Some(author) = author else {
        return unauthorized(Flavor::Jira);
    };
    if path == "/oauth/token/accessible-resources" && parts.method == Method::GET {
        return json_response(
            200,
            &json!([{
                "id": CLOUD_ID,
                "url": sh.base,
                "name": "sandbox",
                "scopes": ["read:jira-work", "write:jira-work", "offline_access"],
                "avatarUrl": format!("{}/avatar.png", sh.base),
            }]),
        );
    }
    let query = parse_query(parts.uri.query());
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(faults::percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();

    // Attachment content, outside the REST API.
    if let ["secure", "attachment", id, ..] = segs.as_slice() {
        return download(sh, id, true);
    }
    // Admin webhooks: documented apart from the platform API (not in its spec).
    if let ["rest", "webhooks", "1.0", "webhook", rest @ ..] = segs.as_slice() {
        let body: Option<Value> = serde_json::from_slice(bytes).ok();
        return admin_webhooks(sh, &parts.method, rest, body, bytes.is_empty());
    }
    let (v2, rest) = match segs.as_slice() {
        ["rest", "api", "2", rest @ ..] => (true, rest),
        ["rest", "api", "3", rest @ ..] => (false, rest),
        _ => {
            return jira_error(404, &["Not found (JiraServer test double)"], json!({}));
        }
    };
    let ctx = Ctx {
        sh,
        v2,
        author,
        method: parts.method.clone(),
        path: path.clone(),
        query,
    };

    // The body, when JSON.
    let is_json = content_type
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else if is_json || content_type.is_none() {
        match serde_json::from_slice(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                ctx.violation(vec![format!("body: not valid JSON: {e}")]);
                return jira_error(
                    400,
                    &["Unexpected character in the request body (not valid JSON)."],
                    json!({}),
                );
            }
        }
    } else {
        None
    };

    // Data Center's user API is not Jira Cloud's (the spec checked below).
    if v2 && lock(&ctx.sh.state).site.data_center {
        if let Some(r) = dc_users::route(&ctx, rest, body.as_ref()) {
            return r;
        }
    }

    // The contract check.
    let check = ctx
        .sh
        .contract_check
        .load(std::sync::atomic::Ordering::Relaxed);
    if let Some(spec) = check.then(crate::openapi::jira_spec).flatten() {
        let v3_path_raw = if v2 {
            path.replacen("/rest/api/2/", "/rest/api/3/", 1)
        } else {
            path.clone()
        };
        let ct = content_type
            .as_deref()
            .or(body.as_ref().map(|_| "application/json"));
        if let Err(errs) = spec.validate(&ctx.method, &v3_path_raw, &ctx.query, ct, body.as_ref()) {
            let missing = errs.len() == 1 && errs[0].starts_with("no operation");
            ctx.violation(errs.clone());
            let status = if missing { 404 } else { 400 };
            return jira_error(
                status,
                &errs.iter().map(String::as_str).collect::<Vec<_>>(),
                json!({}),
            );
        }
    }

    route(&ctx, rest, body, &parts.headers, bytes)
}

fn route(
    ctx: &Ctx<'_>,
    rest: &[&str],
    body: Option<Value>,
    headers: &http::HeaderMap,
    bytes: &[u8],
) -> Response {
    if ctx.method == Method::GET {
        if let Some(r) = meta::get(ctx, rest) {
            return r;
        }
    }
    let m = ctx.method.clone();
    match (m, rest) {
        (Method::POST, ["issue"]) => create_issue(ctx, body),
        (Method::POST, ["user"]) => meta::create_user(ctx, body),
        (Method::DELETE, ["user"]) => meta::delete_user(ctx),
        (Method::POST, ["group", "user"]) => meta::add_to_group(ctx, body),
        (Method::DELETE, ["group", "user"]) => meta::remove_from_group(ctx),
        (Method::GET, ["issue", key]) => get_issue(ctx, key),
        (Method::PUT, ["issue", key]) => edit_issue(ctx, key, body),
        (Method::DELETE, ["issue", key]) => {
            let mut st = lock(&ctx.sh.state);
            let Some(i) = st.find(key) else {
                return issue_not_found();
            };
            // Subtasks name their parent in `fields.parent` (key or id).
            // Jira refuses to delete a parent unless `deleteSubtasks=true`,
            // and then deletes them with it.
            let (pkey, pid) = (st.issues[i].key.clone(), st.issues[i].id.to_string());
            let is_child = |issue: &Issue| {
                let p = &issue.fields.get("parent");
                p.and_then(|p| p.get("key")).and_then(Value::as_str) == Some(pkey.as_str())
                    || p.and_then(|p| p.get("id")).and_then(Value::as_str) == Some(pid.as_str())
            };
            let children = st.issues.iter().filter(|x| is_child(x)).count();
            if children > 0 && ctx.param("deleteSubtasks") != Some("true") {
                return jira_error(
                    400,
                    &["The issue has subtasks. To delete the issue, delete its subtasks too (deleteSubtasks=true)."],
                    json!({}),
                );
            }
            let gone: Vec<Issue> = {
                let (gone, kept) = std::mem::take(&mut st.issues)
                    .into_iter()
                    .partition(|x| x.key == pkey || is_child(x));
                st.issues = kept;
                gone
            };
            for f in gone.into_iter().flat_map(|x| x.attachments) {
                st.files.remove(&f);
            }
            empty_response(204)
        }
        (Method::GET, ["issue", key, "comment"]) => {
            let st = lock(&ctx.sh.state);
            let Some(i) = st.find(key) else {
                return issue_not_found();
            };
            let comments: Vec<Value> = st.issues[i]
                .comments
                .iter()
                .map(|c| render_comment(ctx, &st.issues[i], c, expand_properties(ctx)))
                .collect();
            let n = comments.len();
            json_response(
                200,
                &json!({"startAt": 0, "maxResults": n.max(50), "total": n, "comments": comments}),
            )
        }
        (Method::POST, ["issue", key, "comment"]) => add_comment(ctx, key, body),
        (Method::GET | Method::PUT | Method::DELETE, ["issue", key, "comment", id]) => {
            one_comment(ctx, key, id, body)
        }
        (Method::GET, ["issue", key, "transitions"]) => get_transitions(ctx, key),
        (Method::POST, ["issue", key, "transitions"]) => do_transition(ctx, key, body),
        (Method::POST, ["issue", key, "attachments"]) => upload(ctx, key, headers, bytes),
        (Method::GET, ["issue", key, "properties", pk]) => {
            let st = lock(&ctx.sh.state);
            let Some(i) = st.find(key) else {
                return issue_not_found();
            };
            match st.issues[i].properties.get(*pk) {
                Some(v) => json_response(200, &json!({"key": pk, "value": v})),
                None => jira_error(
                    404,
                    &[&format!("The property with key '{pk}' does not exist.")],
                    json!({}),
                ),
            }
        }
        (Method::PUT, ["issue", key, "properties", pk]) => {
            let mut st = lock(&ctx.sh.state);
            let Some(i) = st.find(key) else {
                return issue_not_found();
            };
            let Some(v) = body else {
                ctx.violation(vec!["body: a JSON property value is required".into()]);
                return jira_error(400, &["The property value is required."], json!({}));
            };
            let existed = st.issues[i].properties.insert(pk.to_string(), v).is_some();
            st.reindex(i);
            empty_response(if existed { 200 } else { 201 })
        }
        (Method::DELETE, ["issue", key, "properties", pk]) => {
            let mut st = lock(&ctx.sh.state);
            let Some(i) = st.find(key) else {
                return issue_not_found();
            };
            match st.issues[i].properties.remove(*pk) {
                Some(_) => {
                    st.reindex(i);
                    empty_response(204)
                }
                None => jira_error(
                    404,
                    &[&format!("The property with key '{pk}' does not exist.")],
                    json!({}),
                ),
            }
        }
        (Method::GET, ["issue", key, "remotelink"]) => {
            let st = lock(&ctx.sh.state);
            let Some(i) = st.find(key) else {
                return issue_not_found();
            };
            let snap = st.snapshot(&st.issues[i], &ctx.sh.base);
            let links: Vec<Value> = snap
                .remote_links
                .into_iter()
                .filter(|l| ctx.param("globalId").is_none_or(|g| l["globalId"] == g))
                .collect();
            json_response(200, &Value::Array(links))
        }
        (Method::POST, ["issue", key, "remotelink"]) => remote_link(ctx, key, body),
        (Method::GET, ["search", "jql"]) => {
            let q = SearchReq {
                jql: ctx.param("jql").unwrap_or("").to_string(),
                fields: ctx.param("fields").map(split_list),
                max: ctx.param("maxResults").and_then(|m| m.parse().ok()),
                offset: ctx.param("nextPageToken").map(str::to_string),
                reconcile: ctx
                    .query
                    .iter()
                    .filter(|(k, _)| k == "reconcileIssues")
                    .flat_map(|(_, v)| v.split(','))
                    .filter_map(|x| x.trim().parse().ok())
                    .collect(),
            };
            search(ctx, q, true)
        }
        (Method::POST, ["search", "jql"]) => {
            let b = body.unwrap_or_default();
            let q = SearchReq {
                jql: b["jql"].as_str().unwrap_or("").to_string(),
                fields: b["fields"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                }),
                max: b["maxResults"].as_u64().map(|x| x as usize),
                offset: b["nextPageToken"].as_str().map(String::from),
                reconcile: b["reconcileIssues"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
            };
            search(ctx, q, true)
        }
        (Method::GET, ["search"]) => {
            let q = SearchReq {
                jql: ctx.param("jql").unwrap_or("").to_string(),
                fields: ctx.param("fields").map(split_list),
                max: ctx.param("maxResults").and_then(|m| m.parse().ok()),
                offset: ctx.param("startAt").map(str::to_string),
                reconcile: Vec::new(),
            };
            search(ctx, q, false)
        }
        (Method::GET, ["attachment", "content", id]) => {
            download(ctx.sh, id, ctx.param("redirect") != Some("false"))
        }
        (Method::GET, ["myself"]) => json_response(200, &ctx.author),
        _ => jira_error(
            501,
            &[&format!(
                "{} {} is not implemented by the JiraServer test double",
                ctx.method, ctx.path
            )],
            json!({}),
        ),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Plain text of an ADF node tree (paragraphs on their own lines).
fn adf_to_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        if let Some(t) = v["text"].as_str() {
            out.push_str(t);
        }
        if v["type"] == "hardBreak" {
            out.push('\n');
        }
        if let Some(children) = v["content"].as_array() {
            for c in children {
                walk(c, out);
            }
            if matches!(v["type"].as_str(), Some("paragraph" | "heading")) {
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out.trim_end_matches('\n').to_string()
}

fn text_to_adf(s: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": s}]}
    ]})
}

/// A rich-text value as the requested API version shows it.
fn rich_for(v2: bool, v: &Value) -> Value {
    match (v2, v) {
        (true, Value::Object(_)) => Value::String(adf_to_text(v)),
        (false, Value::String(s)) => text_to_adf(s),
        _ => v.clone(),
    }
}

const RICH_FIELDS: &[&str] = &["description", "environment"];

/// Checks rich-text fields for the API version: ADF documents on v3,
/// strings on v2 (null always allowed). Returns Jira's `errors` map.
fn check_rich(v2: bool, fields: &Map<String, Value>) -> Map<String, Value> {
    let mut errors = Map::new();
    for f in RICH_FIELDS {
        match (v2, fields.get(*f)) {
            (_, None | Some(Value::Null)) => {}
            (false, Some(v)) if !is_adf_doc(v) => {
                errors.insert(
                    (*f).into(),
                    "Operation value must be an Atlassian Document (see the Atlassian Document Format)".into(),
                );
            }
            (true, Some(v)) if !v.is_string() => {
                errors.insert((*f).into(), "Operation value must be a string".into());
            }
            _ => {}
        }
    }
    // System fields have fixed shapes; the real Jira answers 400 otherwise
    // (the OpenAPI spec types `fields` as a free-form map, so check here).
    let string_array = |v: &Value| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .all(|x| x.as_str().is_some_and(|s| !s.contains(' ')))
        })
    };
    let object_array = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_object));
    for (f, v) in fields {
        let bad = match f.as_str() {
            "labels" => (!string_array(v))
                .then_some("data was not an array of labels (strings without spaces)"),
            "summary" => (!v.is_string()).then_some("data was not a string"),
            "priority" | "issuetype" | "project" | "resolution" | "assignee" | "reporter" => {
                (!v.is_object() && !v.is_null()).then_some("data was not an object")
            }
            "components" | "fixVersions" | "versions" => {
                (!object_array(v)).then_some("data was not an array of objects")
            }
            _ => None,
        };
        if let Some(msg) = bad {
            errors.insert(f.clone(), msg.into());
        }
    }
    errors
}

fn is_adf_doc(v: &Value) -> bool {
    v["type"] == "doc" && v["version"] == 1 && v["content"].is_array()
}

fn render_issue(ctx: &Ctx<'_>, st: &JiraState, i: &Issue, select: Option<&[String]>) -> Value {
    let base = &ctx.sh.base;
    let mut all = i.fields.clone();
    for f in RICH_FIELDS {
        if let Some(v) = all.get(*f).cloned() {
            all.insert((*f).into(), rich_for(ctx.v2, &v));
        }
    }
    let comments: Vec<Value> = i
        .comments
        .iter()
        .map(|c| render_comment(ctx, i, c, false))
        .collect();
    all.insert(
        "comment".into(),
        json!({"comments": comments, "total": comments.len(), "maxResults": comments.len(), "startAt": 0}),
    );
    let attachments: Vec<Value> = i
        .attachments
        .iter()
        .filter_map(|id| st.files.get(id).map(|f| attachment_json(ctx, *id, f)))
        .collect();
    all.insert("attachment".into(), Value::Array(attachments));
    all.entry("labels").or_insert_with(|| json!([]));
    let fields = match select {
        None => all,
        Some(sel) if sel.iter().any(|s| s == "*all" || s == "*navigable") => {
            let mut all = all;
            for s in sel {
                if let Some(x) = s.strip_prefix('-') {
                    all.remove(x);
                }
            }
            all
        }
        Some(sel) => all
            .into_iter()
            .filter(|(k, _)| sel.iter().any(|s| s == k))
            .collect(),
    };
    json!({
        "id": i.id.to_string(),
        "key": i.key,
        "self": format!("{base}/rest/api/{}/issue/{}", ctx.api(), i.id),
        "fields": fields,
    })
}

/// A stored comment as the API shows it; its entity properties only when
/// `with_properties` (`expand=properties`).
fn render_comment(ctx: &Ctx<'_>, i: &Issue, c: &Value, with_properties: bool) -> Value {
    let mut c = c.clone();
    if let Some(o) = c.as_object_mut() {
        let props = o.remove("properties");
        if with_properties {
            o.insert("properties".into(), props.unwrap_or_else(|| json!([])));
        }
    }
    c["body"] = rich_for(ctx.v2, &c["body"]);
    c["self"] = Value::String(format!(
        "{}/rest/api/{}/issue/{}/comment/{}",
        ctx.sh.base,
        ctx.api(),
        i.id,
        c["id"].as_str().unwrap_or_default()
    ));
    c
}

fn attachment_json(ctx: &Ctx<'_>, id: u64, f: &StoredFile) -> Value {
    json!({
        "self": format!("{}/rest/api/{}/attachment/{id}", ctx.sh.base, ctx.api()),
        "id": id.to_string(),
        "filename": f.filename,
        "author": ctx.author,
        "created": jira_time(),
        "size": f.bytes.len(),
        "mimeType": f.mime,
        "content": format!("{}/rest/api/{}/attachment/content/{id}", ctx.sh.base, ctx.api()),
    })
}

fn create_issue(ctx: &Ctx<'_>, body: Option<Value>) -> Response {
    let body = body.unwrap_or_default();
    let fields = body["fields"].as_object().cloned().unwrap_or_default();
    let mut errors = Map::new();
    let mut st = lock(&ctx.sh.state);
    // Index through a `Value` (indexing a `Map` by a missing key panics).
    let fv = &body["fields"];
    let project = match (fv["project"]["key"].as_str(), fv["project"]["id"].as_str()) {
        (Some(k), _) if !k.is_empty() => Some(k.to_ascii_uppercase()),
        (_, Some(id)) => st
            .projects
            .iter()
            .find(|(_, (pid, _))| pid == id)
            .map(|(k, _)| k.clone()),
        _ => None,
    };
    match &project {
        None => {
            errors.insert("project".into(), "Specify a valid project ID or key".into());
        }
        Some(p) if !meta::allowed(&st, p, "CREATE_ISSUES") => {
            drop(st);
            return jira_error(
                400,
                &[],
                json!({"project": "You do not have permission to create issues in this project."}),
            );
        }
        Some(_) => {}
    }
    let it = &fv["issuetype"];
    if !(it["name"].is_string() || it["id"].is_string()) {
        errors.insert("issuetype".into(), "Specify an issue type".into());
    }
    if fv["summary"].as_str().is_none_or(|s| s.trim().is_empty()) {
        errors.insert(
            "summary".into(),
            "You must specify a summary of the issue.".into(),
        );
    }
    errors.extend(check_rich(ctx.v2, &fields));
    if let Err(e) = check_update_ops(ctx, &body["update"]) {
        errors.extend(e);
    }
    let unknown = meta::unknown_fields(&st.site, &fields);
    if !errors.is_empty() {
        drop(st);
        ctx.violation(
            errors
                .iter()
                .map(|(k, v)| format!("fields.{k}: {}", v.as_str().unwrap_or_default()))
                .collect(),
        );
        return jira_error(400, &[], Value::Object(errors));
    }
    // A field the site does not know is refused as Jira refuses it; the
    // request itself is well formed, so it is no contract violation.
    if !unknown.is_empty() {
        return jira_error(400, &[], Value::Object(unknown));
    }
    let mut fields = fields;
    meta::complete_refs(&st.site, &mut fields);
    let project = project.unwrap_or_default();
    let key = st.create(&project, fields);
    let idx = st.find(&key).unwrap_or_default();
    apply_update_ops(ctx, &mut st, idx, &body["update"]);
    let id = st.issues[idx].id;
    json_response(
        201,
        &json!({
            "id": id.to_string(),
            "key": key,
            "self": format!("{}/rest/api/{}/issue/{id}", ctx.sh.base, ctx.api()),
        }),
    )
}

fn get_issue(ctx: &Ctx<'_>, key: &str) -> Response {
    let st = lock(&ctx.sh.state);
    let Some(i) = st.find(key) else {
        return issue_not_found();
    };
    let select = ctx.param("fields").map(split_list);
    json_response(
        200,
        &render_issue(ctx, &st, &st.issues[i], select.as_deref()),
    )
}

/// Validates the `update` operations the double applies (comment bodies).
fn check_update_ops(ctx: &Ctx<'_>, update: &Value) -> Result<(), Map<String, Value>> {
    let mut errors = Map::new();
    if let Some(ops) = update["comment"].as_array() {
        for op in ops {
            if let Some(add) = op.get("add") {
                if let Err(e) = check_comment_body(ctx.v2, &add["body"]) {
                    errors.insert("comment".into(), e.into());
                }
            }
        }
    }
    for (field, ops) in update.as_object().into_iter().flatten() {
        if RICH_FIELDS.contains(&field.as_str()) {
            for op in ops.as_array().into_iter().flatten() {
                if let Some(v) = op.get("set") {
                    let mut m = Map::new();
                    m.insert(field.clone(), v.clone());
                    errors.extend(check_rich(ctx.v2, &m));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn apply_update_ops(ctx: &Ctx<'_>, st: &mut JiraState, idx: usize, update: &Value) {
    let Some(update) = update.as_object() else {
        return;
    };
    for (field, ops) in update {
        for op in ops.as_array().into_iter().flatten() {
            if field == "comment" {
                if let Some(add) = op.get("add") {
                    st.add_comment(idx, add["body"].clone(), &ctx.author);
                }
                continue;
            }
            let fields = &mut st.issues[idx].fields;
            if let Some(v) = op.get("set") {
                fields.insert(field.clone(), v.clone());
            }
            if let Some(v) = op.get("add") {
                let list = fields.entry(field.clone()).or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let arr = list.as_array_mut().expect("array");
                if !arr.contains(v) {
                    arr.push(v.clone());
                }
            }
            if let Some(v) = op.get("remove") {
                if let Some(arr) = fields.get_mut(field).and_then(Value::as_array_mut) {
                    arr.retain(|x| x != v && !(v.is_object() && same_ref(x, v)));
                }
            }
        }
    }
    st.touch(idx);
}

/// `{"name": "x"}` / `{"id": "1"}` references to the same thing.
fn same_ref(a: &Value, b: &Value) -> bool {
    ["id", "name", "key", "value"]
        .iter()
        .any(|k| b.get(*k).is_some() && a.get(*k) == b.get(*k))
}

fn edit_issue(ctx: &Ctx<'_>, key: &str, body: Option<Value>) -> Response {
    let body = body.unwrap_or_default();
    let fields = body["fields"].as_object().cloned().unwrap_or_default();
    let mut errors = check_rich(ctx.v2, &fields);
    if let Err(e) = check_update_ops(ctx, &body["update"]) {
        errors.extend(e);
    }
    let mut st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    if !errors.is_empty() {
        drop(st);
        ctx.violation(
            errors
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect(),
        );
        return jira_error(400, &[], Value::Object(errors));
    }
    let unknown = meta::unknown_fields(&st.site, &fields);
    if !unknown.is_empty() {
        return jira_error(400, &[], Value::Object(unknown));
    }
    let mut fields = fields;
    meta::complete_refs(&st.site, &mut fields);
    for (k, v) in fields {
        if k == "status" || k == "project" {
            continue;
        }
        st.issues[idx].fields.insert(k, v);
    }
    // Jira stamps every change of an issue.
    st.touch(idx);
    apply_update_ops(ctx, &mut st, idx, &body["update"]);
    if ctx.param("returnIssue") == Some("true") {
        return json_response(200, &render_issue(ctx, &st, &st.issues[idx], None));
    }
    empty_response(204)
}

fn check_comment_body(v2: bool, body: &Value) -> Result<(), &'static str> {
    match body {
        Value::Null => Err("Comment body can not be empty!"),
        Value::String(s) if v2 && s.trim().is_empty() => Err("Comment body can not be empty!"),
        Value::String(_) if v2 => Ok(()),
        v if !v2 && is_adf_doc(v) => Ok(()),
        _ => Err("Comment body is not valid!"),
    }
}

fn add_comment(ctx: &Ctx<'_>, key: &str, body: Option<Value>) -> Response {
    let body = body.unwrap_or_default();
    let mut st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    if let Err(e) = check_comment_body(ctx.v2, &body["body"]) {
        drop(st);
        ctx.violation(vec![format!("body.body: {e}")]);
        return jira_error(400, &[], json!({ "comment": e }));
    }
    let props = match comment_properties(&body) {
        Ok(p) => p,
        Err(e) => {
            drop(st);
            ctx.violation(vec![format!("body.properties: {e}")]);
            return jira_error(400, &[e], json!({}));
        }
    };
    let mut c = st.add_comment(idx, body["body"].clone(), &ctx.author);
    if let Some(vis) = body.get("visibility") {
        c["visibility"] = vis.clone();
    }
    if let Some(p) = props {
        c["properties"] = upsert_properties(&json!([]), p);
    }
    if service_desk_of(&st, &st.issues[idx]) {
        let public = is_public(&c);
        c["jsdPublic"] = Value::Bool(public);
        if public {
            let mail = (
                st.issues[idx].key.clone(),
                c["id"].as_str().unwrap_or_default().to_owned(),
                adf_to_text(&c["body"]),
            );
            st.customer_mail.push(mail);
        }
    }
    if let Some(last) = st.issues[idx].comments.last_mut() {
        *last = c.clone();
    }
    let out = render_comment(ctx, &st.issues[idx], &c, expand_properties(ctx));
    json_response(201, &out)
}

/// Whether the issue is in a Jira Service Management project.
fn service_desk_of(st: &JiraState, i: &Issue) -> bool {
    i.fields["project"]["key"]
        .as_str()
        .is_some_and(|k| st.service_desks.contains(k))
}

/// A comment JSM shows the customer: no `visibility` restriction and no
/// `sd.public.comment` property with `internal: true`.
fn is_public(c: &Value) -> bool {
    let internal =
        c["properties"].as_array().into_iter().flatten().any(|p| {
            p["key"] == "sd.public.comment" && p["value"]["internal"] == Value::Bool(true)
        });
    c.get("visibility").is_none_or(Value::is_null) && !internal
}

fn expand_properties(ctx: &Ctx<'_>) -> bool {
    ctx.param("expand")
        .is_some_and(|e| e.split(',').any(|x| x.trim() == "properties"))
}

/// The `properties` of a comment create or update body (entity properties,
/// `[{key, value}]`); `None` when not given.
fn comment_properties(body: &Value) -> Result<Option<Vec<(String, Value)>>, &'static str> {
    let Some(p) = body.get("properties").filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let list = p
        .as_array()
        .ok_or("properties must be an array of {key, value}")?;
    let mut out = Vec::new();
    for e in list {
        let key = e["key"]
            .as_str()
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or("every property needs a key (a string of 1 to 255 characters)")?;
        let value = e.get("value").cloned().unwrap_or(Value::Null);
        out.push((key.to_string(), value));
    }
    Ok(Some(out))
}

/// `existing` (a stored `[{key, value}]` array) with `new` set, key by key.
fn upsert_properties(existing: &Value, new: Vec<(String, Value)>) -> Value {
    let mut list: Vec<Value> = existing.as_array().cloned().unwrap_or_default();
    for (k, v) in new {
        match list.iter_mut().find(|e| e["key"] == k.as_str()) {
            Some(e) => e["value"] = v,
            None => list.push(json!({"key": k, "value": v})),
        }
    }
    Value::Array(list)
}

fn comment_not_found(id: &str) -> Response {
    jira_error(
        404,
        &[&format!("Can not find a comment for the id: {id}.")],
        json!({}),
    )
}

/// `GET|PUT|DELETE /issue/{key}/comment/{id}`.
fn one_comment(ctx: &Ctx<'_>, key: &str, id: &str, body: Option<Value>) -> Response {
    let mut st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    let Some(pos) = st.issues[idx].comments.iter().position(|c| c["id"] == id) else {
        return comment_not_found(id);
    };
    match ctx.method.as_str() {
        "GET" => {
            let c = &st.issues[idx].comments[pos];
            json_response(
                200,
                &render_comment(ctx, &st.issues[idx], c, expand_properties(ctx)),
            )
        }
        "DELETE" => {
            st.issues[idx].comments.remove(pos);
            st.touch(idx);
            empty_response(204)
        }
        _ => {
            let body = body.unwrap_or_default();
            if let Err(e) = check_comment_body(ctx.v2, &body["body"]) {
                drop(st);
                ctx.violation(vec![format!("body.body: {e}")]);
                return jira_error(400, &[], json!({ "comment": e }));
            }
            let props = match comment_properties(&body) {
                Ok(p) => p,
                Err(e) => {
                    drop(st);
                    ctx.violation(vec![format!("body.properties: {e}")]);
                    return jira_error(400, &[e], json!({}));
                }
            };
            let c = &mut st.issues[idx].comments[pos];
            c["body"] = body["body"].clone();
            c["updated"] = Value::String(jira_time());
            c["updateAuthor"] = ctx.author.clone();
            if let Some(vis) = body.get("visibility") {
                c["visibility"] = vis.clone();
            }
            if let Some(p) = props {
                let merged = upsert_properties(&c["properties"], p);
                c["properties"] = merged;
            }
            let c = c.clone();
            st.touch(idx);
            json_response(
                200,
                &render_comment(ctx, &st.issues[idx], &c, expand_properties(ctx)),
            )
        }
    }
}

fn available(st: &JiraState, idx: usize) -> Vec<&TransitionDef> {
    let current = st.issues[idx]
        .fields
        .get("status")
        .and_then(|s| s["name"].as_str())
        .unwrap_or_default();
    st.workflow
        .transitions
        .iter()
        .filter(|t| t.to != current)
        .collect()
}

fn get_transitions(ctx: &Ctx<'_>, key: &str) -> Response {
    let st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    let expand_fields = ctx
        .param("expand")
        .is_some_and(|e| e.contains("transitions.fields"));
    let list: Vec<Value> = available(&st, idx)
        .into_iter()
        .filter(|t| ctx.param("transitionId").is_none_or(|id| id == t.id))
        .map(|t| {
            let mut v = json!({
                "id": t.id,
                "name": t.name,
                "to": st.status_value(&t.to),
                "hasScreen": !t.required_fields.is_empty(),
                "isGlobal": true,
                "isInitial": false,
                "isAvailable": true,
                "isConditional": false,
                "isLooped": false,
            });
            if expand_fields {
                let fields: Map<String, Value> = t
                    .required_fields
                    .iter()
                    .map(|f| {
                        let mut meta = json!({
                            "required": true,
                            "name": capitalize(f),
                            "key": f,
                            "schema": {"type": f, "system": f},
                            "operations": ["set"],
                        });
                        if f == "resolution" {
                            meta["allowedValues"] = json!([
                                {"id": "10000", "name": "Done"},
                                {"id": "10001", "name": "Won't Do"},
                                {"id": "10002", "name": "Duplicate"}
                            ]);
                        }
                        (f.clone(), meta)
                    })
                    .collect();
                v["fields"] = Value::Object(fields);
            }
            v
        })
        .collect();
    json_response(200, &json!({"expand": "transitions", "transitions": list}))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn do_transition(ctx: &Ctx<'_>, key: &str, body: Option<Value>) -> Response {
    let body = body.unwrap_or_default();
    let mut st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    let id = match &body["transition"]["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            drop(st);
            ctx.violation(vec!["body.transition.id: missing".into()]);
            return jira_error(400, &["Missing 'transition' identifier"], json!({}));
        }
    };
    let Some(t) = available(&st, idx)
        .into_iter()
        .find(|t| t.id == id)
        .cloned()
    else {
        return jira_error(
            400,
            &[&format!(
                "Transition id '{id}' is not valid for this issue."
            )],
            json!({}),
        );
    };
    let fields = body["fields"].as_object().cloned().unwrap_or_default();
    let mut errors = Map::new();
    for f in &t.required_fields {
        let given = fields.get(f).is_some_and(|v| !v.is_null())
            || body["update"][f.as_str()]
                .as_array()
                .is_some_and(|ops| ops.iter().any(|o| o.get("set").is_some()));
        if !given {
            errors.insert(f.clone(), format!("{} is required.", capitalize(f)).into());
        }
    }
    errors.extend(check_rich(ctx.v2, &fields));
    if let Err(e) = check_update_ops(ctx, &body["update"]) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        return jira_error(400, &[], Value::Object(errors));
    }
    for f in &t.clears_fields {
        st.issues[idx].fields.insert(f.clone(), Value::Null);
    }
    for (k, v) in fields {
        st.issues[idx].fields.insert(k, v);
    }
    let status = st.status_value(&t.to);
    st.issues[idx].fields.insert("status".into(), status);
    st.touch(idx);
    apply_update_ops(ctx, &mut st, idx, &body["update"]);
    empty_response(204)
}

fn remote_link(ctx: &Ctx<'_>, key: &str, body: Option<Value>) -> Response {
    let body = body.unwrap_or_default();
    if body["object"]["url"].as_str().is_none() || body["object"]["title"].as_str().is_none() {
        ctx.violation(vec!["body.object: url and title are required".into()]);
        return jira_error(
            400,
            &[],
            json!({"title": "Link title is required.", "url": "Link URL is required."}),
        );
    }
    let mut st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    let issue_id = st.issues[idx].id;
    let global = body["globalId"].as_str().map(String::from);
    let existing = global.as_ref().and_then(|g| {
        st.issues[idx]
            .remote_links
            .iter()
            .position(|l| l["globalId"] == g.as_str())
    });
    let (id, status) = match existing {
        Some(pos) => {
            let id = st.issues[idx].remote_links[pos]["id"].as_u64().unwrap_or(0);
            let mut link = body.clone();
            link["id"] = json!(id);
            st.issues[idx].remote_links[pos] = link;
            (id, 200)
        }
        None => {
            let id = st.next_link_id;
            st.next_link_id += 1;
            let mut link = body.clone();
            link["id"] = json!(id);
            st.issues[idx].remote_links.push(link);
            (id, 201)
        }
    };
    st.touch(idx);
    json_response(
        status,
        &json!({
            "id": id,
            "self": format!("{}/rest/api/{}/issue/{issue_id}/remotelink/{id}", ctx.sh.base, ctx.api()),
        }),
    )
}

/// One multipart part.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Parses a `multipart/form-data` body.
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = header_param(content_type, "boundary")?;
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delim, 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        pos = find(body, b"\r\n", pos)? + 2;
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut end_delim = b"\r\n".to_vec();
        end_delim.extend_from_slice(&delim);
        let data_end = find(body, &end_delim, data_start)?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[data_start..data_end].to_vec(),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = header_param(v, "name").unwrap_or_default();
                part.filename = header_param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_string());
            }
        }
        parts.push(part);
        pos = data_end + end_delim.len();
    }
}

fn upload(ctx: &Ctx<'_>, key: &str, headers: &http::HeaderMap, bytes: &[u8]) -> Response {
    let xsrf = headers
        .get("x-atlassian-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("no-check") || v.eq_ignore_ascii_case("nocheck"));
    if !xsrf {
        ctx.violation(vec!["header X-Atlassian-Token: no-check is missing".into()]);
        let mut resp = Response::new(Body::from("XSRF check failed"));
        *resp.status_mut() = http::StatusCode::FORBIDDEN;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=UTF-8"),
        );
        return resp;
    }
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = if ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        parse_multipart(ct, bytes)
    } else {
        None
    };
    let files: Vec<Part> = parts
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.name == "file")
        .collect();
    if files.is_empty() {
        ctx.violation(vec!["body: no multipart part named \"file\"".into()]);
        return jira_error(
            400,
            &["No attachments were found in the request (multipart part \"file\")."],
            json!({}),
        );
    }
    let mut st = lock(&ctx.sh.state);
    let Some(idx) = st.find(key) else {
        return issue_not_found();
    };
    let mut out = Vec::new();
    for p in files {
        let id = st.next_file_id;
        st.next_file_id += 1;
        let f = StoredFile {
            filename: p.filename.unwrap_or_else(|| "file".into()),
            mime: p
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes: p.data,
        };
        out.push(attachment_json(ctx, id, &f));
        st.files.insert(id, f);
        st.issues[idx].attachments.push(id);
    }
    st.touch(idx);
    json_response(200, &Value::Array(out))
}

fn download(sh: &Shared, id: &str, may_redirect: bool) -> Response {
    let st = lock(&sh.state);
    let Some(f) = id.parse::<u64>().ok().and_then(|id| st.files.get(&id)) else {
        return jira_error(
            404,
            &["The attachment does not exist or you do not have permission to see it."],
            json!({}),
        );
    };
    if let Some(to) = st.content_redirect.as_deref().filter(|_| may_redirect) {
        let to = to
            .replace("{id}", id)
            .replace("{filename}", &percent_encode(&f.filename));
        let mut resp = empty_response(302);
        if let Ok(v) = HeaderValue::from_str(&to) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        return resp;
    }
    let mut resp = Response::new(Body::from(f.bytes.clone()));
    if let Ok(v) = HeaderValue::from_str(&f.mime) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
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
            .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or(v.to_string())))
            .collect()
    } else {
        form_urlencoded::parse(bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let grant = get("grant_type");
    if !matches!(
        grant,
        "client_credentials" | "authorization_code" | "refresh_token"
    ) {
        return json_response(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}),
        );
    }
    let mut st = lock(&sh.state);
    let (id, secret, expires) = st.oauth_client.clone();
    let prefix = st.token_prefix.clone();
    if get("client_id") != id || get("client_secret") != secret {
        return json_response(
            401,
            &json!({"error": "access_denied", "error_description": "Unauthorized"}),
        );
    }
    // 3LO: a one-use code, or a refresh token that rotates.
    let refresh = match grant {
        "authorization_code" => {
            let found = st
                .three_lo
                .codes
                .iter()
                .position(|(c, i, r)| c == get("code") && *i == id && r == get("redirect_uri"));
            let Some(at) = found else {
                return json_response(
                    403,
                    &json!({"error": "invalid_grant", "error_description": "Invalid authorization code"}),
                );
            };
            st.three_lo.codes.remove(at);
            true
        }
        "refresh_token" => {
            let used = get("refresh_token");
            let Some(at) = st.three_lo.refresh_tokens.iter().position(|t| t == used) else {
                st.three_lo.refused += 1;
                return json_response(
                    403,
                    &json!({"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}),
                );
            };
            st.three_lo.refresh_tokens.remove(at);
            st.three_lo.refreshes += 1;
            true
        }
        _ => false,
    };
    if refresh {
        let token = format!(
            "{}jira-at-{:016x}{:016x}",
            prefix,
            st.rng.next_u64(),
            st.rng.next_u64()
        );
        let rt = format!(
            "{}jira-rt-{:016x}{:016x}",
            prefix,
            st.rng.next_u64(),
            st.rng.next_u64()
        );
        st.tokens
            .push((token.clone(), Instant::now() + Duration::from_secs(expires)));
        st.three_lo.refresh_tokens.push(rt.clone());
        return json_response(
            200,
            &json!({
                "access_token": token,
                "refresh_token": rt,
                "token_type": "Bearer",
                "expires_in": expires,
                "scope": "read:jira-work write:jira-work offline_access",
            }),
        );
    }
    let token = format!(
        "{}jira-at-{:016x}{:016x}",
        prefix,
        st.rng.next_u64(),
        st.rng.next_u64()
    );
    st.tokens
        .push((token.clone(), Instant::now() + Duration::from_secs(expires)));
    let scope = match get("scope") {
        "" => "read:jira-work write:jira-work",
        s => s,
    };
    json_response(
        200,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires,
            "scope": scope,
        }),
    )
}

// ---- search ----

struct SearchReq {
    jql: String,
    fields: Option<Vec<String>>,
    max: Option<usize>,
    offset: Option<String>,
    /// `reconcileIssues`: issue ids search must show as they are now.
    reconcile: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    Comma,
    LParen,
    RParen,
}

fn lex(jql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = jql.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('\\') => {
                        if let Some(n) = chars.get(i + 1) {
                            s.push(*n);
                        }
                        i += 2;
                    }
                    Some(q) if *q == c => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if "=!~<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if [">=", "<=", "!=", "!~"].contains(&two.as_str()) {
                out.push(Tok::Op(two));
                i += 2;
            } else {
                out.push(Tok::Op(c.to_string()));
                i += 1;
            }
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"=!~<>,()\"'".contains(chars[i])
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct Clause {
    field: String,
    op: String,
    values: Vec<String>,
}

#[derive(Debug, Default)]
struct Jql {
    clauses: Vec<Clause>,
    order: Vec<(String, bool)>,
}

fn field_name(t: &Tok) -> Option<String> {
    let raw = match t {
        Tok::Word(w) | Tok::Str(w) => w.clone(),
        _ => return None,
    };
    if let Some(n) = raw.strip_prefix("cf[").and_then(|r| r.strip_suffix(']')) {
        return Some(format!("customfield_{n}"));
    }
    let lower = raw.to_ascii_lowercase();
    Some(match lower.as_str() {
        "issuekey" => "key".into(),
        "key" | "id" | "project" | "labels" | "status" | "updated" | "created" | "summary"
        | "resolution" | "issuetype" | "priority" | "assignee" | "reporter" | "description" => {
            lower
        }
        _ => raw,
    })
}

fn parse_jql(jql: &str) -> Result<Jql, String> {
    let toks = lex(jql)?;
    let mut q = Jql::default();
    let mut i = 0;
    let mut depth = 0usize;
    let word_is =
        |t: Option<&Tok>, w: &str| matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
    while i < toks.len() {
        if word_is(toks.get(i), "ORDER") && word_is(toks.get(i + 1), "BY") {
            i += 2;
            loop {
                let f = toks
                    .get(i)
                    .and_then(field_name)
                    .ok_or("expected a field after ORDER BY")?;
                i += 1;
                let mut desc = false;
                if word_is(toks.get(i), "DESC") {
                    desc = true;
                    i += 1;
                } else if word_is(toks.get(i), "ASC") {
                    i += 1;
                }
                q.order.push((f, desc));
                if toks.get(i) == Some(&Tok::Comma) {
                    i += 1;
                } else {
                    break;
                }
            }
            if i != toks.len() {
                return Err("unexpected tokens after ORDER BY".into());
            }
            break;
        }
        // Parentheses only group (every clause is ANDed), so they can go.
        let mut opened = 0;
        while toks.get(i) == Some(&Tok::LParen) {
            opened += 1;
            i += 1;
        }
        depth += opened;
        let field = toks
            .get(i)
            .and_then(field_name)
            .ok_or_else(|| format!("expected a field at token {i}"))?;
        i += 1;
        let op = match toks.get(i) {
            Some(Tok::Op(o)) => o.clone(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => "in".into(),
            other => return Err(format!("unsupported operator {other:?}")),
        };
        i += 1;
        let mut values = Vec::new();
        if op == "in" {
            if toks.get(i) != Some(&Tok::LParen) {
                return Err("expected ( after IN".into());
            }
            i += 1;
            loop {
                match toks.get(i) {
                    Some(Tok::Word(w) | Tok::Str(w)) => values.push(w.clone()),
                    _ => return Err("expected a value in IN (...)".into()),
                }
                i += 1;
                match toks.get(i) {
                    Some(Tok::Comma) => i += 1,
                    Some(Tok::RParen) => {
                        i += 1;
                        break;
                    }
                    _ => return Err("expected , or ) in IN (...)".into()),
                }
            }
        } else {
            match toks.get(i) {
                Some(Tok::Word(w) | Tok::Str(w)) => values.push(w.clone()),
                _ => return Err(format!("expected a value after {field} {op}")),
            }
            i += 1;
        }
        if matches!(op.as_str(), ">=" | "<=" | ">" | "<") {
            if !matches!(field.as_str(), "updated" | "created") {
                return Err(format!("{op} is only supported on updated/created"));
            }
            if let Some(first) = values.first_mut() {
                *first = jql_date(first)?;
            }
        }
        q.clauses.push(Clause { field, op, values });
        while toks.get(i) == Some(&Tok::RParen) && depth > 0 {
            depth -= 1;
            i += 1;
        }
        if i < toks.len() {
            if word_is(toks.get(i), "AND") {
                i += 1;
            } else if !word_is(toks.get(i), "ORDER") {
                return Err(format!(
                    "unsupported token {:?} (only AND is supported)",
                    toks[i]
                ));
            }
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(q)
}

/// `YYYY-MM-DD[ HH:mm]` (or `/`), or a relative date (`-15m`, `-2h`, `-1d`,
/// `-1w`, counted back from now), to `YYYY-MM-DD HH:mm` (UTC, the test
/// double's only time zone).
fn jql_date(v: &str) -> Result<String, String> {
    let v = v.trim().replace('/', "-");
    if let Some(rel) = v.strip_prefix('-') {
        let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
        let (n, unit) = rel.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("unsupported relative date {v:?}"))?;
        let secs = match unit {
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            "w" => n * 604_800,
            _ => {
                return Err(format!(
                    "unsupported relative date {v:?} (units m, h, d, w)"
                ))
            }
        };
        let t = crate::faults::jira_time_in(-secs);
        return Ok(t.replacen('T', " ", 1).chars().take(16).collect());
    }
    let ok_date = |d: &str| {
        d.len() == 10
            && d.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    match v.split_once(' ') {
        None if ok_date(&v) => Ok(format!("{v} 00:00")),
        Some((d, t)) if ok_date(d) && t.len() == 5 && t.as_bytes()[2] == b':' => Ok(v.clone()),
        _ => Err(format!("unsupported date {v:?} (use \"YYYY-MM-DD HH:mm\")")),
    }
}

fn texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
        Value::Object(o) => {
            for k in ["name", "value", "key", "id", "accountId"] {
                if let Some(x) = o.get(k) {
                    texts(x, out);
                }
            }
            if o.get("type").and_then(Value::as_str) == Some("doc") {
                out.push(adf_to_text(v));
            }
        }
        Value::Null => {}
    }
}

fn candidates(i: &Issue, field: &str) -> Vec<String> {
    match field {
        "key" => vec![i.key.clone()],
        "id" => vec![i.id.to_string()],
        "updated" | "created" => i
            .fields
            .get(field)
            .and_then(Value::as_str)
            .map(|t| vec![t.replacen('T', " ", 1).chars().take(16).collect()])
            .unwrap_or_default(),
        _ => {
            // An issue without the field has no value to match (Jira:
            // no match, never an error).
            let mut out = Vec::new();
            if let Some(v) = i.fields.get(field) {
                texts(v, &mut out);
            }
            out
        }
    }
}

fn clause_matches(i: &Issue, c: &Clause) -> bool {
    let have = candidates(i, &c.field);
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let v = c.values.first().map(String::as_str).unwrap_or_default();
    // Like Jira, `!=` and `!~` never match an issue without a value.
    if have.is_empty() {
        return false;
    }
    match c.op.as_str() {
        "=" => have.iter().any(|h| eq(h, v)),
        "in" => have.iter().any(|h| c.values.iter().any(|v| eq(h, v))),
        "!=" => !have.iter().any(|h| eq(h, v)),
        "~" | "!~" => {
            let custom = c.field.starts_with("customfield_");
            let hit = have.iter().any(|h| {
                if custom {
                    eq(h, v)
                } else {
                    h.to_lowercase().contains(&v.to_lowercase())
                }
            });
            hit == (c.op == "~")
        }
        ">=" => have.iter().any(|h| h.as_str() >= v),
        "<=" => have.iter().any(|h| h.as_str() <= v),
        ">" => have.iter().any(|h| h.as_str() > v),
        "<" => have.iter().any(|h| h.as_str() < v),
        _ => false,
    }
}

fn search(ctx: &Ctx<'_>, q: SearchReq, jql_api: bool) -> Response {
    let parsed = match parse_jql(&q.jql) {
        Ok(p) => p,
        Err(e) => {
            ctx.violation(vec![format!(
                "JQL {:?} unsupported by the JiraServer test double: {e}",
                q.jql
            )]);
            return jira_error(
                400,
                &[&format!(
                    "Error in the JQL Query: {e} (JiraServer test double)"
                )],
                json!({}),
            );
        }
    };
    let offset: usize = match q.offset.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return jira_error(400, &["Invalid nextPageToken."], json!({}));
        }
    };
    let max = q.max.unwrap_or(50).clamp(1, 5000);
    if q.reconcile.len() > 50 {
        return jira_error(
            400,
            &["reconcileIssues accepts at most 50 issue ids."],
            json!({}),
        );
    }
    let mut guard = lock(&ctx.sh.state);
    // With a search lag, search sees each issue as last indexed.
    let views: Option<Vec<Issue>> = if guard.search_lag.is_zero() {
        None
    } else {
        let now = Instant::now();
        let mut views = Vec::new();
        for i in guard.issues.iter_mut() {
            while i.pending.front().is_some_and(|(at, _)| *at <= now) {
                i.indexed = i.pending.pop_front().map(|(_, f)| f);
            }
            if q.reconcile.contains(&i.id) {
                views.push(i.with_fields(&i.fields));
            } else if let Some(f) = &i.indexed {
                views.push(i.with_fields(f));
            }
        }
        Some(views)
    };
    let st = &*guard;
    let mut parsed = parsed;
    for c in &mut parsed.clauses {
        c.field = meta::jql_field(&st.site, &c.field);
    }
    let pool: &[Issue] = views.as_deref().unwrap_or(&st.issues);
    let mut hits: Vec<&Issue> = pool
        .iter()
        .filter(|i| parsed.clauses.iter().all(|c| clause_matches(i, c)))
        .collect();
    for (field, desc) in parsed.order.iter().rev() {
        hits.sort_by(|a, b| {
            let ord = match field.as_str() {
                "key" | "id" => a.id.cmp(&b.id),
                _ => candidates(a, field).cmp(&candidates(b, field)),
            };
            if *desc {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let total = hits.len();
    let default_fields = if jql_api {
        vec!["id".to_string()]
    } else {
        vec!["*navigable".to_string()]
    };
    let select = q.fields.unwrap_or(default_fields);
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(max)
        .map(|i| render_issue(ctx, st, i, Some(&select)))
        .collect();
    let end = offset + page.len();
    if jql_api {
        let mut out = json!({"issues": page, "isLast": end >= total});
        if end < total {
            out["nextPageToken"] = Value::String(end.to_string());
        }
        json_response(200, &out)
    } else {
        json_response(
            200,
            &json!({"expand": "schema,names", "startAt": offset, "maxResults": max, "total": total, "issues": page}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{Fault, Match};

    fn c() -> reqwest::Client {
        reqwest::Client::new()
    }

    fn adf(text: &str) -> Value {
        text_to_adf(text)
    }

    async fn post(j: &JiraServer, path: &str, body: Value) -> reqwest::Response {
        c().post(format!("{}{path}", j.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn get(j: &JiraServer, path: &str) -> reqwest::Response {
        c().get(format!("{}{path}", j.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .send()
            .await
            .unwrap()
    }

    fn create_body(summary: &str, corr: &str) -> Value {
        json!({"fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": summary,
            "description": adf("from ServiceNow"),
            "labels": ["servicenow"],
            "customfield_10050": corr
        }})
    }

    #[tokio::test]
    async fn create_comment_and_read_back() {
        let j = JiraServer::start().await;
        let r = post(
            &j,
            "/rest/api/3/issue",
            create_body("Printer on fire", "INC0010001"),
        )
        .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["key"], "OPS-1");
        assert_eq!(v["id"], "10000");

        let r = post(
            &j,
            "/rest/api/3/issue/OPS-1/comment",
            json!({"body": adf("hello")}),
        )
        .await;
        assert_eq!(r.status(), 201);
        let r = post(
            &j,
            "/rest/api/3/issue/OPS-1/comment",
            json!({"body": "plain"}),
        )
        .await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"]["comment"], "Comment body is not valid!");
        let r = post(
            &j,
            "/rest/api/2/issue/OPS-1/comment",
            json!({"body": "v2 text"}),
        )
        .await;
        assert_eq!(r.status(), 201);

        let snap = j.issue("OPS-1").unwrap();
        assert_eq!(snap.status, "To Do");
        assert_eq!(snap.comments.len(), 2);
        assert_eq!(snap.fields["customfield_10050"], "INC0010001");

        let v: Value = get(&j, "/rest/api/3/issue/OPS-1/comment")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["total"], 2);
        assert_eq!(v["comments"][1]["body"]["type"], "doc");
        let v: Value = get(&j, "/rest/api/2/issue/OPS-1?fields=summary,description")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["fields"]["description"], "from ServiceNow");
        assert!(v["fields"].get("labels").is_none());
        assert_eq!(get(&j, "/rest/api/3/issue/OPS-9").await.status(), 404);

        // Edit with the update form.
        let r = c()
            .put(format!("{}/rest/api/3/issue/OPS-1", j.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .json(&json!({
                "fields": {"summary": "Printer still on fire"},
                "update": {"labels": [{"add": "synced"}, {"remove": "servicenow"}],
                           "comment": [{"add": {"body": adf("via update")}}]}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let snap = j.issue("OPS-1").unwrap();
        assert_eq!(snap.fields["labels"], json!(["synced"]));
        assert_eq!(snap.fields["summary"], "Printer still on fire");
        assert_eq!(snap.comments.len(), 3);
        // The rejected plain comment is a violation.
        let v = j.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path, "/rest/api/3/issue/OPS-1/comment");
    }

    #[tokio::test]
    async fn transitions_follow_the_workflow() {
        let j = JiraServer::start().await;
        let key = j.seed_issue("OPS", json!({"summary": "s"}));
        let v: Value = get(
            &j,
            &format!("/rest/api/3/issue/{key}/transitions?expand=transitions.fields"),
        )
        .await
        .json()
        .await
        .unwrap();
        let ids: Vec<&str> = v["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["21", "31", "41"]);
        assert_eq!(
            v["transitions"][1]["fields"]["resolution"]["required"],
            true
        );

        let path = format!("/rest/api/3/issue/{key}/transitions");
        let r = post(&j, &path, json!({"transition": {"id": "31"}})).await;
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["errors"]["resolution"], "Resolution is required.");
        assert_eq!(j.issue(&key).unwrap().status, "To Do");
        let r = post(&j, &path, json!({"transition": {"id": "99"}})).await;
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e["errorMessages"][0],
            "Transition id '99' is not valid for this issue."
        );
        let r = post(
            &j,
            &path,
            json!({"transition": {"id": "31"}, "fields": {"resolution": {"name": "Done"}}}),
        )
        .await;
        assert_eq!(r.status(), 204);
        let snap = j.issue(&key).unwrap();
        assert_eq!(snap.status, "Resolved");
        assert_eq!(snap.fields["resolution"]["name"], "Done");
        let r = post(&j, &path, json!({"transition": {"id": "51"}})).await;
        assert_eq!(r.status(), 204);
        let snap = j.issue(&key).unwrap();
        assert_eq!(snap.status, "To Do");
        assert!(snap.fields["resolution"].is_null());
        assert!(j.violations().is_empty(), "{:?}", j.violations());
    }

    fn multipart(boundary: &str, name: &str, mime: &str, data: &[u8]) -> Vec<u8> {
        let mut b = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(data);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    }

    #[tokio::test]
    async fn attachments_need_the_xsrf_header() {
        let j = JiraServer::start().await;
        let key = j.seed_issue("OPS", json!({"summary": "s"}));
        let url = format!("{}/rest/api/3/issue/{key}/attachments", j.base_url());
        let body = multipart("XyZ", "log.txt", "text/plain", b"line1\r\nline2");
        let send = |xsrf: bool| {
            let mut r = c()
                .post(&url)
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .header("Content-Type", "multipart/form-data; boundary=XyZ")
                .body(body.clone());
            if xsrf {
                r = r.header("X-Atlassian-Token", "no-check");
            }
            r.send()
        };
        let r = send(false).await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().await.unwrap(), "XSRF check failed");
        assert!(j.issue(&key).unwrap().attachments.is_empty());
        let r = send(true).await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v[0]["filename"], "log.txt");
        assert_eq!(v[0]["size"], 12);
        let snap = j.issue(&key).unwrap();
        assert_eq!(snap.attachments[0].bytes, b"line1\r\nline2");
        assert_eq!(snap.attachments[0].mime, "text/plain");
        // Download it back, and a file placed by the test.
        let content = v[0]["content"].as_str().unwrap().to_string();
        let r = c()
            .get(&content)
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"line1\r\nline2");
        let url = j.add_file("a b.png", "image/png", vec![1, 2, 3]);
        let r = c()
            .get(&url)
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(c().get(&url).send().await.unwrap().status(), 401);
    }

    #[tokio::test]
    async fn search_by_correlation_field() {
        let j = JiraServer::start().await;
        for n in 0..3 {
            let r = post(
                &j,
                "/rest/api/3/issue",
                create_body("s", &format!("INC00{n}")),
            )
            .await;
            assert_eq!(r.status(), 201);
        }
        let search = |jql: &str, extra: &str| {
            let url = format!(
                "{}/rest/api/3/search/jql?jql={}&fields=summary,customfield_10050{extra}",
                j.base_url(),
                percent_encode(jql)
            );
            async move {
                let r = c()
                    .get(url)
                    .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (s, v) = search("cf[10050] ~ \"INC001\" AND project = OPS", "").await;
        assert_eq!(s, 200);
        assert_eq!(v["issues"].as_array().unwrap().len(), 1);
        assert_eq!(v["issues"][0]["key"], "OPS-2");
        assert_eq!(v["isLast"], true);
        let (_, v) = search(
            "labels = \"servicenow\" ORDER BY updated ASC",
            "&maxResults=2",
        )
        .await;
        assert_eq!(v["issues"].as_array().unwrap().len(), 2);
        assert_eq!(v["nextPageToken"], "2");
        assert_eq!(v["isLast"], false);
        let (_, v) = search("updated >= \"2000-01-01 00:00\" AND key = OPS-3", "").await;
        assert_eq!(v["issues"][0]["key"], "OPS-3");
        // Relative dates count back from now.
        let (_, v) = search("updated >= \"-5m\" AND key = OPS-3", "").await;
        assert_eq!(v["issues"][0]["key"], "OPS-3");
        let (_, v) = search("updated <= \"-1d\" AND key = OPS-3", "").await;
        assert_eq!(v["issues"].as_array().unwrap().len(), 0);
        let (s, v) = search("project = OPS OR labels = x", "").await;
        assert_eq!(s, 400);
        assert!(v["errorMessages"][0].as_str().unwrap().contains("JQL"));
        // An unknown query parameter is a contract violation (with the spec).
        if crate::openapi::jira_spec().is_some() {
            let (s, _) = search("project = OPS", "&maxResult=5").await;
            assert_eq!(s, 400);
            let v = j.violations();
            assert!(
                v.iter()
                    .any(|v| v.errors.iter().any(|e| e.contains("query.maxResult"))),
                "{v:?}"
            );
        }
    }

    #[tokio::test]
    async fn openapi_violations_are_rejected_and_listed() {
        if crate::fixtures_dir().is_none() {
            return;
        }
        let j = JiraServer::start().await;
        let r = post(&j, "/rest/api/3/issue", json!({"fields": "x"})).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["errorMessages"][0],
            "body.fields: expected object, got string"
        );
        assert!(j.issues().is_empty());
        let v = j.violations();
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].errors,
            vec!["body.fields: expected object, got string".to_string()]
        );
        assert_eq!(get(&j, "/rest/api/3/nothing/here").await.status(), 404);
    }

    #[tokio::test]
    async fn auth_rotation_oauth_and_faults() {
        let j = JiraServer::start().await;
        j.faults().push(
            Match::path("/issue"),
            Fault::Status {
                status: 429,
                retry_after: Some("2".into()),
                headers: vec![],
                body: None,
            },
            1,
        );
        let r = post(&j, "/rest/api/3/issue", create_body("s", "INC1")).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["ratelimit-reason"], "jira-burst-based");
        assert!(j.issues().is_empty());
        let r = post(&j, "/rest/api/3/issue", create_body("s", "INC1")).await;
        assert_eq!(r.status(), 201);
        assert_eq!(
            j.faults().injected(),
            vec![("POST /rest/api/3/issue".to_string(), "429".to_string())]
        );

        j.set_basic(DEFAULT_EMAIL, "new-token");
        let r = get(&j, "/rest/api/3/issue/OPS-1").await;
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["errorMessages"][0],
            "Client must be authenticated to access this resource."
        );

        let r = c()
            .post(format!("{}/oauth/token", j.base_url()))
            .json(&json!({"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tok: Value = r.json().await.unwrap();
        assert_eq!(tok["token_type"], "Bearer");
        let r = c()
            .get(format!("{}/rest/api/3/issue/OPS-1", j.base_url()))
            .bearer_auth(tok["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(j.oauth_tokens_issued(), 1);
        j.set_bearer("pat-1");
        let r = c()
            .get(format!("{}/rest/api/3/issue/OPS-1", j.base_url()))
            .bearer_auth("pat-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(j
            .requests()
            .iter()
            .filter_map(|r| r.header("authorization"))
            .all(|h| h == "<redacted>"));
    }

    #[tokio::test]
    async fn properties_and_remote_links() {
        let j = JiraServer::start().await;
        let key = j.seed_issue("OPS", json!({"summary": "s"}));
        let url = format!("{}/rest/api/3/issue/{key}/properties/relay", j.base_url());
        for expect in [201, 200] {
            let r = c()
                .put(&url)
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .json(&json!({"sys_id": "abc"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), expect);
        }
        let v: Value = get(&j, &format!("/rest/api/3/issue/{key}/properties/relay"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v, json!({"key": "relay", "value": {"sys_id": "abc"}}));
        let link =
            json!({"globalId": "sn=abc", "object": {"url": "https://sn/x", "title": "INC1"}});
        let r = post(
            &j,
            &format!("/rest/api/3/issue/{key}/remotelink"),
            link.clone(),
        )
        .await;
        assert_eq!(r.status(), 201);
        let r = post(&j, &format!("/rest/api/3/issue/{key}/remotelink"), link).await;
        assert_eq!(r.status(), 200);
        let snap = j.issue(&key).unwrap();
        assert_eq!(snap.remote_links.len(), 1);
        assert_eq!(snap.properties["relay"]["sys_id"], "abc");
        assert!(j.violations().is_empty(), "{:?}", j.violations());
    }

    #[tokio::test]
    async fn answer_lost_on_jira_writes() {
        let j = JiraServer::start().await;
        j.faults().push(Match::any(), Fault::answer_dropped(), 1);
        // Reads and refused writes pass it by.
        assert_eq!(get(&j, "/rest/api/3/myself").await.status(), 200);
        let r = post(&j, "/rest/api/3/issue", json!({"fields": {"summary": "x"}})).await;
        assert_eq!(r.status(), 400);
        let e = c()
            .post(format!("{}/rest/api/3/issue", j.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .json(&create_body("s", "INC1"))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_request() && !e.is_timeout(), "{e:?}");
        assert_eq!(j.issues().len(), 1, "the create was applied");
        assert_eq!(j.faults().count("answer_lost"), 1);
        // Late, on a comment and on a transition.
        j.faults().push(
            Match::path("/issue/OPS-1/"),
            Fault::answer_late(Duration::from_millis(1500)),
            2,
        );
        let send = |path: &str, body: Value| {
            c().post(format!("{}{path}", j.base_url()))
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .timeout(Duration::from_millis(300))
                .json(&body)
                .send()
        };
        let e = send(
            "/rest/api/3/issue/OPS-1/comment",
            json!({"body": adf("hi")}),
        )
        .await
        .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        let e = send(
            "/rest/api/2/issue/OPS-1/transitions",
            json!({"transition": {"id": "21"}}),
        )
        .await
        .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        let snap = j.issue("OPS-1").unwrap();
        assert_eq!(snap.comments.len(), 1);
        assert_eq!(snap.status, "In Progress");
        assert_eq!(j.faults().count("answer_lost"), 3);
        assert_eq!(
            send("/rest/api/3/issue/OPS-1/comment", json!({"body": adf("2")}))
                .await
                .unwrap()
                .status(),
            201
        );
        assert!(is_write(&Method::PUT, "/rest/api/3/issue/OPS-1"));
        assert!(is_write(
            &Method::POST,
            "/rest/api/2/issue/OPS-1/attachments"
        ));
        assert!(!is_write(
            &Method::PUT,
            "/rest/api/3/issue/OPS-1/properties/x"
        ));
        assert!(!is_write(&Method::GET, "/rest/api/3/issue/OPS-1"));
    }

    #[tokio::test]
    async fn search_skips_issues_without_the_field() {
        let j = JiraServer::start().await;
        // One issue has the correlation field, one does not.
        let with = j.seed_issue("OPS", json!({"summary": "a", "customfield_10050": "X"}));
        let without = j.seed_issue("OPS", json!({"summary": "b"}));
        let keys = |v: &Value| -> Vec<String> {
            v["issues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["key"].as_str().unwrap().to_string())
                .collect()
        };
        for (jql, want) in [
            ("cf[10050] ~ \"X\"", vec![with.clone()]),
            ("\"customfield_10050\" = X", vec![with.clone()]),
            ("customfield_10050 in (X, Y)", vec![with.clone()]),
            // `!=` never matches an issue without a value.
            ("cf[10050] != Y", vec![with.clone()]),
            ("cf[10050] !~ \"X\"", vec![]),
            ("customfield_99999 = X", vec![]),
            (
                "project = OPS ORDER BY cf[10050] DESC",
                vec![with.clone(), without.clone()],
            ),
        ] {
            let r = post(&j, "/rest/api/3/search/jql", json!({"jql": jql})).await;
            assert_eq!(r.status(), 200, "{jql}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(keys(&v), want, "{jql}");
        }
        // The server is still up, and a create without a project is a 400.
        let r = post(&j, "/rest/api/3/issue", json!({"fields": {}})).await;
        assert_eq!(r.status(), 400);
        let r = get(&j, "/rest/api/2/search?jql=cf%5B10050%5D%20~%20X").await;
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn search_lags_behind_writes_until_reconciled() {
        let j = JiraServer::start().await;
        j.seed_issue("OPS", json!({"summary": "seeded"}));
        let lag = Duration::from_millis(400);
        j.set_search_lag(lag);
        let search = |jql: &str, reconcile: Vec<u64>| {
            let mut body = json!({"jql": jql, "fields": ["summary", "status"]});
            if !reconcile.is_empty() {
                body["reconcileIssues"] = json!(reconcile);
            }
            let j = j.clone();
            async move {
                let r = post(&j, "/rest/api/3/search/jql", body).await;
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                v["issues"].as_array().unwrap().clone()
            }
        };
        // Seeded before: searchable at once.
        assert_eq!(search("summary ~ seeded", vec![]).await.len(), 1);
        let r = post(&j, "/rest/api/3/issue", create_body("fresh", "INC7")).await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        let key = created["key"].as_str().unwrap().to_string();
        let id: u64 = created["id"].as_str().unwrap().parse().unwrap();
        // Invisible to search (every search route), visible to a direct read.
        assert!(search("cf[10050] ~ \"INC7\"", vec![]).await.is_empty());
        let v: Value = get(&j, "/rest/api/2/search?jql=project%20%3D%20OPS")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["total"], 1, "{v}");
        let v: Value = get(
            &j,
            "/rest/api/3/search/jql?jql=project%20%3D%20OPS&reconcileIssues=1,2",
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["issues"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(
            get(&j, &format!("/rest/api/3/issue/{key}")).await.status(),
            200
        );
        // reconcileIssues makes it read-after-write consistent (POST and GET).
        let hits = search("cf[10050] ~ \"INC7\"", vec![id]).await;
        assert_eq!(hits.len(), 1);
        let v: Value = get(
            &j,
            &format!("/rest/api/3/search/jql?jql=project%20%3D%20OPS&reconcileIssues={id}"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["issues"].as_array().unwrap().len(), 2, "{v}");
        tokio::time::sleep(lag + Duration::from_millis(50)).await;
        assert_eq!(search("cf[10050] ~ \"INC7\"", vec![]).await.len(), 1);

        // An edit and a transition reach search only after the lag; until
        // then search matches and shows the indexed version.
        let r = c()
            .put(format!("{}/rest/api/3/issue/{key}", j.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .json(&json!({"fields": {"summary": "renamed"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = post(
            &j,
            &format!("/rest/api/3/issue/{key}/transitions"),
            json!({"transition": {"id": "21"}}),
        )
        .await;
        assert_eq!(r.status(), 204);
        assert!(search("summary ~ renamed", vec![]).await.is_empty());
        let hits = search("summary ~ fresh", vec![]).await;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0]["fields"]["summary"], "fresh");
        assert_eq!(hits[0]["fields"]["status"]["name"], "To Do");
        let v: Value = get(&j, &format!("/rest/api/3/issue/{key}?fields=summary"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["fields"]["summary"], "renamed");
        let hits = search("summary ~ renamed", vec![id]).await;
        assert_eq!(hits[0]["fields"]["status"]["name"], "In Progress");
        tokio::time::sleep(lag + Duration::from_millis(50)).await;
        let hits = search("status = \"In Progress\"", vec![]).await;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0]["fields"]["summary"], "renamed");
        assert!(search("summary ~ fresh", vec![]).await.is_empty());
        // The lag off: search is current again.
        j.set_search_lag(Duration::ZERO);
        let _ = post(&j, "/rest/api/3/issue", create_body("third", "INC8")).await;
        assert_eq!(search("cf[10050] ~ \"INC8\"", vec![]).await.len(), 1);
        assert!(j.violations().is_empty(), "{:?}", j.violations());
    }

    #[tokio::test]
    async fn comments_with_properties_edit_and_delete() {
        let j = JiraServer::start().await;
        let key = j.seed_issue("OPS", json!({"summary": "s"}));
        let base = format!("/rest/api/3/issue/{key}/comment");
        let props = json!([{"key": "relay", "value": {"origin": "servicenow", "sys_id": "abc"}}]);
        let r = post(&j, &base, json!({"body": adf("hi"), "properties": props})).await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert!(v.get("properties").is_none(), "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let r = post(
            &j,
            &format!("{base}?expand=properties"),
            json!({"body": adf("plain")}),
        )
        .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["properties"], json!([]));
        // Only expanded reads show the properties.
        let v: Value = get(&j, &base).await.json().await.unwrap();
        assert!(v["comments"][0].get("properties").is_none());
        let v: Value = get(&j, &format!("{base}?expand=properties"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["comments"][0]["properties"], props);
        let v: Value = get(&j, &format!("{base}/{id}?expand=properties"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["properties"][0]["value"]["sys_id"], "abc");
        assert_eq!(v["body"]["type"], "doc");
        let v: Value = get(&j, &format!("/rest/api/2/issue/{key}/comment/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["body"], "hi");
        assert!(v.get("properties").is_none());
        let snap = j.comments(&key).unwrap();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].properties["relay"]["origin"], "servicenow");
        assert!(snap[1].properties.is_empty());
        assert!(j.issue(&key).unwrap().comments[0]
            .get("properties")
            .is_none());

        // Edit: body, updated, updateAuthor; properties merge by key.
        tokio::time::sleep(Duration::from_millis(5)).await;
        j.set_bearer("pat-2");
        let r = c()
            .put(format!("{}{base}/{id}?expand=properties", j.base_url()))
            .bearer_auth("pat-2")
            .json(&json!({"body": adf("edited"),
                "properties": [{"key": "seen", "value": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["properties"].as_array().unwrap().len(), 2);
        let snap = &j.comments(&key).unwrap()[0];
        assert_eq!(snap.body, adf("edited"));
        assert_ne!(snap.updated, snap.created);
        assert_eq!(snap.update_author["accountId"], "712020:relay-app");
        assert_eq!(snap.author["accountId"], "5b10a2844c20165700ede21g");
        assert_eq!(snap.properties["seen"], 1);
        assert_eq!(snap.properties["relay"]["sys_id"], "abc");
        // Bad bodies and properties are refused.
        let r = c()
            .put(format!("{}{base}/{id}", j.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .json(&json!({"body": "not adf"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = post(
            &j,
            &base,
            json!({"body": adf("x"), "properties": [{"value": 1}]}),
        )
        .await;
        assert_eq!(r.status(), 400);
        assert_eq!(j.comments(&key).unwrap().len(), 2);
        let n = j.violations().len();
        assert_eq!(n, 2, "{:?}", j.violations());

        // Delete.
        let del = || {
            c().delete(format!("{}{base}/{id}", j.base_url()))
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .send()
        };
        assert_eq!(del().await.unwrap().status(), 204);
        assert_eq!(del().await.unwrap().status(), 404);
        assert_eq!(get(&j, &format!("{base}/{id}")).await.status(), 404);
        assert_eq!(j.comments(&key).unwrap().len(), 1);
        assert_eq!(j.violations().len(), n, "{:?}", j.violations());
    }

    /// Sends with the default Basic credentials: (status, JSON body or null).
    async fn send_as_admin(r: reqwest::RequestBuilder) -> (u16, Value) {
        let r = r
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn users_and_group_membership_as_the_spec_shapes_them() {
        let j = JiraServer::start().await;
        j.add_group("jira-software-users");
        let c = reqwest::Client::new();
        let url = |p: &str| format!("{}/rest/api/3/{p}", j.base_url());
        let send = send_as_admin;
        // Create, and create again: the same account.
        let body = json!({"emailAddress": "ann.lee@example.com", "displayName": "Ann Lee", "products": ["jira-software"]});
        let (st, a) = send(c.post(url("user")).json(&body)).await;
        assert_eq!(st, 201, "{a}");
        let id = a["accountId"].as_str().unwrap().to_owned();
        let (st, again) = send(c.post(url("user")).json(&body)).await;
        assert_eq!((st, again["accountId"].as_str()), (201, Some(id.as_str())));
        let (_, hits) = send(c.get(url("user/search?query=ann.lee@example.com"))).await;
        assert_eq!(hits[0]["accountId"], json!(id));
        // Membership: add, add again (400), read both ways, remove, remove again (400).
        let add = || {
            c.post(url("group/user?groupname=jira-software-users"))
                .json(&json!({"accountId": id}))
        };
        assert_eq!(send(add()).await.0, 201);
        assert_eq!(send(add()).await.0, 400);
        let (_, groups) = send(c.get(url(&format!("user/groups?accountId={id}")))).await;
        assert_eq!(groups[0]["name"], "jira-software-users");
        let (_, members) = send(c.get(url("group/member?groupname=jira-software-users"))).await;
        assert_eq!(members["values"][0]["accountId"], json!(id));
        let remove = || {
            c.delete(url(&format!(
                "group/user?groupname=jira-software-users&accountId={id}"
            )))
        };
        assert_eq!(send(remove()).await.0, 200);
        assert_eq!(send(remove()).await.0, 400);
        assert_eq!(j.group_members("jira-software-users"), Some(vec![]));
        assert_eq!(
            send(
                c.post(url("group/user?groupname=nope"))
                    .json(&json!({"accountId": id}))
            )
            .await
            .0,
            404
        );
        // Leaving the site.
        assert_eq!(
            send(c.delete(url(&format!("user?accountId={id}")))).await.0,
            204
        );
        assert_eq!(
            send(c.get(url(&format!("user/groups?accountId={id}"))))
                .await
                .0,
            404
        );
        assert!(j.violations().is_empty(), "{:?}", j.violations());
    }

    #[tokio::test]
    async fn cloud_user_search_lags_behind_a_create() {
        let j = JiraServer::start().await;
        j.set_search_lag(Duration::from_millis(300));
        let c = reqwest::Client::new();
        let url = |p: &str| format!("{}/rest/api/3/{p}", j.base_url());
        let send = send_as_admin;
        let body = json!({"emailAddress": "lag@example.com", "products": ["jira-software"]});
        assert_eq!(send(c.post(url("user")).json(&body)).await.0, 201);
        let search = || c.get(url("user/search?query=lag@example.com"));
        assert_eq!(send(search()).await.1, json!([]));
        // A create for the address meanwhile answers with the same account.
        let (st, again) = send(c.post(url("user")).json(&body)).await;
        assert_eq!((st, j.accounts().len()), (201, 1), "{again}");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(send(search()).await.1[0]["accountId"], again["accountId"]);
    }

    #[tokio::test]
    async fn data_center_users_by_username() {
        let j = JiraServer::start().await;
        j.set_data_center(true);
        j.set_bearer("pat");
        j.add_group("jira-software-users");
        let c = reqwest::Client::new();
        let url = |p: &str| format!("{}/rest/api/2/{p}", j.base_url());
        let send = |r: reqwest::RequestBuilder| async move {
            let r = r.bearer_auth("pat").send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        };
        let user = |name: &str| {
            json!({"name": name, "emailAddress": "dee@example.com", "displayName": "Dee",
                   "applicationKeys": ["jira-software"]})
        };
        // A username is unique, an address is not (Data Center's trap).
        assert_eq!(send(c.post(url("user")).json(&user("dee"))).await.0, 201);
        let (st, dup) = send(c.post(url("user")).json(&user("dee"))).await;
        assert_eq!((st, dup["errors"]["username"].is_string()), (400, true));
        assert_eq!(send(c.post(url("user")).json(&user("dee2"))).await.0, 201);
        let (st, missing) = send(
            c.post(url("user"))
                .json(&json!({"emailAddress": "x@example.com"})),
        )
        .await;
        assert_eq!(st, 400);
        assert!(
            missing["errors"]["username"].is_string() && missing["errors"]["fullname"].is_string()
        );
        let (_, hits) = send(c.get(url("user/search?username=dee@example.com"))).await;
        assert_eq!(hits.as_array().unwrap().len(), 2);
        // Deactivated: found only with includeInactive.
        let (st, off) = send(
            c.put(url("user?username=dee"))
                .json(&json!({"active": false})),
        )
        .await;
        assert_eq!((st, off["active"].as_bool()), (200, Some(false)));
        let names = |v: Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|u| u["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let (_, hits) = send(c.get(url("user/search?username=dee"))).await;
        assert_eq!(names(hits), ["dee2"]);
        let (_, hits) = send(c.get(url(
            "user/search?username=dee&includeInactive=true&includeActive=false",
        )))
        .await;
        assert_eq!(names(hits), ["dee"]);
        // Membership by name, read through expand=groups.
        let add = || {
            c.post(url("group/user?groupname=jira-software-users"))
                .json(&json!({"name": "dee"}))
        };
        assert_eq!(send(add()).await.0, 201);
        assert_eq!(send(add()).await.0, 400);
        let (_, u) = send(c.get(url("user?username=dee&expand=groups"))).await;
        assert_eq!(u["groups"]["items"][0]["name"], "jira-software-users");
        let remove = || c.delete(url("group/user?groupname=jira-software-users&username=dee"));
        assert_eq!(send(remove()).await.0, 200);
        assert_eq!(send(remove()).await.0, 400);
        assert!(j.violations().is_empty(), "{:?}", j.violations());
        // Cloud's dialect is a violation (and a 400 for the missing username).
        assert_eq!(send(c.get(url("user/search?query=dee"))).await.0, 400);
        assert_eq!(j.violations().len(), 1, "{:?}", j.violations());
        assert_eq!(send(c.delete(url("user?username=dee2"))).await.0, 204);
        assert_eq!(j.dc_accounts().len(), 1);
    }

    #[tokio::test]
    async fn a_parent_is_deleted_only_with_its_subtasks() {
        let j = JiraServer::start().await;
        let parent = j.seed_issue("SUP", json!({"summary": "parent"}));
        let sub = j.seed_issue("SUP", json!({"summary": "sub", "parent": {"key": parent}}));
        let other = j.seed_issue("SUP", json!({"summary": "other"}));
        let del = |q: &'static str| {
            reqwest::Client::new()
                .delete(format!("{}/rest/api/3/issue/{parent}{q}", j.base_url()))
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .send()
        };
        assert_eq!(del("").await.unwrap().status(), 400);
        assert_eq!(del("?deleteSubtasks=false").await.unwrap().status(), 400);
        assert!(j.issue(&parent).is_some() && j.issue(&sub).is_some());
        assert_eq!(del("?deleteSubtasks=true").await.unwrap().status(), 204);
        assert!(j.issue(&parent).is_none() && j.issue(&sub).is_none());
        assert!(j.issue(&other).is_some());
        assert!(j.violations().is_empty(), "{:?}", j.violations());
    }

    #[tokio::test]
    async fn attachment_downloads_redirect_to_the_media_host() {
        // The media host: another server on another port, no auth.
        let media = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let media_base = format!("http://{}", media.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(|uri: http::Uri| async move { format!("media host: {}", uri.path()) });
        tokio::spawn(async move {
            let _ = axum::serve(media, app).await;
        });
        let j = JiraServer::start().await;
        let url = j.add_file("a b.txt", "text/plain", b"jira bytes".to_vec());
        let id = url.split('/').rev().nth(1).unwrap().to_string();
        j.set_content_redirect(Some(format!("{media_base}/file/{{id}}/{{filename}}")));
        let content = format!("{}/rest/api/3/attachment/content/{id}", j.base_url());
        let no_follow = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = no_follow
            .get(&content)
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let want = format!("{media_base}/file/{id}/a%20b.txt");
        assert_eq!(r.headers()["location"], want.as_str());
        // A client that follows redirects lands on the media host.
        for u in [&content, &url] {
            let r = c()
                .get(u.as_str())
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.url().as_str(), want);
            assert_eq!(
                r.text().await.unwrap(),
                format!("media host: /file/{id}/a%20b.txt")
            );
        }
        // Still after auth, still 404 for a missing file; redirect=false and
        // switching it off get the bytes.
        assert_eq!(no_follow.get(&content).send().await.unwrap().status(), 401);
        let r = get(&j, "/rest/api/3/attachment/content/999").await;
        assert_eq!(r.status(), 404);
        let r = get(
            &j,
            &format!("/rest/api/3/attachment/content/{id}?redirect=false"),
        )
        .await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"jira bytes");
        j.set_content_redirect(None);
        let r = get(&j, &format!("/rest/api/3/attachment/content/{id}")).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"jira bytes");
        assert!(j.violations().is_empty(), "{:?}", j.violations());
    }
}
