//! The ingress over a real socket, enqueuing into moto's SQS FIFO queue with
//! secrets read from moto's Secrets Manager; messages are read back with the
//! real `aws-sdk-sqs` client.

use crate::{config, HMAC_KEY, TOKEN};
use relay_tests::{aws_endpoint, create_fifo_queue, dead_port, drain, sdk_config, sign, unique};
use shared::intake::envelope::Envelope;
use shared::intake::router::{app, IngressState};
use shared::queue::SqsQueue;
use shared::secrets::AwsSecretStore;
use shared::support::clock::SystemClock;
use std::sync::Arc;

struct Bed {
    base: String,
    sqs: aws_sdk_sqs::Client,
    sm: aws_sdk_secretsmanager::Client,
    queue_url: String,
    secret: String,
    http: reqwest::Client,
}

fn secret_json(token: &str) -> String {
    serde_json::json!({"token": token, "hmac": HMAC_KEY, "sn_user": "relay", "sn_pass": "pw-9"})
        .to_string()
}

/// Starts the router on 127.0.0.1 with SQS and Secrets Manager clients aimed at
/// `queue_endpoint` / `secrets_endpoint` (moto, or a dead port).
async fn bed_with(queue_endpoint: Option<String>, secrets_endpoint: Option<String>) -> Option<Bed> {
    let moto = aws_endpoint()?;
    let conf = sdk_config(&moto).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let queue_url = create_fifo_queue(&sqs, &unique("ingress")).await;
    let secret = unique("relay/webhook");
    sm.create_secret()
        .name(&secret)
        .secret_string(secret_json(TOKEN))
        .send()
        .await
        .expect("create secret");

    let queue_conf = sdk_config(queue_endpoint.as_deref().unwrap_or(&moto)).await;
    let secrets_conf = sdk_config(secrets_endpoint.as_deref().unwrap_or(&moto)).await;
    let state = IngressState {
        config: Arc::new(config(&secret, 4096)),
        secrets: Arc::new(AwsSecretStore::from_conf(&secrets_conf)),
        queue: Arc::new(SqsQueue::from_conf(&queue_conf, queue_url.clone())),
        clock: Arc::new(SystemClock),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    Some(Bed {
        base,
        sqs,
        sm,
        queue_url,
        secret,
        http: reqwest::Client::new(),
    })
}

async fn moto_bed() -> Option<Bed> {
    bed_with(None, None).await
}

impl Bed {
    /// Puts a new version of the webhook secret; the old one becomes AWSPREVIOUS.
    async fn rotate(&self, token: &str) {
        self.sm
            .put_secret_value()
            .secret_id(&self.secret)
            .secret_string(secret_json(token))
            .send()
            .await
            .unwrap();
    }

    async fn post(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.expect("ingress answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }
}

const BODY: &[u8] = br#"{"timestamp":1566935004475,"webhookEvent":"jira:issue_updated","issue_event_type_name":"issue_generic","user":{"accountId":"5cedcb43"},"issue":{"id":"10509","key":"KT-22"}}"#;

#[tokio::test]
async fn accepted_webhooks_land_in_the_fifo_queue() {
    // given the router over a socket, enqueuing into moto
    let Some(bed) = moto_bed().await else { return };
    let token = format!("/webhooks/jira?token={TOKEN}");
    let id = |s: &str| ("x-atlassian-webhook-identifier", s.to_owned());

    // when webhooks come with a token, an HMAC, both, and as a retry
    // then each is accepted
    assert_eq!(
        bed.post(&token, BODY, &[id("d-token")]).await,
        (202, serde_json::json!({"id": "d-token"}))
    );
    assert_eq!(
        bed.post(
            "/webhooks/jira",
            BODY,
            &[id("d-hmac"), ("x-hub-signature", sign(HMAC_KEY, BODY))]
        )
        .await
        .0,
        202
    );
    let strict = format!("/webhooks/jira-strict?token={TOKEN}");
    assert_eq!(
        bed.post(
            &strict,
            BODY,
            &[id("d-both"), ("x-hub-signature", sign(HMAC_KEY, BODY))]
        )
        .await
        .0,
        202
    );
    // Jira retries the same delivery: accepted again, enqueued once.
    assert_eq!(bed.post(&token, BODY, &[id("d-retry")]).await.0, 202);
    assert_eq!(
        bed.post(
            &token,
            BODY,
            &[id("d-retry"), ("x-atlassian-webhook-retry", "1".into())]
        )
        .await
        .0,
        202
    );

    // and the queue holds each delivery once, enveloped
    let msgs = drain(&bed.sqs, &bed.queue_url).await;
    let mut dedup: Vec<_> = msgs.iter().map(|m| m.dedup_id.clone()).collect();
    dedup.sort();
    assert_eq!(
        dedup,
        [
            "jira-strict:d-both",
            "jira:d-hmac",
            "jira:d-retry",
            "jira:d-token"
        ]
    );
    for m in &msgs {
        let env = Envelope::decode(&m.body).unwrap();
        assert_eq!(m.group_id, format!("{}:10509", env.endpoint));
        assert_eq!(m.attributes["event"], "jira:issue_updated");
        assert_eq!(m.attributes["endpoint"], env.endpoint);
        assert_eq!(env.source_key.as_deref(), Some("KT-22"));
        assert_eq!(env.event_type.as_deref(), Some("issue_generic"));
        assert_eq!(
            env.actor.as_ref().unwrap().account_id.as_deref(),
            Some("5cedcb43")
        );
        assert_eq!(env.payload.get().as_bytes(), BODY);
        assert_eq!(env.retry, 0, "the first delivery is the one kept");
    }
}

#[tokio::test]
async fn rotation_accepts_previous_version_and_refuses_older() {
    // given the webhook secret rotated to a second version
    let Some(bed) = moto_bed().await else { return };
    let path = |t: &str| format!("/webhooks/jira?token={t}");
    bed.rotate("tok-v2").await;
    // when the previous and the current token are used
    // then both are accepted
    assert_eq!(
        bed.post(&path(TOKEN), BODY, &[]).await.0,
        202,
        "previous version"
    );
    assert_eq!(
        bed.post(&path("tok-v2"), b"{\"n\":2}", &[]).await.0,
        202,
        "current version"
    );
    // when it is rotated again
    bed.rotate("tok-v3").await;
    // then two versions back is refused
    assert_eq!(
        bed.post(&path(TOKEN), b"{\"n\":3}", &[]).await.0,
        401,
        "two versions back"
    );
    assert_eq!(bed.post(&path("tok-v2"), b"{\"n\":4}", &[]).await.0, 202);
    assert_eq!(bed.post(&path("tok-v3"), b"{\"n\":5}", &[]).await.0, 202);
    assert_eq!(drain(&bed.sqs, &bed.queue_url).await.len(), 4);
}

/// name, path, body, headers, expected status
type Case = (
    &'static str,
    String,
    Vec<u8>,
    Vec<(&'static str, String)>,
    u16,
);

#[tokio::test]
async fn refusals_enqueue_nothing() {
    // given the router over a socket
    let Some(bed) = moto_bed().await else { return };
    let good = format!("/webhooks/jira?token={TOKEN}");
    let cases: Vec<Case> = vec![
        (
            "bad token",
            "/webhooks/jira?token=wrong".into(),
            BODY.to_vec(),
            vec![],
            401,
        ),
        (
            "missing token",
            "/webhooks/jira".into(),
            BODY.to_vec(),
            vec![],
            401,
        ),
        (
            "bad signature",
            "/webhooks/jira".into(),
            BODY.to_vec(),
            vec![("x-hub-signature", sign("other-key", BODY))],
            401,
        ),
        (
            "malformed signature",
            "/webhooks/jira".into(),
            BODY.to_vec(),
            vec![("x-hub-signature", "sha256=zz".into())],
            401,
        ),
        (
            "unknown endpoint",
            format!("/webhooks/nope?token={TOKEN}"),
            BODY.to_vec(),
            vec![],
            404,
        ),
        (
            "oversized",
            good.clone(),
            [b"{\"p\":\"".as_slice(), &vec![b'a'; 5000], b"\"}"].concat(),
            vec![],
            413,
        ),
        ("non-JSON", good.clone(), b"hello".to_vec(), vec![], 400),
        ("array", good.clone(), b"[{}]".to_vec(), vec![], 400),
    ];
    // when each refused request is sent
    for (name, path, body, headers, want) in cases {
        // then its status
        assert_eq!(bed.post(&path, &body, &headers).await.0, want, "{name}");
    }
    // when the content type is missing
    let res = bed
        .http
        .post(format!("{}{good}", bed.base))
        .body(BODY.to_vec())
        .send()
        .await
        .unwrap();
    // then 415
    assert_eq!(res.status().as_u16(), 415, "missing content type");
    // and nothing was enqueued
    assert!(drain(&bed.sqs, &bed.queue_url).await.is_empty());
}

#[tokio::test]
async fn queue_down_answers_503() {
    // given an unreachable queue
    let Some(bed) = bed_with(Some(format!("http://127.0.0.1:{}", dead_port())), None).await else {
        return;
    };
    // when a webhook comes
    let (status, json) = bed
        .post(&format!("/webhooks/jira?token={TOKEN}"), BODY, &[])
        .await;
    // then 503, retry later
    assert_eq!(status, 503);
    assert_eq!(json["error"], "temporarily unavailable, retry later");
}

#[tokio::test]
async fn secrets_down_or_missing_answers_503() {
    // given an unreachable secret store
    let Some(bed) = bed_with(None, Some(format!("http://127.0.0.1:{}", dead_port()))).await else {
        return;
    };
    // when a webhook comes
    // then 503, nothing enqueued
    assert_eq!(
        bed.post(&format!("/webhooks/jira?token={TOKEN}"), BODY, &[])
            .await
            .0,
        503
    );
    assert!(drain(&bed.sqs, &bed.queue_url).await.is_empty());

    // given a deleted secret
    let Some(bed2) = moto_bed().await else { return };
    bed2.sm
        .delete_secret()
        .secret_id(&bed2.secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    // when a webhook comes
    // then 503
    assert_eq!(
        bed2.post(&format!("/webhooks/jira?token={TOKEN}"), BODY, &[])
            .await
            .0,
        503
    );
}
