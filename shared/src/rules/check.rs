//! The rules as written in the config (their YAML form) and the check that
//! compiles them at load time: every path, template, regex and value table is
//! checked then, with the YAML line of the offending rule.

use crate::config::model::{Endpoint, SourceKind};
use crate::config::problem::problem;
use crate::config::problem::Problem;
use crate::outbound::connections::{Connection, ConnectionKind};
use crate::rules::path::Path;
use crate::rules::template::Template;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::rules::model::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    name: Spanned<String>,
    from: Spanned<String>,
    #[serde(default)]
    when: Option<WhenSpec>,
    to: Spanned<String>,
    action: Spanned<Action>,
    /// ServiceNow table, overriding the connection's default.
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    correlate: Option<Spanned<CorrelateSpec>>,
    /// HTTP connections: method and templated path.
    #[serde(default)]
    request: Option<Spanned<RequestSpec>>,
    #[serde(default)]
    map: BTreeMap<String, Spanned<MapSpec>>,
    #[serde(default)]
    iterate: Option<Spanned<String>>,
    #[serde(default)]
    wait_for_correlation: bool,
    #[serde(default)]
    stop: bool,
    /// Attach rules: the connection whose credentials fetch the file; the
    /// file URL must lie under its base URL.
    #[serde(default)]
    download_from: Option<Spanned<String>>,
    /// Create/upsert rules: write the new record's key back into the
    /// record the event came from, so the rules of the other direction find
    /// their twin.
    #[serde(default)]
    pair_back: Option<Spanned<PairBackSpec>>,
    /// Jira delete rules: `deleteSubtasks=true`.
    #[serde(default)]
    delete_subtasks: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairBackSpec {
    /// The connection that writes to the system the event came from.
    connection: String,
    /// The field there that holds the other side's key
    /// (`correlation_id`, `customfield_10050`): the field the rules of the
    /// other direction correlate by.
    field: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WhenSpec {
    /// `webhookEvent` / `issue_event_type_name` / ServiceNow `event` names; empty = any.
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    conditions: Vec<Spanned<ConditionSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionSpec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    equals: Option<Scalar>,
    #[serde(default)]
    not_equals: Option<Scalar>,
    #[serde(default, rename = "in")]
    in_: Option<Vec<Scalar>>,
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    matches: Option<String>,
    /// A field name: true if the changelog has an item for it.
    #[serde(default)]
    changed: Option<String>,
    #[serde(default)]
    from: Option<Scalar>,
    #[serde(default)]
    to: Option<Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrelateSpec {
    /// Where the correlation key comes from (a path or a template).
    key: String,
    /// The target field that holds it: ServiceNow column (default
    /// `correlation_id`); Jira `key` (the key itself), `labels` or `customfield_N`.
    #[serde(default)]
    field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default)]
    method: Option<Method>,
    path: String,
}

/// A mapped value: a path (the short form), or an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum MapSpec {
    Path(String),
    Full(MapFull),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFull {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    table: Option<BTreeMap<Scalar, Value>>,
    #[serde(default)]
    default: Option<Value>,
    /// The target needs this field: a missing value is an error, and a
    /// value table must have a `default`.
    #[serde(default)]
    required: bool,
    /// A person: written as the target system's id for them.
    #[serde(default)]
    user: bool,
}

