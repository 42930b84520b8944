//! The ingress path: raw body + headers → the real router → `Envelope` on the
//! queue, and the worker's reading of a queue message.
//!
//! Input layout (the seed script writes seeds in it):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | flags: bits 0–1 endpoint (`jira` token, `signed` HMAC, `snow` Basic, `bearer`); bit 2 credentials from the input instead of the right ones; bits 3–4 content type (`application/json`, `…; charset=UTF-8`, `application/vnd.x+json`, `text/plain`); bit 5 the router with a 1 KiB body limit; bit 6 an unknown endpoint; bit 7 send `Content-Length` |
//! | 1 | length `n` of the header block |
//! | 2 .. 2+n | header block: `webhook id \n retry \n credential` (each optional) |
//! | rest | the body |
//!
//! Checks, beyond "no panic": the status is exactly the one the contract
//! gives for the request (413 > 404 > 401 > 415 > 400 > 202, computed here
//! independently: a body is accepted if it is a JSON object that
//! `serde_json::Value` reads, nested at most `MAX_DEPTH` levels); a 202 leaves exactly one message whose envelope decodes,
//! re-encodes to the same text, carries the body unchanged (trimmed), the
//! endpoint, the delivery id (header, trimmed and clipped, or the body's
//! SHA-256) and the retry count; its SQS group and dedup ids are valid; every
//! refusal leaves the queue empty. Separately, the body read as a queue
//! message: if it decodes, `decode(encode(e))` re-encodes identically.
#![no_main]

