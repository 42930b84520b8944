//! Atlassian Document Format conversions.
//!
//! Jira Cloud's v3 API sends and demands ADF (a JSON tree) for descriptions
//! and comments; ServiceNow and Jira Server/DC (v2) speak plain text and wiki
//! markup. The relay converts ADF to plain text (for ServiceNow fields), ADF
//! to wiki markup (for v2 targets) and plain text to ADF paragraphs (for v3
//! targets, which reject a plain string). Unknown nodes degrade to their text
//! content rather than failing, since Atlassian adds node types over time.

use serde_json::{json, Value};

fn children(node: &Value) -> &[Value] {
    node.get("content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn attr<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    node.get("attrs").and_then(|a| a.get(name))
}

fn attr_str<'a>(node: &'a Value, name: &str) -> Option<&'a str> {
    attr(node, name).and_then(Value::as_str)
}

fn node_type(node: &Value) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

/// True if the value looks like an ADF document (`{"type": "doc", ...}`).
pub fn is_adf(v: &Value) -> bool {
    node_type(v) == "doc" && v.get("content").is_some()
}

// ---------------------------------------------------------------------------
// ADF → plain text

/// Renders ADF as readable plain text: blocks separated by blank lines, list
/// items with `- ` / `1. `, table cells with ` | `, mentions as `@Name`, links
/// as `text (url)`.
pub fn to_text(doc: &Value) -> String {
    let mut out = String::new();
    blocks_text(children(doc), &mut out, "");
    out.trim_end().to_owned()
}

fn blocks_text(nodes: &[Value], out: &mut String, indent: &str) {
    for n in nodes {
        block_text(n, out, indent);
    }
}

fn ensure_blank_line(out: &mut String) {
    if out.is_empty() {
        return;
    }
    while !out.ends_with("\n\n") {
        out.push('\n');
    }
}

fn block_text(n: &Value, out: &mut String, indent: &str) {
    match node_type(n) {
        "paragraph" | "heading" => {
            if indent.is_empty() {
                ensure_blank_line(out);
            }
            inline_text(children(n), out);
            out.push('\n');
        }
        "bulletList" | "orderedList" | "taskList" => {
            if indent.is_empty() {
                ensure_blank_line(out);
            }
            let start = attr(n, "order").and_then(Value::as_u64).unwrap_or(1);
            for (i, item) in children(n).iter().enumerate() {
                if matches!(node_type(item), "taskList" | "bulletList" | "orderedList") {
                    block_text(item, out, &format!("{indent}  "));
                    continue;
                }
                let marker = match node_type(n) {
                    "orderedList" => format!("{}. ", start.saturating_add(i as u64)),
                    "taskList" => {
                        if attr_str(item, "state") == Some("DONE") {
                            "[x] ".to_owned()
                        } else {
                            "[ ] ".to_owned()
                        }
                    }
                    _ => "- ".to_owned(),
                };
                out.push_str(indent);
                out.push_str(&marker);
                list_item_text(item, out, &format!("{indent}  "));
            }
        }
        "codeBlock" => {
            ensure_blank_line(out);
            inline_text(children(n), out);
            out.push('\n');
        }
        "blockquote" => {
            ensure_blank_line(out);
            let mut inner = String::new();
            blocks_text(children(n), &mut inner, "");
            for line in inner.trim_end().lines() {
                out.push_str("> ");
                out.push_str(line);
                out.push('\n');
            }
        }
        "rule" => {
            ensure_blank_line(out);
            out.push_str("----\n");
        }
        "table" => {
            ensure_blank_line(out);
            for row in children(n) {
                let cells: Vec<String> = children(row)
                    .iter()
                    .map(|c| {
                        let mut s = String::new();
                        blocks_text(children(c), &mut s, "");
                        s.split_whitespace().collect::<Vec<_>>().join(" ")
                    })
                    .collect();
                out.push_str(&cells.join(" | "));
                out.push('\n');
            }
        }
        "panel" | "expand" | "nestedExpand" | "layoutSection" | "layoutColumn" => {
            if let Some(title) = attr_str(n, "title") {
                ensure_blank_line(out);
                out.push_str(title);
                out.push('\n');
            }
            blocks_text(children(n), out, indent);
        }
        "mediaSingle" | "mediaGroup" => {
            for m in children(n) {
                ensure_blank_line(out);
                out.push_str(&media_label(m));
                out.push('\n');
            }
        }
        _ => {
            // Inline content at block level, or an unknown block: keep its text.
            if n.get("text").is_some() || children(n).iter().any(|c| c.get("text").is_some()) {
                inline_text(std::slice::from_ref(n), out);
                out.push('\n');
            } else {
                blocks_text(children(n), out, indent);
            }
        }
    }
}