/// Connections and rules checks, run when a config is loaded.
pub(crate) fn check_rules(
    raw: Vec<Spanned<RuleSpec>>,
    endpoints: &[Endpoint],
    connections: &[Connection],
    problems: &mut Vec<Problem>,
) -> Vec<Rule> {
    let mut names = HashSet::new();
    let mut rules = Vec::new();
    for (i, spanned) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        let line_of = |(line, _): (Option<u64>, Option<u64>)| line;
        let mut lines = RuleLines {
            rule: line_of(crate::config::problem::at(&spanned)),
            ..RuleLines::default()
        };
        let r = spanned.value;
        lines.correlate = r
            .correlate
            .as_ref()
            .and_then(|c| line_of(crate::config::problem::at(c)));
        lines.pair_back = r
            .pair_back
            .as_ref()
            .and_then(|c| line_of(crate::config::problem::at(c)));
        for (target, spec) in &r.map {
            if let Some(l) = line_of(crate::config::problem::at(spec)) {
                lines.map.insert(target.clone(), l);
            }
        }
        let name = r.name.value.clone();
        if name.trim().is_empty() {
            problems.push(problem(
                &r.name,
                at("name"),
                "rule name is empty",
                "give every rule a short unique name; it appears in logs",
            ));
        } else if !names.insert(name.clone()) {
            problems.push(problem(
                &r.name,
                at("name"),
                format!("rule `{name}` is defined twice"),
                "give every rule a unique name",
            ));
        }
        if !endpoints.iter().any(|e| e.name == r.from.value) {
            let known: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
            problems.push(problem(
                &r.from,
                at("from"),
                format!("no endpoint is named `{}`", r.from.value),
                &format!("use one of: {}", known.join(", ")),
            ));
        }
        let conn = connections.iter().find(|c| c.name == r.to.value);
        if conn.is_none() {
            let known: Vec<&str> = connections.iter().map(|c| c.name.as_str()).collect();
            let fix = if known.is_empty() {
                "add a `connections:` entry with this name".to_owned()
            } else {
                format!(
                    "use one of: {}, or add a connection with this name",
                    known.join(", ")
                )
            };
            problems.push(problem(
                &r.to,
                at("to"),
                format!("no connection is named `{}`", r.to.value),
                &fix,
            ));
        }
        let action = r.action.value;
        let mut local = Vec::new();
        let when = r.when.unwrap_or_default();
        let mut conditions = Vec::new();
        for (j, c) in when.conditions.iter().enumerate() {
            let field = at(&format!("when.conditions[{j}]"));
            match compile_condition(&c.value) {
                Ok(cond) => conditions.push(cond),
                Err((msg, fix)) => local.push(problem(c, field, msg, fix)),
            }
        }
        let mut map = Vec::new();
        for (target, spec) in &r.map {
            let field = at(&format!("map.{target}"));
            match compile_mapping(&spec.value) {
                Ok(m) => map.push((target.clone(), m)),
                Err((msg, fix)) => local.push(problem(spec, field, msg, fix)),
            }
        }
        let correlate =
            match &r.correlate {
                Some(c) => match Template::parse(&shorthand_template(&c.value.key)) {
                    Ok(key) => Some(Correlate {
                        key,
                        field: c.value.field.clone().unwrap_or_else(|| {
                            match conn.map(|c| c.kind) {
                                Some(ConnectionKind::Jira) => "key".to_owned(),
                                _ => "correlation_id".to_owned(),
                            }
                        }),
                    }),
                    Err(e) => {
                        local.push(problem(
                            c,
                            at("correlate.key"),
                            e,
                            "write a path (`issue.key`) or a template (`{{ correlation_id }}`)",
                        ));
                        None
                    }
                },
                None => None,
            };
        let request = match &r.request {
            Some(req) => match Template::parse(&req.value.path) {
                Ok(path) if req.value.path.starts_with('/') => Some(HttpRequest {
                    method: req.value.method.unwrap_or(Method::Post),
                    path,
                }),
                Ok(_) => {
                    local.push(problem(req, at("request.path"), "the request path must start with `/` (it is relative to the connection's base URL)", "write e.g. `/events/{{ issue.key }}`"));
                    None
                }
                Err(e) => {
                    local.push(problem(req, at("request.path"), e, ""));
                    None
                }
            },
            None => None,
        };
        let iterate = match &r.iterate {
            Some(it) => match Path::parse(&it.value) {
                Ok(p) => Some(p),
                Err(e) => {
                    local.push(problem(
                        it,
                        at("iterate"),
                        e,
                        "name an array, e.g. `changelog.items`",
                    ));
                    None
                }
            },
            None => None,
        };
        // What each target kind and action needs.
        if let Some(conn) = conn {
            let has = |t: &str| r.map.contains_key(t);
            let needs_key = !matches!(action, Action::Create)
                || conn.kind == ConnectionKind::Jira
                    && correlate.as_ref().is_some_and(|c| c.field != "key");
            match conn.kind {
                ConnectionKind::Http => {
                    if request.is_none() && r.request.is_none() {
                        local.push(problem(
                            &r.action,
                            at("request"),
                            "rules to an http connection need `request: { method, path }`",
                            "add `request: { method: POST, path: /events }`",
                        ));
                    }
                }
                ConnectionKind::Servicenow | ConnectionKind::Jira => {
                    if r.request.is_some() {
                        local.push(problem(
                            &r.action,
                            at("request"),
                            "`request` is only for http connections",
                            "remove it; the action decides the request",
                        ));
                    }
                    if correlate.is_none()
                        && r.correlate.is_none()
                        && (needs_key || conn.kind == ConnectionKind::Servicenow)
                    {
                        local.push(problem(&r.action, at("correlate"), format!("action `{}` needs to find the target record", action_name(action)), "add `correlate: { key: issue.key }` (the source field that pairs the records)"));
                    }
                }
            }
            if conn.kind == ConnectionKind::Jira {
                if action == Action::Comment && !has("body") {
                    local.push(problem(
                        &r.action,
                        at("map"),
                        "a Jira comment needs `map.body`",
                        "map `body` to the comment text",
                    ));
                }
                if action == Action::Transition && !has("transition.name") && !has("transition.id")
                {
                    local.push(problem(
                        &r.action,
                        at("map"),
                        "a Jira transition needs `map.transition.name` or `map.transition.id`",
                        "map `transition.name` to the target status's transition name",
                    ));
                }
            }
            if conn.kind == ConnectionKind::Servicenow
                && r.table.as_deref().is_some_and(|t| {
                    t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
            {
                local.push(problem(
                    &r.name,
                    at("table"),
                    "a ServiceNow table name is letters, digits and `_`",
                    "e.g. `incident`, `sc_req_item`",
                ));
            }
            if action == Action::Attach && conn.kind != ConnectionKind::Http {
                match &r.download_from {
                    None => local.push(problem(&r.action, at("download_from"), "an attach rule needs `download_from`: the connection whose credentials fetch the file", "add `download_from: <jira connection>`; the file URL must lie under its base URL")),
                    Some(d) if !connections.iter().any(|c| c.name == d.value) => local.push(problem(d, at("download_from"), format!("no connection is named `{}`", d.value), "name a connection from `connections:`")),
                    Some(_) => {}
                }
            }
            if action.is_identity() {
                let name = action_name(action);
                let sn = conn.kind == ConnectionKind::Servicenow;
                if conn.kind == ConnectionKind::Http || (sn && action == Action::User) {
                    local.push(problem(
                        &r.action,
                        at("action"),
                        format!("action `{name}` is for jira connections (Cloud `api: v3`, Data Center `api: v2`){}", if sn { "; ServiceNow's sys_user is a table like any other" } else { "" }),
                        "for ServiceNow write `sys_user` with `action: upsert` or `update` and `table: sys_user` (group_member works toward ServiceNow: sys_user_grmember)",
                    ));
                }
                // Toward ServiceNow the user is found by any sys_user column
                // (`email`, `user_name`, `u_jira_account_id`).
                if !sn
                    && correlate
                        .as_ref()
                        .is_some_and(|c| c.field != "emailAddress")
                {
                    local.push(problem(
                        &r.action,
                        at("correlate.field"),
                        format!("action `{name}` finds the person's account by e-mail address"),
                        "write `correlate: { key: email, field: emailAddress }` (the event's e-mail address)",
                    ));
                }
                let dc = conn.api == crate::outbound::connections::JiraApi::V2;
                let org = conn.org_admin.is_some();
                let allowed: &[&str] = match (action, dc) {
                    (Action::User, false) if org => &["displayName", "products", "active"],
                    (Action::User, false) => &["displayName", "products"],
                    (Action::User, true) => &["displayName", "products", "name", "active"],
                    _ => &["group", "member"],
                };
                for (target, spec) in &r.map {
                    if allowed.contains(&target.as_str()) {
                        continue;
                    }
                    let (why, fix) = match target.as_str() {
                        "name" if action == Action::User => (
                            "`name` (a username) is for Jira Data Center (`api: v2`): Jira Cloud has no usernames".to_owned(),
                            "leave it out: Cloud accounts are found and made by e-mail address".to_owned(),
                        ),
                        "active" if action == Action::User => (
                            format!("`active` on Jira Cloud needs the organization admin API: connection `{}` has no `org_admin`", conn.name),
                            "add `org_admin: <http connection to https://api.atlassian.com with an organization API key>` to the connection (docs/identity.md), or take a leaver's access away with a `group_member` rule (`member: false`)".to_owned(),
                        ),
                        _ => (
                            format!("action `{name}` has no field `{target}`"),
                            format!("map only {}", allowed.join(", ")),
                        ),
                    };
                    local.push(problem(spec, at(&format!("map.{target}")), why, &fix));
                }
                if action == Action::GroupMember && !has("group") {
                    local.push(problem(
                        &r.action,
                        at("map"),
                        "a group_member rule needs `map.group`: the Jira group (or a list of groups)",
                        "map `group` from the event through a table of ServiceNow group → Jira group",
                    ));
                }
            }
            if let Some(d) = &r.delete_subtasks {
                if action != Action::Delete || conn.kind != ConnectionKind::Jira {
                    local.push(problem(
                        d,
                        at("delete_subtasks"),
                        "`delete_subtasks` applies only to `action: delete` rules to a jira connection",
                        "remove it",
                    ));
                }
            }
            if action == Action::Attach && conn.kind != ConnectionKind::Http && !has("url") {
                local.push(problem(
                    &r.action,
                    at("map"),
                    "an attach rule needs `map.url` (the file to fetch) and `map.file_name`",
                    "map `url: attachment.content` and `file_name: attachment.filename`",
                ));
            }
        }
        if iterate.is_none() && r.iterate.is_none() {
            let mut paths: Vec<&Path> = conditions.iter().filter_map(Condition::path).collect();
            for (_, m) in &map {
                paths.extend(m.source.paths());
            }
            if let Some(p) = paths.iter().find(|p| p.head() == Some("item")) {
                local.push(problem(
                    &r.name,
                    at("iterate"),
                    format!("`{p}` reads the iterated element, but the rule has no `iterate`"),
                    "add `iterate: changelog.items` (or another array), or read the payload path directly",
                ));
            }
        }
        let mut pair_back = None;
        if let Some(pb) = &r.pair_back {
            let back = connections.iter().find(|c| c.name == pb.value.connection);
            let source_kind = endpoints
                .iter()
                .find(|e| e.name == r.from.value)
                .map(|e| e.kind);
            // ServiceNow columns are identifiers; a Jira field may be named
            // by its display name (resolved to its id when written).
            let jira_back = back.is_some_and(|c| c.kind == ConnectionKind::Jira);
            let f = &pb.value.field;
            let field_ok = !f.is_empty()
                && if jira_back {
                    f.trim() == f && !f.contains('.') && !f.chars().any(char::is_control)
                } else {
                    f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                };
            if !matches!(action, Action::Create | Action::Upsert | Action::User) {
                local.push(problem(
                    pb,
                    at("pair_back"),
                    "only create and upsert rules write a pairing back",
                    "remove `pair_back`, or put it on the rule that creates the record",
                ));
            } else if r.correlate.is_none() {
                local.push(problem(
                    pb,
                    at("pair_back"),
                    "`pair_back` needs `correlate` (the key the new record is found by)",
                    "add `correlate: { key: ... }`",
                ));
            } else if !field_ok {
                local.push(problem(
                    pb,
                    at("pair_back.field"),
                    format!("`{}` is not a field name", pb.value.field),
                    "e.g. `correlation_id` (ServiceNow) or `customfield_10050` (Jira)",
                ));
            } else {
                match (back, source_kind) {
                    (None, _) => local.push(problem(pb, at("pair_back.connection"), format!("no connection is named `{}`", pb.value.connection), "name the connection that writes to the system this rule's events come from")),
                    (Some(c), Some(kind)) if !matches!((c.kind, kind), (ConnectionKind::Servicenow, SourceKind::Servicenow) | (ConnectionKind::Jira, SourceKind::Jira)) => local.push(problem(pb, at("pair_back.connection"), format!("connection `{}` is not of the kind this rule's events come from (endpoint `{}`)", c.name, r.from.value), "name the connection that writes to the system the events come from")),
                    _ => pair_back = Some(PairBackRule { connection: pb.value.connection.clone(), field: pb.value.field.clone() }),
                }
            }
        }
        let failed = !local.is_empty();
        problems.extend(local);
        if failed {
            continue;
        }
        rules.push(Rule {
            name,
            from: r.from.value,
            to: r.to.value,
            action,
            table: r.table,
            correlate,
            request,
            events: when.events,
            conditions,
            map,
            iterate,
            wait_for_correlation: r.wait_for_correlation,
            stop: r.stop,
            download_from: r.download_from.map(|d| d.value),
            pair_back,
            delete_subtasks: r.delete_subtasks.is_some_and(|d| d.value),
            lines,
        });
    }
    rules
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Upsert => "upsert",
        Action::Comment => "comment",
        Action::Transition => "transition",
        Action::Attach => "attach",
        Action::Delete => "delete",
        Action::User => "user",
        Action::GroupMember => "group_member",
    }
}

