//! The intake rows: each request sent in-process (`oneshot`) and over a
//! real socket, checked for its status, its log line and the queue.

use super::{
    good_store, nested, table, DownStore, Expect, Fate, Row, Stage, HMAC_KEY, TABLE, TOKEN,
    TOKEN_OLD,
};
use crate::logcap::Captured;
use axum::body::Body;
use http::Request;
use relay_tests::sign;
use serde_json::Value;
use shared::intake::router::{app, IngressState};
use shared::queue::MemoryQueue;
use shared::secrets::SecretStore;
use shared::support::clock::SystemClock;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The intake's body limit in these rows.
const LIMIT: usize = 4096;

/// One intake case: the request, sent `sends` times.
struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    chunked: bool,
    sends: usize,
    store_down: bool,
}

fn small_body() -> Vec<u8> {
    br#"{"webhookEvent":"jira:issue_created","issue_event_type_name":"issue_created","issue":{"id":"10001","key":"OPS-1","fields":{"summary":"Printer on fire"}},"user":{"accountId":"5b10a2844c20165700ede21g"}}"#.to_vec()
}

/// A JSON object of exactly `len` bytes.
fn body_of_len(len: usize) -> Vec<u8> {
    let mut b =
        br#"{"webhookEvent":"jira:issue_created","issue":{"id":"10002","key":"OPS-2"},"pad":""#
            .to_vec();
    assert!(b.len() + 2 <= len);
    b.resize(len - 2, b'a');
    b.extend_from_slice(b"\"}");
    b
}

