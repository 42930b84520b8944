//! `relay serve`'s public listener facing strangers: HTTPS with a
//! certificate the test makes (renewed while it runs), plain HTTP on the TLS
//! port refused or redirected, a flood from one address limited while
//! another is served, `X-Forwarded-For` believed only from a trusted proxy,
//! a body that does not arrive in time, a connection that never sends a
//! request closed uncounted, and the refusals on `/metrics` and the console.
//! The connection cap and the header timeout are in `serve`.
//! Everything on 127.0.0.x, bounded in count and time.

use crate::common::{drained, free_port, ConsoleSession, Serve};
use crate::console::{scrape, until, write_setup, CONSOLE_PASSWORD};
use crate::serve::closed_by;
use sandbox::servicenow_server::ServiceNowServer;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "console-test-token";

fn created(n: usize) -> Value {
    json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "712020:edge-user", "displayName": "Edge User"},
        "issue": {"id": format!("{}", 70000 + n), "key": format!("EDGE-{n}"),
            "fields": {"summary": format!("edge issue {n}"), "priority": {"name": "Medium"}}}})
}

/// Posts webhook `n`; the status and the `Retry-After` (0: none).
async fn post(client: &reqwest::Client, base: &str, n: usize) -> (u16, u64) {
    match client
        .post(format!("{base}/webhooks/jira?token={TOKEN}"))
        .header("content-type", "application/json")
        .header("x-atlassian-webhook-identifier", format!("edge-{n}"))
        .body(created(n).to_string())
        .send()
        .await
    {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
        Err(_) => (0, 0),
    }
}

/// A self-signed certificate for `localhost` and its key, as PEM.
fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

/// A client that trusts only `cert_pem` (and offers HTTP/2 and HTTP/1.1).
fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Replaces a file the way certbot and lego do: a new file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_test_certificate_renewed_without_a_restart() {
    let sn = ServiceNowServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &sn, false);
    let (cert_a, key_a) = certificate();
    let (cert_path, key_path) = (
        dir.path().join("fullchain.pem"),
        dir.path().join("privkey.pem"),
    );
    replace(&cert_path, &cert_a);
    replace(&key_path, &key_a);
    let port = free_port();
    let tls_args = [
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--tls-reload-secs",
        "1",
        "--console",
        "off",
    ];
    let mut serve = Serve::spawn_with(dir.path(), port, &tls_args);
    serve.base = format!("https://localhost:{port}");
    serve.ready().await;
    let base = serve.base.clone();

    // a webhook over HTTPS, with a client that trusts only the test's
    // certificate, is accepted — over HTTP/2 when the client offers it
    let a = trusting(&cert_a);
    assert_eq!(post(&a, &base, 1).await.0, 202);
    let h = a.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(h.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_a.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let h = h1.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(
        (h.status().as_u16(), h.version()),
        (200, reqwest::Version::HTTP_11)
    );

    // plain HTTP to the TLS port is refused, saying why
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .post(format!(
            "http://localhost:{port}/webhooks/jira?token={TOKEN}"
        ))
        .header("content-type", "application/json")
        .body(created(2).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("https://"));

    // a half-written renewal (a new certificate, the old key) does not load:
    // the previous certificate stays
    let (cert_b, key_b) = certificate();
    replace(&cert_path, &cert_b);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // (a new client each time: an HTTP/2 connection would be reused)
    assert_eq!(
        post(&trusting(&cert_a), &base, 3).await.0,
        202,
        "the old certificate is gone"
    );
    // the renewal completes: new connections get the new certificate, no restart
    replace(&key_path, &key_b);
    let start = Instant::now();
    while post(&trusting(&cert_b), &base, 4).await.0 != 202 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the renewed certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        post(&trusting(&cert_a), &base, 5).await.0,
        0,
        "the old certificate is still served to new connections"
    );
    // a connection opened before the renewal keeps working
    assert_eq!(post(&a, &base, 7).await.0, 202);
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "relay serve restarted"
    );
    drained(&dir.path().join("data"), Duration::from_secs(30)).await;
    serve.stop().await;
    let incidents = sn.records("incident");
    for n in [1, 3, 4, 7] {
        assert!(
            incidents
                .iter()
                .any(|r| r.get("short_description").and_then(Value::as_str)
                    == Some(&format!("[EDGE-{n}] edge issue {n}"))),
            "issue {n} accepted over HTTPS but not applied"
        );
    }

    // by flag, plain HTTP is redirected to https:// instead
    let mut args = tls_args.to_vec();
    args.push("--redirect-http");
    let mut serve = Serve::spawn_with(dir.path(), port, &args);
    serve.base = format!("https://localhost:{port}");
    serve.ready().await;
    let r = plain
        .post(format!(
            "http://localhost:{port}/webhooks/jira?token={TOKEN}"
        ))
        .header("content-type", "application/json")
        .body(created(6).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://localhost:{port}/webhooks/jira?token={TOKEN}").as_str()
    );
    serve.stop().await;
}