/// A correlation key may be a bare path; make it a one-hole template.
fn shorthand_template(s: &str) -> String {
    if s.contains("{{") {
        s.to_owned()
    } else {
        format!("{{{{ {s} }}}}")
    }
}

type Fail = (String, &'static str);

const PATH_FIX: &str =
    "paths look like `issue.fields.summary` or `changelog.items[field=status].toString`";

fn compile_condition(c: &ConditionSpec) -> Result<Condition, Fail> {
    if let Some(field) = &c.changed {
        if c.path.is_some()
            || c.equals.is_some()
            || c.not_equals.is_some()
            || c.in_.is_some()
            || c.exists.is_some()
            || c.matches.is_some()
        {
            return Err((
                "`changed` takes only `from` and `to`".to_owned(),
                "split it into two conditions",
            ));
        }
        return Ok(Condition::Changed {
            field: field.clone(),
            from: c.from.clone().map(|s| s.0),
            to: c.to.clone().map(|s| s.0),
        });
    }
    if c.from.is_some() || c.to.is_some() {
        return Err((
            "`from`/`to` belong to a `changed` condition".to_owned(),
            "add `changed: FIELD`, or remove from/to",
        ));
    }
    let path = c.path.as_deref().ok_or_else(|| {
        (
            "a condition needs `path` (or `changed`)".to_owned(),
            "add `path: issue.fields.project.key`",
        )
    })?;
    let path = Path::parse(path).map_err(|e| (e, PATH_FIX))?;
    let ops = usize::from(c.equals.is_some())
        + usize::from(c.not_equals.is_some())
        + usize::from(c.in_.is_some())
        + usize::from(c.exists.is_some())
        + usize::from(c.matches.is_some());
    if ops != 1 {
        return Err((
            "a condition needs exactly one of equals, not_equals, in, exists, matches".to_owned(),
            "keep one operator; write several conditions for AND",
        ));
    }
    Ok(if let Some(v) = &c.equals {
        Condition::Equals(path, v.0.clone())
    } else if let Some(v) = &c.not_equals {
        Condition::NotEquals(path, v.0.clone())
    } else if let Some(vs) = &c.in_ {
        Condition::In(path, vs.iter().map(|s| s.0.clone()).collect())
    } else if let Some(e) = c.exists {
        Condition::Exists(path, e)
    } else {
        Condition::Matches(
            path,
            compile_regex(c.matches.as_deref().unwrap_or_default())?,
        )
    })
}

/// A `matches:` pattern. Rust regex syntax with Unicode-aware `\w`, `\d`,
/// `\s`, `\b`, case-insensitive matching (`(?i)`) and general categories
/// (`\p{L}`, `\p{Lu}`, `\pN`). The other Unicode properties (scripts such as
/// `\p{Greek}`, ages, boolean properties, segmentation) are not built into the
/// relay (their tables would be in every Lambda binary) and are refused here,
/// by the relay's own check, so that every build (the Lambdas, `relay`, the
/// tests, whose dependencies switch the regex crate's full tables on) says the
/// same of a pattern.
fn compile_regex(pattern: &str) -> Result<regex::Regex, Fail> {
    const FIX: &str = "check the pattern (Rust regex syntax; no look-around)";
    if let Some(property) = unsupported_property(pattern) {
        return Err((
            format!(
                "bad regex: `{property}` is a Unicode property the relay does not carry; of the Unicode properties only general categories are built in (`\\p{{L}}`, `\\p{{Lu}}`, `\\pN`, …)"
            ),
            "write the characters as a range instead, in single quotes in YAML (Greek and Coptic: '[\\x{370}-\\x{3FF}]')",
        ));
    }
    regex::Regex::new(pattern).map_err(|e| (format!("bad regex: {e}"), FIX))
}

/// The first `\p{…}` / `\P{…}` of `pattern` that is not a general category,
/// as written. `None` for a pattern that does not parse (the regex crate then
/// says why).
fn unsupported_property(pattern: &str) -> Option<String> {
    use regex_syntax::ast::{self, Ast, ClassSetItem, ClassUnicode, ClassUnicodeKind};

    struct Find<'a>(&'a str, Option<String>);
    impl Find<'_> {
        fn check(&mut self, class: &ClassUnicode) {
            let general = match &class.kind {
                ClassUnicodeKind::OneLetter(_) => true,
                ClassUnicodeKind::Named(name) => is_general_category(name),
                ClassUnicodeKind::NamedValue { name, value, .. } => {
                    matches!(normalize(name).as_str(), "gc" | "generalcategory")
                        && is_general_category(value)
                }
            };
            if !general && self.1.is_none() {
                let span = class.span;
                self.1 = Some(self.0[span.start.offset..span.end.offset].to_owned());
            }
        }
    }
    impl ast::Visitor for Find<'_> {
        type Output = Option<String>;
        type Err = ();
        fn finish(self) -> Result<Self::Output, ()> {
            Ok(self.1)
        }
        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            if let Ast::ClassUnicode(class) = ast {
                self.check(class);
            }
            Ok(())
        }
        fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
            if let ClassSetItem::Unicode(class) = item {
                self.check(class);
            }
            Ok(())
        }
    }
    let parsed = ast::parse::Parser::new().parse(pattern).ok()?;
    ast::visit(&parsed, Find(pattern, None)).ok().flatten()
}

