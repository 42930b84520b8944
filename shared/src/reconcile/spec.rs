//! The `reconcile:` section of a Jira endpoint: which issues a sweep asks
//! Jira for, how often, and which rule pairs an issue with its record.

use crate::config::model::SourceKind;
use crate::config::problem::problem;
use crate::config::problem::Problem;
use crate::outbound::connections::{Connection, ConnectionKind};
use crate::rules::model::{Action, Rule};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::time::Duration;

/// As written under `endpoints[].reconcile`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconcileYaml {
    /// The Jira connection the sweep searches with.
    connection: Spanned<String>,
    /// The endpoint's share of Jira, e.g. `project = SUP AND issuetype = Incident`.
    jql: Spanned<String>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    overlap: Option<Spanned<String>>,
    #[serde(default)]
    lookback: Option<Spanned<String>>,
    #[serde(default)]
    page_size: Option<Spanned<u32>>,
}

/// A checked `reconcile:` section.
#[derive(Clone, Debug)]
pub struct ReconcileSpec {
    pub connection: String,
    pub jql: String,
    /// How often `relay serve` sweeps (the Lambda's schedule is the
    /// template's `ReconcileRate`).
    pub every: Duration,
    /// How far before the watermark a sweep starts (clock skew between Jira
    /// and us, issues whose `updated` was set while the last sweep ran).
    pub overlap: Duration,
    /// How far back the first sweep (no watermark yet) looks.
    pub lookback: Duration,
    /// Issues per search page.
    pub page_size: u32,
    /// The rule that creates the paired record (its `to`, table and
    /// `correlate` say where the record is and how it is found).
    pub pair_rule: String,
}

pub const DEFAULT_EVERY: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// `90s`, `15m`, `2h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` does not start with a whole number"))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        other => return Err(format!("unknown unit `{other}` in `{s}`")),
    };
    Ok(Duration::from_secs(secs))
}

/// Checks one endpoint's section; `i` is the endpoint's index for messages.
pub(crate) fn check(
    i: usize,
    endpoint: &str,
    kind: SourceKind,
    raw: &Spanned<ReconcileYaml>,
    connections: &[Connection],
    rules: &[Rule],
    problems: &mut Vec<Problem>,
) -> Option<ReconcileSpec> {
    let at = |f: &str| format!("endpoints[{i}].reconcile.{f}");
    let before = problems.len();
    let r = &raw.value;
    if kind != SourceKind::Jira {
        problems.push(problem(
            raw,
            format!("endpoints[{i}].reconcile"),
            "only Jira endpoints can be reconciled",
            "remove `reconcile:` from this endpoint",
        ));
    }
    match connections.iter().find(|c| c.name == r.connection.value) {
        Some(c) if c.kind == ConnectionKind::Jira => {}
        Some(_) => problems.push(problem(
            &r.connection,
            at("connection"),
            format!(
                "connection `{}` is not a Jira connection",
                r.connection.value
            ),
            "name the Jira connection the sweep searches with",
        )),
        None => problems.push(problem(
            &r.connection,
            at("connection"),
            format!("no connection is named `{}`", r.connection.value),
            "name the Jira connection the sweep searches with",
        )),
    }
    let jql = r.jql.value.trim();
    let lower = jql.to_ascii_lowercase();
    if jql.is_empty() {
        problems.push(problem(
            &r.jql,
            at("jql"),
            "the JQL is empty",
            "give the endpoint's share of Jira, e.g. `project = SUP AND issuetype = Incident`",
        ));
    } else if lower.contains("order by") {
        problems.push(problem(
            &r.jql,
            at("jql"),
            "the JQL has an ORDER BY",
            "leave ordering to the sweep (it pages by creation time)",
        ));
    }
    let mut dur = |v: &Option<Spanned<String>>, field: &str, default: Duration| {
        let Some(s) = v else { return Some(default) };
        let msg = match parse_duration(&s.value) {
            Ok(d) if !d.is_zero() => return Some(d),
            Ok(_) => "must be more than zero".to_owned(),
            Err(e) => e,
        };
        problems.push(problem(
            s,
            at(field),
            msg,
            "write a whole number and a unit: `90s`, `15m`, `2h`, `7d`",
        ));
        None
    };
    let every = dur(&r.every, "every", DEFAULT_EVERY);
    let overlap = dur(&r.overlap, "overlap", DEFAULT_OVERLAP);
    let lookback = dur(&r.lookback, "lookback", DEFAULT_LOOKBACK);
    let page_size = match &r.page_size {
        None => DEFAULT_PAGE_SIZE,
        Some(p) if (1..=100).contains(&p.value) => p.value,
        Some(p) => {
            problems.push(problem(
                p,
                at("page_size"),
                format!("{} is outside 1..=100", p.value),
                "Jira returns at most 100 issues with all fields per page",
            ));
            DEFAULT_PAGE_SIZE
        }
    };
    let pair = rules.iter().find(|rule| {
        rule.from == endpoint
            && matches!(rule.action, Action::Create | Action::Upsert)
            && rule.correlate.is_some()
            && connections
                .iter()
                .any(|c| c.name == rule.to && c.kind == ConnectionKind::Servicenow)
    });
    if pair.is_none() {
        problems.push(problem(
            raw,
            format!("endpoints[{i}].reconcile"),
            format!("no rule from `{endpoint}` creates a ServiceNow record with `correlate:`"),
            "the sweep finds an issue's record through the create rule's `to` and `correlate`; reconciling into Jira or HTTP targets is not supported yet",
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(ReconcileSpec {
        connection: r.connection.value.clone(),
        jql: jql.to_owned(),
        every: every?,
        overlap: overlap?,
        lookback: lookback?,
        page_size,
        pair_rule: pair?.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }
}
