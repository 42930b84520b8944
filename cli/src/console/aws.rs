//! The console's queue pages for a deployed stack (`relay console --aws`):
//! the events queue's counts and the dead-letter queue (list, show, redrive)
//! over SQS with the operator's AWS credentials. SQS cannot peek: a listing
//! receives with a short visibility timeout and hands the messages back at
//! once, and a FIFO queue shows one dead letter per issue at a time (see
//! `crate::sqs_ops`).

use super::source::Queues;
use crate::sqs_ops::{Dead, Sqs};
use shared::queue::{DeadLetter, QueueStats};

pub struct SqsQueues {
    pub sqs: Sqs,
    pub events: String,
    pub dlq: String,
}

fn dead_letter(d: Dead) -> DeadLetter {
    let at = jiff::Timestamp::from_millisecond(d.sent_ms).unwrap_or_default();
    DeadLetter {
        id: d.id,
        group_id: d.group,
        dedup_id: d.dedup_id,
        body: d.body,
        reason: d.reason,
        receive_count: d.receive_count.parse().unwrap_or(0),
        enqueued_at: at,
        dead_at: at,
    }
}

#[async_trait::async_trait]
impl Queues for SqsQueues {
    fn describe(&self) -> String {
        format!(
            "SQS {} (dead letters: {}); counts are SQS's approximations, the age of the oldest message is CloudWatch's ApproximateAgeOfOldestMessage",
            self.events, self.dlq
        )
    }

    async fn stats(&self) -> Result<QueueStats, String> {
        let (visible, in_flight, delayed) = self.sqs.counts(&self.events).await?;
        let (dead_visible, dead_in_flight, dead_delayed) = self.sqs.counts(&self.dlq).await?;
        Ok(QueueStats {
            visible,
            in_flight,
            delayed,
            dead: dead_visible + dead_in_flight + dead_delayed,
            groups: 0,
            oldest_age: None,
        })
    }

    async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, String> {
        let list = self.sqs.list(&self.dlq, limit.min(100)).await?;
        Ok(list.into_iter().map(dead_letter).collect())
    }

    async fn dead_get(&self, id: &str) -> Result<Option<DeadLetter>, String> {
        match self.sqs.show(&self.dlq, id).await {
            Ok(d) => Ok(Some(dead_letter(d))),
            Err(e) if e.starts_with("no dead letter") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn redrive(&self, id: Option<&str>) -> Result<usize, String> {
        match self.sqs.redrive(&self.dlq, &self.events, id).await {
            Err(e) if e.starts_with("no dead letter") => Ok(0),
            other => other,
        }
    }

    /// The queues answer (credentials, names, permissions); the Lambdas'
    /// own health is CloudWatch's (the template's alarms).
    async fn health(&self) -> Result<(), String> {
        self.sqs
            .counts(&self.events)
            .await
            .map(|_| ())
            .map_err(|e| format!("events_queue_unreachable: {e}"))
    }

    fn workers(&self) -> Option<(usize, usize)> {
        None
    }
}