/// A property name as Unicode compares them (UAX #44 LM3): case, spaces,
/// `_` and `-` ignored, and a leading `is`.
fn normalize(name: &str) -> String {
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    match n.strip_prefix("is") {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => n,
    }
}

/// The general categories and their aliases (PropertyValueAliases.txt, `gc`),
/// plus `Any`, `ASCII` and `Assigned`, which the regex crate files with them.
fn is_general_category(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "any",
        "ascii",
        "assigned",
        "l",
        "letter",
        "lu",
        "uppercaseletter",
        "ll",
        "lowercaseletter",
        "lt",
        "titlecaseletter",
        "lc",
        "casedletter",
        "lm",
        "modifierletter",
        "lo",
        "otherletter",
        "m",
        "mark",
        "combiningmark",
        "mn",
        "nonspacingmark",
        "mc",
        "spacingmark",
        "me",
        "enclosingmark",
        "n",
        "number",
        "nd",
        "decimalnumber",
        "digit",
        "nl",
        "letternumber",
        "no",
        "othernumber",
        "p",
        "punctuation",
        "punct",
        "pc",
        "connectorpunctuation",
        "pd",
        "dashpunctuation",
        "ps",
        "openpunctuation",
        "pe",
        "closepunctuation",
        "pi",
        "initialpunctuation",
        "pf",
        "finalpunctuation",
        "po",
        "otherpunctuation",
        "s",
        "symbol",
        "sm",
        "mathsymbol",
        "sc",
        "currencysymbol",
        "sk",
        "modifiersymbol",
        "so",
        "othersymbol",
        "z",
        "separator",
        "zs",
        "spaceseparator",
        "zl",
        "lineseparator",
        "zp",
        "paragraphseparator",
        "c",
        "other",
        "cc",
        "control",
        "cntrl",
        "cf",
        "format",
        "cs",
        "surrogate",
        "co",
        "privateuse",
        "cn",
        "unassigned",
    ];
    NAMES.contains(&normalize(name).as_str())
}