fn list_item_text(item: &Value, out: &mut String, indent: &str) {
    let mut first = true;
    let kids = children(item);
    if node_type(item) == "taskItem" {
        inline_text(kids, out);
        out.push('\n');
        return;
    }
    for c in kids {
        match node_type(c) {
            "paragraph" => {
                if !first {
                    out.push_str(indent);
                }
                inline_text(children(c), out);
                out.push('\n');
            }
            _ => {
                if first {
                    out.push('\n');
                }
                block_text(c, out, indent);
            }
        }
        first = false;
    }
    if kids.is_empty() {
        out.push('\n');
    }
}

fn media_label(m: &Value) -> String {
    if let Some(url) = attr_str(m, "url") {
        format!("[media: {url}]")
    } else if let Some(alt) = attr_str(m, "alt") {
        format!("[media: {alt}]")
    } else {
        format!("[media: {}]", attr_str(m, "id").unwrap_or("attachment"))
    }
}

fn inline_text(nodes: &[Value], out: &mut String) {
    for n in nodes {
        match node_type(n) {
            "text" => {
                let t = n.get("text").and_then(Value::as_str).unwrap_or("");
                out.push_str(t);
                if let Some(href) = link_href(n) {
                    if href != t {
                        out.push_str(&format!(" ({href})"));
                    }
                }
            }
            "hardBreak" => out.push('\n'),
            "mention" => {
                let t = attr_str(n, "text").unwrap_or("@user");
                if !t.starts_with('@') {
                    out.push('@');
                }
                out.push_str(t);
            }
            "emoji" => out.push_str(
                attr_str(n, "text")
                    .or_else(|| attr_str(n, "shortName"))
                    .unwrap_or(""),
            ),
            "inlineCard" | "blockCard" | "embedCard" => {
                if out.chars().last().is_some_and(|c| !c.is_whitespace()) {
                    out.push(' ');
                }
                out.push_str(attr_str(n, "url").unwrap_or(""));
            }
            "status" => {
                out.push('[');
                out.push_str(attr_str(n, "text").unwrap_or(""));
                out.push(']');
            }
            "date" => {
                let ts = attr(n, "timestamp").map(crate::support::timefmt::parse_value);
                match ts {
                    Some(Ok(ts)) => out.push_str(&ts.strftime("%Y-%m-%d").to_string()),
                    _ => out.push_str("(date)"),
                }
            }
            "media" => out.push_str(&media_label(n)),
            _ => inline_text(children(n), out),
        }
    }
}

fn link_href(n: &Value) -> Option<&str> {
    n.get("marks")?
        .as_array()?
        .iter()
        .find(|m| node_type(m) == "link")
        .and_then(|m| attr_str(m, "href"))
}

// ---------------------------------------------------------------------------
// ADF → Jira wiki markup

/// Renders ADF as Jira wiki markup for v2 (Server/DC) targets.
pub fn to_wiki(doc: &Value) -> String {
    let mut out = String::new();
    blocks_wiki(children(doc), &mut out, "");
    out.trim_end().to_owned()
}

fn blocks_wiki(nodes: &[Value], out: &mut String, bullets: &str) {
    for n in nodes {
        block_wiki(n, out, bullets);
    }
}

