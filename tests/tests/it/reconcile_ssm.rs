//! The reconciler's watermark store on SSM Parameter Store (moto): the
//! watermark round trip, the lease between two owners with a moving clock,
//! what the parameter holds, and the errors.

use relay_tests::{aws_endpoint, dead_port, sdk_config, unique};
use shared::reconcile::{Progress, SsmStore, Watermark, WatermarkStore};
use shared::support::clock::FixedClock;
use std::sync::Arc;
use std::time::Duration;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

struct Bed {
    ssm: aws_sdk_ssm::Client,
    store: SsmStore,
    clock: Arc<FixedClock>,
    prefix: String,
}

async fn bed() -> Option<Bed> {
    let moto = aws_endpoint()?;
    let conf = sdk_config(&moto).await;
    let clock = Arc::new(FixedClock::new(at("2026-05-01T10:00:00Z")));
    let prefix = format!("/jira-relay/{}/reconcile", unique("t"));
    let store = SsmStore::from_conf(&conf, &prefix, clock.clone()).unwrap();
    Some(Bed {
        ssm: aws_sdk_ssm::Client::new(&conf),
        store,
        clock,
        prefix,
    })
}

impl Bed {
    async fn raw(&self, endpoint: &str) -> serde_json::Value {
        let p = self
            .ssm
            .get_parameter()
            .name(format!("{}/{endpoint}", self.prefix))
            .send()
            .await
            .unwrap()
            .parameter
            .unwrap();
        serde_json::from_str(p.value.as_deref().unwrap()).unwrap()
    }
}

fn watermark() -> Watermark {
    Watermark {
        since: Some(at("2026-05-01T09:45:00Z")),
        progress: Some(Progress {
            started_at: at("2026-05-01T10:00:00Z"),
            from: at("2026-05-01T09:40:00Z"),
            jql: r#"project = OPS AND updated >= "-20m" ORDER BY created, key"#.into(),
            created_from: Some(at("2026-04-30T08:00:00Z")),
            scanned: 200,
            last_key: None,
        }),
    }
}

#[tokio::test]
async fn watermark_round_trip() {
    // given
    let Some(bed) = bed().await else { return };
    let store = &bed.store;
    assert_eq!(store.load("jira").await.unwrap(), Watermark::default());
    let w = watermark();
    // when a watermark is saved
    store.save("jira", &w).await.unwrap();
    // then it loads back
    assert_eq!(store.load("jira").await.unwrap(), w);
    // Endpoints do not share a parameter.
    assert_eq!(store.load("other").await.unwrap(), Watermark::default());
    // when
    // A finished sweep: the progress goes, the watermark moves.
    let done = Watermark {
        since: Some(at("2026-05-01T10:00:00Z")),
        progress: None,
    };
    // then
    store.save("jira", &done).await.unwrap();
    assert_eq!(store.load("jira").await.unwrap(), done);
    let raw = bed.raw("jira").await;
    assert_eq!(
        raw,
        serde_json::json!({"watermark": {"since": "2026-05-01T10:00:00Z"}})
    );
    assert_eq!(
        bed.store.parameter_name("jira"),
        format!("{}/jira", bed.prefix)
    );
}

#[tokio::test]
async fn lease_between_two_owners() {
    // given a saved watermark
    let Some(bed) = bed().await else { return };
    let store = &bed.store;
    let lease = Duration::from_secs(300);
    store.save("jira", &watermark()).await.unwrap();

    // when sweep-a takes the lease
    assert!(store.try_lock("jira", "sweep-a", lease).await.unwrap());
    // then sweep-b cannot
    let raw = bed.raw("jira").await;
    assert_eq!(raw["lease"]["owner"], "sweep-a");
    assert_eq!(raw["lease"]["until"], "2026-05-01T10:05:00Z");
    assert!(!store.try_lock("jira", "sweep-b", lease).await.unwrap());
    // when
    // The holder may renew; another endpoint is free.
    // then
    assert!(store.try_lock("jira", "sweep-a", lease).await.unwrap());
    assert!(store.try_lock("other", "sweep-b", lease).await.unwrap());
    // when
    // Saving keeps the lease, locking keeps the watermark.
    store.save("jira", &watermark()).await.unwrap();
    // then
    assert!(!store.try_lock("jira", "sweep-b", lease).await.unwrap());
    assert_eq!(store.load("jira").await.unwrap(), watermark());

    // when
    // Still held one second before it runs out; free after.
    bed.clock.set(at("2026-05-01T10:04:59Z"));
    // then
    assert!(!store.try_lock("jira", "sweep-b", lease).await.unwrap());
    bed.clock.set(at("2026-05-01T10:05:00Z"));
    assert!(store.try_lock("jira", "sweep-b", lease).await.unwrap());
    assert!(!store.try_lock("jira", "sweep-a", lease).await.unwrap());

    // when
    // Only the holder's unlock counts.
    store.unlock("jira", "sweep-a").await.unwrap();
    // then
    assert!(!store.try_lock("jira", "sweep-a", lease).await.unwrap());
    store.unlock("jira", "sweep-b").await.unwrap();
    assert!(bed.raw("jira").await.get("lease").is_none());
    assert!(store.try_lock("jira", "sweep-a", lease).await.unwrap());
    store.unlock("jira", "sweep-a").await.unwrap();
    assert_eq!(store.load("jira").await.unwrap(), watermark());
    // when
    // Unlocking what was never locked (no parameter) writes nothing.
    store.unlock("never", "sweep-a").await.unwrap();
    // then
    let missing = bed
        .ssm
        .get_parameter()
        .name(format!("{}/never", bed.prefix))
        .send()
        .await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn too_large_and_unreadable() {
    // given a saved watermark
    let Some(bed) = bed().await else { return };
    let store = &bed.store;
    store.save("jira", &watermark()).await.unwrap();
    // when a document too large is saved
    let mut big = watermark();
    big.progress.as_mut().unwrap().jql = "x".repeat(4096);
    let err = store.save("jira", &big).await.unwrap_err().to_string();
    // then it is refused and the old one kept
    assert!(err.contains("a standard SSM parameter holds 4096"), "{err}");
    assert_eq!(store.load("jira").await.unwrap(), watermark());

    // when a parameter is not a watermark
    bed.ssm
        .put_parameter()
        .name(format!("{}/hand-edited", bed.prefix))
        .value("not json")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    // then loading it names it
    let err = store.load("hand-edited").await.unwrap_err().to_string();
    assert!(err.contains("is not a watermark document"), "{err}");
    assert!(
        err.contains(&format!("{}/hand-edited", bed.prefix)),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_ssm_is_an_error() {
    // given SSM unreachable
    let conf = sdk_config(&format!("http://127.0.0.1:{}", dead_port())).await;
    let clock = Arc::new(FixedClock::new(at("2026-05-01T10:00:00Z")));
    let store = SsmStore::from_conf(&conf, "/jira-relay/test/reconcile", clock).unwrap();
    // when
    let err = store.load("jira").await.unwrap_err().to_string();
    // then
    assert!(
        err.starts_with("watermark store: SSM GetParameter /jira-relay/test/reconcile/jira: "),
        "{err}"
    );
    let err = store
        .try_lock("jira", "a", Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SSM GetParameter"), "{err}");
}
