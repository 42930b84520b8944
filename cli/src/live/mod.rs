//! `relay check --live`: what a config names, asked of the live systems.
//!
//! For each Jira connection: the projects its create rules name (they
//! exist, the integration user may create, comment, transition, edit and
//! attach there as the rules need), their issue types and create screens
//! (every mapped field on the screen, every required field mapped), every
//! `fields.<id>` (the site has the field), priority and resolution values,
//! transition names and ids (offered by the workflows of those projects),
//! and the fields `correlate` and `pair_back` use. For each ServiceNow
//! connection: the tables (and the tables they extend), every mapped
//! column (it exists and is not read-only) and every value the config
//! itself names for a column with a choice list (a value of `sys_choice`).
//! Values that come from the event (a path or a template without a table)
//! cannot be known here and are counted apart.
//!
//! Each problem names the config line, what the live system offers
//! instead, and a fix.

pub mod site;

use serde_json::Value;
use shared::config::{Config, Problem};
use shared::outbound::connections::{Connection, ConnectionKind};
use shared::rules::model::{Action, Mapping, Rule, Source};
use shared::secrets::SecretStore;
use site::{Instance, JiraSite};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the check found.
pub struct Report {
    pub problems: Vec<Problem>,
    /// Names and values asked of the live systems.
    pub checked: usize,
    /// Mapped values that come from the event, so not checkable here.
    pub from_events: usize,
    /// One line per connection read: name, URL, what was read.
    pub systems: Vec<String>,
}

/// Where a name is written in the config.
#[derive(Clone, Debug)]
struct At {
    field: String,
    line: Option<u64>,
}

