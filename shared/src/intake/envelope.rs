//! The queue envelope: what the ingress writes to the queue and the worker
//! reads back.
//!
//! It is versioned (`"v": 1`) so that ingress and worker can be deployed apart:
//! a worker that meets a version it does not know dead-letters the message with
//! a clear reason instead of guessing. The header fields are read from the
//! webhook once, at intake, with a lenient reader that tolerates the real-world
//! quirks of Jira payloads (Server and Cloud user shapes, comment and worklog
//! events without `issue`, logger-wrapped bodies, fields of unexpected types);
//! the payload itself is carried byte for byte.

use super::body::{clip, nests_deeper_than};
pub use super::body::{read_meta, Actor, PayloadError, WebhookMeta, MAX_DEPTH};
use crate::config::model::SourceKind;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Where an envelope came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    #[default]
    Webhook,
    /// Synthesised by the reconciliation sweep.
    Reconcile,
}

/// The envelope version marker: serialises as `1`, accepts only `1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            1 => Ok(V1),
            n => Err(de::Error::custom(format!("envelope version {n} is not 1"))),
        }
    }
}

/// Envelope version 1.
///
/// `Serialize` writes the header fields; [`Envelope::encode`] is the queue's
/// form, with the payload appended as it arrived.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: V1,
    /// Endpoint name the webhook arrived on.
    pub endpoint: String,
    /// Kind of the sending system.
    pub source: SourceKind,
    #[serde(default)]
    pub origin: Origin,
    /// `webhookEvent` (Jira) or `event` (ServiceNow), `unknown` when absent.
    pub event: String,
    /// Jira's `issue_event_type_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Issue id (stable across moves) or ServiceNow sys_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// Issue key or ServiceNow number, for people and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    /// `X-Atlassian-Webhook-Identifier`, else `sha256:<hex of the body>`.
    pub delivery_id: String,
    /// The change the event reports, when the payload names it
    /// (`issue:<id>:created`, `issue:<id>:changelog:<id>`,
    /// `issue:<id>:comment:<id>:created`, `issue:<id>:attachment:<id>:created`). A webhook and a reconciliation sweep
    /// that report the same change carry the same one, so the queue's
    /// deduplication sees them as one message (see [`Envelope::dedup_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    /// `X-Atlassian-Webhook-Retry` (0 on first delivery).
    #[serde(default)]
    pub retry: u32,
    pub received_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The webhook body, unchanged. Last in the encoded envelope, and not
    /// written by `Serialize`: [`Envelope::encode`] appends its text.
    #[serde(skip_serializing)]
    pub payload: Payload,
}

/// A webhook body as it arrived: JSON text checked once, by the reader that
/// took the head fields at intake ([`read_meta`], which refuses what the
/// worker could not parse), by the decoder of a queue message, or written
/// from a `serde_json::Value`; so the text is always one valid JSON value.
#[derive(Clone)]
pub struct Payload(Box<str>);

impl Payload {
    /// The text of a parsed payload (a worker that changed it).
    pub fn of(value: &serde_json::Value) -> Self {
        Payload(value.to_string().into())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Payload")
            .field(&format_args!("{}", self.0))
            .finish()
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Payload(Box::<RawValue>::deserialize(d)?.into()))
    }
}

/// Why a queue message cannot be read as an envelope (permanent: DLQ).
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message is not an envelope: {0}")]
    Malformed(String),
    #[error("envelope version {0} is not supported by this worker")]
    UnsupportedVersion(String),
}

impl crate::support::error::Classified for EnvelopeError {
    fn class(&self) -> crate::support::error::Class {
        crate::support::error::Class::Permanent
    }
    fn code(&self) -> &'static str {
        "bad_envelope"
    }
}

/// Delivery facts from the HTTP request, not the body.
#[derive(Clone, Debug, Default)]
pub struct DeliveryHeaders {
    /// `X-Atlassian-Webhook-Identifier`.
    pub webhook_id: Option<String>,
    /// `X-Atlassian-Webhook-Retry`.
    pub retry: Option<u32>,
}

impl Envelope {
    /// Builds the envelope of an authenticated webhook: the only way a webhook
    /// reaches the queue.
    pub fn from_webhook(
        webhook: &crate::intake::auth::Authenticated,
        headers: &DeliveryHeaders,
        received_at: jiff::Timestamp,
    ) -> Result<Self, PayloadError> {
        Self::build(
            webhook.endpoint(),
            webhook.kind(),
            webhook.body(),
            headers,
            received_at,
        )
    }

