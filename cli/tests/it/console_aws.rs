//! `relay console --aws` against moto: the stack's queues found by the
//! template's names, dead letters listed, shown and redriven from the page,
//! the queue's counts; the feed, a delivery and the conversation from the
//! worker's log lines in CloudWatch Logs; no console without the admin
//! credential. Moto's Logs Insights answers `fields`, `sort` and `limit` and
//! ignores `filter`: the query's filters are not tested against a real
//! engine here (the console filters what comes back itself, which is).
#![cfg(feature = "aws")]

use crate::common::{free_port, repo, ConsoleSession};
use crate::sqs_ops::fifo;
use shared::queue::{InMessage, Inbox};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn console(moto: &str, dir: &std::path::Path, stage: &str, port: u16) -> Command {
    let mut cmd = Command::new(crate::common::BIN);
    cmd.args(["console", "--aws", "--stage", stage])
        .args(["--links-table", &format!("links-{stage}"), "--config"])
        .arg(dir.join("relay.yaml"))
        .arg("--secrets")
        .arg(dir.join("secrets.yaml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_for_a_deployed_stack_on_moto() {
    let Some((moto, conf)) = crate::sqs_ops::moto().await else {
        return;
    };
    // given: the stack's two queues (by the template's names) and a dead letter as the worker writes it
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let stage = format!("console{}", std::process::id());
    let events = fifo(&sqs, &format!("jira-relay-{stage}-events")).await;
    let dlq = fifo(&sqs, &format!("jira-relay-{stage}-events-dlq")).await;
    let inbox = shared::queue::SqsInbox::from_conf(&conf, events.clone(), dlq.clone());
    let msg = InMessage {
        id: "msg-aws-1".into(),
        group_id: Some("jira:10001".into()),
        dedup_id: Some("jira:d-aws-1".into()),
        body: "{\"v\":1,\"n\":1}".into(),
        receive_count: 1,
        receipt: None,
    };
    inbox
        .dead_letter(&msg, "target_rejected: 400 from servicenow: Invalid choice")
        .await
        .unwrap();
    // and the worker's log lines, as the Lambda writes them
    let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
    let group = format!("/aws/lambda/jira-relay-{stage}-worker");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/12/05/[$LATEST]x")
        .send()
        .await
        .unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let line = |at: i64, event: &str, key: &str, outcome: &str, target: &str| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(at)
            .message(format!(
                r#"{{"timestamp":"x","level":"INFO","message":"processed","message_id":"m-{at}","endpoint":"jira","event":"{event}","delivery_id":"d-{at}","change_id":"c-{at}","source_key":"{key}","origin":"webhook","receive_count":1,"outcome":"{outcome}","reason":"","rules":"r:create","skipped":"","target":"{target}","dead_lettered":false,"dlq_error":"","duration_ms":4}}"#
            ))
            .build()
            .unwrap()
    };
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/12/05/[$LATEST]x")
        .log_events(line(
            now - 3000,
            "jira:issue_created",
            "AWS-1",
            "applied",
            "INC0020001",
        ))
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now - 2500)
                .message(r#"{"message":"webhook accepted","endpoint":"jira"}"#)
                .build()
                .unwrap(),
        )
        .log_events(line(
            now - 2000,
            "comment_created",
            "AWS-1",
            "applied",
            "INC0020001",
        ))
        .log_events(line(now - 1000, "jira:issue_created", "AWS-2", "dead", ""))
        .send()
        .await
        .unwrap();
    // and the link store's table with the pairing the worker wrote
    let table = shared::links::testing::create_dynamo_table(&conf, &format!("links-{stage}")).await;
    let links = shared::links::Links::new(
        std::sync::Arc::new(shared::links::dynamo::DynamoBackend::from_conf(
            &conf,
            table.clone(),
        )),
        shared::links::LinkSettings::default(),
    );
    links
        .pair(
            &shared::links::store::Scope::new("servicenow", "correlation_id", "AWS-1"),
            &shared::links::store::Pair {
                id: Some("sys-aws-1".into()),
                key: Some("INC0020001".into()),
            },
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("examples/jira-to-servicenow.yaml"),
        dir.path().join("relay.yaml"),
    )
    .unwrap();
    let secrets = dir.path().join("secrets.yaml");
    std::fs::write(&secrets, "secrets:\n  relay/webhook:\n    token: t\n").unwrap();
    crate::common::chmod(&secrets, 0o600);

    // when: no admin credential in the secrets file
    let out = console(&moto, dir.path(), &stage, free_port())
        .output()
        .unwrap();
    // then: no console
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no admin credential"), "{err}");

    // when: with the credential
    std::fs::write(
        &secrets,
        "secrets:\n  relay/console:\n    password: aws-console-pw\n",
    )
    .unwrap();
    let port = free_port();
    let _child = Kill(
        console(&moto, dir.path(), &stage, port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/health")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "relay console did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = ConsoleSession::login(&base, "admin", "aws-console-pw")
        .await
        .unwrap();
    // then: the dead letter is listed and shown with its reason
    let (status, page) = s.get("/dead").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("target_rejected: 400 from servicenow: Invalid choice"),
        "{page}"
    );
    let id = page
        .split("<a href=\"/dead/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let (status, one) = s.get(&format!("/dead/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        one.contains("Invalid choice") && one.contains("jira:10001"),
        "{one}"
    );
    // and the queue page reads SQS
    let (_, queue) = s.get("/queue").await;
    assert!(
        queue.contains(&events) && queue.contains("<dt>Dead letters</dt><dd>1</dd>"),
        "{queue}"
    );
    // and the feed reads the worker's lines (only the deliveries), newest first
    let (status, feed) = s.get("/feed").await;
    assert_eq!(status, 200, "{feed}");
    let rows: Vec<&str> = feed.split("<tr data-id=\"").skip(1).collect();
    assert_eq!(rows.len(), 3, "{feed}");
    assert!(
        rows[0].contains("AWS-2") && rows[0].contains("badge bad"),
        "{}",
        rows[0]
    );
    let (_, filtered) = s.get("/feed?key=AWS-1").await;
    assert_eq!(filtered.matches("<tr data-id=").count(), 2, "{filtered}");
    let (_, conv) = s.get("/conversation/AWS-1").await;
    assert!(
        conv.contains("INC0020001") && conv.contains("comment_created"),
        "{conv}"
    );
    assert!(
        conv.contains("servicenow: correlation_id = AWS-1 → INC0020001 (id sys-aws-1)"),
        "the link store's pairing: {conv}"
    );
    let row_id = rows[2].split('"').next().unwrap();
    let (status, one) = s.get(&format!("/delivery/{row_id}")).await;
    assert_eq!(status, 200, "{one}");
    assert!(
        one.contains("jira:issue_created") && one.contains("INC0020001"),
        "{one}"
    );
    // the metrics of a stack are CloudWatch's
    assert_eq!(s.get("/metrics").await.0, 404);

    // when: redriven from the page
    let (status, loc) = s
        .post(
            "/dead/redrive",
            &[("csrf", s.csrf.as_str()), ("id", id.as_str())],
        )
        .await;
    // then: it is back on the events queue, in its group
    assert_eq!(status, 303);
    assert!(loc.contains("is+back+in+the+queue"), "{loc}");
    let (_, queue) = s.get("/queue").await;
    assert!(
        queue.contains("<dt>Visible</dt><dd>1</dd>")
            && queue.contains("<dt>Dead letters</dt><dd>0</dd>"),
        "{queue}"
    );
}
