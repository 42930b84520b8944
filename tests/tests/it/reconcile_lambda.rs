//! The reconciler Lambda's handler (`functions/reconciler`) with real
//! `LambdaEvent`s over moto (SQS, Secrets Manager, SSM) and the Jira and
//! ServiceNow contract servers: an issue whose webhooks never arrived is
//! reported by a dry run, enqueued by the scheduled sweep, applied by the
//! worker handler, and a second sweep finds nothing. Hand-run input errors
//! and an all-failed run are function errors.

use crate::worker_flow::Relay;
use reconciler::{handle, Deps};
use relay_tests::jira_server::{DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use relay_tests::{drain, unique};
use serde_json::{json, Value};
use shared::queue::SqsQueue;
use shared::reconcile::SsmStore;
use shared::support::clock::SystemClock;
use std::sync::Arc;
use std::time::Duration;

fn deps(r: &Relay, prefix: &str) -> Deps {
    let clock = Arc::new(SystemClock);
    Deps {
        config: r.config.clone(),
        connectors: shared::outbound::executor::Connectors::from_config(
            &r.config,
            shared::outbound::rest::http_client(),
            r.secrets.clone(),
            shared::outbound::rest::ConnectorSettings::default(),
        ),
        queue: Arc::new(SqsQueue::from_conf(&r.aws, r.queue_url())),
        store: Arc::new(SsmStore::from_conf(&r.aws, prefix, clock.clone()).unwrap()),
        clock,
    }
}

async fn invoke(deps: &Deps, payload: Value) -> Result<Value, String> {
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = unique("req");
    ctx.deadline = (std::time::SystemTime::now() + Duration::from_secs(120))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    handle(deps, lambda_runtime::LambdaEvent::new(payload, ctx))
        .await
        .map_err(|e| e.to_string())
}

fn scheduled() -> Value {
    json!({
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-05-01T10:15:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/jira-relay-test-reconcile"],
        "detail": {}
    })
}

fn adf(text: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}]})
}