    /// Validates that the body is a UTF-8 JSON object and reads the header
    /// fields leniently.
    pub(crate) fn build(
        endpoint: &str,
        source: SourceKind,
        body: &[u8],
        headers: &DeliveryHeaders,
        received_at: jiff::Timestamp,
    ) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
        let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
        if trimmed.is_empty() {
            return Err(PayloadError::Empty);
        }
        if !trimmed.starts_with('{') {
            return Err(PayloadError::NotObject);
        }
        if nests_deeper_than(trimmed, MAX_DEPTH) {
            return Err(PayloadError::TooDeep);
        }
        // One pass reads the head fields and checks the rest of the body as
        // the worker will parse it, so what it could not read is refused here
        // (400) rather than accepted and dead-lettered. That pass is the only
        // check: the payload is carried as text from here on.
        let meta = read_meta(source, text)?;
        let payload = Payload(text.trim().into());
        let delivery_id = match headers.webhook_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => clip(id),
            _ => format!("sha256:{}", hex::encode(Sha256::digest(body))),
        };
        Ok(Envelope {
            v: V1,
            endpoint: endpoint.to_owned(),
            source,
            origin: Origin::Webhook,
            event: meta.event,
            event_type: meta.event_type,
            source_id: meta.source_id,
            source_key: meta.source_key,
            delivery_id,
            change_id: meta.change_id,
            retry: headers.retry.unwrap_or(0),
            received_at,
            actor: meta.actor,
            payload,
        })
    }

    /// The JSON text of the envelope: the header fields, then the payload's
    /// text as it is (not parsed again).
    pub fn encode(&self) -> String {
        const KEY: &str = ",\"payload\":";
        let mut out = serde_json::to_string(self).expect("an envelope always serialises");
        // `{"v":1,…}`: never empty, so the payload follows a comma.
        debug_assert!(out.ends_with('}') && out.len() > 2);
        out.pop();
        out.reserve(KEY.len() + self.payload.0.len() + 1);
        out.push_str(KEY);
        out.push_str(&self.payload.0);
        out.push('}');
        out
    }

    /// Reads a queue message body.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Probe {
            v: Option<serde_json::Value>,
        }
        // The common case in one pass; the version is probed only to say why
        // a message is not a v1 envelope.
        let full = match serde_json::from_str::<Envelope>(body) {
            Ok(envelope) => return Ok(envelope),
            Err(e) => e,
        };
        let probe: Probe =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        match probe.v {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1) => {
                Err(EnvelopeError::Malformed(full.to_string()))
            }
            Some(other) => Err(EnvelopeError::UnsupportedVersion(other.to_string())),
            None => Err(EnvelopeError::Malformed("no `v` field".to_owned())),
        }
    }

    /// `MessageGroupId`: endpoint + source record id, so one record's events are
    /// applied in order. Events without a record id share the endpoint's group.
    pub fn group_id(&self) -> String {
        let id = self.source_id.as_deref().unwrap_or("_");
        sqs_id(&format!("{}:{}", self.endpoint, id))
    }

    /// `MessageDeduplicationId`: endpoint + the change the event reports
    /// when the payload names it, else endpoint + delivery id. So a retried
    /// delivery, the same change sent by two webhooks, and a reconciliation
    /// sweep's envelope for a change a webhook also delivered are enqueued
    /// once within the dedup window.
    pub fn dedup_id(&self) -> String {
        let id = self.change_id.as_deref().unwrap_or(&self.delivery_id);
        sqs_id(&format!("{}:{}", self.endpoint, id))
    }
}

