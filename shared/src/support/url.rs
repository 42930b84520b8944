//! URL helpers the rules, the connectors and the link store share.

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `url` lies under `base` (same scheme, host and port; path under
/// the base path; no dot segments, credentials or backslashes to play
/// tricks with).
pub fn url_is_under(url: &str, base: &str) -> bool {
    let (Ok(u), Ok(b)) = (url::Url::parse(url), url::Url::parse(base)) else {
        return false;
    };
    if url.contains('\\') || !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    // `Url::parse` resolves dot segments; a raw `..` or encoded one is refused.
    let raw_path = url.split(['?', '#']).next().unwrap_or("");
    let lowered = raw_path.to_ascii_lowercase();
    if raw_path.contains("/../")
        || raw_path.ends_with("/..")
        || lowered.contains("%2e%2e")
        || lowered.contains("%2f")
    {
        return false;
    }
    if u.scheme() != b.scheme()
        || u.host_str() != b.host_str()
        || u.port_or_known_default() != b.port_or_known_default()
    {
        return false;
    }
    let base_path = b.path().trim_end_matches('/');
    let path = u.path();
    path.len() > base_path.len() && path.starts_with(base_path) && {
        let rest = &path[base_path.len()..];
        rest.starts_with('/') && rest.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("SUP-1"), "SUP-1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn urls_under_the_base() {
        let base = "https://example.atlassian.net";
        assert!(url_is_under(
            "https://example.atlassian.net/secure/attachment/1/a.png",
            base
        ));
        assert!(url_is_under(
            "https://example.atlassian.net/rest/api/3/attachment/content/10000",
            base
        ));
        for bad in [
            "https://evil.example/secure/attachment/1/a.png",
            "https://example.atlassian.net.evil.example/x",
            "https://example.atlassian.net@evil.example/x",
            "https://user:pw@example.atlassian.net/x",
            "http://example.atlassian.net/x",
            "https://example.atlassian.net:8443/x",
            "https://example.atlassian.net/../x",
            "https://example.atlassian.net/a/%2e%2e/x",
            "https://example.atlassian.net\\@evil.example/",
            "https://example.atlassian.net",
            "not a url",
        ] {
            assert!(!url_is_under(bad, base), "{bad}");
        }
        let prefixed = "https://api.atlassian.com/ex/jira/abc";
        assert!(url_is_under(
            "https://api.atlassian.com/ex/jira/abc/rest/api/3/attachment/content/1",
            prefixed
        ));
        assert!(!url_is_under(
            "https://api.atlassian.com/ex/jira/abcdef/rest",
            prefixed
        ));
        assert!(!url_is_under(
            "https://api.atlassian.com/ex/jira/other/rest",
            prefixed
        ));
        assert!(url_is_under(
            "http://127.0.0.1:8080/f/1",
            "http://127.0.0.1:8080"
        ));
        assert!(!url_is_under(
            "http://127.0.0.1:8081/f/1",
            "http://127.0.0.1:8080"
        ));
    }
}
