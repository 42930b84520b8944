//! Records round trip with the shipped two-way config (`config/relay.yaml`):
//! a ServiceNow-born incident becomes a Jira issue and the issue's comment
//! and status change land on that same incident; a Jira-born issue becomes
//! an incident and the incident's comment lands on that same issue. The
//! pairing is written back into the originating record both times. After
//! each direction the webhooks the systems send for the relay's own writes
//! (as the real ones would, by the integration users) are posted too, and
//! nothing moves: no echo.

use crate::worker_flow::{Relay, Servers};
use relay_tests::text;
use serde_json::{json, Value};
use std::time::Duration;

const INTEGRATION_ACCOUNT: &str = "712020:relay-integration";

/// `config/relay.yaml` with its `${…}` filled in as the template would.
pub(crate) fn shipped(yaml: String, s: &Servers) -> String {
    let p = &s.prefix;
    [
        ("${RELAY_PAYLOAD_LIMIT_BYTES}", "262144".to_owned()),
        ("${RELAY_STAGE}", "test".to_owned()),
        ("${RELAY_WEBHOOK_SECRET_ARN}", format!("{p}/webhook")),
        (
            "${RELAY_SERVICENOW_SENDER_SECRET_ARN}",
            format!("{p}/servicenow-sender"),
        ),
        ("${RELAY_SERVICENOW_SECRET_ARN}", format!("{p}/servicenow")),
        ("${RELAY_JIRA_SECRET_ARN}", format!("{p}/jira")),
        ("${RELAY_SERVICENOW_URL}", s.sn.clone()),
        ("${RELAY_JIRA_URL}", s.jira.clone()),
        (
            "${RELAY_JIRA_INTEGRATION_ACCOUNT_ID}",
            INTEGRATION_ACCOUNT.to_owned(),
        ),
        (
            "${RELAY_SERVICENOW_INTEGRATION_USER}",
            crate::worker_flow::SN_USER.to_owned(),
        ),
    ]
    .iter()
    .fold(yaml, |y, (from, to)| y.replace(from, to))
}

/// What the relay's writes look like, counted.
fn counts(r: &Relay) -> (usize, usize, usize, usize) {
    let incidents = r.sn.records("incident");
    let journal: usize = incidents
        .iter()
        .map(|i| r.sn.journal("incident", text(&i["sys_id"])).len())
        .sum();
    let issues = r.jira.issues();
    let comments: usize = issues.iter().map(|i| i.comments.len()).sum();
    (incidents.len(), journal, issues.len(), comments)
}