/// A client whose connections come from `from` (127.0.0.x: another address).
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `name{…reason="…"…} value` of a Prometheus scrape.
fn rejected(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("jira_relay_rejected_total{") || l.contains("rejected_total{"))
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_limited_while_another_is_served() {
    const FLOOD: usize = 300;
    let sn = ServiceNowServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &sn, true);
    let port = free_port();
    let console_port = free_port();
    let console = format!("127.0.0.1:{console_port}");
    let mut serve = Serve::spawn_with(
        dir.path(),
        port,
        &[
            "--workers",
            "2",
            "--console",
            &console,
            // one token a second after a burst of 40: a flood stays refused
            // for the whole test
            "--client-rate",
            "1",
            "--client-burst",
            "40",
            "--trusted-proxy",
            "127.0.0.4",
            "--body-timeout-secs",
            "1",
        ],
    );
    serve.ready().await;
    let base = serve.base.clone();

    // when 127.0.0.2 floods the webhook URL, 32 requests at a time
    let flooder = from("127.0.0.2");
    let (accepted, limited) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let accepted_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..FLOOD {
        let (c, base, gate) = (flooder.clone(), base.clone(), gate.clone());
        let (accepted, limited, ids) = (accepted.clone(), limited.clone(), accepted_ids.clone());
        flood.spawn(async move {
            let _p = gate.acquire_owned().await.unwrap();
            match post(&c, &base, n).await {
                (202, _) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    ids.lock().unwrap().push(n);
                }
                (429, retry_after) => {
                    assert!(retry_after >= 1, "a 429 without Retry-After");
                    limited.fetch_add(1, Ordering::Relaxed);
                }
                other => panic!("flood request {n}: {other:?}"),
            }
        });
    }
    // then 127.0.0.3 is served meanwhile, every time
    let other = from("127.0.0.3");
    for n in 0..20 {
        assert_eq!(
            post(&other, &base, 1000 + n).await,
            (202, 0),
            "the other address was refused"
        );
    }
    while let Some(r) = flood.join_next().await {
        r.unwrap();
    }
    let (accepted, limited) = (
        accepted.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
    );
    assert_eq!(accepted + limited, FLOOD);
    assert!(
        (40..=60).contains(&accepted),
        "{accepted} of the flood accepted (burst 40, 1/s)"
    );

    // behind a trusted proxy, X-Forwarded-For names the client; from anyone
    // else it is ignored
    let proxy = from("127.0.0.4");
    for n in 0..10 {
        let r = proxy
            .post(format!("{base}/webhooks/jira?token={TOKEN}"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", "198.51.100.8")
            .body(created(2000 + n).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "a proxied client was refused");
    }
    let mut spoofed_refused = 0;
    for n in 0..10 {
        let r = flooder
            .post(format!("{base}/webhooks/jira?token={TOKEN}"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("198.51.100.{}", 20 + n))
            .body(created(3000 + n).to_string())
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            429 => spoofed_refused += 1,
            202 => accepted_ids.lock().unwrap().push(3000 + n),
            s => panic!("{s}"),
        }
    }
    assert!(
        spoofed_refused >= 7,
        "a stranger's X-Forwarded-For chose its bucket"
    );

    // a body that stops arriving is answered 408 after the body timeout
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(format!("POST /webhooks/jira?token={TOKEN} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"webhook").as_bytes()).await.unwrap();
        let t = Instant::now();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no answer to a stalled body within 5 s")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
        assert!(t.elapsed() >= Duration::from_millis(900));
    }

    // nothing accepted is lost: every 202 became an incident, nothing else did
    drained(&dir.path().join("data"), Duration::from_secs(60)).await;
    let mut expected: Vec<String> = accepted_ids
        .lock()
        .unwrap()
        .iter()
        .copied()
        .chain(1000..1020)
        .chain(2000..2010)
        .map(|n| format!("[EDGE-{n}] edge issue {n}"))
        .collect();
    expected.sort();
    let mut got: Vec<String> = sn
        .records("incident")
        .iter()
        .filter_map(|r| r.get("short_description")?.as_str().map(str::to_owned))
        .collect();
    got.sort();
    assert_eq!(got, expected);

    // the refusals, by reason, on /metrics and the console
    let console_base = format!("http://{console}");
    let metrics = scrape(&console_base).await;
    let refused = limited as u64 + spoofed_refused;
    assert_eq!(
        rejected(&metrics, "rate_limited_client"),
        refused,
        "{metrics}"
    );
    assert_eq!(rejected(&metrics, "body_timeout"), 1);
    let session = ConsoleSession::login(&console_base, "admin", CONSOLE_PASSWORD)
        .await
        .unwrap();
    let (status, page) = session.get("/queue").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"refusals\""), "{page}");
    assert!(
        page.contains(&format!("<td>rate_limited_client</td><td>{refused}</td>")),
        "{page}"
    );
    assert!(page.contains("<td>body_timeout</td><td>1</td>"), "{page}");
    serve.stop().await;
}

