//! Timestamps as Jira and ServiceNow write them.
//!
//! Jira sends ISO-8601 with a `-0800` offset and milliseconds
//! (`2019-02-15T19:01:52.971-0800`) in fields and epoch milliseconds in the
//! webhook's `timestamp`; ServiceNow's Table API sends `2019-09-26 23:01:45`
//! in UTC, as a string. Mappings convert between them with the `date`,
//! `servicenow_date` and `jira_date` template filters.

use jiff::{civil::DateTime, tz::TimeZone, Timestamp};

/// Parses any of the accepted shapes into an instant.
pub fn parse(text: &str) -> Result<Timestamp, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = t
            .parse()
            .map_err(|_| format!("`{t}` is not epoch milliseconds"))?;
        return Timestamp::from_millisecond(ms).map_err(|e| format!("`{t}`: {e}"));
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    // Jira: offset without a colon, `-0800`.
    if let Some(fixed) = colonise_offset(t) {
        if let Ok(ts) = fixed.parse::<Timestamp>() {
            return Ok(ts);
        }
    }
    // ServiceNow: `YYYY-MM-DD HH:MM:SS`, UTC.
    if let Ok(dt) = t.replacen(' ', "T", 1).parse::<DateTime>() {
        return dt
            .to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| format!("`{t}`: {e}"));
    }
    Err(format!(
        "`{t}` is not a Jira (2019-02-15T19:01:52.971-0800, epoch ms) or ServiceNow (2019-09-26 23:01:45) timestamp"
    ))
}

/// Parses a JSON value: a string in any accepted shape or epoch milliseconds.
pub fn parse_value(v: &serde_json::Value) -> Result<Timestamp, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not epoch milliseconds"))
            .and_then(|ms| Timestamp::from_millisecond(ms).map_err(|e| e.to_string())),
        serde_json::Value::String(s) => parse(s),
        other => Err(format!("{other} is not a timestamp")),
    }
}

/// `2019-09-26 23:01:45`, UTC, as ServiceNow's Table API expects.
pub fn to_servicenow(ts: Timestamp) -> String {
    ts.to_zoned(TimeZone::UTC)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `2019-02-15T19:01:52.971+0000`, as Jira's REST API expects in date-time fields.
pub fn to_jira(ts: Timestamp) -> String {
    ts.to_zoned(TimeZone::UTC)
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// RFC 3339 in UTC.
pub fn to_rfc3339(ts: Timestamp) -> String {
    ts.to_string()
}

fn colonise_offset(t: &str) -> Option<String> {
    let b = t.as_bytes();
    if b.len() < 6 {
        return None;
    }
    let (head, tail) = t.split_at(t.len() - 5);
    let tb = tail.as_bytes();
    if (tb[0] == b'+' || tb[0] == b'-')
        && tb[1..].iter().all(u8::is_ascii_digit)
        && head.contains('T')
    {
        Some(format!("{head}{}:{}", &tail[..3], &tail[3..]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jira_offset_and_epoch_and_servicenow() {
        let a = parse("2019-02-15T19:01:52.971-0800").unwrap();
        assert_eq!(a.to_string(), "2019-02-16T03:01:52.971Z");
        assert_eq!(parse("1550286112971").unwrap(), a);
        assert_eq!(
            parse_value(&serde_json::json!(1550286112971i64)).unwrap(),
            a
        );
        let s = parse("2019-09-26 23:01:45").unwrap();
        assert_eq!(s.to_string(), "2019-09-26T23:01:45Z");
        assert_eq!(to_servicenow(a), "2019-02-16 03:01:52");
        assert_eq!(to_jira(s), "2019-09-26T23:01:45.000+0000");
        assert_eq!(
            parse("2020-06-11T09:00:00Z").unwrap().as_second(),
            1_591_866_000
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2019-1-30 15:51:34,870",
            "2019-02-30 10:00:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
