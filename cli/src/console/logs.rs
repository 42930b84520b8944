//! The message feed of a deployed stack: the worker function's
//! `relay::delivery` log lines (the same fields as `relay serve`'s journal
//! rows) through CloudWatch Logs Insights. The query filters on AWS; the
//! same filters run again here on what comes back, so an engine that does
//! not filter (moto answers only `fields`, `sort` and `limit`) shows the
//! same page. A row's id is its `@timestamp` in milliseconds: the delivery
//! page finds it again by that instant. The lines carry no calls (the
//! connector logs those at debug level): the delivery page shows none.

use super::source::Deliveries;
use aws_sdk_cloudwatchlogs::types::QueryStatus;
use aws_sdk_cloudwatchlogs::Client;
use serde_json::Value;
use shared::journal::sqlite::FeedQuery;
use shared::journal::{ConnectionHealth, Delivery};
use std::time::Duration;

/// The log lines of a handled message (`shared::worker`).
const WHAT: [&str; 3] = ["processed", "replayed", "parked event expired"];

pub struct LogsFeed {
    pub client: Client,
    /// The worker function's log group(s).
    pub groups: Vec<String>,
    /// How far back the feed looks without a time filter.
    pub window: Duration,
}

/// A value safe inside a quoted Logs Insights string (else the filter runs here only).
fn plain(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.@/ ".contains(c))
}

/// The Logs Insights query for `q`.
pub fn query_text(q: &FeedQuery) -> String {
    let mut s = String::from(
        "fields @timestamp, @message\n| filter message in [\"processed\", \"replayed\", \"parked event expired\"]",
    );
    if let Some(k) = q.key.as_deref().filter(|k| plain(k)) {
        s.push_str(&format!(
            "\n| filter source_key = \"{k}\" or target like \"{k}\""
        ));
    }
    for (field, v) in [
        ("endpoint", &q.endpoint),
        ("event", &q.event),
        ("outcome", &q.outcome),
    ] {
        if let Some(v) = v.as_deref().filter(|v| plain(v)) {
            s.push_str(&format!("\n| filter {field} = \"{v}\""));
        }
    }
    s.push_str(&format!(
        "\n| sort @timestamp desc\n| limit {}",
        q.limit.clamp(1, 1000)
    ));
    s
}

/// A worker log line (JSON) as a journal row; `None` for other lines.
pub fn delivery_of(at_ms: i64, message: &str) -> Option<Delivery> {
    let v: Value = serde_json::from_str(message).ok()?;
    let what = v.get("message")?.as_str()?;
    if !WHAT.contains(&what) {
        return None;
    }
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .unwrap_or_default()
    };
    let list = |k: &str| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in s(k).split(',').filter(|t| !t.is_empty()) {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_owned());
            }
        }
        out
    };
    Some(Delivery {
        id: at_ms,
        at_ms,
        received_at: String::new(),
        message_id: s("message_id"),
        endpoint: s("endpoint"),
        event: s("event"),
        event_type: String::new(),
        delivery_id: s("delivery_id"),
        change_id: s("change_id"),
        source_key: s("source_key"),
        origin: s("origin"),
        receive_count: s("receive_count").parse().unwrap_or(0),
        outcome: s("outcome"),
        reason: s("reason"),
        rules: list("rules"),
        targets: list("target"),
        calls: Vec::new(),
        duration_ms: s("duration_ms").parse().unwrap_or(0),
        dead_lettered: v
            .get("dead_lettered")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        what: what.to_owned(),
    })
}

/// Whether a row passes the feed's filters (run here as well as in the query).
fn wanted(d: &Delivery, q: &FeedQuery) -> bool {
    let eq = |want: &Option<String>, have: &str| {
        want.as_deref().is_none_or(|w| w.is_empty() || w == have)
    };
    q.key
        .as_deref()
        .is_none_or(|k| k.is_empty() || d.source_key == k || d.targets.iter().any(|t| t == k))
        && eq(&q.endpoint, &d.endpoint)
        && eq(&q.event, &d.event)
        && eq(&q.outcome, &d.outcome)
        && q.since_ms.is_none_or(|t| d.at_ms >= t)
        && q.until_ms.is_none_or(|t| d.at_ms <= t)
        && q.after_id.is_none_or(|t| d.id > t)
}

fn sdk_err(e: impl std::fmt::Display) -> String {
    format!("CloudWatch Logs: {e}")
}