use axum::body::Body;
use hmac::{Hmac, Mac};
use http::{HeaderValue, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use shared::config::{Config, SourceKind};
use shared::intake::envelope::{read_meta, Envelope, MAX_DEPTH};
use shared::intake::router::{app, IngressState};
use shared::queue::MemoryQueue;
use shared::secrets::LocalSecretStore;
use shared::support::clock::FixedClock;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token-3b9f0c2a7d";
const HMAC_KEY: &str = "fuzz-hmac-key-51e8a4";
const SN_USER: &str = "relay-fuzz";
const SN_PASS: &str = "fuzz-pass-0c77e2";
const SMALL_LIMIT: usize = 1024;
const LARGE_LIMIT: usize = 65_536;
/// What the envelope keeps of a header string (`envelope::MAX_FIELD`).
const MAX_FIELD: usize = 256;

struct Harness {
    rt: tokio::runtime::Runtime,
    small: (axum::Router, Arc<MemoryQueue>),
    large: (axum::Router, Arc<MemoryQueue>),
    received_at: jiff::Timestamp,
}

fn config(limit: usize) -> Config {
    let yaml = format!(
        "version: 1
limits:
  max_body_bytes: {limit}
endpoints:
  - name: jira
    kind: jira
    stage: prod
    auth:
      token: fuzz/webhook#token
  - name: signed
    kind: jira
    stage: test
    auth:
      hmac: fuzz/webhook#hmac
  - name: snow
    kind: servicenow
    stage: prod
    auth:
      basic:
        username: fuzz/snow#user
        password: fuzz/snow#pass
  - name: bearer
    kind: jira
    stage: prod
    auth:
      bearer: fuzz/webhook#token
"
    );
    Config::from_yaml(&yaml, "fuzz.yaml", |_| None).expect("the harness config is valid")
}

fn router(limit: usize, received_at: jiff::Timestamp) -> (axum::Router, Arc<MemoryQueue>) {
    let secrets = LocalSecretStore::with_env([
        (
            "RELAY_SECRET_FUZZ_WEBHOOK".to_owned(),
            serde_json::json!({ "token": TOKEN, "hmac": HMAC_KEY }).to_string(),
        ),
        (
            "RELAY_SECRET_FUZZ_SNOW".to_owned(),
            serde_json::json!({ "user": SN_USER, "pass": SN_PASS }).to_string(),
        ),
    ]);
    let queue = Arc::new(MemoryQueue::new());
    let router = app(IngressState {
        config: Arc::new(config(limit)),
        secrets: Arc::new(secrets),
        queue: queue.clone(),
        clock: Arc::new(FixedClock::new(received_at)),
    });
    (router, queue)
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let received_at = jiff::Timestamp::from_second(1_764_000_000).unwrap();
        Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            small: router(SMALL_LIMIT, received_at),
            large: router(LARGE_LIMIT, received_at),
            received_at,
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Token,
    Hmac,
    Basic,
    Bearer,
}

/// Percent-encodes everything but unreserved characters.
fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn basic(user: &str, pass: &str) -> String {
    // Standard base64, written out here so the harness does not share the
    // relay's decoder.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{pass}");
    let mut out = String::from("Basic ");
    for chunk in raw.as_bytes().chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A header value as the relay will see it through `to_str()`, if it can be
/// sent at all.
fn header(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    let h = harness();

    // Envelope decoding as the worker does it, on the raw input.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(e) = Envelope::decode(text) {
            let once = e.encode();
            let twice = Envelope::decode(&once)
                .expect("an encoded envelope decodes")
                .encode();
            assert_eq!(once, twice, "decode(encode(e)) changed the envelope");
        }
    }

    if data.len() < 2 {
        return;
    }
    let flags = data[0];
    let n = usize::from(data[1]).min(data.len() - 2);
    let block = &data[2..2 + n];
    let body = &data[2 + n..];
    let mut fields = block.splitn(3, |b| *b == b'\n');
    let webhook_id = fields.next().filter(|f| !f.is_empty());
    let retry = fields.next().filter(|f| !f.is_empty());
    let cred = fields.next().unwrap_or_default();

    let method =
        [Method::Token, Method::Hmac, Method::Basic, Method::Bearer][usize::from(flags & 3)];
    let fuzzed_cred = flags & 4 != 0;
    let content_type = [
        "application/json",
        "application/json; charset=UTF-8",
        "application/vnd.x+json",
        "text/plain",
    ][usize::from(flags >> 3 & 3)];
    let (router, queue, limit) = if flags & 32 != 0 {
        (&h.small.0, &h.small.1, SMALL_LIMIT)
    } else {
        (&h.large.0, &h.large.1, LARGE_LIMIT)
    };
    let unknown = flags & 64 != 0;
    let declare_length = flags & 128 != 0;

    let (name, kind) = match method {
        Method::Token => ("jira", SourceKind::Jira),
        Method::Hmac => ("signed", SourceKind::Jira),
        Method::Basic => ("snow", SourceKind::Servicenow),
        Method::Bearer => ("bearer", SourceKind::Jira),
    };
    let path_name = if unknown {
        format!("x{}", hex::encode(cred))
    } else {
        name.to_owned()
    };

    let mut creds_valid = true;
    let mut uri = format!("/webhooks/{path_name}");
    let mut req = Request::post("/");
    match method {
        Method::Token => {
            let token = if fuzzed_cred {
                creds_valid = cred == TOKEN.as_bytes();
                cred
            } else {
                TOKEN.as_bytes()
            };
            uri.push_str("?token=");
            uri.push_str(&pct(token));
        }
        Method::Hmac => {
            let value = if fuzzed_cred {
                header(cred)
            } else {
                header(signature(body).as_bytes())
            };
            if let Some(v) = value {
                creds_valid = !fuzzed_cred || signature_matches(&v, body);
                req = req.header("x-hub-signature", v);
            } else {
                creds_valid = false;
            }
        }
        Method::Basic | Method::Bearer => {
            let right = if method == Method::Basic {
                basic(SN_USER, SN_PASS)
            } else {
                format!("Bearer {TOKEN}")
            };
            let value = if fuzzed_cred {
                header(cred)
            } else {
                header(right.as_bytes())
            };
            if let Some(v) = value {
                // The relay trims what follows the scheme and compares
                // schemes without case; only the exact right value (up to
                // that) passes.
                creds_valid = !fuzzed_cred || equivalent_authorization(&v, &right, method);
                req = req.header(http::header::AUTHORIZATION, v);
            } else {
                creds_valid = false;
            }
        }
    }
    req = req
        .uri(uri)
        .header(http::header::CONTENT_TYPE, content_type);
    let mut id_text: Option<&str> = None;
    if let Some(v) = webhook_id.and_then(header) {
        id_text = webhook_id.and_then(|b| std::str::from_utf8(b).ok());
        if v.to_str().is_err() {
            id_text = None;
        }
        req = req.header("x-atlassian-webhook-identifier", v);
    }
    let mut retry_value = 0u32;
    if let Some(v) = retry.and_then(header) {
        retry_value = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        req = req.header("x-atlassian-webhook-retry", v);
    }
    if declare_length {
        req = req.header(http::header::CONTENT_LENGTH, body.len());
    }
    let req = req
        .body(Body::from(bytes::Bytes::copy_from_slice(body)))
        .expect("a request from valid parts");

    // The contract, computed independently of the handler.
    let text = std::str::from_utf8(body).ok();
    let object = text.is_some_and(|t| {
        matches!(serde_json::from_str::<serde_json::Value>(t), Ok(v @ serde_json::Value::Object(_)) if depth(&v) <= MAX_DEPTH)
            // Duplicate keys among the fields the envelope reads are refused
            // (serde's derived reader); the rest of the body may repeat keys.
            && read_meta(kind, t).is_ok()
    });
    let json_type = content_type != "text/plain";
    let expected = if body.len() > limit {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if unknown {
        StatusCode::NOT_FOUND
    } else if !creds_valid {
        StatusCode::UNAUTHORIZED
    } else if !json_type {
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    } else if !object {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::ACCEPTED
    };

    queue.clear();
    let res =
        h.rt.block_on(router.clone().oneshot(req))
            .expect("the router is infallible");
    let status = res.status();
    let res_body =
        h.rt.block_on(axum::body::to_bytes(res.into_body(), 1 << 16))
            .expect("the response body is readable");
    assert_eq!(
        status,
        expected,
        "unexpected status; response body {:?}",
        String::from_utf8_lossy(&res_body)
    );
    let messages = queue.messages();
    if status != StatusCode::ACCEPTED {
        assert!(messages.is_empty(), "a refused webhook reached the queue");
        let answer: serde_json::Value =
            serde_json::from_slice(&res_body).expect("a refusal answers JSON");
        assert!(
            answer["error"].is_string(),
            "refusal without a fixed message"
        );
        return;
    }

    assert_eq!(messages.len(), 1, "one webhook, one message");
    let m = &messages[0].1;
    let e = Envelope::decode(&m.body).expect("the ingress enqueues a decodable envelope");
    assert_eq!(e.encode(), m.body, "decode(encode(e)) changed the envelope");
    assert_eq!(e.endpoint, name);
    assert_eq!(e.source, kind);
    assert_eq!(e.received_at, h.received_at);
    assert_eq!(e.retry, retry_value);
    assert_eq!(
        e.payload.get(),
        text.unwrap().trim(),
        "payload not carried unchanged"
    );
    let expected_id = match id_text.map(str::trim) {
        Some(id) if !id.is_empty() => clip(id).to_owned(),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    };
    assert_eq!(e.delivery_id, expected_id);
    let answer: serde_json::Value = serde_json::from_slice(&res_body).unwrap();
    assert_eq!(answer["id"].as_str(), Some(expected_id.as_str()));
    for id in [&m.group_id, &m.dedup_id] {
        assert!(
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()),
            "not a valid SQS id: {id:?}"
        );
    }
    let meta = read_meta(kind, text.unwrap()).unwrap();
    assert_eq!(e.event, meta.event);
    assert_eq!(e.source_id, meta.source_id);
    assert!(e.event.len() <= MAX_FIELD, "event name not clipped");
});

fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// True if `offered` passes where `right` is the exact right Authorization
/// value: same scheme (any case), then the same credentials after trimming.
fn equivalent_authorization(offered: &HeaderValue, right: &str, method: Method) -> bool {
    let Ok(offered) = offered.to_str() else {
        return false;
    };
    let Some((scheme, rest)) = offered.split_once(' ') else {
        return false;
    };
    let (want_scheme, want_rest) = right.split_once(' ').unwrap();
    if !scheme.eq_ignore_ascii_case(want_scheme) {
        return false;
    }
    match method {
        Method::Bearer => rest.trim() == want_rest,
        // Any base64 text that decodes to the right `user:pass` passes; the
        // fuzzer cannot reach it without the secret, so compare literally.
        _ => rest.trim() == want_rest,
    }
}

/// Levels of objects and arrays in a value (a scalar has none).
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// True if an `X-Hub-Signature` value carries the body's right MAC
/// (`sha256=` then hex in either case, surrounding blanks ignored).
fn signature_matches(v: &HeaderValue, body: &[u8]) -> bool {
    let want = signature(body);
    v.to_str()
        .ok()
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|mac| Some(mac) == hex::decode(&want["sha256=".len()..]).ok())
}
