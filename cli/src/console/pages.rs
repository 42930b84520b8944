//! The console's pages: server-rendered HTML, every value escaped, the CSS
//! and the script embedded in the binary (no CDN, no build step).

use shared::journal::{ConnectionHealth, Delivery};
use shared::queue::{DeadLetter, QueueStats};
use std::fmt::Write;

pub const CSS: &str = include_str!("assets/console.css");
pub const JS: &str = include_str!("assets/console.js");

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `2026-12-05 12:03:04` (UTC) from Unix milliseconds.
pub fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The page around `body`; `csrf` for the log-out form.
pub fn layout(title: &str, active: &str, csrf: Option<&str>, body: &str) -> String {
    let nav = [
        ("feed", "/feed", "Feed"),
        ("dead", "/dead", "Dead letters"),
        ("queue", "/queue", "Queue & health"),
        ("config", "/config", "Config"),
    ]
    .iter()
    .map(|(k, href, label)| {
        let cls = if *k == active {
            " class=\"active\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{cls} id=\"nav-{k}\">{label}</a>")
    })
    .collect::<String>();
    let logout = csrf
        .map(|t| {
            format!(
                "<form method=\"post\" action=\"/logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
                esc(t)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · jira-relay</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
<body><header><span class=\"brand\">jira-relay</span><nav>{nav}</nav>{logout}</header>\
<main>{body}</main><script src=\"/assets/console.js\"></script></body></html>\n",
        esc(title)
    )
}

pub fn login(error: Option<&str>, token: &str) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<section class=\"login\"><h1>Operator console</h1>{err}\
<form method=\"post\" action=\"/login\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<label>User <input id=\"login-user\" name=\"username\" autocomplete=\"username\" value=\"admin\"></label>\
<label>Password <input id=\"login-password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
<button id=\"login-submit\" type=\"submit\">Log in</button></form></section>",
        esc(token)
    );
    layout("Log in", "", None, &body)
}

fn outcome_badge(o: &str) -> String {
    let cls = match o {
        "applied" => "ok",
        "dead" => "bad",
        "retry" | "held" | "deadline" => "warn",
        _ => "info",
    };
    format!("<span class=\"badge {cls}\">{}</span>", esc(o))
}

fn key_link(k: &str) -> String {
    if k.is_empty() {
        String::new()
    } else {
        format!(
            "<a class=\"conv-link\" href=\"/conversation/{}\">{}</a>",
            enc(k),
            esc(k)
        )
    }
}

