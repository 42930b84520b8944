//! The link store on AWS: one DynamoDB table (feature `aws`).
//!
//! Why DynamoDB: the worker Lambda runs many invocations at once, on no
//! disk that outlives them, so the store must be a service; DynamoDB gives
//! read-after-write consistency (`ConsistentRead`), a real conditional write
//! (what [`LinkBackend::put_new`] needs, which SSM has not) and per-item
//! expiry, and costs nothing while idle.
//!
//! How (the template's `LinksTable`):
//! - partition key `pk` (S), sort key `sk` (S); attributes `value` (S) and
//!   `expires_at` (N, Unix seconds; absent for an entry that never expires);
//! - on-demand capacity (`PAY_PER_REQUEST`): no capacity to size, no throttling
//!   alarm to watch at the relay's volumes;
//! - `expires_at` is the table's TTL attribute. **TTL deletes lazily** (AWS
//!   removes expired items within a few days, not at the second), so every
//!   read filters: [`get`](LinkBackend::get) drops an expired item, `query`
//!   has a `FilterExpression`, and `put_new` may replace an expired item
//!   (`attribute_not_exists(pk) OR expires_at <= :now`). Expiry is decided by
//!   the `now` the caller passes (the store's clock), never by the table;
//! - point-in-time recovery, encryption with the AWS managed key and a
//!   `Retain` deletion policy in the template: the entries can be rebuilt
//!   from the paired records, but that costs lookups and loses the parked
//!   events.
//!
//! The worker's role may call `GetItem`, `PutItem`, `DeleteItem` and `Query`
//! on this table only (no `Scan`). Errors become [`LinkError::Unavailable`]
//! with the operation and the SDK's error code (`ThrottlingException`,
//! `AccessDeniedException`, …) or transport failure, never a request, a key
//! or a credential.

use super::{Entry, LinkBackend, LinkError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// Partition key attribute (S).
pub const PK: &str = "pk";
/// Sort key attribute (S).
pub const SK: &str = "sk";
/// The entry's value (S).
pub const VALUE: &str = "value";
/// Expiry in Unix seconds (N): the table's TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Longest error detail kept (an SDK error chain can be long).
const MAX_DETAIL: usize = 300;

/// Items asked of one `Query` page at most.
const MAX_PAGE: usize = 1000;

type Item = HashMap<String, AttributeValue>;

/// [`LinkBackend`] on one DynamoDB table.
#[derive(Clone)]
pub struct DynamoBackend {
    client: Client,
    table: String,
}

impl std::fmt::Debug for DynamoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoBackend")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoBackend {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A backend from a loaded AWS configuration (start it from
    /// [`crate::support::aws::sdk_config`]: its timeouts bound every call).
    pub fn from_conf(conf: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(conf), table)
    }

    /// The standard AWS configuration ([`crate::support::aws::sdk_config`]: credential
    /// chain, region, `AWS_ENDPOINT_URL`, short timeouts) and table `table`.
    pub async fn from_env(table: impl Into<String>) -> Self {
        Self::from_conf(&crate::support::aws::sdk_config(None).await, table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> LinkError {
    let detail = match &e {
        _ if e.code().is_some() => e.code().unwrap_or_default().to_owned(),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => format!("unreachable ({})", root_cause(&e)),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        SdkError::ServiceError(s) => format!("HTTP {}", s.raw().status().as_u16()),
        _ => root_cause(&e),
    };
    let detail: String = detail.chars().take(MAX_DETAIL).collect();
    LinkError::Unavailable(format!("DynamoDB {op}: {detail}"))
}

/// The innermost error's message (`Connection refused (os error 111)`),
/// without the chain's request URLs and debug dumps.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn item_of(entry: &Entry) -> Item {
    let mut item = Item::with_capacity(4);
    item.insert(PK.into(), s(&entry.pk));
    item.insert(SK.into(), s(&entry.sk));
    item.insert(VALUE.into(), s(&entry.value));
    if let Some(t) = entry.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(t));
    }
    item
}

