//! The link store on DynamoDB (moto): the backend contract, the conditional
//! write and the lazy TTL as moto really does them, the typed `Links` API
//! end to end with a moving clock, and an unreachable store.
//!
//! What moto does (checked against moto 5.2): `ConditionExpression` is
//! enforced (`ConditionalCheckFailedException`); TTL is accepted and
//! described but never deletes anything, so an expired item stays readable
//! through the raw API — as on AWS until its TTL sweep comes by. `Limit`
//! counts items before the `FilterExpression`, as on AWS.

use relay_tests::{aws_endpoint, create_links_table, dead_port, sdk_config, unique};
use shared::links::dynamo::{DynamoBackend, PK, SK, TTL_ATTRIBUTE, VALUE};
use shared::links::{Entry, LinkBackend, LinkError, LinkSettings, Links, Pair, Scope};
use shared::support::clock::FixedClock;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

struct Bed {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    backend: Arc<DynamoBackend>,
}

/// A fresh table shaped like the template's `LinksTable`.
async fn bed() -> Option<Bed> {
    let moto = aws_endpoint()?;
    let conf = sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = create_links_table(&conf, &unique("links")).await;
    let backend = Arc::new(DynamoBackend::from_conf(&conf, &table));
    Some(Bed {
        ddb,
        table,
        backend,
    })
}

impl Bed {
    /// The item as stored, past the backend's expiry filter.
    async fn raw(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.ddb
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.into()))
            .key(SK, AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }
}

fn entry(pk: &str, sk: &str, value: &str, expires_at: Option<i64>) -> Entry {
    Entry {
        pk: pk.into(),
        sk: sk.into(),
        value: value.into(),
        expires_at,
    }
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn backend_contract_on_dynamodb() {
    // given a table shaped like LinksTable
    let Some(bed) = bed().await else { return };
    // then the backend names it
    assert_eq!(bed.backend.table(), bed.table);
    // when the shared backend contract runs on it; then it holds
    shared::links::testing::backend_contract(bed.backend.clone()).await;
}

#[tokio::test]
async fn put_new_is_a_conditional_write_and_ttl_is_lazy() {
    // given
    let Some(bed) = bed().await else { return };
    let b = &bed.backend;
    let now = 1_800_000_000;
    // when put_new writes twice
    assert!(b
        .put_new(&entry("u", "-", "first", Some(now + 60)), now)
        .await
        .unwrap());
    assert!(!b
        .put_new(&entry("u", "-", "second", Some(now + 60)), now)
        .await
        .unwrap());
    // then the first stays
    assert_eq!(b.get("u", "-", now).await.unwrap().unwrap().value, "first");
    // and the table holds the four attributes, expiry as a number
    // What the table holds: the four attributes, expiry as a number.
    let item = bed.raw("u", "-").await.unwrap();
    assert_eq!(item.len(), 4, "{item:?}");
    assert_eq!(item[VALUE], AttributeValue::S("first".into()));
    assert_eq!(
        item[TTL_ATTRIBUTE],
        AttributeValue::N((now + 60).to_string())
    );

    // when
    // Expired by the caller's clock: reads absent although the item is still
    // there (moto never runs TTL; AWS takes up to days), and put_new takes its place.
    let later = now + 60;
    // then
    assert_eq!(b.get("u", "-", later).await.unwrap(), None);
    assert!(bed.raw("u", "-").await.is_some(), "TTL deletes lazily");
    assert!(b
        .put_new(&entry("u", "-", "third", None), later)
        .await
        .unwrap());
    assert_eq!(
        b.get("u", "-", later).await.unwrap().unwrap().value,
        "third"
    );
    // when
    // An entry without expiry is never replaced by put_new, at any time.
    // then
    assert!(!b
        .put_new(&entry("u", "-", "fourth", None), i64::MAX)
        .await
        .unwrap());
    assert!(!bed.raw("u", "-").await.unwrap().contains_key(TTL_ATTRIBUTE));

    // when
    // Query pages past expired items: DynamoDB's Limit counts them before the filter.
    for i in 0..5 {
        b.put(&entry("q", &format!("a/{i}"), "dead", Some(now - 1)))
            .await
            .unwrap();
    }
    for i in 5..8 {
        b.put(&entry("q", &format!("a/{i}"), "live", Some(now + 1)))
            .await
            .unwrap();
    }
    b.put(&entry("q", "b/0", "other prefix", None))
        .await
        .unwrap();
    // then
    let got = b.query("q", "a/", 2, now).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.sk.as_str()).collect::<Vec<_>>(),
        ["a/5", "a/6"]
    );
    assert_eq!(b.query("q", "a/", 100, now).await.unwrap().len(), 3);
    assert_eq!(b.query("q", "", 100, now).await.unwrap().len(), 4);
    assert_eq!(b.query("q", "a/", 0, now).await.unwrap(), []);
    assert_eq!(b.query("none", "", 10, now).await.unwrap(), []);
}