fn block_wiki(n: &Value, out: &mut String, bullets: &str) {
    match node_type(n) {
        "paragraph" => {
            if bullets.is_empty() {
                ensure_blank_line(out);
            }
            inline_wiki(children(n), out);
            out.push('\n');
        }
        "heading" => {
            ensure_blank_line(out);
            let level = attr(n, "level")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 6);
            out.push_str(&format!("h{level}. "));
            inline_wiki(children(n), out);
            out.push('\n');
        }
        "bulletList" | "orderedList" | "taskList" => {
            if bullets.is_empty() {
                ensure_blank_line(out);
            }
            let mark = if node_type(n) == "orderedList" {
                "#"
            } else {
                "*"
            };
            let prefix = format!("{bullets}{mark}");
            for item in children(n) {
                if matches!(node_type(item), "taskList" | "bulletList" | "orderedList") {
                    block_wiki(item, out, &prefix);
                    continue;
                }
                out.push_str(&prefix);
                out.push(' ');
                if node_type(item) == "taskItem" {
                    out.push_str(if attr_str(item, "state") == Some("DONE") {
                        "[x] "
                    } else {
                        "[ ] "
                    });
                    inline_wiki(children(item), out);
                    out.push('\n');
                    continue;
                }
                let mut first = true;
                for c in children(item) {
                    if node_type(c) == "paragraph" {
                        if !first {
                            out.push_str(&prefix);
                            out.push(' ');
                        }
                        inline_wiki(children(c), out);
                        out.push('\n');
                    } else {
                        if first {
                            out.push('\n');
                        }
                        block_wiki(c, out, &prefix);
                    }
                    first = false;
                }
            }
        }
        "codeBlock" => {
            ensure_blank_line(out);
            match attr_str(n, "language") {
                Some(lang) if !lang.is_empty() => out.push_str(&format!("{{code:{lang}}}\n")),
                _ => out.push_str("{code}\n"),
            }
            inline_text(children(n), out);
            out.push_str("\n{code}\n");
        }
        "blockquote" => {
            ensure_blank_line(out);
            out.push_str("{quote}\n");
            let mut inner = String::new();
            blocks_wiki(children(n), &mut inner, "");
            out.push_str(inner.trim());
            out.push_str("\n{quote}\n");
        }
        "rule" => {
            ensure_blank_line(out);
            out.push_str("----\n");
        }
        "panel" => {
            ensure_blank_line(out);
            let kind = attr_str(n, "panelType").unwrap_or("info");
            let macro_name = match kind {
                "info" | "note" | "warning" | "tip" => kind,
                "error" => "warning",
                "success" => "tip",
                _ => "panel",
            };
            out.push_str(&format!("{{{macro_name}}}\n"));
            let mut inner = String::new();
            blocks_wiki(children(n), &mut inner, "");
            out.push_str(inner.trim());
            out.push_str(&format!("\n{{{macro_name}}}\n"));
        }
        "table" => {
            ensure_blank_line(out);
            for row in children(n) {
                for cell in children(row) {
                    let sep = if node_type(cell) == "tableHeader" {
                        "||"
                    } else {
                        "|"
                    };
                    out.push_str(sep);
                    let mut s = String::new();
                    blocks_wiki(children(cell), &mut s, "");
                    out.push_str(&s.trim().replace("\n\n", " \\\\ ").replace('\n', " "));
                }
                let last = children(row).last().map(node_type);
                out.push_str(if last == Some("tableHeader") {
                    "||\n"
                } else {
                    "|\n"
                });
            }
        }
        "mediaSingle" | "mediaGroup" => {
            for m in children(n) {
                ensure_blank_line(out);
                match attr_str(m, "url") {
                    Some(url) => out.push_str(&format!("!{url}!\n")),
                    None => out.push_str(&format!("{}\n", media_label(m))),
                }
            }
        }
        "expand" | "nestedExpand" | "layoutSection" | "layoutColumn" => {
            if let Some(title) = attr_str(n, "title") {
                ensure_blank_line(out);
                out.push_str(&format!("*{title}*\n"));
            }
            blocks_wiki(children(n), out, bullets);
        }
        _ => {
            if n.get("text").is_some() {
                inline_wiki(std::slice::from_ref(n), out);
                out.push('\n');
            } else {
                blocks_wiki(children(n), out, bullets);
            }
        }
    }
}