fn key_links(keys: &[String]) -> String {
    keys.iter()
        .map(|k| key_link(k))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One feed row (the script renders the same columns for live rows).
pub fn feed_row(d: &Delivery) -> String {
    format!(
        "<tr data-id=\"{id}\"><td><a href=\"/delivery/{id}\">{id}</a></td><td class=\"time\">{at}</td>\
<td class=\"wide\">{ep}</td><td>{ev}</td><td>{key}</td><td>{out}</td>\
<td class=\"wide reason\">{reason}</td><td>{targets}</td></tr>",
        id = d.id,
        at = esc(&time(d.at_ms)),
        ep = esc(&d.endpoint),
        ev = esc(&d.event),
        key = key_link(&d.source_key),
        out = outcome_badge(&d.outcome),
        reason = esc(&d.reason),
        targets = key_links(&d.targets),
    )
}

pub struct FeedFilters {
    pub key: String,
    pub endpoint: String,
    pub event: String,
    pub outcome: String,
    pub since: String,
    pub until: String,
}

fn select(id: &str, name: &str, current: &str, options: &[String]) -> String {
    let mut s = format!("<select id=\"{id}\" name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if o == current { " selected" } else { "" };
        let _ = write!(s, "<option{sel}>{}</option>", esc(o));
    }
    s + "</select>"
}

pub fn feed(
    rows: &[Delivery],
    f: &FeedFilters,
    choices: &[Vec<String>; 3],
    csrf: &str,
    note: &str,
) -> String {
    let body = format!(
        "<h1>Message feed <span id=\"live\" class=\"live\">live</span></h1>\
<form class=\"filters\" method=\"get\" action=\"/feed\" id=\"feed-filters\">\
<label>Record <input id=\"filter-key\" name=\"key\" value=\"{key}\" placeholder=\"DEMO-1, INC0010001\"></label>\
<label>Endpoint {ep}</label><label>Event {ev}</label><label>Outcome {out}</label>\
<label>From <input type=\"datetime-local\" name=\"since\" value=\"{since}\"></label>\
<label>To <input type=\"datetime-local\" name=\"until\" value=\"{until}\"></label>\
<button id=\"filter-submit\" type=\"submit\">Filter</button> <a href=\"/feed\">clear</a></form>\
<p class=\"note\">{note}</p>\
<div class=\"scroll\"><table id=\"feed-table\"><thead><tr><th>#</th><th class=\"time\">Time (UTC)</th><th class=\"wide\">Endpoint</th>\
<th>Event</th><th>Record</th><th>Outcome</th><th class=\"wide\">Reason</th><th>Target</th></tr></thead>\
<tbody>{rows}</tbody></table></div>",
        key = esc(&f.key),
        ep = select("filter-endpoint", "endpoint", &f.endpoint, &choices[0]),
        ev = select("filter-event", "event", &f.event, &choices[1]),
        out = select("filter-outcome", "outcome", &f.outcome, &choices[2]),
        since = esc(&f.since),
        until = esc(&f.until),
        note = esc(note),
        rows = rows.iter().map(feed_row).collect::<String>(),
    );
    layout("Feed", "feed", Some(csrf), &body)
}

fn calls_table(d: &Delivery) -> String {
    if d.calls.is_empty() {
        return "<p>No calls.</p>".into();
    }
    let mut s = String::from(
        "<div class=\"scroll\"><table id=\"calls\"><thead><tr><th>Connection</th><th>Method</th><th>Path</th><th>Status</th><th>ms</th></tr></thead><tbody>",
    );
    for c in &d.calls {
        let status = c
            .status
            .map(|s| s.to_string())
            .or_else(|| c.error.clone())
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"path\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.connection),
            esc(&c.method),
            esc(&c.path),
            esc(&status),
            c.duration_ms
        );
    }
    s + "</tbody></table></div>"
}