/// Posts what the systems send about the relay's own writes; checks that
/// nothing moves, now and 10 s later.
async fn no_echo(r: &Relay, echoes: &[(&str, Value)]) {
    let before = counts(r);
    for (i, (endpoint, payload)) in echoes.iter().enumerate() {
        let status = if *endpoint == "servicenow" {
            r.post_sn(payload).await
        } else {
            r.post(endpoint, payload, &format!("echo-{i}-{}", before.0))
                .await
        };
        assert_eq!(status, 202);
    }
    assert_eq!(r.pump().await, 0);
    assert_eq!(
        counts(r),
        before,
        "an echo of the relay's own write moved something"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(r.pump().await, 0);
    assert_eq!(counts(r), before, "something moved within 10 s");
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn servicenow_born_incident_round_trip() {
    // given the shipped two-way config
    let Some(r) = Relay::start_with_config("config/relay.yaml", shipped).await else {
        return;
    };
    r.jira.set_basic(
        crate::worker_flow::JIRA_EMAIL,
        crate::worker_flow::JIRA_TOKEN,
    );
    // when
    // An agent opens an incident; the business rule sends it.
    let inc = r
        .sn_create(
            "incident",
            json!({"short_description": "VPN drops every hour", "priority": "2", "state": "1"}),
        )
        .await;
    let (sys_id, number) = (
        text(&inc["sys_id"]).to_owned(),
        text(&inc["number"]).to_owned(),
    );
    let created = json!({"event": "incident.created", "sys_id": sys_id, "number": number,
        "short_description": "VPN drops every hour", "description": "", "priority": "2",
        "state": "1", "sys_updated_by": "beth.anglin", "sys_updated_on": "2026-12-04 10:00:00"});
    assert_eq!(r.post_sn(&created).await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    // then
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(text(&issue.fields["customfield_10050"]), number);
    // The pairing is written back: the incident knows its issue.
    let inc = r.sn.find("incident", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&inc["correlation_id"]), issue.key, "{inc:?}");

    // when
    // In Jira: a comment and a status change on that issue.
    let who = json!({"accountId": "712020:agent", "displayName": "Ann Agent"});
    let on_issue = json!({"id": issue.id, "key": issue.key,
        "fields": {"summary": "VPN drops every hour", "priority": {"name": "High"}}});
    let comment = json!({"webhookEvent": "comment_created", "timestamp": 1764842400000u64,
        "issue": on_issue, "comment": {"id": "31001", "body": "Rebooted the concentrator",
            "author": who, "updateAuthor": who, "created": "2026-12-04T10:05:00.000+0000"}});
    let status = json!({"webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_generic",
        "timestamp": 1764842700000u64, "user": who, "issue": on_issue,
        "changelog": {"id": "41001", "items": [{"field": "status", "fieldtype": "jira",
            "fieldId": "status", "fromString": "To Do", "toString": "In Progress"}]}});
    assert_eq!(r.post("jira", &comment, "rt-c").await, 202);
    assert_eq!(r.post("jira", &status, "rt-s").await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    // then
    assert_eq!(
        r.sn.records("incident").len(),
        1,
        "the same incident, no second one"
    );
    let journal = r.sn.journal("incident", &sys_id);
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(
        journal[0].value.contains("Rebooted the concentrator"),
        "{journal:?}"
    );
    let inc = r.sn.find("incident", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&inc["state"]), "2");

    // when
    // What the systems send about the relay's own writes.
    let by_relay = json!({"accountId": INTEGRATION_ACCOUNT, "displayName": "jira-relay"});
    let sn_user = crate::worker_flow::SN_USER;
    no_echo(
        &r,
        &[
            (
                "jira",
                json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
                    "user": by_relay, "issue": on_issue}),
            ),
            (
                "servicenow",
                json!({"event": "incident.updated", "sys_id": sys_id, "number": number,
                    "short_description": "VPN drops every hour", "state": "2", "priority": "2",
                    "correlation_id": issue.key, "comments": "Ann Agent (Jira): Rebooted the concentrator",
                    "sys_updated_by": sn_user, "sys_updated_on": "2026-12-04 10:06:00",
                    "changes": [{"field": "state", "from": "1", "to": "2"}]}),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn jira_born_issue_round_trip() {
    // given the shipped two-way config
    let Some(r) = Relay::start_with_config("config/relay.yaml", shipped).await else {
        return;
    };
    r.jira.set_basic(
        crate::worker_flow::JIRA_EMAIL,
        crate::worker_flow::JIRA_TOKEN,
    );
    // when an issue is created in Jira
    let key = r.jira.seed_issue(
        "SUP",
        json!({"summary": "Printer on fire", "issuetype": {"name": "Incident"},
               "priority": {"name": "High"}}),
    );
    let id = r.jira.issue(&key).unwrap().id;
    let who = json!({"accountId": "712020:agent", "displayName": "Ann Agent"});
    let on_issue = json!({"id": id, "key": key,
        "fields": {"summary": "Printer on fire", "priority": {"name": "High"}}});
    let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "timestamp": 1764842400000u64, "user": who, "issue": on_issue});
    assert_eq!(r.post("jira", &created, "jb-1").await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    // then
    let inc =
        r.sn.find("incident", "correlation_id", &key)
            .expect("incident");
    let (sys_id, number) = (
        text(&inc["sys_id"]).to_owned(),
        text(&inc["number"]).to_owned(),
    );
    // The pairing is written back: the issue knows its incident.
    let issue = r.jira.issue(&key).unwrap();
    assert_eq!(
        text(&issue.fields["customfield_10050"]),
        number,
        "{:?}",
        issue.fields
    );
    assert_eq!(
        issue.properties["jira-relay"]["paired"]["key"],
        json!(number)
    );
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // when
    // In ServiceNow: a comment on that incident.
    let commented = json!({"event": "incident.commented", "sys_id": sys_id, "number": number,
        "short_description": format!("[{key}] Printer on fire"), "state": "1", "priority": "2",
        "comments": "Replaced the fuser", "work_notes": "", "correlation_id": key,
        "sys_updated_by": "beth.anglin", "sys_updated_on": "2026-12-04 10:10:00", "changes": []});
    assert_eq!(r.post_sn(&commented).await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    // then
    assert_eq!(r.jira.issues().len(), 1, "the same issue, no second one");
    let issue = r.jira.issue(&key).unwrap();
    assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);
    assert!(issue.comments[0].to_string().contains("Replaced the fuser"));

    // when
    // What the systems send about the relay's own writes.
    let by_relay = json!({"accountId": INTEGRATION_ACCOUNT, "displayName": "jira-relay"});
    let sn_user = crate::worker_flow::SN_USER;
    no_echo(
        &r,
        &[
            (
                "jira",
                json!({"webhookEvent": "comment_created", "issue": on_issue,
                    "comment": {"id": "31999", "body": "beth.anglin (ServiceNow): Replaced the fuser",
                        "author": by_relay, "updateAuthor": by_relay}}),
            ),
            (
                "jira",
                json!({"webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_updated",
                    "user": by_relay, "issue": on_issue, "changelog": {"id": "41999", "items": [
                        {"field": "customfield_10050", "fieldId": "customfield_10050", "toString": number}]}}),
            ),
            (
                "servicenow",
                json!({"event": "incident.created", "sys_id": sys_id, "number": number,
                    "short_description": format!("[{key}] Printer on fire"), "state": "1",
                    "priority": "2", "sys_updated_by": sn_user, "sys_updated_on": "2026-12-04 10:00:01"}),
            ),
        ],
    )
    .await;
}

/// "Committed, answer lost" on every kind of write: the create of an
/// incident, the comment on a Jira issue. Each is applied exactly once: the
/// relay looks the write up before sending it again.
#[tokio::test]
async fn a_write_whose_answer_is_lost_is_applied_once() {
    use relay_tests::faults::{Fault, Match};
    // given the shipped two-way config
    let Some(r) = Relay::start_with_config("config/relay.yaml", shipped).await else {
        return;
    };
    r.jira.set_basic(
        crate::worker_flow::JIRA_EMAIL,
        crate::worker_flow::JIRA_TOKEN,
    );
    // when
    // Jira -> ServiceNow create: the incident is committed, the connection dropped.
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/incident"),
        Fault::answer_dropped(),
        1,
    );
    let key = r.jira.seed_issue(
        "SUP",
        json!({"summary": "Lost answer", "issuetype": {"name": "Incident"}, "priority": {"name": "Low"}}),
    );
    let id = r.jira.issue(&key).unwrap().id;
    let who = json!({"accountId": "712020:agent", "displayName": "Ann Agent"});
    let on_issue = json!({"id": id, "key": key, "fields": {"summary": "Lost answer", "priority": {"name": "Low"}}});
    let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": who, "issue": on_issue});
    assert_eq!(r.post("jira", &created, "lost-1").await, 202);
    // then
    assert!(
        r.pump().await >= 1,
        "the lost answer goes back to the queue"
    );
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.sn.faults().count("answer_lost"), 1);
    assert_eq!(r.sn.records("incident").len(), 1, "one incident, not two");
    let inc = r.sn.find("incident", "correlation_id", &key).unwrap();
    let number = text(&inc["number"]).to_owned();
    assert_eq!(
        text(&r.jira.issue(&key).unwrap().fields["customfield_10050"]),
        number
    );

    // when
    // ServiceNow -> Jira comment: written, then the answer comes too late.
    r.jira.faults().push(
        Match::method_path(http::Method::POST, "/comment"),
        Fault::answer_late(Duration::from_secs(15)),
        1,
    );
    let commented = json!({"event": "incident.commented", "sys_id": inc["sys_id"], "number": number,
        "short_description": "x", "state": "1", "priority": "4", "comments": "Answer me once",
        "work_notes": "", "sys_updated_by": "beth.anglin", "sys_updated_on": "2026-12-04 11:00:00", "changes": []});
    assert_eq!(r.post_sn(&commented).await, 202);
    // then
    assert!(r.pump().await >= 1);
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.jira.faults().count("answer_lost"), 1);
    let comments = r.jira.comments(&key).unwrap();
    assert_eq!(comments.len(), 1, "one comment, not two: {comments:?}");
    assert!(comments[0].properties.contains_key("jira-relay"));
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
}