/// SQS group and dedup ids: at most 128 characters of printable ASCII. Values
/// that do not fit are replaced by their SHA-256 (64 hex characters).
pub fn sqs_id(s: &str) -> String {
    let fits = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    if fits {
        s.to_owned()
    } else {
        hex::encode(Sha256::digest(s.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_objects_and_bad_json() {
        let h = DeliveryHeaders::default();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let b = |body: &[u8]| Envelope::build("e", SourceKind::Jira, body, &h, now).unwrap_err();
        assert_eq!(b(b""), PayloadError::Empty);
        assert_eq!(b(b"  \n"), PayloadError::Empty);
        assert_eq!(b(b"[1,2]"), PayloadError::NotObject);
        assert_eq!(b(b"\"x\""), PayloadError::NotObject);
        assert_eq!(b(b"\xff{}"), PayloadError::NotUtf8);
        assert!(matches!(b(b"{\"a\":"), PayloadError::NotJson(_)));
        assert!(matches!(b(b"{} {}"), PayloadError::NotJson(_)));
    }

    /// Found by the `ingress` fuzz target: bodies whose unread parts the
    /// worker cannot parse were accepted (202) and then dead-lettered.
    #[test]
    fn refuses_bodies_the_worker_cannot_parse() {
        let h = DeliveryHeaders::default();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let build = |body: &str| Envelope::build("e", SourceKind::Jira, body.as_bytes(), &h, now);
        for body in [
            r#"{"issue":{"fields":{"watches":{"wat\ud800chCount":1}}}}"#,
            r#"{"comment":{"body":"\udc00"}}"#,
            r#"{"x":"\ud83d\u0041"}"#,
            r#"{"issue":{"fields":{"n":1e999}}}"#,
        ] {
            assert!(
                matches!(build(body), Err(PayloadError::NotJson(_))),
                "{body}"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(body).is_err(),
                "the worker reads {body}"
            );
        }
        // What the worker reads is accepted: a surrogate pair, big integers,
        // nesting within the limit, duplicate keys outside the head.
        let nested = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        for body in [
            r#"{"x":"\ud83d\ude00","n":18446744073709551615,"m":-1.5e300}"#,
            r#"{"issue":{"fields":{"a":1,"a":2}}}"#,
            &nested,
        ] {
            let e = build(body).unwrap_or_else(|err| panic!("{body}: {err}"));
            assert!(serde_json::from_str::<serde_json::Value>(e.payload.get()).is_ok());
        }
    }

    #[test]
    fn envelope_round_trip_and_ids() {
        let h = DeliveryHeaders {
            webhook_id: Some("1234567".into()),
            retry: Some(2),
        };
        let body = br#"{"webhookEvent":"jira:issue_created","issue":{"id":"1","key":"A-1"}}"#;
        let e = Envelope::build(
            "jira-prod",
            SourceKind::Jira,
            body,
            &h,
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(e.group_id(), "jira-prod:1");
        // A creation is one change however many deliveries report it.
        assert_eq!(e.dedup_id(), "jira-prod:issue:1:created");
        assert_eq!(e.delivery_id, "1234567");
        let text = e.encode();
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        assert!(text.contains(r#""payload":{"webhookEvent":"jira:issue_created""#));
        let back = Envelope::decode(&text).unwrap();
        assert_eq!(back.payload.get(), std::str::from_utf8(body).unwrap());
        assert_eq!(back.retry, 2);

        let unsupported = text.replacen(r#""v":1"#, r#""v":2"#, 1);
        assert!(matches!(
            Envelope::decode(&unsupported),
            Err(EnvelopeError::UnsupportedVersion(_))
        ));
    }

    /// The encoded envelope is one JSON object whose payload is the body's
    /// text as it arrived (spliced in, not re-serialised), and it reads back
    /// to the same text with every header field.
    #[test]
    fn encode_appends_the_payload_as_it_arrived() {
        let h = DeliveryHeaders {
            webhook_id: Some("w-1".into()),
            retry: Some(1),
        };
        // Spacing and key order a serialiser would not keep.
        let body = r#"{ "webhookEvent" : "comment_created", "issue_event_type_name":"issue_commented",
            "user":{"accountId":"5b10a2844c20165700ede21g","displayName":"Ann"},
            "issue":{"id":"10002","key":"SUP-2"},"comment":{"id":"77","body":"caf\u00e9"} }"#;
        let e = Envelope::build(
            "jira-prod",
            SourceKind::Jira,
            body.as_bytes(),
            &h,
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert!(e.event_type.is_some() && e.source_key.is_some() && e.change_id.is_some());
        assert!(e.actor.is_some());
        let text = e.encode();
        assert!(
            text.ends_with(&format!(",\"payload\":{}}}", body.trim())),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["comment"]["body"], "café");
        assert_eq!(v["source_key"], "SUP-2");
        let back = Envelope::decode(&text).unwrap();
        assert_eq!(back.payload.get(), body.trim());
        assert_eq!(back.encode(), text);
        // A payload written from a parsed value is valid JSON too.
        let p = Payload::of(&v["payload"]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(p.get()).unwrap(),
            v["payload"]
        );
    }

    #[test]
    fn delivery_id_falls_back_to_body_hash() {
        let body = br#"{"webhookEvent":"x"}"#;
        let a = Envelope::build(
            "e",
            SourceKind::Jira,
            body,
            &DeliveryHeaders::default(),
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            a.delivery_id,
            format!("sha256:{}", hex::encode(Sha256::digest(body)))
        );
        assert_eq!(a.group_id(), "e:_");
    }

    #[test]
    fn sqs_ids_are_safe() {
        assert_eq!(sqs_id("a:b"), "a:b");
        assert_eq!(sqs_id(&"x".repeat(129)).len(), 64);
        assert_eq!(sqs_id("a b").len(), 64);
        assert_eq!(sqs_id("ä").len(), 64);
    }
}