fn ingress_case(id: &str) -> Case {
    let mut c = Case {
        method: "POST",
        path: format!("/webhooks/jira?token={TOKEN}"),
        headers: vec![("content-type", "application/json".to_owned())],
        body: small_body(),
        chunked: false,
        sends: 1,
        store_down: false,
    };
    let basic = |cred: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let snow_body =
        br#"{"event":"incident.updated","sys_id":"9d385017c611228701d22104cc95c371","number":"INC0010019"}"#
            .to_vec();
    match id {
        "baseline" => {}
        "unknown-endpoint" => c.path = format!("/webhooks/nope?token={TOKEN}"),
        "unknown-path" => c.path = format!("/hooks/jira?token={TOKEN}"),
        "wrong-method" => {
            c.method = "GET";
            c.body.clear();
        }
        "endpoint-not-utf8" => c.path = format!("/webhooks/%FF?token={TOKEN}"),
        "endpoint-name-huge" => c.path = format!("/webhooks/{}?token={TOKEN}", "e".repeat(5000)),
        "missing-token" => c.path = "/webhooks/jira".into(),
        "bad-token" => c.path = "/webhooks/jira?token=wrong-token".into(),
        "bad-token-first-of-two" => {
            c.path = format!("/webhooks/jira?token=wrong-token&token={TOKEN}")
        }
        "previous-token" => c.path = format!("/webhooks/jira?token={TOKEN_OLD}"),
        "missing-signature" => c.path = format!("/webhooks/jira-strict?token={TOKEN}"),
        "bad-signature" => {
            c.path = "/webhooks/jira".into();
            c.headers
                .push(("x-hub-signature", sign("another-key", &c.body)));
        }
        "signature-of-other-body" => {
            c.path = "/webhooks/jira".into();
            c.headers.push(("x-hub-signature", sign(HMAC_KEY, &c.body)));
            c.body = body_of_len(300);
        }
        "malformed-signature" => {
            c.path = "/webhooks/jira".into();
            c.headers.push(("x-hub-signature", "sha256=zz".into()));
        }
        "signature-other-algorithm" => {
            c.path = "/webhooks/jira".into();
            c.headers.push((
                "x-hub-signature",
                sign(HMAC_KEY, &c.body).replace("sha256=", "sha1="),
            ));
        }
        "missing-basic" => {
            c.path = "/webhooks/snow".into();
            c.body = snow_body;
        }
        "malformed-basic" => {
            c.path = "/webhooks/snow".into();
            c.body = snow_body;
            c.headers.push(("authorization", "Basic !!!".into()));
        }
        "bad-basic" => {
            c.path = "/webhooks/snow".into();
            c.body = snow_body;
            c.headers
                .push(("authorization", basic("snow.sender:wrong-password")));
        }
        "endpoint-secret-missing" => c.path = format!("/webhooks/ghost?token={TOKEN}"),
        "endpoint-secret-key-missing" => c.path = format!("/webhooks/keyless?token={TOKEN}"),
        "secret-store-down" => c.store_down = true,
        "replayed-delivery" => {
            c.headers
                .push(("x-atlassian-webhook-identifier", "delivery-77".into()));
            c.sends = 2;
        }
        "replayed-body-without-id" => c.sends = 2,
        "delivery-id-huge" => c
            .headers
            .push(("x-atlassian-webhook-identifier", "d".repeat(10_000))),
        "retry-header-not-a-number" => c
            .headers
            .push(("x-atlassian-webhook-retry", "soon".into())),
        "non-json" => c.body = b"{not json".to_vec(),
        "json-array" => c.body = b"[1,2]".to_vec(),
        "json-string" => c.body = b"\"issue\"".to_vec(),
        "json-null" => c.body = b"null".to_vec(),
        "two-objects" => c.body = b"{} {}".to_vec(),
        "utf8-bom" => c.body = [&b"\xEF\xBB\xBF"[..], &small_body()].concat(),
        "missing-content-type" => c.headers.clear(),
        "wrong-content-type" => c.headers = vec![("content-type", "text/plain".into())],
        "form-content-type" => {
            c.headers = vec![(
                "content-type",
                "application/x-www-form-urlencoded".into(),
            )]
        }
        "json-suffix-content-type" => {
            c.headers = vec![(
                "content-type",
                "application/vnd.atlassian+json; charset=UTF-8".into(),
            )]
        }
        "empty-body" => c.body.clear(),
        "whitespace-body" => c.body = b" \r\n\t\n ".to_vec(),
        "body-at-limit" => c.body = body_of_len(LIMIT),
        "body-over-limit" => c.body = body_of_len(LIMIT + 1),
        "body-over-limit-chunked" => {
            c.body = body_of_len(LIMIT + 1);
            c.chunked = true;
        }
        "nested-too-deep" => c.body = nested(shared::intake::envelope::MAX_DEPTH + 1).into_bytes(),
        "nested-at-limit" => c.body = nested(shared::intake::envelope::MAX_DEPTH).into_bytes(),
        "huge-string" => c.body = body_of_len(LIMIT),
        "invalid-utf8" => {
            c.body = br#"{"webhookEvent":"jira:issue_created","x":"caf"#.to_vec();
            c.body.extend_from_slice(b"\xE9\"}");
        }
        "lone-surrogate-in-head" => {
            c.body = br#"{"webhookEvent":"\ud800","issue":{"id":"1","key":"A-1"}}"#.to_vec()
        }
        "lone-surrogate-in-payload" => {
            c.body = br#"{"webhookEvent":"jira:issue_created","issue":{"id":"1","key":"A-1","fields":{"summary":"\ud800"}}}"#.to_vec()
        }
        "number-out-of-range" => {
            c.body = br#"{"webhookEvent":"jira:issue_created","issue":{"id":"1","key":"A-1","fields":{"n":1e999}}}"#.to_vec()
        }
        "head-fields-wrong-types" => {
            c.body = br#"{"webhookEvent":5,"timestamp":"2019-1-30 15:51:34,870","issue":"OPS-3","user":[1,2],"comment":{"issueId":10014,"author":"x"}}"#.to_vec()
        }
        other => panic!("{TABLE}: ingress row `{other}` has no case in bad_input/ingress.rs"),
    }
    c
}

fn ingress_state(queue: Arc<MemoryQueue>, store_down: bool) -> IngressState {
    let secrets: Arc<dyn SecretStore> = if store_down {
        Arc::new(DownStore)
    } else {
        Arc::new(good_store())
    };
    IngressState {
        config: Arc::new(crate::config("relay/webhook", LIMIT)),
        secrets,
        queue,
        clock: Arc::new(SystemClock),
    }
}

/// What one send came back with.
struct Answer {
    status: u16,
    retry_after: bool,
    body: Vec<u8>,
}