pub fn delivery(d: &Delivery, still_dead: bool, csrf: &str) -> String {
    let dl = [
        ("Received", d.received_at.clone()),
        ("Handled", time(d.at_ms)),
        ("Endpoint", d.endpoint.clone()),
        ("Event", d.event.clone()),
        ("Event type", d.event_type.clone()),
        ("Delivery id", d.delivery_id.clone()),
        ("Change id", d.change_id.clone()),
        ("Origin", d.origin.clone()),
        ("Message", d.message_id.clone()),
        ("Receive", d.receive_count.to_string()),
        ("Duration", format!("{} ms", d.duration_ms)),
        ("Rules", d.rules.join(", ")),
        ("Reason", d.reason.clone()),
    ]
    .iter()
    .map(|(k, v)| format!("<dt>{k}</dt><dd>{}</dd>", esc(v)))
    .collect::<String>();
    let dead = if still_dead {
        format!(
            "<p>In the dead-letter table: <a href=\"/dead/{}\">show and redrive</a></p>",
            enc(&d.message_id)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Delivery {id} {out}</h1>{dead}<p>Record {key} → {targets}</p><dl id=\"delivery\">{dl}</dl><h2>Calls</h2>{calls}",
        id = d.id,
        out = outcome_badge(&d.outcome),
        key = key_link(&d.source_key),
        targets = key_links(&d.targets),
        calls = calls_table(d),
    );
    layout(&format!("Delivery {}", d.id), "feed", Some(csrf), &body)
}

/// `(key, link to the record in its system)` for the pair's header.
pub fn conversation(
    key: &str,
    records: &[(String, Option<String>)],
    pairs: &[String],
    rows: &[Delivery],
    kinds: &dyn Fn(&str) -> &'static str,
    csrf: &str,
) -> String {
    let recs = records
        .iter()
        .map(|(k, url)| match url {
            Some(u) => format!(
                "<li><b>{}</b> <a class=\"record-link\" href=\"{}\" rel=\"noreferrer\" target=\"_blank\">open in its system</a></li>",
                esc(k),
                esc(u)
            ),
            None => format!("<li><b>{}</b></li>", esc(k)),
        })
        .collect::<String>();
    let mut table = String::from(
        "<div class=\"scroll\"><table id=\"conversation\"><thead><tr><th>#</th><th>Time (UTC)</th><th>Direction</th><th>Event</th><th>From</th><th>Outcome</th><th>To</th></tr></thead><tbody>",
    );
    for d in rows {
        let _ = write!(
            table,
            "<tr><td><a href=\"/delivery/{id}\">{id}</a></td><td>{at}</td><td>{dir}</td><td>{ev}</td><td>{from}</td><td>{out}</td><td>{to}</td></tr>",
            id = d.id,
            at = esc(&time(d.at_ms)),
            dir = esc(kinds(&d.endpoint)),
            ev = esc(&d.event),
            from = esc(&d.source_key),
            out = outcome_badge(&d.outcome),
            to = esc(&d.targets.join(", ")),
        );
    }
    table.push_str("</tbody></table></div>");
    let body = format!(
        "<h1>Conversation of {}</h1><ul class=\"records\" id=\"pair\">{recs}</ul>\
<h2>Paired in the link store</h2><ul class=\"records\" id=\"stored-pairs\">{}</ul>{table}",
        esc(key),
        pairs
            .iter()
            .map(|p| format!("<li>{}</li>", esc(p)))
            .collect::<String>()
    );
    layout(&format!("Conversation {key}"), "feed", Some(csrf), &body)
}

/// What a dead letter's envelope says (endpoint, event, record), if it is one.
pub fn envelope_head(body: &str) -> (String, String, String) {
    match shared::intake::envelope::Envelope::decode(body) {
        Ok(e) => (e.endpoint, e.event, e.source_key.unwrap_or_default()),
        Err(_) => Default::default(),
    }
}

pub fn dead_list(list: &[DeadLetter], result: &str, csrf: &str) -> String {
    let mut rows = String::new();
    for d in list {
        let (ep, ev, key) = envelope_head(&d.body);
        let _ = write!(
            rows,
            "<tr><td><a href=\"/dead/{idq}\">{id}</a></td><td>{at}</td><td>{ep}</td><td>{ev}</td><td>{key}</td>\
<td class=\"reason\">{reason}</td><td>{n}</td><td><form method=\"post\" action=\"/dead/redrive\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
<button class=\"redrive-one\" type=\"submit\">Redrive</button></form></td></tr>",
            idq = enc(&d.id),
            id = esc(&d.id),
            at = esc(&d.dead_at.strftime("%Y-%m-%d %H:%M:%S").to_string()),
            ep = esc(&ep),
            ev = esc(&ev),
            key = key_link(&key),
            reason = esc(&d.reason),
            n = d.receive_count,
            csrf = esc(csrf),
        );
    }
    let result = if result.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"result\" id=\"redrive-result\">{}</p>",
            esc(result)
        )
    };
    let all = if list.is_empty() {
        "<p id=\"dead-empty\">No dead letters.</p>".to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/dead/redrive\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button id=\"redrive-all\" type=\"submit\">Redrive all {}</button></form>",
            esc(csrf),
            list.len()
        )
    };
    let body = format!(
        "<h1>Dead letters</h1>{result}{all}<div class=\"scroll\"><table id=\"dead-table\"><thead><tr><th>Message</th>\
<th>Dead since (UTC)</th><th>Endpoint</th><th>Event</th><th>Record</th><th>Reason</th><th>Receives</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table></div>"
    );
    layout("Dead letters", "dead", Some(csrf), &body)
}