fn inline_wiki(nodes: &[Value], out: &mut String) {
    for n in nodes {
        match node_type(n) {
            "text" => {
                let mut t = n
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let marks = n.get("marks").and_then(Value::as_array);
                let mut link = None;
                for m in marks.into_iter().flatten() {
                    t = match node_type(m) {
                        "strong" => format!("*{t}*"),
                        "em" => format!("_{t}_"),
                        "strike" => format!("-{t}-"),
                        "underline" => format!("+{t}+"),
                        "code" => format!("{{{{{t}}}}}"),
                        "subsup" if attr_str(m, "type") == Some("sub") => format!("~{t}~"),
                        "subsup" => format!("^{t}^"),
                        "textColor" => match attr_str(m, "color") {
                            Some(c) => format!("{{color:{c}}}{t}{{color}}"),
                            None => t,
                        },
                        "link" => {
                            link = attr_str(m, "href").map(str::to_owned);
                            t
                        }
                        _ => t,
                    };
                }
                match link {
                    Some(href) => out.push_str(&format!("[{t}|{href}]")),
                    None => out.push_str(&t),
                }
            }
            "hardBreak" => out.push_str("\\\\\n"),
            "mention" => match attr_str(n, "id") {
                Some(id) => out.push_str(&format!("[~accountid:{id}]")),
                None => out.push_str(attr_str(n, "text").unwrap_or("@user")),
            },
            "inlineCard" | "blockCard" | "embedCard" => {
                if let Some(url) = attr_str(n, "url") {
                    out.push_str(&format!("[{url}]"));
                }
            }
            _ => inline_text(std::slice::from_ref(n), out),
        }
    }
}

// ---------------------------------------------------------------------------
// Plain text → ADF

/// Wraps plain text into an ADF document: blank lines separate paragraphs,
/// single line breaks become `hardBreak`s. Empty text gives an empty doc.
/// CRLF and a lone CR are line breaks too, so no text node holds a `\r`.
pub fn from_text(text: &str) -> Value {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut content = Vec::new();
    for para in normalised.split("\n\n") {
        let para = para.trim_matches('\n');
        if para.trim().is_empty() {
            continue;
        }
        let mut inline = Vec::new();
        for (i, line) in para.split('\n').enumerate() {
            if i > 0 {
                inline.push(json!({"type": "hardBreak"}));
            }
            if !line.is_empty() {
                inline.push(json!({"type": "text", "text": line}));
            }
        }
        content.push(json!({"type": "paragraph", "content": inline}));
    }
    json!({"type": "doc", "version": 1, "content": content})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_through_adf() {
        let t = "First line\nsecond line\n\nNew paragraph";
        let doc = from_text(t);
        assert_eq!(doc["content"].as_array().unwrap().len(), 2);
        assert_eq!(doc["content"][0]["content"][1]["type"], "hardBreak");
        assert_eq!(to_text(&doc), t);
        assert_eq!(from_text("")["content"], json!([]));
    }

    /// Found by the adf fuzz target: a lone CR before a blank line survived
    /// text → ADF → text and became a CRLF, so the round trip was not stable.
    #[test]
    fn lone_carriage_returns_are_line_breaks() {
        let t = "wab\r\r\n\n\nd\rx";
        let once = to_text(&from_text(t));
        assert_eq!(once, "wab\n\nd\nx");
        assert_eq!(to_text(&from_text(&once)), once);
        assert_eq!(from_text("a\rb"), from_text("a\nb"));
        assert_eq!(from_text("a\r\rb"), from_text("a\n\nb"));
    }

    /// An ordered list may start anywhere (`attrs.order`); numbering stops at
    /// the largest number instead of overflowing (a panic in checked builds,
    /// wrapping to 0 in release). Seen while writing the adf fuzz target.
    #[test]
    fn ordered_list_numbering_does_not_overflow() {
        let item = json!({"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x"}]}]});
        let doc = json!({"type": "doc", "version": 1, "content": [
            {"type": "orderedList", "attrs": {"order": u64::MAX - 1}, "content": [item, item, item]}
        ]});
        let max = u64::MAX;
        assert_eq!(to_text(&doc), format!("{}. x\n{max}. x\n{max}. x", max - 1));
    }

    #[test]
    fn marks_and_blocks_to_wiki() {
        let doc = json!({"type": "doc", "version": 1, "content": [
            {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Title"}]},
            {"type": "paragraph", "content": [
                {"type": "text", "text": "bold", "marks": [{"type": "strong"}]},
                {"type": "text", "text": " and "},
                {"type": "text", "text": "site", "marks": [{"type": "link", "attrs": {"href": "https://x.example"}}]}
            ]},
            {"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "one"}]}]},
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "two"}]}]}
            ]},
            {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [{"type": "text", "text": "fn main() {}"}]}
        ]});
        assert_eq!(
            to_wiki(&doc),
            "h2. Title\n\n*bold* and [site|https://x.example]\n\n* one\n* two\n\n{code:rust}\nfn main() {}\n{code}"
        );
        assert_eq!(
            to_text(&doc),
            "Title\n\nbold and site (https://x.example)\n\n- one\n- two\n\nfn main() {}"
        );
    }
}
