//! Lambda's SQS event source mapping, played by the tests: receive a batch
//! from moto, hand the worker Lambda's own handler (`worker::handle`) the
//! `SqsEvent` Lambda would build from it, then settle every message
//! (deleted, or visible again at once when the handler reported it failed).
//!
//! `round` is the whole cycle; the steps are public for harnesses that need
//! to act between them (the soak records what is in flight to simulate a
//! crash).

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName as S};
use serde_json::{json, Value};
use shared::queue::{InMessage, Inbox};
use shared::worker::Worker;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a receive that failed reports.
pub type ReceiveError =
    aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::receive_message::ReceiveMessageError>;

/// Receives up to `max` visible messages with their system attributes,
/// hiding them for 30 s, without waiting.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    max: i32,
) -> Result<Vec<Message>, ReceiveError> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        .message_system_attribute_names(S::All)
        .visibility_timeout(30)
        .wait_time_seconds(0)
        .send()
        .await?;
    Ok(out.messages.unwrap_or_default())
}

/// The event exactly as Lambda's SQS event source writes it for `msgs`,
/// received from `queue_url`.
pub fn sqs_event(msgs: &[Message], queue_url: &str) -> SqsEvent {
    let queue = queue_url.rsplit('/').next().unwrap_or(queue_url);
    let records: Vec<Value> = msgs
        .iter()
        .map(|m| {
            let attrs: HashMap<String, String> = m
                .attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attrs,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a valid SqsEvent")
}

/// `msgs` as the worker core receives them (through the handler's own
/// conversion), for tests that call `Worker::run_batch` themselves.
pub fn in_messages(msgs: &[Message], queue_url: &str) -> Vec<InMessage> {
    sqs_event(msgs, queue_url)
        .records
        .iter()
        .map(worker::in_message)
        .collect()
}

/// Invokes the worker handler with `event` and an invocation deadline
/// `within` from now; returns the ids it reported failed.
pub async fn invoke(
    worker: &Worker,
    inbox: &dyn Inbox,
    event: SqsEvent,
    within: Duration,
) -> Vec<String> {
    let mut ctx = lambda_runtime::Context::default();
    ctx.deadline = (SystemTime::now() + within)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    worker::handle(worker, inbox, lambda_runtime::LambdaEvent::new(event, ctx))
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// Settles one received message after an invocation: deleted, or (reported
/// failed) visible again at once instead of after its visibility timeout.
/// Returns whether SQS took the call.
pub async fn settle(sqs: &aws_sdk_sqs::Client, queue_url: &str, m: &Message, failed: bool) -> bool {
    let receipt = m.receipt_handle.clone().expect("a received message");
    if failed {
        sqs.change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .is_ok()
    } else {
        sqs.delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .is_ok()
    }
}

/// What one round saw.
#[derive(Debug, Default)]
pub struct Round {
    /// The ids handed to the handler (empty: the queue had nothing visible).
    pub seen: Vec<String>,
    /// The ids it reported failed.
    pub failed: Vec<String>,
}

/// One event-source round: receive up to `max`, invoke the handler with a
/// deadline `within` from now, settle every message.
pub async fn round(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    max: i32,
    worker: &Worker,
    inbox: &dyn Inbox,
    within: Duration,
) -> Round {
    let msgs = receive(sqs, queue_url, max)
        .await
        .expect("receive from moto");
    if msgs.is_empty() {
        return Round::default();
    }
    let failed = invoke(worker, inbox, sqs_event(&msgs, queue_url), within).await;
    for m in &msgs {
        let id = m.message_id.as_deref().unwrap();
        let failed = failed.iter().any(|f| f == id);
        assert!(
            settle(sqs, queue_url, m, failed).await,
            "settle {id} in moto"
        );
    }
    Round {
        seen: msgs.iter().map(|m| m.message_id.clone().unwrap()).collect(),
        failed,
    }
}
