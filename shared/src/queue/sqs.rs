//! SQS FIFO adapter for the queue port.

use super::port::{OutgoingMessage, Queue, QueueError, SendReceipt};
use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// A queue client from a loaded AWS configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::new(Client::new(conf), queue_url)
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, m: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_group_id(m.group_id)
            .message_deduplication_id(m.dedup_id)
            .message_body(m.body);
        for (name, value) in m.attributes {
            let attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Rejected(e.to_string()))?;
            req = req.message_attributes(name, attr);
        }
        match req.send().await {
            Ok(out) => Ok(SendReceipt {
                message_id: out.message_id.unwrap_or_default(),
                duplicate: false,
            }),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), SendMessageError::InvalidMessageContents(_)) =>
            {
                Err(QueueError::Rejected("InvalidMessageContents".to_owned()))
            }
            Err(e) => Err(QueueError::Unavailable(match e.code() {
                Some(code) => code.to_owned(),
                None => DisplayErrorContext(&e).to_string(),
            })),
        }
    }
}

/// The worker's [`crate::queue::port::Inbox`] on SQS: dead letters are sent to
/// the DLQ (same group, the original message id as dedup id, the reason and
/// receive count as message attributes); delays are visibility changes on
/// the source queue.
#[derive(Clone)]
pub struct SqsInbox {
    client: Client,
    queue_url: String,
    dlq_url: String,
}

/// SQS message attributes hold at most 256 KiB with the body; reasons are short anyway.
const MAX_REASON: usize = 1000;

impl SqsInbox {
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
        }
    }

    pub fn from_conf(
        conf: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
        dlq_url: impl Into<String>,
    ) -> Self {
        Self::new(Client::new(conf), queue_url, dlq_url)
    }
}

fn attr(v: impl Into<String>) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| QueueError::Rejected(e.to_string()))
}

fn unavailable<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError {
    QueueError::Unavailable(match e.code() {
        Some(code) => code.to_owned(),
        None => DisplayErrorContext(&e).to_string(),
    })
}

#[async_trait]
impl crate::queue::port::Inbox for SqsInbox {
    async fn dead_letter(
        &self,
        msg: &crate::queue::port::InMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let reason: String = reason.chars().take(MAX_REASON).collect();
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_group_id(msg.group_id.clone().unwrap_or_else(|| "dead".into()))
            .message_deduplication_id(crate::intake::envelope::sqs_id(&format!("dead:{}", msg.id)))
            .message_body(&msg.body)
            .message_attributes("relay-dead-reason", attr(reason)?)
            .message_attributes("relay-source-message-id", attr(&msg.id)?)
            .message_attributes("relay-receive-count", attr(msg.receive_count.to_string())?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delay(
        &self,
        msg: &crate::queue::port::InMessage,
        after: std::time::Duration,
    ) -> Result<(), QueueError> {
        let Some(receipt) = &msg.receipt else {
            return Ok(());
        };
        // SQS allows 0..=43200 s.
        let secs = after.as_secs().clamp(1, 43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
