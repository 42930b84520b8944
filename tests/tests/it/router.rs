//! The ingress router in-process: every real Jira payload is accepted and
//! enveloped right; the status contract holds.

use crate::{call, config, HMAC_KEY, TOKEN, TOKEN_OLD};
use axum::body::Body;
use http::{Request, StatusCode};
use relay_tests::{fixture_files, sign};
use shared::intake::envelope::Envelope;
use shared::intake::router::{app, IngressState};
use shared::queue::MemoryQueue;
use shared::secrets::LocalSecretStore;
use shared::support::clock::FixedClock;
use std::sync::Arc;

fn secrets() -> LocalSecretStore {
    LocalSecretStore::with_env([
        (
            "RELAY_SECRET_RELAY_WEBHOOK".to_owned(),
            serde_json::json!({"token": TOKEN, "hmac": HMAC_KEY, "sn_user": "relay", "sn_pass": "pw-9"}).to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_WEBHOOK__PREVIOUS".to_owned(),
            serde_json::json!({"token": TOKEN_OLD}).to_string(),
        ),
    ])
}

fn setup(limit: usize) -> (axum::Router, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new());
    let state = IngressState {
        config: Arc::new(config("relay/webhook", limit)),
        secrets: Arc::new(secrets()),
        queue: queue.clone(),
        clock: Arc::new(FixedClock::new("2026-11-23T12:00:00Z".parse().unwrap())),
    };
    (app(state), queue)
}

