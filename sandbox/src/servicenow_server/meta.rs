//! The instance's data dictionary as the Table API serves it: the tables
//! (`sys_db_object`, with `super_class` for inheritance: `incident`
//! extends `task`), their columns (`sys_dictionary`: a column defined on
//! `task` is a row of `task`, not of `incident`, as on a real instance) and
//! the choice lists (`sys_choice`: a table's own list for an element
//! replaces the parent's). Read-only, computed from the sandbox's field
//! lists; a test adds choices with
//! [`ServiceNowServer::add_choice`](super::ServiceNowServer::add_choice).

use super::{user_sys_id, SnState, TASK_FIELDS, TASK_TABLES};
use serde_json::{json, Map, Value};

/// Tables that extend `task` (the sandbox's task tables and the catalog's).
const TASK_CHILDREN: &[&str] = &[
    "incident",
    "problem",
    "change_request",
    "sc_req_item",
    "sc_task",
];

/// Columns of `TASK_FIELDS` that `incident` defines itself (the rest are
/// `task`'s).
const INCIDENT_OWN: &[&str] = &[
    "business_stc",
    "calendar_stc",
    "caller_id",
    "category",
    "caused_by",
    "child_incidents",
    "close_code",
    "hold_reason",
    "incident_state",
    "notify",
    "parent_incident",
    "problem_id",
    "reopen_count",
    "reopened_by",
    "reopened_time",
    "resolved_at",
    "resolved_by",
    "rfc",
    "severity",
    "subcategory",
];

/// Columns the catalog tables define themselves.
const CATALOG_OWN: &[(&str, &[&str])] = &[
    (
        "sc_req_item",
        &[
            "cat_item",
            "request",
            "quantity",
            "stage",
            "price",
            "recurring_price",
        ],
    ),
    ("sc_task", &["request_item", "request", "sc_catalog"]),
];

const READ_ONLY: &[&str] = &[
    "sys_id",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
    "sys_class_name",
    "sys_domain_path",
    "comments_and_work_notes",
];

const JOURNAL: &[&str] = &["comments", "work_notes"];

/// (table, element, value, label) of the out-of-the-box choice lists.
const CHOICES: &[(&str, &str, &str, &str)] = &[
    ("task", "state", "-5", "Pending"),
    ("task", "state", "1", "Open"),
    ("task", "state", "2", "Work in Progress"),
    ("task", "state", "3", "Closed Complete"),
    ("task", "state", "4", "Closed Incomplete"),
    ("task", "state", "7", "Closed Skipped"),
    ("task", "impact", "1", "1 - High"),
    ("task", "impact", "2", "2 - Medium"),
    ("task", "impact", "3", "3 - Low"),
    ("task", "urgency", "1", "1 - High"),
    ("task", "urgency", "2", "2 - Medium"),
    ("task", "urgency", "3", "3 - Low"),
    ("task", "priority", "1", "1 - Critical"),
    ("task", "priority", "2", "2 - High"),
    ("task", "priority", "3", "3 - Moderate"),
    ("task", "priority", "4", "4 - Low"),
    ("task", "priority", "5", "5 - Planning"),
    ("incident", "state", "1", "New"),
    ("incident", "state", "2", "In Progress"),
    ("incident", "state", "3", "On Hold"),
    ("incident", "state", "6", "Resolved"),
    ("incident", "state", "7", "Closed"),
    ("incident", "state", "8", "Canceled"),
    ("incident", "incident_state", "1", "New"),
    ("incident", "incident_state", "2", "In Progress"),
    ("incident", "incident_state", "3", "On Hold"),
    ("incident", "incident_state", "6", "Resolved"),
    ("incident", "incident_state", "7", "Closed"),
    ("incident", "incident_state", "8", "Canceled"),
    ("incident", "hold_reason", "1", "Awaiting Caller"),
    ("incident", "hold_reason", "3", "Awaiting Problem"),
    ("incident", "hold_reason", "4", "Awaiting Vendor"),
    ("incident", "hold_reason", "5", "Awaiting Change"),
    ("incident", "category", "inquiry", "Inquiry / Help"),
    ("incident", "category", "software", "Software"),
    ("incident", "category", "hardware", "Hardware"),
    ("incident", "category", "network", "Network"),
    ("incident", "category", "database", "Database"),
    (
        "incident",
        "close_code",
        "Solved (Work Around)",
        "Solved (Work Around)",
    ),
    (
        "incident",
        "close_code",
        "Solved (Permanently)",
        "Solved (Permanently)",
    ),
    (
        "incident",
        "close_code",
        "Solved Remotely (Work Around)",
        "Solved Remotely (Work Around)",
    ),
    (
        "incident",
        "close_code",
        "Solved Remotely (Permanently)",
        "Solved Remotely (Permanently)",
    ),
    (
        "incident",
        "close_code",
        "Not Solved (Not Reproducible)",
        "Not Solved (Not Reproducible)",
    ),
    (
        "incident",
        "close_code",
        "Not Solved (Too Costly)",
        "Not Solved (Too Costly)",
    ),
    (
        "incident",
        "close_code",
        "Closed/Resolved by Caller",
        "Closed/Resolved by Caller",
    ),
    ("problem", "state", "101", "New"),
    ("problem", "state", "102", "Assess"),
    ("problem", "state", "103", "Root Cause Analysis"),
    ("problem", "state", "104", "Fix in Progress"),
    ("problem", "state", "106", "Resolved"),
    ("problem", "state", "107", "Closed"),
    ("change_request", "state", "-5", "New"),
    ("change_request", "state", "-4", "Assess"),
    ("change_request", "state", "-3", "Authorize"),
    ("change_request", "state", "-2", "Scheduled"),
    ("change_request", "state", "-1", "Implement"),
    ("change_request", "state", "0", "Review"),
    ("change_request", "state", "3", "Closed"),
    ("change_request", "state", "4", "Canceled"),
    ("sc_req_item", "state", "-5", "Pending"),
    ("sc_req_item", "state", "1", "Open"),
    ("sc_req_item", "state", "2", "Work in Progress"),
    ("sc_req_item", "state", "3", "Closed Complete"),
    ("sc_req_item", "state", "4", "Closed Incomplete"),
    ("sc_req_item", "state", "7", "Closed Skipped"),
    ("sc_task", "state", "-5", "Pending"),
    ("sc_task", "state", "1", "Open"),
    ("sc_task", "state", "2", "Work in Progress"),
    ("sc_task", "state", "3", "Closed Complete"),
    ("sc_task", "state", "4", "Closed Incomplete"),
    ("sc_task", "state", "7", "Closed Skipped"),
];

