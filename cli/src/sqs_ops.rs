//! The operator verbs against SQS (the deployed stack): `relay queue stats`,
//! `relay dlq list|show|redrive` with `--sqs-url`, using the standard AWS
//! credential chain (`AWS_PROFILE`, `AWS_REGION`, SSO, …; `AWS_ENDPOINT_URL`
//! for an emulator).
//!
//! SQS cannot peek: `list`/`show` receive messages with a short visibility
//! timeout and make them visible again at once (explicitly, message by
//! message). A FIFO queue hands out one message per group at a time, so a
//! listing shows the oldest dead letter of each issue; `redrive --all` moves
//! them all. `redrive` sends each message back to `--to` (the events queue)
//! in its group with a new deduplication id (the original may still be in
//! the 5-minute dedup window), then deletes it from the DLQ — a move that
//! can be repeated safely if interrupted (at worst a message is sent twice,
//! and the worker's lookup-before-create makes that harmless).

use aws_sdk_sqs::types::{MessageSystemAttributeName as S, QueueAttributeName as Q};
use aws_sdk_sqs::Client;
use std::collections::HashMap;

pub struct Sqs {
    client: Client,
}

/// One dead letter as listed.
pub struct Dead {
    pub id: String,
    pub group: String,
    pub receive_count: String,
    pub reason: String,
    pub body: String,
    /// When it was sent to the dead-letter queue (ms since the epoch).
    pub sent_ms: i64,
    pub dedup_id: String,
    receipt: String,
    attributes: HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>,
}

fn sdk_err<E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata + 'static>(
    e: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> String {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("SQS: {c}: {m}"),
        (Some(c), None) => format!("SQS: {c}"),
        _ => format!("SQS: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)),
    }
}

impl Sqs {
    pub async fn new() -> Self {
        let conf = shared::support::aws::defaults().load().await;
        Self {
            client: Client::new(&conf),
        }
    }

    /// The approximate counts: (visible, in flight, delayed).
    pub async fn counts(&self, url: &str) -> Result<(u64, u64, u64), String> {
        let a = self.attributes(url).await?;
        let n = |k: Q| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            n(Q::ApproximateNumberOfMessages),
            n(Q::ApproximateNumberOfMessagesNotVisible),
            n(Q::ApproximateNumberOfMessagesDelayed),
        ))
    }

    /// The URL of the queue named `name` (in the credentials' account and region).
    pub async fn url_of(&self, name: &str) -> Result<String, String> {
        self.client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(sdk_err)?
            .queue_url
            .ok_or_else(|| format!("SQS gave no URL for {name}"))
    }

    async fn attributes(&self, url: &str) -> Result<HashMap<Q, String>, String> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Q::ApproximateNumberOfMessages)
            .attribute_names(Q::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(Q::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.attributes.unwrap_or_default())
    }

    pub async fn stats(&self, url: &str) -> Result<String, String> {
        let a = self.attributes(url).await?;
        let get = |k: Q| a.get(&k).cloned().unwrap_or_else(|| "?".into());
        Ok(format!(
            "visible {}  in_flight {}  delayed {}  (SQS approximate counts; age of the oldest message: CloudWatch ApproximateAgeOfOldestMessage)\n",
            get(Q::ApproximateNumberOfMessages),
            get(Q::ApproximateNumberOfMessagesNotVisible),
            get(Q::ApproximateNumberOfMessagesDelayed)
        ))
    }

    /// Receives up to `limit` messages, hidden for `hold` seconds.
    async fn take(&self, url: &str, limit: usize, hold: i32) -> Result<Vec<Dead>, String> {
        let mut out = Vec::new();
        while out.len() < limit {
            let got = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(((limit - out.len()).min(10)) as i32)
                .message_system_attribute_names(S::All)
                .message_attribute_names("All")
                .visibility_timeout(hold)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(sdk_err)?
                .messages
                .unwrap_or_default();
            if got.is_empty() {
                break;
            }
            for m in got {
                let sys = m.attributes.unwrap_or_default();
                let attrs = m.message_attributes.unwrap_or_default();
                out.push(Dead {
                    id: m.message_id.unwrap_or_default(),
                    group: sys.get(&S::MessageGroupId).cloned().unwrap_or_default(),
                    receive_count: sys
                        .get(&S::ApproximateReceiveCount)
                        .cloned()
                        .unwrap_or_default(),
                    reason: attrs
                        .get("relay-dead-reason")
                        .and_then(|v| v.string_value.clone())
                        .unwrap_or_else(|| {
                            "(no reason: moved by the queue's redrive policy)".into()
                        }),
                    body: m.body.unwrap_or_default(),
                    sent_ms: sys
                        .get(&S::SentTimestamp)
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_default(),
                    dedup_id: sys
                        .get(&S::MessageDeduplicationId)
                        .cloned()
                        .unwrap_or_default(),
                    receipt: m.receipt_handle.unwrap_or_default(),
                    attributes: attrs,
                });
            }
        }
        Ok(out)
    }

    /// Makes received messages visible again.
    async fn release(&self, url: &str, msgs: &[Dead]) -> Result<(), String> {
        for m in msgs {
            self.client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(&m.receipt)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(sdk_err)?;
        }
        Ok(())
    }

    pub async fn list(&self, url: &str, limit: usize) -> Result<Vec<Dead>, String> {
        let msgs = self.take(url, limit, 30).await?;
        self.release(url, &msgs).await?;
        Ok(msgs)
    }

    pub async fn show(&self, url: &str, id: &str) -> Result<Dead, String> {
        let msgs = self.take(url, 100, 30).await?;
        self.release(url, &msgs).await?;
        msgs.into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| format!("no dead letter {id} among the first 100 visible"))
    }

    /// Moves one (`id`) or all dead letters to `to`; returns how many.
    pub async fn redrive(&self, dlq: &str, to: &str, id: Option<&str>) -> Result<usize, String> {
        if let Some(id) = id {
            let msgs = self.take(dlq, 100, 60).await?;
            let (chosen, rest): (Vec<Dead>, Vec<Dead>) = msgs.into_iter().partition(|m| m.id == id);
            self.release(dlq, &rest).await?;
            if chosen.is_empty() {
                return Err(format!("no dead letter {id} among the first 100 visible"));
            }
            for m in &chosen {
                self.move_one(dlq, to, m).await?;
            }
            return Ok(chosen.len());
        }
        let mut moved = 0;
        loop {
            let msgs = self.take(dlq, 10, 60).await?;
            if msgs.is_empty() {
                return Ok(moved);
            }
            for m in &msgs {
                self.move_one(dlq, to, m).await?;
                moved += 1;
            }
        }
    }

    async fn move_one(&self, dlq: &str, to: &str, m: &Dead) -> Result<(), String> {
        let mut send = self
            .client
            .send_message()
            .queue_url(to)
            .message_body(&m.body)
            .message_group_id(if m.group.is_empty() {
                "redrive"
            } else {
                &m.group
            })
            .message_deduplication_id(shared::intake::envelope::sqs_id(&format!(
                "redrive:{}",
                m.id
            )));
        for (k, v) in &m.attributes {
            if !k.starts_with("relay-") {
                send = send.message_attributes(k, v.clone());
            }
        }
        send.send().await.map_err(sdk_err)?;
        self.client
            .delete_message()
            .queue_url(dlq)
            .receipt_handle(&m.receipt)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }
}
