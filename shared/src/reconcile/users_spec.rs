//! The `reconcile_users:` section of a ServiceNow endpoint (the user sweep,
//! [`super::users`]): which ServiceNow connection reads the groups, which
//! `group_member` rule maps them, how often, and whether it queues.

use super::spec::parse_duration;
use crate::config::model::SourceKind;
use crate::config::problem::{problem, Problem};
use crate::outbound::connections::{Connection, ConnectionKind};
use crate::rules::model::{Action, Rule};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::time::Duration;

pub const DEFAULT_USERS_EVERY: Duration = Duration::from_secs(3600);

/// As written under `endpoints[].reconcile_users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserSweepYaml {
    /// The ServiceNow connection that reads groups, memberships and users.
    connection: Spanned<String>,
    /// The `group_member` rule whose `map.group` table maps the groups.
    rule: Spanned<String>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    apply: bool,
}

/// A checked `reconcile_users:` section.
#[derive(Clone, Debug)]
pub struct UserSweepSpec {
    pub connection: String,
    pub rule: String,
    /// How often `relay serve` sweeps.
    pub every: Duration,
    /// Queue what differs; `false`: report only.
    pub apply: bool,
}

/// Checks one endpoint's section; `i` is the endpoint's index for messages.
pub(crate) fn check(
    i: usize,
    endpoint: &str,
    kind: SourceKind,
    raw: &Spanned<UserSweepYaml>,
    connections: &[Connection],
    rules: &[Rule],
    problems: &mut Vec<Problem>,
) -> Option<UserSweepSpec> {
    let at = |f: &str| format!("endpoints[{i}].reconcile_users.{f}");
    let before = problems.len();
    let r = &raw.value;
    if kind != SourceKind::Servicenow {
        problems.push(problem(
            raw,
            format!("endpoints[{i}].reconcile_users"),
            "the user sweep reads ServiceNow groups: it belongs on a ServiceNow endpoint",
            "move `reconcile_users:` to the endpoint the sys_user_grmember events arrive on",
        ));
    }
    match connections.iter().find(|c| c.name == r.connection.value) {
        Some(c) if c.kind == ConnectionKind::Servicenow => {}
        _ => problems.push(problem(
            &r.connection,
            at("connection"),
            format!("`{}` is not a ServiceNow connection", r.connection.value),
            "name the ServiceNow connection that can read sys_user_group, sys_user_grmember and sys_user",
        )),
    }
    let rule = rules.iter().find(|x| x.name == r.rule.value);
    match rule {
        None => problems.push(problem(
            &r.rule,
            at("rule"),
            format!("no rule is named `{}`", r.rule.value),
            "name the group_member rule that adds members (its map.group table maps the groups)",
        )),
        Some(x) if x.action != Action::GroupMember || x.from != endpoint => problems.push(problem(
            &r.rule,
            at("rule"),
            format!(
                "rule `{}` is not a group_member rule from `{endpoint}`",
                r.rule.value
            ),
            "name the group_member rule that adds members (its map.group table maps the groups)",
        )),
        Some(x) if group_table(x).is_empty() => problems.push(problem(
            &r.rule,
            at("rule"),
            format!(
                "rule `{}` maps no ServiceNow group to a Jira group by a value table",
                r.rule.value
            ),
            "write `map.group: { path: group, table: { <ServiceNow group>: <Jira group> } }`",
        )),
        Some(_) => {}
    }
    let every = match &r.every {
        None => Some(DEFAULT_USERS_EVERY),
        Some(s) => match parse_duration(&s.value) {
            Ok(d) if !d.is_zero() => Some(d),
            other => {
                let msg = other
                    .err()
                    .unwrap_or_else(|| "must be more than zero".to_owned());
                problems.push(problem(
                    s,
                    at("every"),
                    msg,
                    "write a whole number and a unit: `30m`, `1h`, `1d`",
                ));
                None
            }
        },
    };
    if problems.len() > before {
        return None;
    }
    Some(UserSweepSpec {
        connection: r.connection.value.clone(),
        rule: r.rule.value.clone(),
        every: every?,
        apply: r.apply,
    })
}

/// ServiceNow group → the Jira groups it feeds, from the rule's `map.group`
/// value table.
pub(crate) fn group_table(rule: &Rule) -> BTreeMap<String, Vec<String>> {
    let Some((_, m)) = rule.map.iter().find(|(t, _)| t == "group") else {
        return BTreeMap::new();
    };
    let Some(table) = &m.table else {
        return BTreeMap::new();
    };
    table
        .entries
        .iter()
        .map(|(sn, v)| {
            let jira: Vec<String> = match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            (sn.clone(), jira)
        })
        .filter(|(_, j)| !j.is_empty())
        .collect()
}
