//! SQS FIFO adapter for the queue port.

use super::{OutgoingMessage, Queue, QueueError, SendReceipt};
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
