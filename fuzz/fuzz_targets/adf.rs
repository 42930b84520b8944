//! Atlassian Document Format conversions: ADF → plain text, ADF → wiki
//! markup, plain text → ADF.
//!
//! Input: any bytes. If they are a JSON value, it is converted as a document
//! (whatever its shape: unknown and malformed nodes must degrade, not fail);
//! the input as (lossy) UTF-8 text goes through text → ADF → text.
//!
//! Checks, beyond "no panic":
//! - `from_text` makes a valid document (`is_adf`, `version: 1`), with only
//!   paragraphs holding non-empty `text` nodes without line breaks and
//!   `hardBreak`s (Jira's v3 API refuses empty text nodes);
//! - text → ADF → text gives the text normalised as documented (CRLF, CR → LF,
//!   paragraphs split at blank lines, newline-trimmed, blank ones dropped,
//!   trailing whitespace removed) — computed here independently;
//! - that round trip is stable: applying it to its own output changes nothing,
//!   also for the text of an arbitrary document (a description that goes to
//!   ServiceNow and comes back);
//! - wiki rendering of a `from_text` document keeps every line's text, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shared::rules::adf::{from_text, is_adf, to_text, to_wiki};

/// The documented normal form of plain text after text → ADF → text.
fn normalised(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
        .collect();
    paragraphs.join("\n\n").trim_end().to_owned()
}

fn check_doc_shape(doc: &Value) {
    assert!(is_adf(doc), "from_text made no ADF document: {doc}");
    assert_eq!(doc["version"], 1);
    for p in doc["content"].as_array().expect("content is an array") {
        assert_eq!(p["type"], "paragraph");
        let inline = p["content"].as_array().expect("paragraph content");
        assert!(!inline.is_empty(), "empty paragraph");
        for n in inline {
            match n["type"].as_str() {
                Some("text") => {
                    let t = n["text"].as_str().expect("text node has text");
                    assert!(!t.is_empty(), "empty text node");
                    assert!(!t.contains(['\n', '\r']), "line break inside a text node");
                }
                Some("hardBreak") => {}
                other => panic!("unexpected node {other:?}"),
            }
        }
    }
}

fn round_trip(text: &str) -> String {
    let doc = from_text(text);
    check_doc_shape(&doc);
    let back = to_text(&doc);
    assert_eq!(back, normalised(text), "text → ADF → text of {text:?}");
    let again = to_text(&from_text(&back));
    assert_eq!(again, back, "text → ADF → text is not stable for {text:?}");
    // Wiki markup of plain paragraphs: every non-blank line's text is there,
    // in order.
    let wiki = to_wiki(&doc);
    let mut at = 0;
    for line in back.lines().filter(|l| !l.trim().is_empty()) {
        match wiki[at..].find(line) {
            Some(i) => at += i + line.len(),
            None => panic!("wiki lost {line:?} (or its order): {wiki:?}"),
        }
    }
    back
}

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        let _ = is_adf(&doc);
        let text = to_text(&doc);
        let _ = to_wiki(&doc);
        round_trip(&text);
    }
    round_trip(&String::from_utf8_lossy(data));
});
