//! One event as the rules see it: the payload, the resolved actor, the
//! current item of an iterating rule and the event name.

use super::path::Path;
use crate::config::model::SourceKind;
use serde_json::{Map, Value};

/// One event as rules see it: the payload plus derived roots.
///
/// A path's first key picks the root: `actor.*` is the resolved actor
/// (`id`, `accountId`, `name`, `key`, `displayName`, `emailAddress`), `item.*`
/// the current element of an iterating rule, `event` the event name;
/// anything else reads the payload.
pub struct Context<'a> {
    pub payload: &'a Value,
    pub actor: Value,
    pub item: Option<&'a Value>,
    pub event: Value,
}

impl<'a> Context<'a> {
    pub fn new(payload: &'a Value, event: &str, kind: SourceKind) -> Self {
        Self {
            payload,
            // A Jira user webhook's `user` is the person the change is
            // about; Jira names no actor there.
            actor: if kind == SourceKind::Jira && event.starts_with("user_") {
                Value::Object(Map::new())
            } else {
                resolve_actor(payload, kind)
            },
            item: None,
            event: Value::String(event.to_owned()),
        }
    }

    /// Evaluates a path against the right root.
    pub fn get(&self, p: &Path) -> Option<&Value> {
        let segs = p.segments();
        match p.head() {
            Some("actor") => super::path::get_segments(&self.actor, &segs[1..]),
            Some("item") => super::path::get_segments(self.item?, &segs[1..]),
            Some("event") if segs.len() == 1 => Some(&self.event),
            _ => p.get(self.payload),
        }
    }
}

/// Who made the change. Jira: top-level `user`, else the comment's
/// `updateAuthor`/`author`, the worklog's, the attachment's `author`.
/// `id` is the Cloud `accountId`, else the Server `key`, else `name`.
/// ServiceNow: `sys_updated_by` (or `updated_by`, `user`) as `id` and `name`.
pub fn resolve_actor(payload: &Value, kind: SourceKind) -> Value {
    let mut out = Map::new();
    match kind {
        SourceKind::Jira => {
            let candidates = [
                payload.get("user"),
                payload.get("comment").and_then(|c| c.get("updateAuthor")),
                payload.get("comment").and_then(|c| c.get("author")),
                payload.get("worklog").and_then(|c| c.get("updateAuthor")),
                payload.get("worklog").and_then(|c| c.get("author")),
                payload.get("attachment").and_then(|c| c.get("author")),
            ];
            if let Some(u) = candidates.into_iter().flatten().find(|u| u.is_object()) {
                for f in ["accountId", "name", "key", "displayName", "emailAddress"] {
                    if let Some(v) = u.get(f).filter(|v| v.is_string()) {
                        out.insert(f.to_owned(), v.clone());
                    }
                }
                let id = ["accountId", "key", "name"]
                    .iter()
                    .find_map(|f| out.get(*f).cloned());
                if let Some(id) = id {
                    out.insert("id".to_owned(), id);
                }
            }
        }
        SourceKind::Servicenow => {
            let who = ["sys_updated_by", "updated_by", "user"]
                .iter()
                .find_map(|f| payload.get(*f).filter(|v| v.is_string()));
            if let Some(who) = who {
                out.insert("id".to_owned(), who.clone());
                out.insert("name".to_owned(), who.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actor_is_resolved_across_events() {
        let cloud_comment = json!({"comment": {"author": {"accountId": "A1"}, "updateAuthor": {"accountId": "A2", "displayName": "Two"}}});
        let a = resolve_actor(&cloud_comment, SourceKind::Jira);
        assert_eq!(a["id"], "A2");
        let server = json!({"user": {"name": "admin", "key": "JIRAUSER1"}});
        assert_eq!(resolve_actor(&server, SourceKind::Jira)["id"], "JIRAUSER1");
        let wl = json!({"worklog": {"author": {"accountId": "W"}}});
        assert_eq!(resolve_actor(&wl, SourceKind::Jira)["id"], "W");
        let sn = json!({"sys_updated_by": "relay.integration"});
        assert_eq!(
            resolve_actor(&sn, SourceKind::Servicenow)["id"],
            "relay.integration"
        );
        assert_eq!(resolve_actor(&json!({}), SourceKind::Jira), json!({}));
        let deleted = json!({"webhookEvent": "user_deleted", "user": {"accountId": "5b10ac"}});
        let ctx = Context::new(&deleted, "user_deleted", SourceKind::Jira);
        assert_eq!(ctx.actor, json!({}), "the deleted user is no actor");
    }
}
