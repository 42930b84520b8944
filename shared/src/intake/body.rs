//! A webhook body before it becomes an envelope: checked as the worker will
//! read it (UTF-8, a JSON object, nesting bounded, every string and number
//! decodable) and its head fields read leniently, tolerating the real-world
//! quirks of Jira payloads (Server and Cloud user shapes, comment and worklog
//! events without `issue`, logger-wrapped bodies, fields of unexpected types).

use crate::config::model::SourceKind;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Longest header string kept in the envelope (keys, names, ids); longer
/// values are cut, so a hostile payload cannot inflate the envelope.
const MAX_FIELD: usize = 256;

/// Deepest nesting of objects and arrays the intake accepts: the worker's
/// JSON parser (serde_json, which stops at 128 levels) must be able to read
/// back whatever was accepted, or the event could only be dead-lettered.
pub const MAX_DEPTH: usize = 120;

/// Who made the change, as far as the payload says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Jira Cloud account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Jira Server/DC user name, or the ServiceNow user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Jira Server/DC user key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl Actor {
    fn is_empty(&self) -> bool {
        self.account_id.is_none()
            && self.name.is_none()
            && self.key.is_none()
            && self.display_name.is_none()
    }
}

/// Why a body cannot become an envelope. All are the sender's fault (400).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("body is empty")]
    Empty,
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not a JSON object")]
    NotObject,
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body nests objects and arrays deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl PayloadError {
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::Empty => "empty_body",
            PayloadError::NotUtf8 => "invalid_utf8",
            PayloadError::NotObject => "not_an_object",
            PayloadError::NotJson(_) => "invalid_json",
            PayloadError::TooDeep => "nested_too_deep",
        }
    }
}

/// Header fields read from a webhook body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookMeta {
    pub event: String,
    pub event_type: Option<String>,
    pub source_id: Option<String>,
    pub source_key: Option<String>,
    pub actor: Option<Actor>,
    /// See [`Envelope::change_id`].
    pub change_id: Option<String>,
}

/// True if objects and arrays in `text` nest deeper than `max` (a scan that
/// skips strings; the text is checked as JSON elsewhere).
///
/// Most of a webhook's bytes are inside strings (descriptions, ADF text): the
/// scan jumps from one quote or backslash to the next with `memchr` instead of
/// looking at every byte, which made this check half of the intake's
/// instructions at 100 KB (callgrind; BENCHMARKS.md).
pub(crate) fn nests_deeper_than(text: &str, max: usize) -> bool {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // To the closing quote; an escape skips the byte after the backslash.
                i += 1;
                loop {
                    let Some(k) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
                        return false; // unterminated: refused as JSON elsewhere
                    };
                    i += k;
                    if bytes[i] == b'"' {
                        break;
                    }
                    i = (i + 2).min(bytes.len());
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

pub(crate) fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A JSON text that `serde_json::Value` can hold: every string's escapes
/// decode (no lone UTF-16 surrogate), every number is in range (nesting is
/// bounded before, by [`MAX_DEPTH`]). Checked without keeping anything.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Readable;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Readable, A::Error> {
                Readable::visit_seq(a)
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Readable, A::Error> {
                Readable::visit_map(a)
            }
        }
        d.deserialize_any(V)
    }
}

impl Readable {
    fn visit_seq<'de, A: SeqAccess<'de>>(mut a: A) -> Result<Readable, A::Error> {
        while a.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }

    fn visit_map<'de, A: MapAccess<'de>>(mut a: A) -> Result<Readable, A::Error> {
        while a.next_key::<Readable>()?.is_some() {
            a.next_value::<Readable>()?;
        }
        Ok(Readable)
    }
}