async fn send_oneshot(router: &axum::Router, c: &Case) -> Result<Answer, String> {
    let mut req = Request::builder().method(c.method).uri(&c.path);
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let body = if c.chunked {
        Body::from_stream(crate::router::chunks(c.body.clone()))
    } else {
        Body::from(c.body.clone())
    };
    let req = req.body(body).unwrap();
    let router = router.clone();
    // In its own task, so a panic is seen as one (not as a failed test).
    let res = tokio::spawn(async move { router.oneshot(req).await })
        .await
        .map_err(|e| format!("the router panicked: {e}"))?
        .expect("the router never errors");
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key("retry-after");
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

async fn send_socket(base: &str, c: &Case) -> Result<Answer, String> {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{base}{}", c.path));
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let req = if c.chunked {
        req.body(reqwest::Body::wrap_stream(crate::router::chunks(
            c.body.clone(),
        )))
    } else {
        req.body(c.body.clone())
    };
    let res = req
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("no answer (did the handler panic?): {e}"))?;
    Ok(Answer {
        status: res.status().as_u16(),
        retry_after: res.headers().contains_key("retry-after"),
        body: res.bytes().await.map_err(|e| e.to_string())?.to_vec(),
    })
}

/// Checks one answer and the queue against the row; returns the failures.
fn check_ingress(
    row: &Row,
    answers: &[Answer],
    queue: &MemoryQueue,
    cap: &Captured,
) -> Vec<String> {
    let mut bad = Vec::new();
    let Expect::Status(expected) = row.expect else {
        unreachable!()
    };
    let last = answers.last().unwrap();
    for a in answers {
        if a.status != expected {
            bad.push(format!("status {} (expected {expected})", a.status));
        }
    }
    if last.status >= 400 {
        let fixed = serde_json::from_slice::<Value>(&last.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        if fixed.is_none() {
            bad.push(format!(
                "the error body is not the fixed JSON message: {:?}",
                String::from_utf8_lossy(&last.body)
            ));
        }
    }
    if last.status == 503 && !last.retry_after {
        bad.push("503 without Retry-After".into());
    }
    let (field, value) = row.logged();
    if !cap.has(field, value) {
        bad.push(format!("no log line with {field}={value}…"));
    }
    let queued = queue.len();
    match row.fate {
        Fate::Queued if queued != 1 => bad.push(format!("{queued} messages queued, expected 1")),
        Fate::Refused if queued != 0 => bad.push(format!("{queued} messages queued, expected 0")),
        _ => {}
    }
    bad
}

#[tokio::test]
async fn ingress_rows() {
    // given the table's ingress rows and a log capture
    let rows: Vec<Row> = table()
        .into_iter()
        .filter(|r| r.stage == Stage::Ingress)
        .collect();
    assert!(rows.len() >= 40, "{} ingress rows", rows.len());
    let (cap, _guard) = Captured::start("info");
    let mut failures = Vec::new();
    for row in &rows {
        let case = ingress_case(&row.id);
        // when each row is sent in-process and over a socket
        for mode in ["oneshot", "socket"] {
            cap.clear();
            let queue = Arc::new(MemoryQueue::new());
            let router = app(ingress_state(queue.clone(), case.store_down));
            let mut answers = Vec::new();
            let mut server = None;
            let base = if mode == "socket" {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let base = format!("http://{}", listener.local_addr().unwrap());
                let r = router.clone();
                server = Some(tokio::spawn(async move {
                    axum::serve(listener, r).await.unwrap()
                }));
                base
            } else {
                String::new()
            };
            for _ in 0..case.sends {
                let got = if mode == "socket" {
                    send_socket(&base, &case).await
                } else {
                    send_oneshot(&router, &case).await
                };
                match got {
                    Ok(a) => answers.push(a),
                    Err(e) => {
                        failures.push(format!("{} ({mode}): {e}", row.id));
                        break;
                    }
                }
            }
            if let Some(s) = server {
                s.abort();
            }
            // then its answers, log line and queue match the row
            if answers.len() == case.sends {
                for f in check_ingress(row, &answers, &queue, &cap) {
                    failures.push(format!("{} ({mode}): {f}", row.id));
                }
            }
        }
    }
    // and no row failed
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
