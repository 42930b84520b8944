//! Canary secrets for leak tests: a recognisable random prefix that every
//! secret value of a test run starts with, and a scanner that finds it in
//! text as is, base64-encoded at any alignment (an `Authorization: Basic`
//! value holds `user:password` encoded) and hex-encoded.

use base64::Engine as _;

/// `SECRET-CANARY-<random>`: unique per call.
pub fn new_base() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "SECRET-CANARY-{:x}{:x}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Finds a canary in text.
pub struct Scanner {
    needles: Vec<(String, &'static str)>,
}

impl Scanner {
    pub fn new(base: &str) -> Self {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let mut needles = vec![(base.to_owned(), "plain")];
        for (engine, label) in [(&STANDARD, "base64"), (&URL_SAFE, "base64url")] {
            for k in 0..3usize {
                let mut bytes = vec![b':'; k];
                bytes.extend_from_slice(base.as_bytes());
                let enc = engine.encode(&bytes);
                // Only the groups made of canary bytes alone are stable.
                let start = k.div_ceil(3) * 4;
                let end = (bytes.len() / 3) * 4;
                needles.push((enc[start..end].to_owned(), label));
            }
        }
        let hex: String = base.bytes().map(|b| format!("{b:02x}")).collect();
        needles.push((hex, "hex"));
        Self { needles }
    }

    /// The first canary form found in `text`.
    pub fn find(&self, text: &str) -> Option<&'static str> {
        self.needles
            .iter()
            .find(|(n, _)| text.contains(n.as_str()))
            .map(|(_, l)| *l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plain_base64_and_hex_forms() {
        let c = new_base();
        assert_ne!(c, new_base());
        let s = Scanner::new(&c);
        assert_eq!(s.find("nothing to see"), None);
        assert_eq!(s.find(&format!("x={c}-token y")), Some("plain"));
        for user in ["u", "us", "use", "relay.integration"] {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{c}-pw"));
            assert_eq!(s.find(&format!("Basic {basic}")), Some("base64"), "{user}");
        }
        let hex: String = format!("k={c}")
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(s.find(&hex), Some("hex"));
    }
}