fn entry_of(item: &Item) -> Result<Entry, LinkError> {
    let corrupt = |what: &str| {
        let at = match (item.get(PK), item.get(SK)) {
            (Some(AttributeValue::S(p)), Some(AttributeValue::S(k))) => format!("{p} {k}"),
            _ => "an item".to_owned(),
        };
        LinkError::Corrupt(format!("DynamoDB {at}: {what}"))
    };
    let text = |name: &'static str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(corrupt(&format!("no string {name}"))),
    };
    let pk = text(PK)?;
    let sk = text(SK)?;
    let value = text(VALUE)?;
    let expires_at =
        match item.get(TTL_ATTRIBUTE) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(AttributeValue::N(v)) => Some(v.parse::<i64>().map_err(|_| {
                corrupt(&format!("{TTL_ATTRIBUTE} `{v}` is not whole Unix seconds"))
            })?),
            Some(_) => return Err(corrupt(&format!("{TTL_ATTRIBUTE} is not a number"))),
        };
    Ok(Entry {
        pk,
        sk,
        value,
        expires_at,
    })
}

#[async_trait]
impl LinkBackend for DynamoBackend {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Entry>, LinkError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        match out.item {
            // TTL deletes lazily: an expired item may still be there.
            Some(item) => Ok(Some(entry_of(&item)?).filter(|e| e.live(now))),
            None => Ok(None),
        }
    }

    async fn put(&self, entry: &Entry) -> Result<(), LinkError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(entry)))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", e))?;
        Ok(())
    }

    async fn put_new(&self, entry: &Entry, now: i64) -> Result<bool, LinkError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(entry)))
            // No item, or one that expired but TTL has not removed yet. An
            // item without `expires_at` never matches `<=`: it stays.
            .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LinkError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", e))?;
        Ok(())
    }

    async fn query(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Entry>, LinkError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        let key_condition = if prefix.is_empty() {
            "#pk = :pk"
        } else {
            "#pk = :pk AND begins_with(#sk, :prefix)"
        };
        while found.len() < limit {
            // `Limit` counts the items read before the filter drops the
            // expired ones: ask for what is missing and page on.
            let page = (limit - found.len()).min(MAX_PAGE) as i32;
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression(key_condition)
                .filter_expression("attribute_not_exists(#exp) OR #exp > :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":now", n(now))
                .limit(page)
                .set_exclusive_start_key(start.take());
            if !prefix.is_empty() {
                req = req
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":prefix", s(prefix));
            }
            let out = req.send().await.map_err(|e| unavailable("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let entry = entry_of(&item)?;
                // The filter already did this; a backend that did not would be caught here.
                if entry.live(now) && found.len() < limit {
                    found.push(entry);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        for expires_at in [None, Some(1_796_409_115)] {
            let e = Entry {
                pk: "rec/servicenow/correlation_id/SUP-7".into(),
                sk: "-".into(),
                value: r#"{"id":"abc"}"#.into(),
                expires_at,
            };
            let item = item_of(&e);
            assert_eq!(item.contains_key(TTL_ATTRIBUTE), expires_at.is_some());
            assert_eq!(entry_of(&item).unwrap(), e);
        }
    }

    #[test]
    fn unreadable_items_are_corrupt() {
        let mut item = item_of(&Entry {
            pk: "p".into(),
            sk: "s".into(),
            value: "v".into(),
            expires_at: None,
        });
        item.insert(TTL_ATTRIBUTE.into(), s("tomorrow"));
        let err = entry_of(&item).unwrap_err().to_string();
        assert!(
            err.contains("DynamoDB p s: expires_at is not a number"),
            "{err}"
        );
        item.insert(TTL_ATTRIBUTE.into(), AttributeValue::N("1.5".into()));
        assert!(entry_of(&item).is_err());
        item.remove(TTL_ATTRIBUTE);
        item.remove(VALUE);
        let err = entry_of(&item).unwrap_err().to_string();
        assert!(err.contains("no string value"), "{err}");
    }
}
