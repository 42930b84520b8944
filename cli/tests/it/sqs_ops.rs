//! `relay dlq … --sqs-url` and `relay queue stats --sqs-url` against moto's
//! SQS, with dead letters written the way the worker writes them.
#![cfg(feature = "aws")]

use shared::queue::{InMessage, Inbox};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

fn relay(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn fifo(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    sqs.create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(A::FifoQueue, "true")
        .attributes(A::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// moto's endpoint and an SDK config for it; `None` (said loudly, and a
/// failure under `CI=true`) when the emulator is not running.
pub async fn moto() -> Option<(String, aws_config::SdkConfig)> {
    let Some(moto) = std::env::var("RELAY_TEST_AWS_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        sandbox::missing(
            "the AWS emulator (RELAY_TEST_AWS_ENDPOINT)",
            "run bash infra/scripts/test.sh",
        );
        return None;
    };
    let conf = shared::support::aws::defaults()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .endpoint_url(&moto)
        .load()
        .await;
    Some((moto, conf))
}

#[tokio::test]
async fn dead_letters_on_sqs_are_listed_shown_and_redriven() {
    let Some((moto, conf)) = moto().await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let run = std::process::id();
    let events = fifo(&sqs, &format!("ops-events-{run}")).await;
    let dlq = fifo(&sqs, &format!("ops-dlq-{run}")).await;
    // Two dead letters of two issues, written as the worker writes them.
    let inbox = shared::queue::SqsInbox::from_conf(&conf, events.clone(), dlq.clone());
    for (i, reason) in [
        "target_rejected: 400 from servicenow: Invalid choice",
        "attachment_too_large: 9 MB",
    ]
    .iter()
    .enumerate()
    {
        let msg = InMessage {
            id: format!("msg-{i}"),
            group_id: Some(format!("jira:1000{i}")),
            dedup_id: Some(format!("jira:d-{i}")),
            body: format!("{{\"v\":1,\"n\":{i}}}"),
            receive_count: 1,
            receipt: None,
        };
        inbox.dead_letter(&msg, reason).await.unwrap();
    }

    let (ok, out, err) = relay(&moto, &["dlq", "list", "--sqs-url", &dlq]);
    assert!(ok, "{err}");
    assert!(
        out.contains("target_rejected: 400 from servicenow: Invalid choice"),
        "{out}"
    );
    assert!(
        out.contains("attachment_too_large: 9 MB") && out.contains("2 dead letter(s)"),
        "{out}"
    );
    // Listing consumed nothing.
    let (ok, out, _) = relay(&moto, &["dlq", "list", "--sqs-url", &dlq]);
    assert!(ok && out.contains("2 dead letter(s)"), "{out}");
    let id = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (ok, out, err) = relay(&moto, &["dlq", "show", &id, "--sqs-url", &dlq]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert!(shown["envelope"]["v"] == 1);

    let (ok, _, err) = relay(&moto, &["dlq", "redrive", "--all", "--sqs-url", &dlq]);
    assert!(!ok && err.contains("--to"), "{err}");
    let (ok, out, err) = relay(
        &moto,
        &[
            "dlq",
            "redrive",
            "--all",
            "--sqs-url",
            &dlq,
            "--to",
            &events,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2 message(s) back on the queue\n");
    let (ok, out, _) = relay(&moto, &["queue", "stats", "--sqs-url", &events]);
    assert!(ok && out.starts_with("visible 2  in_flight 0"), "{out}");
    let (ok, out, _) = relay(&moto, &["queue", "stats", "--sqs-url", &dlq]);
    assert!(ok && out.starts_with("visible 0  in_flight 0"), "{out}");
    // Back in their groups, the relay's own attributes dropped.
    let back = relay_tests_drain(&sqs, &events).await;
    let mut groups: Vec<String> = back.iter().map(|(g, _)| g.clone()).collect();
    groups.sort();
    assert_eq!(groups, ["jira:10000", "jira:10001"]);
    assert!(back
        .iter()
        .all(|(_, attrs)| !attrs.iter().any(|a| a.starts_with("relay-"))));
}

async fn relay_tests_drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, Vec<String>)> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as S;
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(S::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.attributes
                    .unwrap_or_default()
                    .get(&S::MessageGroupId)
                    .cloned()
                    .unwrap_or_default(),
                m.message_attributes
                    .unwrap_or_default()
                    .into_keys()
                    .collect(),
            )
        })
        .collect()
}