pub fn dead_one(d: &DeadLetter, csrf: &str) -> String {
    let pretty = serde_json::from_str::<serde_json::Value>(&d.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| d.body.clone());
    let body = format!(
        "<h1>Dead letter {id}</h1><dl><dt>Reason</dt><dd id=\"dead-reason\">{reason}</dd><dt>Receives</dt><dd>{n}</dd>\
<dt>Queued</dt><dd>{q}</dd><dt>Dead since</dt><dd>{at}</dd><dt>Group</dt><dd>{g}</dd></dl>\
<form method=\"post\" action=\"/dead/redrive\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"id\" value=\"{id}\"><button class=\"redrive-one\" type=\"submit\">Redrive</button></form>\
<h2>Envelope</h2><pre id=\"dead-envelope\">{pretty}</pre>",
        id = esc(&d.id),
        reason = esc(&d.reason),
        n = d.receive_count,
        q = esc(&d.enqueued_at.to_string()),
        at = esc(&d.dead_at.to_string()),
        g = esc(&d.group_id),
        csrf = esc(csrf),
        pretty = esc(&pretty),
    );
    layout("Dead letter", "dead", Some(csrf), &body)
}

pub struct QueueView<'a> {
    /// Which queue this is.
    pub queue: String,
    pub stats: Result<&'a QueueStats, &'a str>,
    pub health: Result<(), String>,
    /// (alive, started) worker loops, where this process runs them.
    pub workers: Option<(usize, usize)>,
    pub connections: &'a [ConnectionHealth],
    pub sweeps: &'a [crate::reconcile::SweepStatus],
    pub journal: String,
    /// The webhook listener's refusals by reason (`None`: a stack's API
    /// Gateway, whose throttles are CloudWatch's).
    pub refusals: Option<Vec<(&'static str, u64)>>,
}

/// What each listener refusal means, for the console.
fn refusal_meaning(reason: &str) -> &'static str {
    match reason {
        "connection_cap" => "closed on accept: the listener served its maximum of connections",
        "header_timeout" => "the request head did not arrive within the header timeout",
        "body_timeout" => "the request body did not arrive within the body timeout (408)",
        "rate_limited_client" => "one client address over its rate (429 with Retry-After)",
        "rate_limited_endpoint" => "one endpoint over its rate (429 with Retry-After)",
        "plain_http" => "plain HTTP sent to the HTTPS listener (400, or 308 with --redirect-http)",
        "tls_handshake" => "the TLS handshake failed or did not finish in time",
        _ => "",
    }
}

pub fn queue(v: &QueueView<'_>, csrf: &str) -> String {
    let stats = match v.stats {
        Ok(s) => format!(
            "<dl id=\"queue-stats\"><dt>Visible</dt><dd>{}</dd><dt>In flight</dt><dd>{}</dd><dt>Delayed</dt><dd>{}</dd>\
<dt>Groups</dt><dd>{}</dd><dt>Oldest</dt><dd>{}</dd><dt>Dead letters</dt><dd>{}</dd></dl>",
            s.visible,
            s.in_flight,
            s.delayed,
            s.groups,
            s.oldest_age
                .map(|a| format!("{:.1} s", a.as_secs_f64()))
                .unwrap_or_else(|| "–".into()),
            s.dead
        ),
        Err(e) => format!(
            "<p class=\"error\">The queue cannot be read: {}</p>",
            esc(e)
        ),
    };
    let health = match &v.health {
        Ok(()) => "<p id=\"health\" class=\"badge ok\">healthy</p>".to_owned(),
        Err(r) => format!(
            "<p id=\"health\" class=\"badge bad\">unhealthy: {}</p>",
            esc(r)
        ),
    };
    let mut conns = String::new();
    for c in v.connections {
        let _ = write!(
            conns,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td></tr>",
            esc(&c.connection),
            c.calls,
            c.last_success_ms.map(time).unwrap_or_else(|| "–".into()),
            c.last_failure_ms.map(time).unwrap_or_else(|| "–".into()),
            esc(&c.last_failure)
        );
    }
    if conns.is_empty() {
        conns = "<tr><td colspan=\"5\">No calls yet.</td></tr>".into();
    }
    let mut sweeps = String::new();
    for s in v.sweeps {
        let _ = write!(
            sweeps,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td></tr>",
            esc(&s.endpoint),
            esc(&time(s.at_ms)),
            s.scanned,
            s.drift,
            s.enqueued,
            esc(&s.problem)
        );
    }
    if sweeps.is_empty() {
        sweeps = "<tr><td colspan=\"6\">No sweep has run (none configured, or not yet).</td></tr>"
            .into();
    }
    let refusals = match &v.refusals {
        None => "<p>The stack's webhook listener is API Gateway: its throttles and 4xx are CloudWatch's.</p>".to_owned(),
        Some(list) if list.is_empty() => "<p id=\"refusals\">No request refused at the webhook listener since start.</p>".to_owned(),
        Some(list) => {
            let mut rows = String::new();
            for (reason, n) in list {
                let _ = write!(
                    rows,
                    "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>",
                    esc(reason),
                    esc(refusal_meaning(reason))
                );
            }
            format!("<div class=\"scroll\"><table id=\"refusals\"><thead><tr><th>Reason</th><th>Since start</th>\
<th>Meaning</th></tr></thead><tbody>{rows}</tbody></table></div>")
        }
    };
    let body = format!(
        "<h1>Queue &amp; health</h1>{health}<p>{}</p><h2>Queue</h2><p class=\"note\">{}</p>{stats}\
<h2>Connections</h2><div class=\"scroll\"><table id=\"connections\"><thead><tr><th>Connection</th><th>Calls</th>\
<th>Last success</th><th>Last failure</th><th>Failure</th></tr></thead><tbody>{conns}</tbody></table></div>\
<h2>Reconciliation</h2><div class=\"scroll\"><table id=\"sweeps\"><thead><tr><th>Endpoint</th><th>Last run</th><th>Scanned</th>\
<th>Drift</th><th>Queued</th><th>Problem</th></tr></thead><tbody>{sweeps}</tbody></table></div>\
<h2>Refused at the webhook listener</h2>{refusals}<h2>Journal</h2><p>{}</p>",
        match v.workers {
            Some((alive, all)) => format!("Worker loops alive: {alive} of {all}"),
            None => "The workers are the stack's Lambda functions: their errors and throttles are CloudWatch's (the template's alarms and dashboard).".into(),
        },
        esc(&v.queue),
        esc(&v.journal)
    );
    layout("Queue & health", "queue", Some(csrf), &body)
}