/// A connection that never sends a byte of a request is closed at the header
/// timeout and not counted as a refusal: an HTTP client's spare pooled
/// connection (reqwest opens one when a request races an idle connection;
/// the demo's first run showed it as "refused"), or a TLS connection left
/// idle after its handshake. A half-sent head is counted, over HTTP and HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_is_closed_but_not_counted() {
    use tokio::io::AsyncWriteExt;
    let sn = ServiceNowServer::start().await;
    let head = format!("POST /webhooks/jira?token={TOKEN} HTTP/1.1\r\nHost: relay\r\n");
    for tls in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_setup(dir.path(), &sn, true);
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        replace(&cert_path, &cert.pem());
        replace(&key_path, &signing_key.serialize_pem());
        let port = free_port();
        let console = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--workers",
            "1",
            "--console",
            &console,
            "--header-timeout-secs",
            "1",
        ];
        if tls {
            args.extend(["--tls-cert", cert_path.to_str().unwrap()]);
            args.extend(["--tls-key", key_path.to_str().unwrap()]);
        }
        let mut serve = Serve::spawn_with(dir.path(), port, &args);
        if tls {
            serve.base = format!("https://localhost:{port}");
        }
        serve.ready().await;
        let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));

        // when one connection sends nothing at all, and one sends half a head
        type Stream = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
        let mut open: Vec<(&str, Stream)> =
            vec![("a silent connection", Box::new(connect().await.unwrap()))];
        let start = tokio::time::Instant::now();
        if tls {
            // and, over HTTPS, one finishes its handshake and sends nothing
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.der().clone()).unwrap();
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let idle = tls.connect(name.clone(), connect().await.unwrap());
            open.push(("an idle TLS connection", Box::new(idle.await.unwrap())));
            let mut half = tls.connect(name, connect().await.unwrap()).await.unwrap();
            half.write_all(head.as_bytes()).await.unwrap();
            half.flush().await.unwrap();
            open.push(("a half-sent head over TLS", Box::new(half)));
        } else {
            let mut half = connect().await.unwrap();
            half.write_all(head.as_bytes()).await.unwrap();
            open.push(("a half-sent head", Box::new(half)));
        }
        // then every one is closed after the header timeout
        let deadline = start + Duration::from_secs(6);
        for (what, stream) in &mut open {
            assert!(closed_by(stream, deadline).await, "{what} stayed open");
        }
        assert!(start.elapsed() >= Duration::from_millis(900));

        // and only the half-sent head is a refusal
        let console_base = format!("http://{console}");
        until(
            "the half-sent head counted",
            Duration::from_secs(5),
            async || rejected(&scrape(&console_base).await, "header_timeout") >= 1,
        )
        .await;
        let metrics = scrape(&console_base).await;
        assert_eq!(
            rejected(&metrics, "header_timeout"),
            1,
            "tls {tls}: {metrics}"
        );
        assert_eq!(
            rejected(&metrics, "tls_handshake"),
            0,
            "tls {tls}: {metrics}"
        );
        serve.stop().await;
    }
}