fn compile_mapping(spec: &MapSpec) -> Result<Mapping, Fail> {
    let full = match spec {
        MapSpec::Path(p) => {
            let source = if p.contains("{{") {
                Source::Template(
                    Template::parse(p)
                        .map_err(|e| (e, "see the template filters in the config reference"))?,
                )
            } else {
                Source::Path(Path::parse(p).map_err(|e| (e, PATH_FIX))?)
            };
            return Ok(Mapping {
                source,
                table: None,
                required: false,
                user: false,
            });
        }
        MapSpec::Full(f) => f,
    };
    let n = usize::from(full.path.is_some())
        + usize::from(full.template.is_some())
        + usize::from(full.value.is_some());
    if n != 1 {
        return Err((
            "a mapping needs exactly one of `path`, `template`, `value`".to_owned(),
            "write `path: issue.key`, `template: \"{{ issue.key }}\"` or `value: constant`",
        ));
    }
    let source = if let Some(p) = &full.path {
        Source::Path(Path::parse(p).map_err(|e| (e, PATH_FIX))?)
    } else if let Some(t) = &full.template {
        Source::Template(
            Template::parse(t)
                .map_err(|e| (e, "see the template filters in the config reference"))?,
        )
    } else {
        Source::Const(full.value.clone().unwrap_or(Value::Null))
    };
    let table = match &full.table {
        Some(t) => {
            if matches!(source, Source::Const(_)) {
                return Err((
                    "a value table needs a `path` or `template` to look up".to_owned(),
                    "replace `value` with `path`",
                ));
            }
            if full.required && full.default.is_none() {
                return Err((
                    "value table without `default` on a required field".to_owned(),
                    "add `default:` so unlisted values still map",
                ));
            }
            Some(ValueTable {
                entries: t.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect(),
                default: full.default.clone(),
            })
        }
        None => {
            if full.default.is_some() && !matches!(source, Source::Path(_) | Source::Template(_)) {
                return Err((
                    "`default` applies to a path, template or value table".to_owned(),
                    "remove `default`",
                ));
            }
            if full.default.is_some() {
                Some(ValueTable {
                    entries: HashMap::new(),
                    default: full.default.clone(),
                })
            } else {
                None
            }
        }
    };
    Ok(Mapping {
        source,
        table,
        required: full.required,
        user: full.user,
    })
}