/// Choices a test added: (table, element, value, label).
#[derive(Debug, Default)]
pub(super) struct Catalog {
    pub extra_choices: Vec<(String, String, String, String)>,
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn table_id(name: &str) -> String {
    user_sys_id(&format!("sys_db_object:{name}"))
}

/// Every table the instance has: the task family, users and groups, and
/// whatever a record was written to or a field allowed on.
fn tables(st: &SnState) -> Vec<String> {
    let mut names: Vec<String> = ["task", "sys_user", "sys_user_group", "sys_user_grmember"]
        .iter()
        .chain(TASK_CHILDREN)
        .map(|s| s.to_string())
        .collect();
    names.extend(st.tables.keys().cloned());
    names.extend(st.extra_fields.keys().cloned());
    names.sort();
    names.dedup();
    names
}

fn dictionary(st: &SnState) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    let mut col = |table: &str, element: &str| {
        let journal = JOURNAL.contains(&element);
        let choice = CHOICES.iter().any(|c| c.1 == element);
        let internal_type = if journal {
            "journal_input"
        } else if super::REFERENCES.iter().any(|(f, _)| *f == element) {
            "reference"
        } else {
            "string"
        };
        let reference = super::REFERENCES
            .iter()
            .find(|(f, _)| *f == element)
            .map(|(_, t)| *t)
            .unwrap_or("");
        rows.push(obj(json!({
            "sys_id": user_sys_id(&format!("sys_dictionary:{table}.{element}")),
            "name": table,
            "element": element,
            "column_label": element.replace('_', " "),
            "internal_type": internal_type,
            "reference": reference,
            "read_only": READ_ONLY.contains(&element).to_string(),
            "mandatory": "false",
            "active": "true",
            "choice": if choice { "1" } else { "0" },
        })));
    };
    // `task`: the task fields incident does not define itself.
    for f in TASK_FIELDS.iter().filter(|f| !INCIDENT_OWN.contains(f)) {
        col("task", f);
    }
    // The sandbox's task tables accept incident's own fields too.
    for t in TASK_TABLES {
        for f in INCIDENT_OWN {
            col(t, f);
        }
    }
    for (t, own) in CATALOG_OWN {
        for f in *own {
            col(t, f);
        }
    }
    for f in [
        "user_name",
        "email",
        "first_name",
        "last_name",
        "name",
        "active",
        "sys_id",
    ] {
        col("sys_user", f);
    }
    for f in ["name", "description", "active", "sys_id"] {
        col("sys_user_group", f);
    }
    for f in ["user", "group", "sys_id"] {
        col("sys_user_grmember", f);
    }
    // Tables outside the task family: the fields their records have.
    for (table, recs) in &st.tables {
        if TASK_CHILDREN.contains(&table.as_str()) || table.starts_with("sys_") {
            continue;
        }
        let mut seen: Vec<&String> = recs.iter().flat_map(|r| r.keys()).collect();
        seen.sort();
        seen.dedup();
        for f in seen {
            col(table, f);
        }
    }
    for (table, fields) in &st.extra_fields {
        for f in fields {
            col(table, f);
        }
    }
    rows
}

fn choices(st: &SnState) -> Vec<Map<String, Value>> {
    CHOICES
        .iter()
        .map(|(t, e, v, l)| (t.to_string(), e.to_string(), v.to_string(), l.to_string()))
        .chain(st.meta.extra_choices.iter().cloned())
        .enumerate()
        .map(|(n, (t, e, v, l))| {
            obj(json!({
                "sys_id": user_sys_id(&format!("sys_choice:{t}.{e}.{v}")),
                "name": t, "element": e, "value": v, "label": l,
                "sequence": n.to_string(), "language": "en", "inactive": "false",
                "dependent_value": "",
            }))
        })
        .collect()
}

/// The rows of a dictionary table, or `None` for any other table.
pub(super) fn rows(st: &SnState, table: &str) -> Option<Vec<Map<String, Value>>> {
    match table {
        "sys_db_object" => Some(
            tables(st)
                .into_iter()
                .map(|name| {
                    let parent = if TASK_CHILDREN.contains(&name.as_str()) {
                        table_id("task")
                    } else {
                        String::new()
                    };
                    obj(json!({
                        "sys_id": table_id(&name),
                        "name": name,
                        "label": name.replace('_', " "),
                        "super_class": parent,
                        "is_extendable": (name == "task").to_string(),
                    }))
                })
                .collect(),
        ),
        "sys_dictionary" => Some(dictionary(st)),
        "sys_choice" => Some(choices(st)),
        _ => None,
    }
}