fn jira(body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/webhooks/jira?token={TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn every_real_jira_payload_is_accepted_and_enveloped() {
    // given every real Jira fixture and the router
    let Some(files) = fixture_files("jira-webhooks") else {
        return;
    };
    assert!(
        files.len() >= 18,
        "expected the full fixture set, got {}",
        files.len()
    );
    // when each is posted (to a queue of its own: two fixtures may be one
    // change, which one queue would rightly take once)
    for (i, (name, body)) in files.iter().enumerate() {
        let (app, queue) = setup(250_000);
        let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", format!("delivery-{i}"))
            .header("x-atlassian-webhook-retry", "1")
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, _, json) = call(&app, req).await;
        // then it is accepted and enveloped as it came
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {json}");
        assert_eq!(json["id"], format!("delivery-{i}"), "{name}");

        let (_, msg) = queue.messages().last().cloned().unwrap();
        let env = Envelope::decode(&msg.body).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        // The payload travels unchanged.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(env.payload.get()).unwrap(),
            payload,
            "{name}"
        );
        assert_eq!(
            env.event,
            payload["webhookEvent"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            env.event_type.as_deref(),
            payload["issue_event_type_name"].as_str(),
            "{name}"
        );
        assert_eq!(env.retry, 1);
        assert_eq!(env.received_at.to_string(), "2026-11-23T12:00:00Z");
        // Every fixture names its issue somewhere: the group is per issue id.
        let issue_id = payload["issue"]["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| payload["worklog"]["issueId"].as_str().map(str::to_owned))
            .or_else(|| {
                let url = payload["comment"]["self"].as_str()?;
                Some(url.split("/issue/").nth(1)?.split('/').next()?.to_owned())
            });
        assert!(issue_id.is_some(), "{name}: no issue id in fixture");
        assert_eq!(env.source_id, issue_id, "{name}");
        assert_eq!(
            msg.group_id,
            format!("jira:{}", issue_id.clone().unwrap()),
            "{name}"
        );
        // A change Jira names (creation, changelog, new comment, new
        // attachment) dedups as that change; anything else by delivery.
        let issue = issue_id.as_deref().unwrap();
        let id = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let change = match payload["webhookEvent"].as_str() {
            Some("jira:issue_created") => Some(format!("issue:{issue}:created")),
            Some("jira:issue_updated") => id(&payload["changelog"]["id"])
                .map(|c| format!("issue:{issue}:changelog:{c}"))
                .or_else(|| {
                    id(&payload["comment"]["id"])
                        .map(|c| format!("issue:{issue}:comment:{c}:created"))
                }),
            Some("comment_created") => {
                id(&payload["comment"]["id"]).map(|c| format!("issue:{issue}:comment:{c}:created"))
            }
            Some("attachment_created") => id(&payload["attachment"]["id"])
                .map(|c| format!("issue:{issue}:attachment:{c}:created")),
            _ => None,
        };
        let want = format!("jira:{}", change.unwrap_or_else(|| format!("delivery-{i}")));
        assert_eq!(
            msg.dedup_id,
            shared::intake::envelope::sqs_id(&want),
            "{name}"
        );
        assert_eq!(
            env.source_key.as_deref(),
            payload["issue"]["key"].as_str(),
            "{name}"
        );
        assert!(msg.attributes.contains(&("endpoint", "jira".to_owned())));
        assert!(msg.attributes.contains(&("event", env.event.clone())));

        // Actor: same resolution across issue, comment, attachment, worklog
        // events and Cloud (accountId) / Server (name) users.
        let expected_actor = ["user", "comment", "attachment", "worklog"]
            .iter()
            .find_map(|k| {
                let obj = &payload[*k];
                let user = if *k == "user" {
                    obj
                } else if obj["updateAuthor"].is_object() {
                    &obj["updateAuthor"]
                } else {
                    &obj["author"]
                };
                user.is_object().then(|| {
                    (
                        user["accountId"].as_str().map(str::to_owned),
                        user["name"].as_str().map(str::to_owned),
                    )
                })
            });
        let actor = env
            .actor
            .as_ref()
            .map(|a| (a.account_id.clone(), a.name.clone()));
        match expected_actor {
            Some((None, None)) | None => {}
            Some(expected) => assert_eq!(actor, Some(expected), "{name}"),
        }
        assert_eq!(queue.len(), 1, "{name}: one message");
    }
}

#[tokio::test]
async fn status_contract() {
    // given the router with a 4096-byte limit
    let body =
        br#"{"webhookEvent":"jira:issue_created","issue":{"id":"10001","key":"OPS-1"}}"#.to_vec();
    let (app, queue) = setup(4096);

    // when
    // Good token, and the previous version during rotation.
    for token in [TOKEN, TOKEN_OLD] {
        let req = Request::post(format!("/webhooks/jira?token={token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
        // then accepted
        assert_eq!(call(&app, req).await.0, StatusCode::ACCEPTED);
    }
    // Identical bodies without a delivery header dedup by body hash.
    assert_eq!(queue.len(), 1);

    // when
    // Good HMAC alone (require: any).
    let req = Request::post("/webhooks/jira")
        .header("content-type", "application/json")
        .header("x-hub-signature", sign(HMAC_KEY, &body))
        .header("x-atlassian-webhook-identifier", "h-1")
        .body(Body::from(body.clone()))
        .unwrap();
    // then accepted
    assert_eq!(call(&app, req).await.0, StatusCode::ACCEPTED);

    // when
    // Unknown endpoint and bad token: same body.
    let bad = call(
        &app,
        Request::post("/webhooks/jira?token=nope")
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    let unknown = call(
        &app,
        Request::post(format!("/webhooks/nope?token={TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    // then the same body, 404 and 401
    assert_eq!(bad.0, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(bad.2, unknown.2);
    assert!(!bad.2.to_string().contains("token"), "{}", bad.2);

    // when
    // Strict endpoint needs token AND signature.
    let req = Request::post(format!("/webhooks/jira-strict?token={TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    // then refused
    assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);

    // when
    // ServiceNow Basic.
    let snow = br#"{"event":"incident.updated","sys_id":"9d385017c611228701d22104cc95c371","number":"INC0010019","sys_updated_by":"admin"}"#;
    let req = Request::post("/webhooks/snow")
        .header("content-type", "application/json")
        .header("authorization", "Basic cmVsYXk6cHctOQ==") // relay:pw-9
        .body(Body::from(&snow[..]))
        .unwrap();
    // then accepted, grouped by sys_id
    assert_eq!(call(&app, req).await.0, StatusCode::ACCEPTED);
    let (_, msg) = queue.messages().pop().unwrap();
    let env = Envelope::decode(&msg.body).unwrap();
    assert_eq!(
        (env.event.as_str(), env.source_key.as_deref()),
        ("incident.updated", Some("INC0010019"))
    );
    assert_eq!(msg.group_id, "snow:9d385017c611228701d22104cc95c371");

    // when bodies are at and over the limit
    let before = queue.len();
    // 413 at and over the limit, by declared length and by actual length.
    let at_limit = {
        let mut b = br#"{"webhookEvent":"x","pad":""#.to_vec();
        b.resize(4096 - 2, b'a');
        b.extend_from_slice(b"\"}");
        b
    };
    // then 413 over it
    assert_eq!(at_limit.len(), 4096);
    assert_eq!(
        call(&app, jira(at_limit.clone())).await.0,
        StatusCode::ACCEPTED
    );
    let mut over = at_limit.clone();
    over.insert(10, b' ');
    assert_eq!(
        call(&app, jira(over.clone())).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let chunked = Request::post(format!("/webhooks/jira?token={TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(chunks(over)))
        .unwrap();
    assert_eq!(call(&app, chunked).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    // when
    // 400 for bodies that are not JSON objects.
    for bad_body in [&b"not json"[..], b"[1,2]", b"", b"{\"a\":", b"\xff\xfe{}"] {
        let (status, _, json) = call(&app, jira(bad_body.to_vec())).await;
        // then 400
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(bad_body)
        );
        assert_eq!(json["error"], "body must be a JSON object");
    }
    // when
    // 415 without or with another content type.
    let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
        .body(Body::from(body.clone()))
        .unwrap();
    // then 415
    assert_eq!(call(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
        .header("content-type", "text/plain")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        queue.len(),
        before + 1,
        "only the at-limit body was enqueued"
    );

    // when
    // Health needs no auth.
    let (status, _, json) = call(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    // then ok
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

/// A body delivered in chunks without Content-Length.
pub(crate) fn chunks(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    struct Chunks(Vec<u8>);
    impl futures_core::Stream for Chunks {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.0.is_empty() {
                return std::task::Poll::Ready(None);
            }
            let n = self.0.len().min(1000);
            let chunk: Vec<u8> = self.0.drain(..n).collect();
            std::task::Poll::Ready(Some(Ok(bytes::Bytes::from(chunk))))
        }
    }
    Chunks(bytes)
}