/// Makes an issue and a comment in Jira through its REST API (no webhook).
async fn jira_issue(r: &Relay, summary: &str) -> String {
    let http = reqwest::Client::new();
    let send = |path: &str, body: Value| {
        http.post(format!("{}/rest/api/3/{path}", r.jira.base_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
            .json(&body)
            .send()
    };
    let created = send(
        "issue",
        json!({"fields": {
            "project": {"key": "SUP"},
            "issuetype": {"name": "Incident"},
            "summary": summary,
            "description": adf("lost webhook"),
        }}),
    )
    .await
    .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let key = created.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = send(
        &format!("issue/{key}/comment"),
        json!({"body": adf("first look")}),
    )
    .await
    .unwrap();
    assert!(comment.status().is_success(), "{}", comment.status());
    key
}

fn endpoint(summary: &Value) -> &Value {
    let eps = summary["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 1, "{summary}");
    assert_eq!(eps[0]["endpoint"], "jira", "{summary}");
    &eps[0]
}

#[tokio::test]
async fn a_scheduled_sweep_heals_a_lost_webhook() {
    // given a Jira issue whose webhook was lost
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let prefix = format!("/jira-relay/{}/reconcile", unique("lambda"));
    let deps = deps(&r, &prefix);
    let key = jira_issue(&r, "printer on fire").await;
    let ssm = aws_sdk_ssm::Client::new(&r.aws);
    let parameter = || async {
        ssm.get_parameter()
            .name(format!("{prefix}/jira"))
            .send()
            .await
            .ok()
            .and_then(|o| o.parameter?.value)
            .map(|v| serde_json::from_str::<Value>(&v).unwrap())
    };

    // when
    // A hand-run dry run: the drift, nothing enqueued, nothing stored.
    let dry = invoke(&deps, json!({"dry_run": true})).await.unwrap();
    let ep = endpoint(&dry);
    // then the drift, nothing enqueued, nothing stored
    assert_eq!(dry["dry_run"], true);
    assert_eq!(ep["outcome"], "swept", "{dry}");
    assert_eq!(ep["enqueued"], 0);
    assert!(ep["drift_total"].as_u64().unwrap() >= 1, "{dry}");
    assert!(
        ep["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["key"] == key.as_str() && d["drift"] == "missing"),
        "{dry}"
    );
    assert_eq!(parameter().await, None, "a dry run stores nothing");
    assert_eq!(r.sn.records("incident").len(), 0);

    // when
    // The scheduled sweep enqueues, moves the watermark, gives the lease back.
    let swept = invoke(&deps, scheduled()).await.unwrap();
    let ep = endpoint(&swept);
    // then it enqueues, moves the watermark, gives the lease back
    assert_eq!(swept["dry_run"], false);
    assert_eq!(ep["outcome"], "swept", "{swept}");
    assert_eq!(ep["complete"], true);
    assert!(
        ep["enqueued"].as_u64().unwrap() >= 2,
        "create + comment: {swept}"
    );
    assert!(ep["jira_requests"].as_u64().unwrap() >= 1);
    let stored = parameter().await.expect("the sweep stored its watermark");
    assert!(stored["watermark"]["since"].is_string(), "{stored}");
    assert!(stored["watermark"].get("progress").is_none(), "{stored}");
    assert!(stored.get("lease").is_none(), "lease given back: {stored}");

    // when
    // The worker applies what the sweep enqueued.
    assert_eq!(r.pump().await, 0, "no failing rounds");
    // then the incident and its comment exist
    let incident =
        r.sn.find("incident", "correlation_id", &key)
            .expect("the sweep's envelopes created the incident");
    let sys_id = incident["sys_id"].as_str().unwrap();
    assert!(
        r.sn.journal("incident", sys_id)
            .iter()
            .any(|j| j.value.contains("first look")),
        "the comment arrived"
    );

    // when
    // Level now: the next sweep finds nothing and enqueues nothing.
    let again = invoke(&deps, scheduled()).await.unwrap();
    let ep = endpoint(&again);
    // then level: nothing found, nothing enqueued
    assert_eq!(ep["drift_total"], 0, "{again}");
    assert_eq!(ep["enqueued"], 0, "{again}");
    assert!(drain(&r.sqs, r.queue_url()).await.is_empty());
    assert_eq!(r.sn.records("incident").len(), 1);
}

#[tokio::test]
async fn bad_input_and_an_all_failed_run_are_function_errors() {
    // given the reconciler Lambda's dependencies
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let deps = deps(&r, &format!("/jira-relay/{}/reconcile", unique("lambda")));
    // when it is invoked with a typo, or an endpoint without reconcile
    let typo = invoke(&deps, json!({"dryrun": true})).await.unwrap_err();
    // then function errors, and no call was made
    assert!(typo.contains("unknown field `dryrun`"), "{typo}");
    let unknown = invoke(&deps, json!({"endpoint": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(
        unknown,
        "every sweep failed: nope: endpoint `nope` has no `reconcile:` section"
    );
    assert!(r.sn.requests().is_empty() && r.jira.requests().is_empty());
}

#[tokio::test]
async fn the_scheduled_run_includes_the_user_sweep() {
    // given the people example (report only) and a ServiceNow member of a
    // mapped group who has no Jira account
    let Some(r) =
        Relay::start_with_config("examples/servicenow-users-to-jira.yaml", |y, _| y).await
    else {
        return;
    };
    r.jira.set_basic(
        crate::worker_flow::JIRA_EMAIL,
        crate::worker_flow::JIRA_TOKEN,
    );
    r.jira.add_group("jira-software-users");
    let group =
        r.sn.seed("sys_user_group", json!({"name": "Software Engineering"}));
    let user = r.sn.seed(
        "sys_user",
        json!({"user_name": "fay.ono", "email": "fay.ono@example.com", "active": "true"}),
    );
    r.sn.seed("sys_user_grmember", json!({"user": user, "group": group}));
    let deps = deps(&r, &format!("/jira-relay/{}/reconcile", unique("lambda")));
    // when the schedule invokes the reconciler
    let out = invoke(&deps, scheduled()).await.unwrap();
    // then the answer carries the user sweep's report, and nothing is queued
    let ep = out["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "servicenow")
        .cloned()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(ep["outcome"], "swept", "{out}");
    assert_eq!(ep["drift_total"], 1, "{out}");
    assert_eq!(ep["users"]["dry_run"], true, "{out}");
    let software = ep["users"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["jira_group"] == "jira-software-users")
        .cloned()
        .unwrap();
    assert_eq!(software["missing"], json!(["fay.ono@example.com"]));
    // (the groups the site lacks are said, not a failed run)
    assert_eq!(
        ep["users"]["unknown_jira_groups"],
        json!(["jira-admins", "jira-servicemanagement-users"])
    );
    assert!(drain(&r.sqs, r.queue_url()).await.is_empty());
}