#[tokio::test]
async fn links_end_to_end_on_dynamodb() {
    // given Links over the table with a moving clock
    let Some(bed) = bed().await else { return };
    let t0 = at("2026-12-04T10:00:00Z");
    let clock = Arc::new(FixedClock::new(t0));
    let links = Links::new(bed.backend.clone(), LinkSettings::default()).with_clock(clock.clone());

    // when
    // Record pairs, without prefix bleed between keys.
    let s = Scope::new("servicenow", "correlation_id", "SUP/1 x");
    let other = Scope::new("servicenow", "correlation_id", "SUP/1");
    assert_eq!(links.record(&s).await.unwrap(), None);
    let p = Pair {
        id: Some("abc".into()),
        key: Some("INC0010001".into()),
    };
    links.pair(&s, &p).await.unwrap();
    // then
    assert_eq!(links.record(&s).await.unwrap(), Some(p));
    assert_eq!(links.record(&other).await.unwrap(), None);

    // when
    // A delivery seen is still seen 80 minutes later (a Jira retry past any
    // queue's deduplication window), and forgotten after 2 h.
    assert!(!links.seen("issue:10001:created").await.unwrap());
    links
        .mark_seen("issue:10001:created", "applied")
        .await
        .unwrap();
    // then
    clock.set(t0 + jiff::SignedDuration::from_mins(80));
    assert!(
        links.seen("issue:10001:created").await.unwrap(),
        "80 min later"
    );
    clock.set(t0 + jiff::SignedDuration::from_mins(121));
    assert!(
        !links.seen("issue:10001:created").await.unwrap(),
        "past 2 h"
    );
    clock.set(t0);

    // when
    // Parked events: a redelivery is not parked twice; oldest first; unpark.
    assert!(links.park(&s, "c1", "{b1}", "no record").await.unwrap());
    assert!(
        !links.park(&s, "c1", "{b1}", "no record").await.unwrap(),
        "redelivery"
    );
    clock.set(t0 + jiff::SignedDuration::from_secs(1));
    assert!(links.park(&s, "c2", "{b2}", "no record").await.unwrap());
    assert!(links.park(&other, "c3", "{b3}", "no record").await.unwrap());
    // then
    let got = links.parked(&s).await.unwrap();
    assert_eq!(
        got.iter().map(|p| p.change.as_str()).collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    assert_eq!(got[0].body, "{b1}");
    assert_eq!(got[0].scope, s);
    links.unpark(&got[0]).await.unwrap();
    assert_eq!(links.parked(&s).await.unwrap().len(), 1);
    assert_eq!(links.all_parked(10).await.unwrap().len(), 2);
    assert_eq!(links.all_parked(1).await.unwrap().len(), 1);

    // when
    // Uncertain writes: the oldest send is kept (the conditional write).
    assert_eq!(links.uncertain_since("create:SUP-1").await.unwrap(), None);
    let first = links.mark_uncertain("create:SUP-1").await.unwrap();
    clock.set(t0 + jiff::SignedDuration::from_secs(30));
    // then
    assert_eq!(links.mark_uncertain("create:SUP-1").await.unwrap(), first);
    links.clear_uncertain("create:SUP-1").await.unwrap();
    assert_eq!(links.uncertain_since("create:SUP-1").await.unwrap(), None);

    // when
    // Item pairs.
    links
        .pair_item("jira", "issue:10001:comment:10500", "10200")
        .await
        .unwrap();
    // then
    assert_eq!(
        links
            .item("jira", "issue:10001:comment:10500")
            .await
            .unwrap()
            .as_deref(),
        Some("10200")
    );
}

#[tokio::test]
async fn missing_table_is_unavailable() {
    // given
    let Some(bed) = bed().await else { return };
    let conf = sdk_config(&aws_endpoint().unwrap()).await;
    // when the table does not exist
    let gone = DynamoBackend::from_conf(&conf, format!("{}-absent", bed.table));
    let err = gone.get("a", "-", 0).await.unwrap_err();
    // then
    assert!(
        matches!(&err, LinkError::Unavailable(m) if m == "DynamoDB GetItem: ResourceNotFoundException"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_store_is_unavailable_promptly() {
    // given
    // Canary credentials: no error may carry them.
    const KEY_ID: &str = "AKIACANARYLINKS00001";
    const SECRET: &str = "canary-links-secret-0f3a9c";
    let creds = aws_sdk_dynamodb::config::Credentials::new(KEY_ID, SECRET, None, None, "test");
    let conf = shared::support::aws::defaults()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(format!("http://127.0.0.1:{}", dead_port()))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await;
    let b = DynamoBackend::from_conf(&conf, "links");
    let e = entry("a", "-", "v", None);
    // when
    // A port that accepts and never answers: the timeouts end the call.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = DynamoBackend::from_conf(
        &conf
            .to_builder()
            .endpoint_url(format!("http://{}", silent.local_addr().unwrap()))
            .build(),
        "links",
    );
    let started = Instant::now();
    let err = hung.get("a", "-", 0).await.unwrap_err();
    let took = started.elapsed();
    // then the timeouts end the call
    assert!(
        matches!(&err, LinkError::Unavailable(m) if m == "DynamoDB GetItem: timed out"),
        "{err}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?} ({err})");
    drop(silent);

    // when the port is closed
    let started = Instant::now();
    let errors = [
        ("GetItem", b.get("a", "-", 0).await.map(|_| ())),
        ("PutItem", b.put(&e).await),
        ("PutItem", b.put_new(&e, 0).await.map(|_| ())),
        ("DeleteItem", b.delete("a", "-").await),
        ("Query", b.query("a", "", 10, 0).await.map(|_| ())),
    ];
    let took = started.elapsed();
    // then each call is unavailable, short, and carries no credential
    for (op, result) in errors {
        let err = result.unwrap_err();
        let LinkError::Unavailable(msg) = &err else {
            panic!("{op}: not Unavailable: {err}")
        };
        assert!(
            msg.starts_with(&format!("DynamoDB {op}: unreachable (")),
            "{msg}"
        );
        assert!(msg.len() < 120, "short: {msg}");
        for canary in [KEY_ID, SECRET] {
            assert!(!err.to_string().contains(canary), "{err}");
            assert!(!format!("{err:?}").contains(canary), "{err:?}");
        }
    }
    // Five calls to a closed loopback port, retries included: well under the
    // operation timeouts, nothing hangs.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // when
    // The real Links API turns it into the same retryable error.
    let links = Links::new(Arc::new(b), LinkSettings::default());
    // then the same retryable error
    assert!(matches!(
        links.seen("x").await,
        Err(LinkError::Unavailable(_))
    ));
}
