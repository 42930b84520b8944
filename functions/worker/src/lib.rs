//! The worker Lambda's SQS batch handler: Lambda types in, the worker
//! core's batch out. A library so that integration tests drive the very
//! function the Lambda runs with real `SqsEvent`s.
#![forbid(unsafe_code)]

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use shared::outbound::Budget;
use shared::queue::{InMessage, Inbox};
use shared::worker::Worker;
use std::time::Duration;

/// Time kept free at the end of an invocation to return the batch response.
const RESERVE: Duration = Duration::from_millis(500);

/// Converts one SQS record. A record without an id cannot be reported
/// failed; SQS always sends one.
pub fn in_message(m: &SqsMessage) -> InMessage {
    let attr = |k: &str| m.attributes.get(k).cloned();
    InMessage {
        id: m.message_id.clone().unwrap_or_default(),
        group_id: attr("MessageGroupId"),
        dedup_id: attr("MessageDeduplicationId"),
        body: m.body.clone().unwrap_or_default(),
        receive_count: attr("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        receipt: m.receipt_handle.clone(),
    }
}

/// The invocation deadline (epoch milliseconds) as a budget
/// ([`Budget::until_unix_ms`]).
pub fn budget(deadline_ms: u64, now: jiff::Timestamp) -> Budget {
    Budget::until_unix_ms(deadline_ms, now, RESERVE)
}

pub async fn handle(
    worker: &Worker,
    inbox: &dyn Inbox,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let messages: Vec<InMessage> = event.payload.records.iter().map(in_message).collect();
    let budget = budget(event.context.deadline, worker.links().clock().now());
    tracing::debug!(
        records = messages.len(),
        deadline_ms = event.context.deadline,
        remaining_ms = budget.remaining().as_millis() as u64,
        "batch"
    );
    let report = worker.run_batch(inbox, &messages, &budget).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[tokio::test]
    async fn deadlines_absolute_and_relative() {
        let in_10s = SystemTime::now() + Duration::from_secs(10);
        let ms = in_10s.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = budget(ms, jiff::Timestamp::now()).remaining();
        assert!(
            left > Duration::from_secs(9) && left <= Duration::from_secs(10),
            "{left:?}"
        );
        // cargo lambda watch: a duration.
        let left = budget(600_000, jiff::Timestamp::now()).remaining();
        assert!(left > Duration::from_secs(590), "{left:?}");
        // Already past.
        assert_eq!(
            budget(ms - 60_000, jiff::Timestamp::now()).remaining(),
            Duration::ZERO
        );
    }
}