fn problem(at: &At, message: String, fix: String) -> Problem {
    Problem {
        line: at.line,
        column: None,
        field: at.field.clone(),
        message,
        fix: Some(fix),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The values a mapping writes that the config itself names (a constant,
/// a value table's values and default), sorted; `None`: from the event.
fn named_values(m: &Mapping) -> Option<Vec<String>> {
    // A list value (`group: { value: [a, b] }`) names each of its items.
    let each = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(a) => a.iter().filter_map(scalar).collect(),
            v => scalar(v).into_iter().collect(),
        }
    };
    let mut out: Vec<String> = match (&m.table, &m.source) {
        (Some(t), _) => t
            .entries
            .values()
            .chain(t.default.iter())
            .flat_map(each)
            .collect(),
        (None, Source::Const(v)) => each(v),
        (None, _) => return None,
    };
    out.sort();
    out.dedup();
    Some(out)
}

/// The line of `value` at or after `from` (a table entry on its own line),
/// else `from`.
fn line_for(text: &str, from: Option<u64>, value: &str) -> Option<u64> {
    let start = from? as usize;
    let word = |line: &str| {
        line.match_indices(value).any(|(i, _)| {
            let before = line[..i].chars().next_back();
            let after = line[i + value.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    };
    text.lines()
        .enumerate()
        .skip(start.saturating_sub(1))
        .take(60)
        .find(|(_, l)| word(l))
        .map(|(i, _)| i as u64 + 1)
        .or(from)
}

fn map_at(i: usize, rule: &Rule, target: &str) -> At {
    At {
        field: format!("rules[{i}].map.{target}"),
        line: rule.lines.map.get(target).copied().or(rule.lines.rule),
    }
}

fn value_at(text: &str, at: &At, value: &str) -> At {
    At {
        field: at.field.clone(),
        line: line_for(text, at.line, value),
    }
}

fn listing(names: impl IntoIterator<Item = String>) -> String {
    let all: Vec<String> = names.into_iter().collect();
    let shown: Vec<&str> = all.iter().take(12).map(String::as_str).collect();
    let more = if all.len() > shown.len() {
        format!(" and {} more", all.len() - shown.len())
    } else {
        String::new()
    };
    if shown.is_empty() {
        "none".to_owned()
    } else {
        format!("{}{more}", shown.join(", "))
    }
}

/// The permission a rule's action needs in the Jira project.
/// `None` for identity rules: theirs is the site-wide ADMINISTER, checked
/// with their groups and products (`identity`), not per project.
fn permission(action: Action) -> Option<&'static str> {
    Some(match action {
        Action::Create | Action::Upsert => "CREATE_ISSUES",
        Action::Comment => "ADD_COMMENTS",
        Action::Transition => "TRANSITION_ISSUES",
        Action::Update => "EDIT_ISSUES",
        Action::Attach => "CREATE_ATTACHMENTS",
        Action::Delete => "DELETE_ISSUES",
        Action::User | Action::GroupMember => return None,
    })
}

/// Asks the live systems about every name `config` (read from `text`) uses.
pub async fn check(config: &Config, text: &str, secrets: Arc<dyn SecretStore>) -> Report {
    let mut report = Report {
        problems: Vec::new(),
        checked: 0,
        from_events: 0,
        systems: Vec::new(),
    };
    for (ci, c) in config.connections.iter().enumerate() {
        let used = config.rules.iter().any(|r| r.to == c.name)
            || config
                .rules
                .iter()
                .any(|r| r.pair_back.as_ref().is_some_and(|p| p.connection == c.name));
        if !used {
            continue;
        }
        let at = At {
            field: format!("connections[{ci}]"),
            line: None,
        };
        let result = match c.kind {
            ConnectionKind::Jira => jira(config, text, c, secrets.clone(), &mut report).await,
            ConnectionKind::Servicenow => {
                servicenow(config, text, c, secrets.clone(), &mut report).await
            }
            ConnectionKind::Http => continue,
        };
        if let Err(e) = result {
            report.problems.push(problem(
                &at,
                format!("cannot read connection `{}`: {e}", c.name),
                "check its base_url and the credentials the secrets file holds for it".into(),
            ));
        }
    }
    report
}

/// Identity rules: the global ADMINISTER permission they need, the groups
/// `group_member` rules name and the products `user` rules give.
async fn identity(
    text: &str,
    c: &Connection,
    site: &JiraSite,
    rules: &[(usize, &Rule)],
    report: &mut Report,
) -> Result<(), String> {
    let ids: Vec<&(usize, &Rule)> = rules
        .iter()
        .filter(|(_, r)| r.action.is_identity())
        .collect();
    let Some((first, rule)) = ids.first() else {
        return Ok(());
    };
    report.checked += 1;
    if !site.global_permission("ADMINISTER").await? {
        report.problems.push(problem(
            &At {
                field: format!("rules[{first}].action"),
                line: rule.lines.rule,
            },
            format!(
                "the user of connection `{}` lacks the global permission ADMINISTER (Administer Jira), which creating accounts and changing group membership need",
                c.name
            ),
            "give this connection a Jira administrator's credentials, apart from the ones that write issues (docs/identity.md)".into(),
        ));
    }
    let mut products: Option<Vec<site::IdName>> = None;
    for (i, r) in ids {
        for (target, m) in &r.map {
            let at = map_at(*i, r, target);
            let Some(values) = named_values(m) else {
                if matches!(target.as_str(), "group" | "products") {
                    report.from_events += 1;
                }
                continue;
            };
            match (r.action, target.as_str()) {
                (Action::GroupMember, "group") => {
                    for g in values {
                        report.checked += 1;
                        let like = site.groups_like(&g).await?;
                        if !like.contains(&g) {
                            let close = if like.is_empty() {
                                site.groups_like("").await?
                            } else {
                                like
                            };
                            report.problems.push(problem(
                                &value_at(text, &at, &g),
                                format!("the Jira site {} has no group `{g}`", c.base_url),
                                format!(
                                    "create the group in Jira or name an existing one (names are exact): {}",
                                    listing(close)
                                ),
                            ));
                        }
                    }
                }
                (Action::User, "products") => {
                    if products.is_none() {
                        products = Some(site.products().await?);
                    }
                    let offered = products.as_deref().unwrap_or_default();
                    for p in values {
                        report.checked += 1;
                        if !offered.iter().any(|o| o.id == p) {
                            report.problems.push(problem(
                                &value_at(text, &at, &p),
                                format!(
                                    "the Jira site {} has no product (application role) `{p}`",
                                    c.base_url
                                ),
                                format!(
                                    "use a product key of the site: {}",
                                    listing(
                                        offered.iter().map(|o| format!("{} ({})", o.id, o.name))
                                    )
                                ),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A field id of a `fields.<id>[.…]` target.
fn field_of(target: &str) -> Option<&str> {
    target
        .strip_prefix("fields.")
        .map(|r| r.split('.').next().unwrap_or(r))
}

async fn jira(
    config: &Config,
    text: &str,
    c: &Connection,
    secrets: Arc<dyn SecretStore>,
    report: &mut Report,
) -> Result<(), String> {
    let site = JiraSite::new(c, secrets);
    let rules: Vec<(usize, &Rule)> = config
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.to == c.name)
        .collect();
    let fields = site.fields().await?;
    let field_ids: BTreeMap<&str, &str> = fields
        .iter()
        .map(|(f, _)| (f.id.as_str(), f.name.as_str()))
        .collect();
    let custom = || {
        listing(
            fields
                .iter()
                .filter(|(_, custom)| *custom)
                .map(|(f, _)| format!("{} ({})", f.id, f.name)),
        )
    };
    // A field named by its display name (any case) stands for its id, as
    // the relay resolves it when it writes; two fields of one name cannot.
    let resolve = |f: &str| -> Result<String, String> {
        if field_ids.contains_key(f) || !shared::outbound::vocabulary::is_field_name(f) {
            return Ok(f.to_owned());
        }
        let hits: Vec<&str> = fields
            .iter()
            .filter(|(x, _)| x.name.eq_ignore_ascii_case(f))
            .map(|(x, _)| x.id.as_str())
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Ok(f.to_owned()),
            many => Err(format!(
                "the Jira site {} has {} fields named `{f}` ({}), so the name does not say which",
                c.base_url,
                many.len(),
                many.join(", ")
            )),
        }
    };
    let mut read = vec![format!("{} fields", fields.len())];

    // Projects named by create rules, and what each rule there needs.
    let mut projects: BTreeMap<String, At> = BTreeMap::new();
    // Project key → the name a rule gave it by.
    let mut project_names: BTreeMap<String, String> = BTreeMap::new();
    for (i, r) in &rules {
        if !matches!(r.action, Action::Create | Action::Upsert) {
            continue;
        }
        if let Some((_, m)) = r.map.iter().find(|(t, _)| t == "fields.project.key") {
            let at = map_at(*i, r, "fields.project.key");
            match named_values(m) {
                Some(keys) => {
                    for k in keys {
                        projects
                            .entry(k.clone())
                            .or_insert_with(|| value_at(text, &at, &k));
                    }
                }
                None => report.from_events += 1,
            }
        }
        if let Some((_, m)) = r.map.iter().find(|(t, _)| t == "fields.project.name") {
            let at = map_at(*i, r, "fields.project.name");
            match named_values(m) {
                Some(names) => {
                    let known = site.projects().await?;
                    for n in names {
                        report.checked += 1;
                        let hit = known
                            .iter()
                            .find(|(_, _, name)| name.eq_ignore_ascii_case(&n));
                        match hit {
                            Some((_, key, _)) => {
                                project_names.insert(key.clone(), n.clone());
                                projects
                                    .entry(key.clone())
                                    .or_insert_with(|| value_at(text, &at, &n));
                            }
                            None => report.problems.push(problem(
                                &value_at(text, &at, &n),
                                format!(
                                    "the Jira site {} has no project named `{n}` that the integration user can see",
                                    c.base_url
                                ),
                                format!(
                                    "use a project's name or map `fields.project.key`: {}",
                                    listing(known.iter().map(|(_, k, n)| format!("{n} ({k})")))
                                ),
                            )),
                        }
                    }
                }
                None => report.from_events += 1,
            }
        }
    }
    let mut actions: BTreeMap<&'static str, At> = BTreeMap::new();
    for (i, r) in &rules {
        let Some(perm) = permission(r.action) else {
            continue;
        };
        actions.entry(perm).or_insert(At {
            field: format!("rules[{i}].action"),
            line: r.lines.rule,
        });
    }
    for (i, r) in config.rules.iter().enumerate() {
        if r.pair_back.as_ref().is_some_and(|p| p.connection == c.name) {
            actions.entry("EDIT_ISSUES").or_insert(At {
                field: format!("rules[{i}].pair_back"),
                line: r.lines.pair_back.or(r.lines.rule),
            });
        }
    }
    let wanted: Vec<&str> = actions.keys().copied().collect();
    let mut project_ids: BTreeMap<String, String> = BTreeMap::new();
    for (key, at) in &projects {
        report.checked += 1;
        match site.project(key).await? {
            None => {
                let known = site.projects().await.unwrap_or_default();
                report.problems.push(problem(
                    at,
                    format!(
                        "Jira project `{key}` does not exist on {} or the integration user cannot see it",
                        c.base_url
                    ),
                    format!(
                        "use a project key the user can browse: {}",
                        listing(known.into_iter().map(|(_, k, n)| format!("{k} ({n})")))
                    ),
                ));
            }
            Some((id, _, _)) => {
                project_ids.insert(key.clone(), id);
                for (perm, have) in site.permissions(key, &wanted).await? {
                    report.checked += 1;
                    if !have {
                        let rule_at = &actions[perm.as_str()];
                        report.problems.push(problem(
                            rule_at,
                            format!(
                                "the integration user of connection `{}` lacks the Jira permission {perm} in project {key}",
                                c.name
                            ),
                            format!(
                                "grant {perm} to the integration user (a project role in {key}'s permission scheme), or log in as a user who has it"
                            ),
                        ));
                    }
                }
            }
        }
    }
    read.push(format!("{} project(s)", project_ids.len()));

    identity(text, c, &site, &rules, report).await?;

    // Issue types and create screens of the create rules.
    for (i, r) in &rules {
        if !matches!(r.action, Action::Create | Action::Upsert) {
            continue;
        }
        let mut keys: Vec<String> = r
            .map
            .iter()
            .find(|(t, _)| t == "fields.project.key")
            .and_then(|(_, m)| named_values(m))
            .unwrap_or_default();
        if let Some(names) = r
            .map
            .iter()
            .find(|(t, _)| t == "fields.project.name")
            .and_then(|(_, m)| named_values(m))
        {
            keys.extend(
                project_names
                    .iter()
                    .filter(|(_, n)| names.contains(n))
                    .map(|(k, _)| k.clone()),
            );
        }
        let types: Vec<(String, bool, At)> = r
            .map
            .iter()
            .filter(|(t, _)| t == "fields.issuetype.name" || t == "fields.issuetype.id")
            .flat_map(|(t, m)| {
                let at = map_at(*i, r, t);
                let by_id = t.ends_with(".id");
                named_values(m)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |v| (v.clone(), by_id, at.clone()))
            })
            .collect();
        for key in keys.iter().filter(|k| project_ids.contains_key(*k)) {
            let offered = site.create_types(key).await?;
            for (ty, by_id, at) in &types {
                report.checked += 1;
                let found = offered
                    .iter()
                    .find(|t| if *by_id { t.id == *ty } else { t.name == *ty });
                let Some(found) = found else {
                    report.problems.push(problem(
                        &value_at(text, at, ty),
                        format!("project {key} has no issue type `{ty}` the integration user can create"),
                        format!(
                            "use one of: {}",
                            listing(offered.iter().map(|t| format!("{} (id {})", t.name, t.id)))
                        ),
                    ));
                    continue;
                };
                let screen = site.create_fields(key, &found.id).await?;
                let mapped: BTreeSet<String> = r
                    .map
                    .iter()
                    .filter_map(|(t, _)| field_of(t))
                    .filter_map(|f| resolve(f).ok())
                    .collect();
                for f in &mapped {
                    let f = f.as_str();
                    if field_ids.contains_key(f) && !screen.iter().any(|s| s.id == *f) {
                        report.checked += 1;
                        let target = r
                            .map
                            .iter()
                            .find(|(t, _)| {
                                field_of(t).map(|x| resolve(x).ok()) == Some(Some(f.to_owned()))
                            })
                            .map(|(t, _)| t.as_str())
                            .unwrap_or_default();
                        report.problems.push(problem(
                            &map_at(*i, r, target),
                            format!(
                                "field `{f}` ({}) is not on the create screen of {key} / {}",
                                field_ids[f], found.name
                            ),
                            format!("add it to the create screen of {key} / {} in Jira, or map it in an update rule", found.name),
                        ));
                    }
                }
                for s in screen.iter().filter(|s| s.required && !s.has_default) {
                    report.checked += 1;
                    if !mapped.contains(s.id.as_str()) {
                        report.problems.push(problem(
                            &At {
                                field: format!("rules[{i}].map"),
                                line: r.lines.rule,
                            },
                            format!(
                                "{key} / {} requires field `{}` ({}), which the rule does not map",
                                found.name, s.id, s.name
                            ),
                            format!("map `fields.{}`", s.id),
                        ));
                    }
                }
            }
        }
    }

    // Field ids, priorities, resolutions, transitions.
    let mut priorities = None;
    let mut resolutions = None;
    let mut transitions: Option<Vec<(String, Vec<site::IdName>)>> = None;
    for (i, r) in &rules {
        for (target, m) in &r.map {
            let at = map_at(*i, r, target);
            if let Some(f) = field_of(target) {
                if !matches!(f, "project" | "issuetype") {
                    report.checked += 1;
                    match resolve(f) {
                        Err(why) => {
                            report.problems.push(problem(
                                &at,
                                why,
                                format!("map the field by its id: {}", custom()),
                            ));
                            continue;
                        }
                        Ok(id) if !field_ids.contains_key(id.as_str()) => {
                            report.problems.push(problem(
                                &at,
                                format!("the Jira site {} has no field {} `{f}`", c.base_url, if id == f && shared::outbound::vocabulary::is_field_name(f) { "named" } else { "with id" }),
                                format!("use the field's name or id as `/rest/api/3/field` lists it; custom fields here: {}", custom()),
                            ));
                            continue;
                        }
                        Ok(_) => {}
                    }
                }
            }
            let kind = match target.as_str() {
                "fields.priority.name" | "fields.priority.id" => "priority",
                "fields.resolution.name" | "fields.resolution.id" => "resolution",
                "transition.name" | "transition.id" => "transition",
                _ => continue,
            };
            let Some(values) = named_values(m) else {
                report.from_events += 1;
                continue;
            };
            let by_id = target.ends_with(".id");
            let offered: Vec<site::IdName> = match kind {
                "priority" => {
                    if priorities.is_none() {
                        priorities = Some(site.priorities().await?);
                    }
                    priorities.clone().unwrap_or_default()
                }
                "resolution" => {
                    if resolutions.is_none() {
                        resolutions = Some(site.resolutions().await?);
                    }
                    resolutions.clone().unwrap_or_default()
                }
                _ => {
                    if transitions.is_none() {
                        let mut all = Vec::new();
                        for id in project_ids.values() {
                            all.extend(site.workflows(id).await?);
                        }
                        transitions = Some(all);
                    }
                    let wf = transitions.as_deref().unwrap_or_default();
                    if wf.is_empty() {
                        report.problems.push(problem(
                            &at,
                            "no Jira project is known for this connection, so the transition cannot be checked".into(),
                            "name the project in a create rule to this connection (`fields.project.key`)".into(),
                        ));
                        continue;
                    }
                    wf.iter().flat_map(|(_, t)| t.iter().cloned()).collect()
                }
            };
            for v in values {
                report.checked += 1;
                let ok = offered
                    .iter()
                    .any(|o| if by_id { o.id == v } else { o.name == v });
                if !ok {
                    let (what, fix) = match kind {
                        "transition" => (
                            format!(
                                "no workflow of {} offers a transition {} `{v}`",
                                listing(project_ids.keys().cloned()),
                                if by_id { "with id" } else { "named" }
                            ),
                            format!(
                                "use a transition of workflow(s) {}: {}",
                                listing(transitions.iter().flatten().map(|(n, _)| n.clone())),
                                listing(
                                    offered.iter().map(|t| format!("{} (id {})", t.name, t.id))
                                )
                            ),
                        ),
                        k => (
                            format!(
                                "the Jira site has no {k} {} `{v}`",
                                if by_id { "with id" } else { "named" }
                            ),
                            format!(
                                "use one of: {}",
                                listing(
                                    offered.iter().map(|t| format!("{} (id {})", t.name, t.id))
                                )
                            ),
                        ),
                    };
                    report
                        .problems
                        .push(problem(&value_at(text, &at, &v), what, fix));
                }
            }
        }
    }
    // The custom fields that hold the other side's key: `correlate.field` of
    // the rules to this connection, `pair_back.field` of the rules that
    // write their pairing back through it.
    let mut key_fields: Vec<(&str, At)> = Vec::new();
    for (i, r) in config.rules.iter().enumerate() {
        if let Some(cor) = r.correlate.as_ref().filter(|_| r.to == c.name) {
            if cor.field.starts_with("customfield_")
                || shared::outbound::vocabulary::is_field_name(&cor.field)
            {
                key_fields.push((
                    &cor.field,
                    At {
                        field: format!("rules[{i}].correlate.field"),
                        line: r.lines.correlate.or(r.lines.rule),
                    },
                ));
            }
        }
        if let Some(pb) = r.pair_back.as_ref().filter(|p| p.connection == c.name) {
            if pb.field.starts_with("customfield_")
                || shared::outbound::vocabulary::is_field_name(&pb.field)
            {
                key_fields.push((
                    &pb.field,
                    At {
                        field: format!("rules[{i}].pair_back.field"),
                        line: r.lines.pair_back.or(r.lines.rule),
                    },
                ));
            }
        }
    }
    for (field, at) in key_fields {
        report.checked += 1;
        let id = match resolve(field) {
            Ok(id) => id,
            Err(why) => {
                report.problems.push(problem(
                    &at,
                    why,
                    format!("use the field's id: {}", custom()),
                ));
                continue;
            }
        };
        if !field_ids.contains_key(id.as_str()) {
            report.problems.push(problem(
                &at,
                format!("the Jira site {} has no field `{field}`", c.base_url),
                format!(
                    "use the custom field that holds the other side's key: {}",
                    custom()
                ),
            ));
        }
    }
    if let Some(t) = &transitions {
        read.push(format!("{} workflow(s)", t.len()));
    }
    report.systems.push(format!(
        "{} (Jira, {}): {}",
        c.name,
        c.base_url,
        read.join(", ")
    ));
    Ok(())
}

async fn servicenow(
    config: &Config,
    text: &str,
    c: &Connection,
    secrets: Arc<dyn SecretStore>,
    report: &mut Report,
) -> Result<(), String> {
    let inst = Instance::new(c, secrets);
    // Tables, with the rules that write each and the pair-backs that use it.
    let mut tables: BTreeMap<String, At> = BTreeMap::new();
    for (i, r) in config.rules.iter().enumerate() {
        let at = At {
            field: format!("rules[{i}].table"),
            line: r.lines.rule,
        };
        if r.to == c.name {
            tables
                .entry(r.table.clone().unwrap_or_else(|| c.table.clone()))
                .or_insert(at);
        } else if r.pair_back.as_ref().is_some_and(|p| p.connection == c.name) {
            tables.entry(c.table.clone()).or_insert(at);
        }
    }
    let mut lineages: BTreeMap<String, (Vec<String>, BTreeMap<String, site::Column>)> =
        BTreeMap::new();
    for (t, at) in &tables {
        report.checked += 1;
        let lineage = inst.lineage(t).await?;
        if lineage.is_empty() {
            report.problems.push(problem(
                at,
                format!("ServiceNow {} has no table `{t}`", c.base_url),
                "use the table's name (System Definition > Tables), e.g. `incident`, `sc_req_item`"
                    .into(),
            ));
            continue;
        }
        let columns = inst.columns(&lineage).await?;
        lineages.insert(t.clone(), (lineage, columns));
    }
    let mut choice_cache: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    let mut column_checks: Vec<(String, String, At, Option<&Mapping>)> = Vec::new();
    for (i, r) in config.rules.iter().enumerate() {
        if r.to == c.name {
            let table = r.table.clone().unwrap_or_else(|| c.table.clone());
            if r.action != Action::Attach {
                for (target, m) in &r.map {
                    column_checks.push((
                        table.clone(),
                        target.clone(),
                        map_at(i, r, target),
                        Some(m),
                    ));
                }
            }
            if let Some(cor) = &r.correlate {
                let at = At {
                    field: format!("rules[{i}].correlate.field"),
                    line: r.lines.correlate.or(r.lines.rule),
                };
                column_checks.push((table.clone(), cor.field.clone(), at, None));
            }
        }
        if let Some(pb) = r.pair_back.as_ref().filter(|p| p.connection == c.name) {
            let at = At {
                field: format!("rules[{i}].pair_back.field"),
                line: r.lines.pair_back.or(r.lines.rule),
            };
            column_checks.push((c.table.clone(), pb.field.clone(), at, None));
        }
    }
    let mut seen = BTreeSet::new();
    for (table, column, at, mapping) in column_checks {
        let Some((lineage, columns)) = lineages.get(&table) else {
            continue;
        };
        if !seen.insert((table.clone(), column.clone(), at.field.clone())) {
            continue;
        }
        report.checked += 1;
        let Some(col) = columns.get(&column) else {
            let near: Vec<String> = columns
                .keys()
                .filter(|k| close(k, &column))
                .cloned()
                .collect();
            report.problems.push(problem(
                &at,
                format!(
                    "ServiceNow table `{table}` has no column `{column}` (a write to it would be ignored without an error)"
                ),
                if near.is_empty() {
                    format!("use a column of {} (System Definition > Dictionary)", lineage.join(" → "))
                } else {
                    format!("did you mean {}?", listing(near))
                },
            ));
            continue;
        };
        if col.read_only && mapping.is_some() {
            report.problems.push(problem(
                &at,
                format!(
                    "column `{table}.{column}` (defined on `{}`) is read-only",
                    col.defined_on
                ),
                "map another column; ServiceNow sets this one itself".into(),
            ));
        }
        let Some(m) = mapping else { continue };
        let Some(values) = named_values(m) else {
            report.from_events += 1;
            continue;
        };
        let key = (table.clone(), column.clone());
        if !choice_cache.contains_key(&key) {
            let list = inst.choices(lineage, &column).await?;
            choice_cache.insert(key.clone(), list);
        }
        let choices = &choice_cache[&key];
        if choices.is_empty() {
            continue;
        }
        for v in values {
            report.checked += 1;
            if choices.iter().any(|(value, _)| *value == v) {
                continue;
            }
            let label = choices.iter().find(|(_, l)| l.eq_ignore_ascii_case(&v));
            let fix = match label {
                Some((value, l)) => format!("`{l}` is the label; write its value `{value}`"),
                None => format!(
                    "use one of: {}",
                    listing(choices.iter().map(|(v, l)| {
                        if v == l {
                            v.clone()
                        } else {
                            format!("{v} ({l})")
                        }
                    }))
                ),
            };
            report.problems.push(problem(
                &value_at(text, &at, &v),
                format!("`{v}` is not a choice of {table}.{column} (sys_choice)"),
                fix,
            ));
        }
    }
    report.systems.push(format!(
        "{} (ServiceNow, {}): {} table(s), {} choice list(s)",
        c.name,
        c.base_url,
        lineages.len(),
        choice_cache.values().filter(|l| !l.is_empty()).count()
    ));
    Ok(())
}

/// Column names one edit apart (a transposition counts as one), or one
/// the prefix of the other (`u_jira`).
fn close(a: &str, b: &str) -> bool {
    if a.starts_with(b) || b.starts_with(a) {
        return a.len().abs_diff(b.len()) <= 3;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Optimal string alignment distance.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()] <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_found_on_its_own_line_as_a_whole_word() {
        let text = "a\n  table:\n    \"1\": Highest\n    \"2\": High\n";
        assert_eq!(line_for(text, Some(2), "High"), Some(4));
        assert_eq!(line_for(text, Some(2), "Highest"), Some(3));
        assert_eq!(line_for(text, Some(2), "Nowhere"), Some(2));
        assert_eq!(line_for(text, None, "High"), None);
    }

    #[test]
    fn close_names() {
        assert!(close("correlation_id", "corelation_id"));
        assert!(close("short_description", "short_descriptio"));
        assert!(close("correlation_display", "correlation_displya"));
        assert!(!close("impact", "urgency"));
    }
}