#[cfg(test)]
mod tests {
    use super::compile_regex;

    #[test]
    fn patterns_are_unicode_aware_where_rules_need_it() {
        let m = |re: &str, text: &str| compile_regex(re).unwrap().is_match(text);
        assert!(m("(?i)^störung", "STÖRUNG im Netz"));
        assert!(m(r"^\p{L}+-\d+$", "ÄÉZ-١٢"));
        assert!(m(r"^\w+$", "café"));
        assert!(m(r"\bnetz\b", "Störung im netz."));
        assert!(!m(r"^\p{Lu}", "ärger"));
    }

    #[test]
    fn other_unicode_properties_are_refused_with_the_reason() {
        for (re, named) in [
            (r"^\p{Greek}+$", r"\p{Greek}"),
            (r"[a-z\p{Alphabetic}]", r"\p{Alphabetic}"),
            (r"\P{age:6.0}", r"\P{age:6.0}"),
            (r"\p{L}\p{Script=Latin}", r"\p{Script=Latin}"),
        ] {
            let (message, fix) = compile_regex(re).unwrap_err();
            assert!(message.starts_with("bad regex"), "{re}: {message}");
            assert!(message.contains(&format!("`{named}`")), "{re}: {message}");
            assert!(message.contains("general categories"), "{re}: {message}");
            assert!(fix.contains("range"), "{re}: {fix}");
        }
        // General categories by any of their names, and plain syntax errors.
        for re in [
            r"\pL",
            r"\p{Lu}",
            r"\p{Uppercase_Letter}",
            r"\p{gc=Nd}",
            r"[\p{isPunct}]",
            r"\P{any}",
        ] {
            compile_regex(re).unwrap_or_else(|e| panic!("{re}: {e:?}"));
        }
        let (message, _) = compile_regex("(").unwrap_err();
        assert!(
            message.starts_with("bad regex: regex parse error"),
            "{message}"
        );
    }
}
