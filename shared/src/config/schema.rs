//! The JSON Schema of the config file, for editors (`yaml-language-server`)
//! and for `relay schema`.
//!
//! It is written out by hand here rather than derived, because the config
//! types carry YAML positions (`Spanned`) and short forms (`id#key` secret
//! references, a path string or a mapping object) that a derive would not
//! describe well. `schema/relay-config.schema.json` is this function's
//! output; a test keeps the two equal, and the example configs are checked
//! by the real loader, which stays the authority.

use serde_json::{json, Value};

/// The schema as a JSON value.
pub fn config_schema() -> Value {
    let secret_ref = json!({
        "description": "A secret by reference: `secret-id#key`, or { secret, key }. Never the value.",
        "oneOf": [
            { "type": "string", "pattern": "^[^\\s#]+(#[^\\s#]+)?$" },
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["secret"],
                "properties": { "secret": { "type": "string" }, "key": { "type": "string" } }
            }
        ]
    });
    let scalar = json!({ "type": ["string", "number", "boolean"] });
    let name = json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$" });
    let path = json!({
        "type": "string",
        "description": "A payload path: `issue.fields.summary`, `changelog.items[field=status].toString`, `actor.id`, `item.field`."
    });
    let template = json!({
        "type": "string",
        "description": "Text with `{{ path | filter | filter:arg }}` holes. Filters: text, wiki, adf, upper, lower, trim, truncate:N, default:X, date, servicenow_date, jira_date, json, join:SEP, first_line."
    });
    let whitelist_clause = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["path"],
        "properties": {
            "path": path,
            "equals": scalar,
            "not_equals": scalar,
            "in": { "type": "array", "items": scalar },
            "not_in": { "type": "array", "items": scalar }
        }
    });
    let duration = json!({
        "type": "string",
        "pattern": "^[0-9]+(s|m|h|d)$",
        "description": "A whole number and a unit: 90s, 15m, 2h, 7d."
    });
    let endpoint = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "kind", "stage", "auth"],
        "properties": {
            "name": name,
            "kind": { "enum": ["jira", "servicenow"] },
            "stage": { "enum": ["test", "prod"] },
            "auth": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "token": secret_ref,
                    "hmac": secret_ref,
                    "basic": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["username", "password"],
                        "properties": { "username": secret_ref, "password": secret_ref }
                    },
                    "bearer": secret_ref,
                    "require": { "enum": ["all", "any"] }
                }
            },
            "reconcile": {
                "description": "Reconciliation sweep: Jira issues matching `jql` updated since the last sweep are compared with their paired ServiceNow records; drift is queued like webhooks.",
                "type": "object",
                "additionalProperties": false,
                "required": ["connection", "jql"],
                "properties": {
                    "connection": { "type": "string", "description": "The Jira connection to search with." },
                    "jql": { "type": "string", "description": "The endpoint's share of Jira, e.g. `project = SUP AND issuetype = Incident` (no ORDER BY)." },
                    "every": duration,
                    "overlap": duration,
                    "lookback": duration,
                    "page_size": { "type": "integer", "minimum": 1, "maximum": 100 }
                }
            },
            "reconcile_users": {
                "description": "User sweep (ServiceNow endpoints): the active members of each ServiceNow group the rule's map.group table names against the members of the Jira group it maps to; what differs is queued as sys_user / sys_user_grmember events (apply: true) or only reported (the default).",
                "type": "object",
                "additionalProperties": false,
                "required": ["connection", "rule"],
                "properties": {
                    "connection": { "type": "string", "description": "The ServiceNow connection that reads sys_user_group, sys_user_grmember and sys_user." },
                    "rule": { "type": "string", "description": "The group_member rule whose map.group value table maps ServiceNow groups to Jira groups." },
                    "every": duration,
                    "apply": { "type": "boolean", "default": false, "description": "Queue what differs; false: report only (read the report first)." }
                }
            },
            "whitelist": {
                "description": "ONEiO syntax (`user.accountId!=ID1,!=ID2`; comma = AND; =, !=, IN (a,b)) or a list of clauses.",
                "oneOf": [
                    { "type": "string" },
                    { "type": "array", "items": whitelist_clause }
                ]
            }
        }
    });
    let connection = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "kind", "base_url", "auth"],
        "properties": {
            "name": name,
            "kind": { "enum": ["servicenow", "jira", "http"] },
            "base_url": { "type": "string", "pattern": "^https?://" },
            "api": { "enum": ["v3", "v2"], "description": "jira only" },
            "table": { "type": "string", "description": "servicenow only; default incident" },
            "headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "http only" },
            "concurrency": {
                "type": "object",
                "additionalProperties": false,
                "description": "calls in flight to this target at once",
                "properties": {
                    "max": { "type": "integer", "minimum": 1, "maximum": 1000, "description": "the ceiling (the target's semaphore or quota); default 64" },
                    "adaptive": { "type": "boolean", "description": "adapt below max to the target's latency, 429s, 503s and timeouts; default true" }
                }
            },
            "deletes_per_minute": { "type": "integer", "minimum": 0, "maximum": 1000, "description": "the most records action: delete rules may delete through this connection in one minute; the next is dead-lettered with reason delete_cap_reached and counted (DeleteCapReached); default 10, 0 refuses every delete" },
            "org_admin": { "type": "string", "description": "Jira Cloud: the http connection to the Atlassian organization admin API (https://api.atlassian.com, an organization API key as bearer) through which user rules with map.active deactivate and reactivate accounts" },
            "auth": {
                "type": "object",
                "additionalProperties": false,
                "required": ["kind"],
                "properties": {
                    "kind": { "enum": ["email_token", "bearer", "basic", "oauth2", "oauth_3lo"] },
                    "email": secret_ref,
                    "username": secret_ref,
                    "password": secret_ref,
                    "token": secret_ref,
                    "client_id": secret_ref,
                    "client_secret": secret_ref,
                    "refresh_token": secret_ref,
                    "token_url": { "type": "string", "pattern": "^https?://" },
                    "scopes": { "type": "array", "items": { "type": "string", "minLength": 1 }, "description": "oauth_3lo only: consent scopes; offline_access is always added" }
                }
            }
        }
    });
    let condition = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "path": path,
            "equals": scalar,
            "not_equals": scalar,
            "in": { "type": "array", "items": scalar },
            "exists": { "type": "boolean" },
            "matches": { "type": "string", "description": "Rust regex (Unicode-aware \\w \\d \\s, (?i), general categories such as \\p{L}; no look-around, no scripts or other Unicode properties)" },
            "changed": { "type": "string", "description": "field name (changelog item field or fieldId)" },
            "from": scalar,
            "to": scalar
        }
    });
    let mapping = json!({
        "oneOf": [
            { "type": "string", "description": "a path, or a template when it holds `{{`" },
            {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "path": path,
                    "template": template,
                    "value": { "description": "a constant (any JSON)" },
                    "table": { "type": "object", "description": "source value → target value" },
                    "default": { "description": "when the value is missing or not in the table" },
                    "required": { "type": "boolean" },
                    "user": { "type": "boolean", "description": "the value is a person of the source system (a Jira user, a ServiceNow sys_user): written as the target system's id for them, by the `users` section" }
                }
            }
        ]
    });
    let rule = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "from", "to", "action"],
        "properties": {
            "name": { "type": "string", "minLength": 1 },
            "from": { "type": "string", "description": "endpoint name" },
            "when": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "events": { "type": "array", "items": { "type": "string" } },
                    "conditions": { "type": "array", "items": condition }
                }
            },
            "to": { "type": "string", "description": "connection name" },
            "action": { "enum": ["create", "update", "upsert", "comment", "transition", "attach", "delete", "user", "group_member"], "description": "user: find or create the Jira account of the correlated e-mail address (map displayName, products; active with a Cloud connection's org_admin or on Data Center; name, the username, on Data Center); group_member: add it to (member: true) or remove it from (member: false) the mapped group or groups (Jira groups, or ServiceNow's sys_user_grmember toward a servicenow connection)" },
            "table": { "type": "string" },
            "correlate": {
                "type": "object",
                "additionalProperties": false,
                "required": ["key"],
                "properties": {
                    "key": { "type": "string", "description": "path or template of the source's correlation key" },
                    "field": { "type": "string", "description": "target field holding it: correlation_id (ServiceNow default), key (Jira default), labels, customfield_N" }
                }
            },
            "request": {
                "type": "object",
                "additionalProperties": false,
                "required": ["path"],
                "properties": {
                    "method": { "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"] },
                    "path": template
                }
            },
            "map": { "type": "object", "additionalProperties": mapping },
            "iterate": path,
            "download_from": { "type": "string", "description": "attach rules: the connection that fetches the file; its URL must lie under that connection's base URL" },
            "pair_back": {
                "type": "object",
                "additionalProperties": false,
                "required": ["connection", "field"],
                "description": "create/upsert rules: write the new record's key back into the record the event came from (ServiceNow correlation_id, a Jira custom field plus the jira-relay issue property), so the other direction's rules find their twin",
                "properties": {
                    "connection": { "type": "string", "description": "the connection that writes to the system the event came from" },
                    "field": { "type": "string", "description": "the field there that the other direction's rules correlate by" }
                }
            },
            "wait_for_correlation": { "type": "boolean" },
            "delete_subtasks": { "type": "boolean", "description": "jira delete rules: delete the issue's subtasks with it (deleteSubtasks=true); without it Jira refuses to delete an issue that has subtasks" },
            "stop": { "type": "boolean" }
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/jira-relay/jira-relay/schema/relay-config.schema.json",
        "title": "jira-relay configuration",
        "type": "object",
        "additionalProperties": false,
        "required": ["version", "endpoints"],
        "properties": {
            "version": { "const": 1 },
            "limits": {
                "type": "object",
                "additionalProperties": false,
                "properties": { "max_body_bytes": { "type": "integer", "minimum": 1024, "maximum": crate::config::model::MAX_BODY_BYTES_CEILING } }
            },
            "endpoints": { "type": "array", "minItems": 1, "items": endpoint },
            "connections": { "type": "array", "items": connection },
            "rules": { "type": "array", "items": rule },
            "users": {
                "type": "object",
                "additionalProperties": false,
                "required": ["jira", "servicenow"],
                "description": "how people are matched for mappings with `user: true`: explicit pairs, then e-mail, then a default (docs/users.md)",
                "properties": {
                    "jira": { "type": "string", "description": "the Jira connection that reads accounts" },
                    "servicenow": { "type": "string", "description": "the ServiceNow connection that reads sys_user" },
                    "pairs": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Jira accountId → ServiceNow user_name" },
                    "default": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "servicenow": { "type": "string", "description": "user_name for a person not found" },
                            "jira": { "type": "string", "description": "accountId for a person not found" }
                        }
                    }
                }
            }
        }
    })
}

/// The schema as the pretty-printed text shipped in `schema/`.
pub fn config_schema_text() -> String {
    serde_json::to_string_pretty(&config_schema()).unwrap_or_default() + "\n"
}