/// An object key, borrowed from the body when it holds no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `Deserialize` for a head struct (fields that read leniently and default
/// to absent; the macro must list every field): the named fields are read, a repeated one is refused as serde's
/// derive would, and every other field is checked as [`Readable`] instead of
/// skipped, so reading the head checks the whole body in the same pass.
macro_rules! head_reader {
    ($ty:ident { $($field:ident: $json:literal),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<$ty, A::Error> {
                        $(let mut $field = Default::default();)+
                        let mut seen = 0u32;
                        while let Some(Key(key)) = a.next_key::<Key<'de>>()? {
                            let mut bit = 1u32;
                            $(
                                if key == $json {
                                    if seen & bit != 0 {
                                        return Err(de::Error::duplicate_field($json));
                                    }
                                    seen |= bit;
                                    $field = a.next_value()?;
                                    continue;
                                }
                                bit <<= 1;
                            )+
                            let _ = bit;
                            a.next_value::<Readable>()?;
                        }
                        // Every field of the struct must be listed: a field
                        // left out of the macro is a compile error here.
                        Ok($ty { $($field),+ })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Lenient reading of the payload head

/// A string field that may arrive as a string, a number, or something else
/// (ignored).
#[derive(Default, Debug)]
struct Str(Option<String>);

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str, E> {
                Ok(Str((!v.is_empty()).then(|| clip(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Str, E> {
                Ok(Str(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Str, E> {
                Ok(Str(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Str, A::Error> {
                Readable::visit_seq(a).map(|_| Str(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Str, A::Error> {
                Readable::visit_map(a).map(|_| Str(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object field that may be missing, null or of another type (→ `None`).
#[derive(Debug)]
struct Obj<T>(Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(a)).map(|t| Obj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Obj<T>, A::Error> {
                Readable::visit_seq(a).map(|_| Obj(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The group of Jira's `group_created` / `group_deleted`.
#[derive(Default, Debug)]
struct GroupHead {
    name: Str,
    group_id: Str,
}

head_reader!(GroupHead {
    name: "name",
    group_id: "groupId",
});

#[derive(Default, Debug)]
struct UserHead {
    account_id: Str,
    name: Str,
    key: Str,
    display_name: Str,
}

head_reader!(UserHead {
    account_id: "accountId",
    name: "name",
    key: "key",
    display_name: "displayName",
});

impl UserHead {
    fn actor(self) -> Option<Actor> {
        let a = Actor {
            account_id: self.account_id.0,
            name: self.name.0,
            key: self.key.0,
            display_name: self.display_name.0,
        };
        (!a.is_empty()).then_some(a)
    }
}

#[derive(Default, Debug)]
struct IssueHead {
    id: Str,
    key: Str,
}

head_reader!(IssueHead {
    id: "id",
    key: "key"
});

/// Comment, worklog and attachment share the shape we need.
#[derive(Default, Debug)]
struct ChildHead {
    id: Str,
    self_url: Str,
    issue_id: Str,
    author: Obj<UserHead>,
    update_author: Obj<UserHead>,
}

head_reader!(ChildHead {
    id: "id",
    self_url: "self",
    issue_id: "issueId",
    author: "author",
    update_author: "updateAuthor",
});

#[derive(Default, Debug)]
struct ChangelogHead {
    id: Str,
}

head_reader!(ChangelogHead { id: "id" });

#[derive(Default, Debug)]
struct Head {
    // Jira
    webhook_event: Str,
    issue_event_type_name: Str,
    issue: Obj<IssueHead>,
    user: Obj<UserHead>,
    comment: Obj<ChildHead>,
    worklog: Obj<ChildHead>,
    attachment: Obj<ChildHead>,
    changelog: Obj<ChangelogHead>,
    group: Obj<GroupHead>,
    // ServiceNow (the relay's business rule sends these)
    event: Str,
    sys_id: Str,
    number: Str,
    sys_updated_by: Str,
    /// `sys_user` events carry no number: the user name is their key.
    user_name: Str,
}

head_reader!(Head {
    webhook_event: "webhookEvent",
    issue_event_type_name: "issue_event_type_name",
    issue: "issue",
    user: "user",
    comment: "comment",
    worklog: "worklog",
    attachment: "attachment",
    changelog: "changelog",
    group: "group",
    event: "event",
    sys_id: "sys_id",
    number: "number",
    sys_updated_by: "sys_updated_by",
    user_name: "user_name",
});

/// The issue id inside a Jira REST URL such as
/// `…/rest/api/2/issue/10013/comment/10082`.
fn issue_id_from_url(url: &str) -> Option<String> {
    let mut parts = url.split('/');
    parts.find(|p| *p == "issue")?;
    let id = parts.next()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

/// Whether a change id made by [`read_meta`] stands for the creation of a
/// Jira issue (`issue:<id>:created`; a comment's is
/// `issue:<id>:comment:<id>:created`).
pub fn is_creation(change: &str) -> bool {
    change
        .strip_prefix("issue:")
        .and_then(|r| r.strip_suffix(":created"))
        .is_some_and(|id| !id.is_empty() && !id.contains(':'))
}

/// Reads the header fields of a webhook body. Fails if the body is not JSON the
/// worker can parse (see [`Readable`]) or repeats a head field; fields of
/// unexpected types are ignored.
pub fn read_meta(source: SourceKind, text: &str) -> Result<WebhookMeta, PayloadError> {
    let head: Head =
        serde_json::from_str(text).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    Ok(match source {
        SourceKind::Jira => jira_meta(head),
        SourceKind::Servicenow => WebhookMeta {
            event: head.event.0.unwrap_or_else(|| "unknown".to_owned()),
            event_type: None,
            source_id: head.sys_id.0,
            source_key: head.number.0.or(head.user_name.0),
            actor: head.sys_updated_by.0.map(|name| Actor {
                name: Some(name),
                ..Actor::default()
            }),
            change_id: None,
        },
    })
}

fn jira_meta(head: Head) -> WebhookMeta {
    let event = head.webhook_event.0.unwrap_or_else(|| "unknown".to_owned());
    if event.starts_with("user_") {
        return jira_user_meta(event, head.user.0.unwrap_or_default());
    }
    if event.starts_with("group_") {
        // `group_created` / `group_deleted`: keyed by the group (its id,
        // else its name); each is a change of its own.
        let g = head.group.0.unwrap_or_default();
        let source_id = g.group_id.0.or(g.name.0.clone());
        let what = event.trim_start_matches("group_").to_owned();
        return WebhookMeta {
            change_id: source_id.as_ref().map(|id| format!("group:{id}:{what}")),
            event,
            event_type: None,
            source_id,
            source_key: g.name.0,
            actor: None,
        };
    }
    let issue = head.issue.0.unwrap_or_default();
    let changelog_id = head.changelog.0.and_then(|c| c.id.0);
    let children = [head.comment.0, head.worklog.0, head.attachment.0];
    let child_issue_id = children.iter().flatten().find_map(|c| {
        c.issue_id
            .0
            .clone()
            .or_else(|| c.self_url.0.as_deref().and_then(issue_id_from_url))
    });
    let source_id = issue.id.0.or(child_issue_id);
    // Jira's ids are unique site-wide; the issue id in front keeps a change
    // of one issue from ever standing for another's.
    let on_issue = |what: String| match &source_id {
        Some(issue) => format!("issue:{issue}:{what}"),
        None => what,
    };
    let child_id = |n: usize| children[n].as_ref().and_then(|c| c.id.0.clone());
    let change_id = match event.as_str() {
        "jira:issue_created" => source_id.as_ref().map(|id| format!("issue:{id}:created")),
        // A Server `jira:issue_updated` that carries a comment and no
        // changelog is the comment's creation: the same change as its
        // `comment_created`, so the two are one.
        "jira:issue_updated" => changelog_id
            .map(|id| on_issue(format!("changelog:{id}")))
            .or_else(|| child_id(0).map(|id| on_issue(format!("comment:{id}:created")))),
        "comment_created" => child_id(0).map(|id| on_issue(format!("comment:{id}:created"))),
        "attachment_created" => child_id(2).map(|id| on_issue(format!("attachment:{id}:created"))),
        _ => None,
    };
    // The actor: the top-level `user` when the event has one, else whoever
    // last touched the comment / worklog / attachment.
    let actor = head.user.0.and_then(UserHead::actor).or_else(|| {
        children.into_iter().flatten().find_map(|c| {
            c.update_author
                .0
                .and_then(UserHead::actor)
                .or_else(|| c.author.0.and_then(UserHead::actor))
        })
    });
    WebhookMeta {
        event,
        event_type: head.issue_event_type_name.0,
        source_id,
        source_key: issue.key.0,
        actor,
        change_id,
    }
}

/// A Jira user webhook (`user_created`, `user_updated`, `user_deleted`):
/// its `user` is the person the change is about, not who made it (Jira
/// names no actor there), so there is no actor. The account keys the event:
/// its id (Cloud `accountId`, else the Data Center key or name) is the
/// source id, so one person's events keep their order, and a creation or
/// deletion is a change of its own (`user:<id>:created`).
fn jira_user_meta(event: String, user: UserHead) -> WebhookMeta {
    let source_id = user.account_id.0.or(user.key.0).or(user.name.0);
    let change_id = match event.as_str() {
        "user_created" => source_id.as_ref().map(|id| format!("user:{id}:created")),
        "user_deleted" => source_id.as_ref().map(|id| format!("user:{id}:deleted")),
        _ => None,
    };
    WebhookMeta {
        event,
        event_type: None,
        source_id,
        source_key: user.display_name.0,
        actor: None,
        change_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::envelope::{DeliveryHeaders, Envelope};

    fn meta(json: &str) -> WebhookMeta {
        read_meta(SourceKind::Jira, json).unwrap()
    }

    #[test]
    fn reads_cloud_issue_event() {
        let m = meta(
            r#"{"webhookEvent":"jira:issue_updated","issue_event_type_name":"issue_generic","user":{"accountId":"abc","displayName":"A"},"issue":{"id":"10040","key":"TES-41","fields":{"x":[1,{"y":2}]}}}"#,
        );
        assert_eq!(m.event, "jira:issue_updated");
        assert_eq!(m.event_type.as_deref(), Some("issue_generic"));
        assert_eq!(m.source_id.as_deref(), Some("10040"));
        assert_eq!(m.source_key.as_deref(), Some("TES-41"));
        assert_eq!(m.actor.unwrap().account_id.as_deref(), Some("abc"));
        assert_eq!(m.change_id, None, "no changelog: no change id");
    }

    #[test]
    fn only_an_issue_creation_is_a_creation() {
        let c = |json: &str| meta(json).change_id.unwrap();
        assert!(is_creation(&c(
            r#"{"webhookEvent":"jira:issue_created","issue":{"id":"10040"}}"#
        )));
        assert!(!is_creation(&c(
            r#"{"webhookEvent":"comment_created","comment":{"id":"77"},"issue":{"id":"1"}}"#
        )));
        assert!(!is_creation("issue::created"));
    }

    #[test]
    fn group_events_are_keyed_by_the_group() {
        let m = meta(
            r#"{"webhookEvent":"group_created","group":{"name":"jira-testers","groupId":"abc-123"}}"#,
        );
        assert_eq!(m.source_id.as_deref(), Some("abc-123"));
        assert_eq!(m.source_key.as_deref(), Some("jira-testers"));
        assert_eq!(m.change_id.as_deref(), Some("group:abc-123:created"));
        assert!(m.actor.is_none());
        let m = meta(r#"{"webhookEvent":"group_deleted","group":{"name":"old"}}"#);
        assert_eq!(m.change_id.as_deref(), Some("group:old:deleted"));
    }

    #[test]
    fn user_events_are_keyed_by_the_account_and_have_no_actor() {
        let m = meta(
            r#"{"webhookEvent":"user_deleted","user":{"accountId":"5b10ac","displayName":"Ann"}}"#,
        );
        assert_eq!(m.source_id.as_deref(), Some("5b10ac"));
        assert_eq!(m.change_id.as_deref(), Some("user:5b10ac:deleted"));
        assert_eq!(m.source_key.as_deref(), Some("Ann"));
        assert!(m.actor.is_none(), "the user is the subject, not the actor");
        let m = meta(r#"{"webhookEvent":"user_updated","user":{"name":"ann","key":"JIRAUSER1"}}"#);
        assert_eq!(m.source_id.as_deref(), Some("JIRAUSER1"));
        assert_eq!(m.change_id, None, "an update is its delivery");
        let sn = read_meta(
            SourceKind::Servicenow,
            r#"{"event":"sys_user.updated","sys_id":"u1","user_name":"ann.lee","sys_updated_by":"admin"}"#,
        )
        .unwrap();
        assert_eq!(sn.source_key.as_deref(), Some("ann.lee"));
    }

    #[test]
    fn change_ids() {
        let c = |json: &str| meta(json).change_id;
        assert_eq!(
            c(r#"{"webhookEvent":"jira:issue_created","issue":{"id":"10040"}}"#).as_deref(),
            Some("issue:10040:created")
        );
        assert_eq!(
            c(r#"{"webhookEvent":"jira:issue_updated","issue":{"id":"1"},"changelog":{"id":"10500","items":[]}}"#).as_deref(),
            Some("issue:1:changelog:10500")
        );
        assert_eq!(
            c(r#"{"webhookEvent":"comment_created","comment":{"id":"77"},"issue":{"id":"1"}}"#)
                .as_deref(),
            Some("issue:1:comment:77:created")
        );
        // Server's bare update carrying a comment: the comment's change.
        assert_eq!(
            c(r#"{"webhookEvent":"jira:issue_updated","issue":{"id":"1"},"comment":{"id":"77"}}"#)
                .as_deref(),
            Some("issue:1:comment:77:created")
        );
        assert_eq!(
            c(r#"{"webhookEvent":"attachment_created","attachment":{"id":10000}}"#).as_deref(),
            Some("attachment:10000:created")
        );
        // Updates of a comment are changes of their own: delivery id.
        assert_eq!(
            c(r#"{"webhookEvent":"comment_updated","comment":{"id":"77"}}"#),
            None
        );
        let h = DeliveryHeaders {
            webhook_id: Some("w-1".into()),
            retry: None,
        };
        let e = Envelope::build(
            "jira",
            SourceKind::Jira,
            br#"{"webhookEvent":"comment_created","comment":{"id":"77"},"issue":{"id":"1"}}"#,
            &h,
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(e.dedup_id(), "jira:issue:1:comment:77:created");
        assert_eq!(e.delivery_id, "w-1");
    }

    #[test]
    fn comment_without_issue_takes_id_from_self_url() {
        let m = meta(
            r#"{"webhookEvent":"comment_created","comment":{"self":"http://h:8080/rest/api/2/issue/10013/comment/10082","author":{"name":"lev","key":"lev"}}}"#,
        );
        assert_eq!(m.source_id.as_deref(), Some("10013"));
        assert_eq!(m.source_key, None);
        assert_eq!(m.actor.unwrap().name.as_deref(), Some("lev"));
    }

    #[test]
    fn tolerates_wrong_types() {
        let m = meta(
            r#"{"webhookEvent":5,"timestamp":"2019-1-30 15:51","issue":"nope","user":[1,2],"comment":{"issueId":10014,"author":"x"}}"#,
        );
        assert_eq!(m.event, "5");
        assert_eq!(m.source_id.as_deref(), Some("10014"));
        assert!(m.actor.is_none());
    }

    /// The head reader is hand-written (one pass reads the head and checks the
    /// rest): it keeps what serde's derive did.
    #[test]
    fn head_reader_keeps_the_derived_contract() {
        let h = DeliveryHeaders::default();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let build = |body: &str| Envelope::build("e", SourceKind::Jira, body.as_bytes(), &h, now);
        // A repeated head field is refused, at any head level.
        for body in [
            r#"{"webhookEvent":"a","webhookEvent":"b"}"#,
            r#"{"issue":{"id":"1","key":"K-1","id":"2"}}"#,
            r#"{"comment":{"author":{"name":"a","name":"b"}}}"#,
        ] {
            assert!(
                matches!(build(body), Err(PayloadError::NotJson(_))),
                "{body}"
            );
        }
        // Lone surrogates and out-of-range numbers under head fields too.
        for body in [
            r#"{"user":{"accountId":"\ud800"}}"#,
            r#"{"user":{"avatarUrls":{"x":"\udc00"}}}"#,
            r#"{"webhookEvent":["\ud800"]}"#,
            r#"{"issue":{"id":{"n":1e999}}}"#,
            r#"{"issue":[1e999]}"#,
        ] {
            assert!(
                matches!(build(body), Err(PayloadError::NotJson(_))),
                "{body}"
            );
        }
        // An escaped key names the same field; keys are matched exactly.
        let e = build(r#"{"webhook\u0045vent":"x","issue":{"Id":"9","id":"10"}}"#).unwrap();
        assert_eq!(e.event, "x");
        assert_eq!(e.source_id.as_deref(), Some("10"));
        // Repeated keys outside the head fields stay accepted.
        assert!(build(r#"{"webhookEvent":"x","y":1,"y":2,"user":{"z":1,"z":2}}"#).is_ok());
    }

    #[test]
    fn nesting_is_bounded_by_what_the_worker_can_read() {
        let nested = |depth: usize| {
            format!(
                "{{\"webhookEvent\":\"x\",\"s\":\"{{[{{[\\\"\",\"a\":{}1{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        let h = DeliveryHeaders::default();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let ok = nested(MAX_DEPTH);
        let env = Envelope::build("e", SourceKind::Jira, ok.as_bytes(), &h, now).unwrap();
        // What the worker does with it: decode, then parse the payload.
        let back = Envelope::decode(&env.encode()).unwrap();
        serde_json::from_str::<serde_json::Value>(back.payload.get()).unwrap();
        let deep = nested(MAX_DEPTH + 1);
        assert_eq!(
            Envelope::build("e", SourceKind::Jira, deep.as_bytes(), &h, now).unwrap_err(),
            PayloadError::TooDeep
        );
        // Brackets inside strings do not count.
        assert!(!nests_deeper_than(r#"{"a":"[[[[[[","b":"\\\"{{{{"}"#, 1));
    }

    /// The byte-at-a-time scan the memchr one replaced, as the reference.
    fn nests_deeper_than_bytewise(text: &str, max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for b in text.bytes() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    proptest::proptest! {
        #[test]
        fn depth_scan_agrees_with_the_bytewise_one(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["{", "}", "[", "]", "\"", "\\", "\\\"", "a", ":", ",", "é", "\\\\"]),
                0..64,
            ),
            max in 0usize..6,
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(nests_deeper_than(&text, max), nests_deeper_than_bytewise(&text, max), "{}", text);
        }
    }
}