/// Jira's retry of a delivery 80 minutes later — past any queue's
/// deduplication window (SQS FIFO: 5 min), which is why the message is
/// handed to the worker directly here — creates nothing new: `duplicate`.
/// Run on each host's link store: SQLite (`relay serve`) and DynamoDB (the
/// worker Lambda, moto), read through a clock moved 80 minutes on.
async fn retried_80_minutes_later(store: &str) {
    // given the shipped config over this link store, its clock at t0
    let Some(r) = Relay::start_with_config("config/relay.yaml", shipped).await else {
        return;
    };
    let t0: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
    let clock = std::sync::Arc::new(shared::support::clock::FixedClock::new(t0));
    let dir = tempfile::tempdir().unwrap();
    let backend: std::sync::Arc<dyn shared::links::LinkBackend> = match store {
        "sqlite" => {
            std::sync::Arc::new(shared::links::sqlite::SqliteBackend::open(dir.path()).unwrap())
        }
        _ => {
            let table =
                relay_tests::create_links_table(&r.aws, &relay_tests::unique("links")).await;
            std::sync::Arc::new(shared::links::dynamo::DynamoBackend::from_conf(
                &r.aws, table,
            ))
        }
    };
    let links = shared::links::Links::new(backend, shared::links::LinkSettings::default())
        .with_clock(clock.clone());
    let r = r.with_links(links);
    r.jira.set_basic(
        crate::worker_flow::JIRA_EMAIL,
        crate::worker_flow::JIRA_TOKEN,
    );
    // and a created issue, queued once
    let key = r.jira.seed_issue(
        "SUP",
        json!({"summary": "Retried", "issuetype": {"name": "Incident"}}),
    );
    let id = r.jira.issue(&key).unwrap().id;
    let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "712020:agent"}, "issue": {"id": id, "key": key, "fields": {"summary": "Retried"}}});
    assert_eq!(r.post("jira", &created, "retry-80").await, 202);
    let bodies = r.take_bodies().await;
    assert_eq!(bodies.len(), 1);
    let budget = shared::outbound::Budget::from_now(Duration::from_secs(30));
    // when the worker applies it
    let first = r.worker.process(&bodies[0], &budget).await;
    // then
    assert_eq!(first.label(), "applied", "{store}: {first:?}");
    assert_eq!(r.sn.records("incident").len(), 1);
    // when the same message comes 80 minutes later
    clock.set(t0 + jiff::SignedDuration::from_mins(80));
    let again = r.worker.process(&bodies[0], &budget).await;
    // then
    assert_eq!(again.label(), "duplicate", "{store}: {again:?}");
    assert_eq!(r.sn.records("incident").len(), 1, "nothing created again");
    // when
    // Past the 2 h memory the change is handled again (and found by lookup).
    clock.set(t0 + jiff::SignedDuration::from_mins(130));
    // then
    let late = r.worker.process(&bodies[0], &budget).await;
    assert_eq!(late.label(), "applied", "{store}: {late:?}");
    assert_eq!(r.sn.records("incident").len(), 1);
}

#[tokio::test]
async fn a_jira_retry_80_minutes_later_is_a_duplicate_on_sqlite() {
    // given, when, then: in retried_80_minutes_later, on the SQLite link store
    retried_80_minutes_later("sqlite").await;
}

#[tokio::test]
async fn a_jira_retry_80_minutes_later_is_a_duplicate_on_dynamodb() {
    // given, when, then: in retried_80_minutes_later, on the DynamoDB link store
    retried_80_minutes_later("dynamodb").await;
}