impl LogsFeed {
    async fn run(&self, q: &FeedQuery) -> Result<Vec<Delivery>, String> {
        let now = jiff::Timestamp::now().as_millisecond();
        let from = q
            .since_ms
            .or(q.after_id.map(|a| a + 1))
            .unwrap_or(now - self.window.as_millis() as i64);
        let to = q.until_ms.unwrap_or(now);
        let started = self
            .client
            .start_query()
            .set_log_group_names(Some(self.groups.clone()))
            .start_time(from / 1000)
            .end_time(to / 1000 + 1)
            .query_string(query_text(q))
            .send()
            .await
            .map_err(|e| sdk_err(aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e)))?;
        let id = started.query_id.ok_or("CloudWatch Logs gave no query id")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .client
                .get_query_results()
                .query_id(&id)
                .send()
                .await
                .map_err(|e| sdk_err(aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e)))?;
            match r.status {
                Some(QueryStatus::Complete) => {
                    let mut rows = Vec::new();
                    for fields in r.results.unwrap_or_default() {
                        let get = |name: &str| {
                            fields
                                .iter()
                                .find(|f| f.field.as_deref() == Some(name))
                                .and_then(|f| f.value.clone())
                        };
                        let at = get("@timestamp").and_then(|t| timestamp_ms(&t));
                        if let (Some(at), Some(m)) = (at, get("@message")) {
                            rows.extend(delivery_of(at, &m).filter(|d| wanted(d, q)));
                        }
                    }
                    rows.sort_by_key(|d| std::cmp::Reverse(d.at_ms));
                    rows.truncate(q.limit.clamp(1, 1000));
                    return Ok(rows);
                }
                Some(QueryStatus::Running) | Some(QueryStatus::Scheduled) | None => {}
                Some(other) => return Err(format!("the Logs Insights query ended {other:?}")),
            }
            if tokio::time::Instant::now() > deadline {
                return Err("the Logs Insights query took longer than 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Logs Insights' `@timestamp` (`2026-12-05 10:30:00.123`, UTC) or epoch ms.
fn timestamp_ms(t: &str) -> Option<i64> {
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    format!("{}Z", t.trim().replace(' ', "T"))
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|ts| ts.as_millisecond())
}

#[async_trait::async_trait]
impl Deliveries for LogsFeed {
    async fn describe(&self) -> String {
        format!(
            "the worker's log lines in {} through CloudWatch Logs Insights (last {} h unless a time range is set)",
            self.groups.join(", "),
            self.window.as_secs() / 3600
        )
    }

    async fn feed(&self, q: FeedQuery) -> Result<Vec<Delivery>, String> {
        self.run(&q).await
    }

    async fn get(&self, id: i64) -> Result<Option<Delivery>, String> {
        let rows = self
            .run(&FeedQuery {
                since_ms: Some(id),
                until_ms: Some(id),
                limit: 50,
                ..FeedQuery::default()
            })
            .await?;
        Ok(rows.into_iter().find(|d| d.id == id))
    }

    async fn conversation(&self, key: String) -> Result<(Vec<String>, Vec<Delivery>), String> {
        shared::journal::conversation(&key, |k| {
            self.run_owned(FeedQuery {
                key: Some(k),
                limit: 1000,
                ..FeedQuery::default()
            })
        })
        .await
    }

    async fn choices(&self) -> [Vec<String>; 3] {
        let rows = self
            .run(&FeedQuery {
                limit: 500,
                ..FeedQuery::default()
            })
            .await
            .unwrap_or_default();
        let mut out: [Vec<String>; 3] = Default::default();
        for d in rows {
            for (i, v) in [d.endpoint, d.event, d.outcome].into_iter().enumerate() {
                if !v.is_empty() && !out[i].contains(&v) {
                    out[i].push(v);
                }
            }
        }
        for o in &mut out {
            o.sort();
        }
        out
    }

    fn connections(&self) -> Vec<ConnectionHealth> {
        Vec::new()
    }
}

impl LogsFeed {
    async fn run_owned(&self, q: FeedQuery) -> Result<Vec<Delivery>, String> {
        self.run(&q).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_line_is_a_row_and_the_query_filters_safely() {
        let line = r#"{"timestamp":"2026-12-05T12:22:10.891758Z","level":"INFO","message":"processed","message_id":"m1","endpoint":"jira","event":"jira:issue_updated","delivery_id":"d1","change_id":"issue:10001:changelog:10100","source_key":"DEMO-1","origin":"webhook","receive_count":1,"outcome":"applied","reason":"","rules":"update fields:update,status to state:transition","skipped":"","target":"INC0010001,INC0010001","dead_lettered":false,"dlq_error":"","duration_ms":4}"#;
        let d = delivery_of(7, line).unwrap();
        assert_eq!(d.source_key, "DEMO-1");
        assert_eq!(d.targets, ["INC0010001"]);
        assert_eq!(d.rules.len(), 2);
        assert_eq!(d.receive_count, 1);
        assert!(delivery_of(7, r#"{"message":"webhook accepted"}"#).is_none());
        assert!(delivery_of(7, "not json").is_none());
        let q = FeedQuery {
            key: Some("DEMO-1".into()),
            outcome: Some("dead\" | fields @message".into()),
            limit: 5000,
            ..FeedQuery::default()
        };
        let text = query_text(&q);
        assert!(text.contains("filter source_key = \"DEMO-1\""), "{text}");
        assert!(
            !text.contains("dead\\\""),
            "an unsafe value is not put in the query: {text}"
        );
        assert!(text.ends_with("limit 1000"));
        assert!(!wanted(&d, &q), "the unsafe filter still runs here");
        assert_eq!(
            timestamp_ms("2026-12-05 12:22:10.891"),
            Some(1_796_473_330_891)
        );
    }
}