pub fn config(
    path: &str,
    text: &str,
    endpoints: &[String],
    payload: &str,
    chosen: &str,
    output: Option<&Result<String, String>>,
    csrf: &str,
) -> String {
    let opts = endpoints
        .iter()
        .map(|e| {
            let sel = if e == chosen { " selected" } else { "" };
            format!("<option{sel}>{}</option>", esc(e))
        })
        .collect::<String>();
    let out = match output {
        None => String::new(),
        Some(Ok(t)) => format!("<h2>Plan</h2><pre id=\"dry-run-output\">{}</pre>", esc(t)),
        Some(Err(e)) => format!(
            "<h2>Plan</h2><pre id=\"dry-run-output\" class=\"error\">{}</pre>",
            esc(e)
        ),
    };
    let body = format!(
        "<h1>Config</h1><h2>Dry run</h2><p>Paste a webhook body: the plan is what <code>relay dry-run</code> prints — the decision and the exact requests, nothing sent.</p>\
<form method=\"post\" action=\"/config/dry-run\" class=\"dry-run\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Endpoint <select id=\"dry-run-endpoint\" name=\"endpoint\"><option value=\"\">by the payload</option>{opts}</select></label>\
<textarea id=\"dry-run-payload\" name=\"payload\" rows=\"10\" spellcheck=\"false\">{payload}</textarea>\
<button id=\"dry-run-submit\" type=\"submit\">Plan</button></form>{out}\
<h2>Loaded from {path}</h2><p class=\"note\">Secrets are named here, never their values (they live in the secrets file).</p><pre id=\"config-text\">{text}</pre>",
        csrf = esc(csrf),
        payload = esc(payload),
        path = esc(path),
        text = esc(text),
    );
    layout("Config", "config", Some(csrf), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_it_prints() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let d = Delivery {
            id: 7,
            source_key: "<script>alert(1)</script>".into(),
            reason: "\"><img src=x onerror=alert(1)>".into(),
            outcome: "dead".into(),
            ..Delivery::default()
        };
        let row = feed_row(&d);
        assert!(!row.contains("<script>") && !row.contains("<img"), "{row}");
        assert!(row.contains("/conversation/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"));
    }
}
