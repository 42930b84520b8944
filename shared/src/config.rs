//! The relay's configuration: one YAML file, loaded once, validated with
//! messages that name the file, the line and the field.
//!
//! Loading goes in three steps: `${ENV}` interpolation (so one file can name
//! stage-specific secret ids that the SAM template passes in), typed parsing
//! with `serde-saphyr` (every parse error carries the field path and the line),
//! then semantic checks over the parsed tree, which keep the YAML line of each
//! checked item so they can point at it too. Secrets never appear in the file:
//! it names them by [`SecretRef`].

use crate::secret::SecretRef;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Default for `limits.max_body_bytes`: a webhook of this size still fits SQS's
/// classic 256 KiB message limit once wrapped in the envelope.
pub const DEFAULT_MAX_BODY_BYTES: usize = 250_000;
/// Upper bound for `limits.max_body_bytes`: SQS's 1 MiB maximum less room for the
/// envelope header and message attributes.
pub const MAX_BODY_BYTES_CEILING: usize = 1_048_576 - 8_192;

/// The typed, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub version: u32,
    pub limits: Limits,
    pub endpoints: Vec<Endpoint>,
    /// Outbound systems the rules write to.
    pub connections: Vec<crate::connections::Connection>,
    /// Ordered routing and mapping rules.
    pub rules: Vec<crate::rules::Rule>,
    /// Per-endpoint whitelists by endpoint name (`endpoints[].whitelist`);
    /// kept here so that `Endpoint` stays a plain auth/routing record.
    pub whitelists: std::collections::BTreeMap<String, crate::whitelist::Whitelist>,
    /// Reconciliation sweeps by endpoint name (`endpoints[].reconcile`).
    pub reconcile: std::collections::BTreeMap<String, crate::reconcile::ReconcileSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted webhook body in bytes; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// An inbound webhook endpoint: `POST /webhooks/{name}`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub kind: SourceKind,
    pub stage: Stage,
    pub auth: EndpointAuth,
}

/// Which system calls an endpoint; decides how its payloads are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Jira,
    Servicenow,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Jira => "jira",
            SourceKind::Servicenow => "servicenow",
        }
    }
}

/// Jira and ServiceNow integrations keep test and production apart by URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Test,
    Prod,
}

/// How a caller proves who it is. Every configured method is checked; with
/// `require: any` one passing method is enough (useful while moving a sender
/// from one method to another).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAuth {
    /// Shared token in the `?token=` query parameter (Jira admin webhooks cannot
    /// send headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// HMAC-SHA256 key for `X-Hub-Signature: sha256=<hex>` over the raw body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<SecretRef>,
    /// `Authorization: Basic` (ServiceNow REST messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<SecretRef>,
    #[serde(default)]
    pub require: Require,
}

impl EndpointAuth {
    /// Number of configured methods.
    pub fn method_count(&self) -> usize {
        usize::from(self.token.is_some())
            + usize::from(self.hmac.is_some())
            + usize::from(self.basic.is_some())
            + usize::from(self.bearer.is_some())
    }

    /// Every secret this endpoint reads.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        let mut refs = Vec::new();
        refs.extend(self.token.as_ref());
        refs.extend(self.hmac.as_ref());
        if let Some(b) = &self.basic {
            refs.push(&b.username);
            refs.push(&b.password);
        }
        refs.extend(self.bearer.as_ref());
        refs
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: SecretRef,
    pub password: SecretRef,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    #[default]
    All,
    Any,
}

// ---------------------------------------------------------------------------
// Errors

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Path of the field, e.g. `endpoints[1].auth.token`.
    pub field: String,
    pub message: String,
    /// What would fix it, when we can say.
    pub fix: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found, empty for an I/O error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&file.display().to_string());
        if let Some(line) = p.line {
            out.push_str(&format!(":{line}"));
            if let Some(col) = p.column {
                out.push_str(&format!(":{col}"));
            }
        }
        out.push_str(": ");
        if !p.field.is_empty() {
            out.push_str(&p.field);
            out.push_str(": ");
        }
        out.push_str(&p.message);
        if let Some(fix) = &p.fix {
            out.push_str(" (fix: ");
            out.push_str(fix);
            out.push(')');
        }
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_problems(
            Path::new("config"),
            std::slice::from_ref(self),
        ))
    }
}

// ---------------------------------------------------------------------------
// Raw (as written) form, with YAML positions for the semantic checks

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Spanned<u32>,
    #[serde(default)]
    limits: Option<Spanned<Limits>>,
    endpoints: Spanned<Vec<RawEndpoint>>,
    #[serde(default)]
    connections: Vec<Spanned<crate::connections::ConnectionSpec>>,
    #[serde(default)]
    rules: Vec<Spanned<crate::rules::RuleSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: Spanned<String>,
    kind: SourceKind,
    stage: Stage,
    auth: Spanned<EndpointAuth>,
    #[serde(default)]
    whitelist: Option<Spanned<crate::whitelist::WhitelistSpec>>,
    #[serde(default)]
    reconcile: Option<Spanned<crate::reconcile::spec::ReconcileYaml>>,
}

impl Config {
    /// Reads and validates the file at `path`, interpolating `${NAME}` from the
    /// process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses and validates YAML text. `origin` is only used in messages;
    /// `env` resolves `${NAME}` references.
    pub fn from_yaml(
        text: &str,
        origin: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = origin.as_ref().to_owned();
        let invalid = |problems| ConfigError::Invalid {
            file: file.clone(),
            problems,
        };
        let text = interpolate(text, env).map_err(|p| invalid(vec![p]))?;
        let raw: RawConfig =
            serde_saphyr::from_str(&text).map_err(|e| invalid(vec![parse_problem(&text, &e)]))?;
        let mut problems = Vec::new();
        let config = check(raw, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    /// The endpoint with this URL name.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The whitelist of an endpoint, if it has one.
    pub fn whitelist(&self, endpoint: &str) -> Option<&crate::whitelist::Whitelist> {
        self.whitelists.get(endpoint)
    }

    /// The outbound connection with this name.
    pub fn connection(&self, name: &str) -> Option<&crate::connections::Connection> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// Turns a serde-saphyr error about `text` into a [`Problem`] that also names
/// the field at the error's position.
fn parse_problem(text: &str, error: &serde_saphyr::Error) -> Problem {
    let (line, column) = match error.location() {
        Some(l) if l.line() > 0 => (Some(l.line()), Some(l.column())),
        _ => (None, None),
    };
    // The message without the snippet and without the position, which the
    // problem carries in its own fields (`unknown variant … at line 4, column 11`).
    let rendered = error.without_snippet().to_string();
    let mut message = rendered.lines().next().unwrap_or_default().trim();
    message = message.strip_prefix("error: ").unwrap_or(message);
    if let (Some(l), Some(c)) = (line, column) {
        message = message
            .strip_prefix(&format!("line {l} column {c}: "))
            .unwrap_or(message);
        message = message
            .strip_suffix(&format!(" at line {l}, column {c}"))
            .unwrap_or(message);
    }
    let message = message.to_owned();
    let field = match (line, column) {
        (Some(l), Some(c)) => path_at(text, l, c, message.starts_with("missing field")),
        _ => String::new(),
    };
    let fix = if message.contains("unknown field") {
        Some("remove or rename the field; `relay schema` lists the allowed ones".to_owned())
    } else if message.contains("missing field") {
        Some("add the field".to_owned())
    } else if message.contains("unknown variant") {
        Some("use one of the listed values".to_owned())
    } else {
        None
    };
    Problem {
        line,
        column,
        field,
        message,
        fix,
    }
}

/// The field path (`endpoints[1].kind`) of the innermost YAML node at `line`,
/// `column` (1-based, as serde-saphyr reports them) of `text`; empty when no
/// node is there. With `of_mapping`, a position on a mapping key names the
/// mapping (serde reports a missing field at the last key it read).
///
/// Parse errors are located by line and column only. Rather than track the path
/// while deserializing (a second, wrapped copy of every `Deserialize` impl of
/// the config: the largest single item in the Lambda binaries), the path is
/// recovered afterwards from the YAML events, on the error path alone.
pub(crate) fn path_at(text: &str, line: u64, column: u64, of_mapping: bool) -> String {
    use granit_parser::{Event, Marker, Parser};
    type Pos = (usize, usize);
    /// An open collection: its path, where it starts, and where its next child goes.
    struct Frame {
        path: String,
        start: Pos,
        next: Next,
    }
    enum Next {
        /// In a mapping: the key just read (its value comes next), or none.
        Map(Option<String>),
        /// In a sequence: the index of the next item.
        Seq(usize),
    }
    /// Where a node stands: its path, and for a mapping key the mapping's path.
    fn place(stack: &mut [Frame], key_text: Option<&str>) -> (String, Option<String>) {
        let Some(Frame { path, next, .. }) = stack.last_mut() else {
            return (String::new(), None);
        };
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match next {
            Next::Seq(i) => {
                *i += 1;
                (format!("{path}[{}]", *i - 1), None)
            }
            Next::Map(key) => match key.take() {
                Some(k) => (join(&k), None),
                None => {
                    let k = key_text.unwrap_or("?");
                    *key = Some(k.to_owned());
                    (join(k), Some(path.clone()))
                }
            },
        }
    }
    let pos: Pos = (line as usize, column as usize);
    // granit-parser counts lines from 1 and columns from 0.
    let at = |m: Marker| (m.line(), m.col() + 1);
    // The innermost node containing `pos` so far: depth, path, mapping of a key.
    let mut best: Option<(usize, String, Option<String>)> = None;
    let mut consider =
        |start: Pos, end: Pos, depth: usize, path: String, key_of: Option<String>| {
            if start <= pos && pos <= end && best.as_ref().is_none_or(|(d, ..)| depth >= *d) {
                best = Some((depth, path, key_of));
            }
        };
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        let depth = stack.len();
        match event {
            Event::Scalar(value, ..) => {
                let (path, key_of) = place(&mut stack, Some(&value));
                consider(at(span.start), at(span.end), depth, path, key_of);
            }
            Event::Alias(..) => {
                let (path, key_of) = place(&mut stack, None);
                consider(at(span.start), at(span.end), depth, path, key_of);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let (path, _) = place(&mut stack, None);
                let next = match event {
                    Event::MappingStart(..) => Next::Map(None),
                    _ => Next::Seq(0),
                };
                stack.push(Frame {
                    path,
                    start: at(span.start),
                    next,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = stack.pop() else { break };
                consider(frame.start, at(span.end), stack.len(), frame.path, None);
            }
            _ => {}
        }
    }
    // Collections a syntax error left open reach to the end of the text.
    while let Some(frame) = stack.pop() {
        consider(
            frame.start,
            (usize::MAX, usize::MAX),
            stack.len(),
            frame.path,
            None,
        );
    }
    match best {
        Some((_, _, Some(mapping))) if of_mapping => mapping,
        Some((_, path, _)) => path,
        None => String::new(),
    }
}

fn at<T>(s: &Spanned<T>) -> (Option<u64>, Option<u64>) {
    let line = s.referenced.line();
    if line == 0 {
        (None, None)
    } else {
        (Some(line), Some(s.referenced.column()))
    }
}

pub(crate) fn problem<T>(
    span: &Spanned<T>,
    field: impl Into<String>,
    message: impl Into<String>,
    fix: &str,
) -> Problem {
    let (line, column) = at(span);
    Problem {
        line,
        column,
        field: field.into(),
        message: message.into(),
        fix: (!fix.is_empty()).then(|| fix.to_owned()),
    }
}

/// True for a valid endpoint name: a lowercase URL path segment.
pub fn is_valid_endpoint_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

fn check(raw: RawConfig, problems: &mut Vec<Problem>) -> Config {
    if raw.version.value != 1 {
        problems.push(problem(
            &raw.version,
            "version",
            format!("unsupported config version {}", raw.version.value),
            "set `version: 1`",
        ));
    }
    let limits = match raw.limits {
        Some(l) => {
            let max = l.value.max_body_bytes;
            if !(1024..=MAX_BODY_BYTES_CEILING).contains(&max) {
                problems.push(problem(
                    &l,
                    "limits.max_body_bytes",
                    format!("{max} is outside 1024..={MAX_BODY_BYTES_CEILING}"),
                    "SQS carries at most 1 MiB per message; keep the default 250000 unless the queue allows more",
                ));
            }
            l.value
        }
        None => Limits::default(),
    };
    if raw.endpoints.value.is_empty() {
        problems.push(problem(
            &raw.endpoints,
            "endpoints",
            "no endpoint is defined",
            "add at least one endpoint with a name, kind, stage and auth",
        ));
    }
    let mut seen = HashSet::new();
    let mut endpoints = Vec::with_capacity(raw.endpoints.value.len());
    let mut whitelists = std::collections::BTreeMap::new();
    let mut sweeps = Vec::new();
    for (i, ep) in raw.endpoints.value.into_iter().enumerate() {
        let name = ep.name.value.clone();
        if !is_valid_endpoint_name(&name) {
            problems.push(problem(
                &ep.name,
                format!("endpoints[{i}].name"),
                format!("`{name}` is not a valid endpoint name"),
                "use 1–64 lowercase letters, digits, `-` or `_`, starting with a letter or digit (it becomes the URL path segment)",
            ));
        }
        if !seen.insert(name.clone()) {
            problems.push(problem(
                &ep.name,
                format!("endpoints[{i}].name"),
                format!("endpoint `{name}` is defined twice"),
                "give every endpoint a unique name",
            ));
        }
        if ep.auth.value.method_count() == 0 {
            problems.push(problem(
                &ep.auth,
                format!("endpoints[{i}].auth"),
                "no authentication method is configured",
                "set at least one of token, hmac, basic, bearer (each names a secret)",
            ));
        }
        if let Some(w) = ep.whitelist {
            match w.value.build() {
                Ok(built) => {
                    whitelists.insert(name.clone(), built);
                }
                Err(e) => problems.push(problem(&w, format!("endpoints[{i}].whitelist"), e, "write `attr!=VALUE,!=OTHER` (comma = AND; `=`, `!=`, `IN (a,b)`), or a list of `{path, equals|not_equals|in|not_in}`")),
            }
        }
        if let Some(r) = ep.reconcile {
            sweeps.push((i, name.clone(), ep.kind, r));
        }
        endpoints.push(Endpoint {
            name,
            kind: ep.kind,
            stage: ep.stage,
            auth: ep.auth.value,
        });
    }
    let connections = crate::connections::check_connections(raw.connections, problems);
    let rules = crate::rules::check_rules(raw.rules, &endpoints, &connections, problems);
    let mut reconcile = std::collections::BTreeMap::new();
    for (i, name, kind, raw) in sweeps {
        let spec =
            crate::reconcile::spec::check(i, &name, kind, &raw, &connections, &rules, problems);
        if let Some(spec) = spec {
            reconcile.insert(name, spec);
        }
    }
    Config {
        version: raw.version.value,
        limits,
        endpoints,
        connections,
        rules,
        whitelists,
        reconcile,
    }
}

/// Replaces `${NAME}` with the value of `NAME` from `env`; `$${` stays a literal
/// `${`. YAML comments are left alone, and lines are preserved, so later
/// messages still point at the right line.
pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        interpolate_line(code, i as u64 + 1, &env, &mut out)?;
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset where a YAML comment starts on this line (a `#` at the start or
/// after whitespace, outside quotes), or the line length.
fn comment_start(line: &str) -> usize {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

fn interpolate_line(
    line: &str,
    number: u64,
    env: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), Problem> {
    let problem = |message: String, fix: &str| Problem {
        line: Some(number),
        column: None,
        field: String::new(),
        message,
        fix: Some(fix.to_owned()),
    };
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| {
                problem(
                    "`${` without a closing `}`".to_owned(),
                    "write `${NAME}`, or `$${` for a literal `${`",
                )
            })?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(problem(
                    format!("`${{{name}}}` is not an environment variable reference"),
                    "use upper-case letters, digits and `_` in `${NAME}`",
                ));
            }
            let value = env(name).ok_or_else(|| {
                problem(
                    format!("environment variable `{name}` is not set"),
                    &format!("export {name}, or write the value in the file"),
                )
            })?;
            if value.contains('\n') {
                return Err(problem(
                    format!("environment variable `{name}` holds a line break"),
                    "config values from the environment must be one line",
                ));
            }
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
version: 1
endpoints:
  - name: jira-prod
    kind: jira
    stage: prod
    auth:
      token: ${SECRET_ID}#token
      hmac: { secret: relay/webhook, key: hmac }
  - name: snow
    kind: servicenow
    stage: test
    auth:
      basic:
        username: relay/snow#username
        password: relay/snow#password
      require: any
";

    fn env(name: &str) -> Option<String> {
        (name == "SECRET_ID").then(|| "arn:aws:secretsmanager:eu-west-1:1:secret:relay".into())
    }

    #[test]
    fn loads_a_good_file() {
        let c = Config::from_yaml(GOOD, "relay.yaml", env).unwrap();
        assert_eq!(c.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        let ep = c.endpoint("jira-prod").unwrap();
        assert_eq!(ep.kind, SourceKind::Jira);
        assert_eq!(
            ep.auth.token.as_ref().unwrap().secret,
            "arn:aws:secretsmanager:eu-west-1:1:secret:relay"
        );
        assert_eq!(ep.auth.hmac.as_ref().unwrap().key.as_deref(), Some("hmac"));
        assert_eq!(c.endpoint("snow").unwrap().auth.require, Require::Any);
        assert!(c.endpoint("nope").is_none());
    }

    fn problems(yaml: &str) -> Vec<Problem> {
        match Config::from_yaml(yaml, "relay.yaml", env) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_line_and_field() {
        let p = problems(&GOOD.replace("kind: servicenow", "kind: snow"));
        assert_eq!(p[0].field, "endpoints[1].kind");
        assert_eq!(p[0].line, Some(10));
        assert!(p[0].message.contains("unknown variant"), "{p:?}");

        let p = problems(&GOOD.replace("stage: prod", "stage: prod\n    colour: red"));
        assert_eq!(p[0].field, "endpoints[0].colour");
        assert_eq!(p[0].line, Some(6));
        assert!(p[0].fix.is_some());
    }

    #[test]
    fn semantic_errors_name_line_and_field() {
        let yaml = GOOD
            .replace("name: snow", "name: jira-prod")
            .replace("version: 1", "version: 2");
        let p = problems(&yaml);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!((p[0].field.as_str(), p[0].line), ("version", Some(1)));
        assert_eq!(
            (p[1].field.as_str(), p[1].line),
            ("endpoints[1].name", Some(9))
        );

        let p = problems(&GOOD.replace("name: snow", "name: Snow Now"));
        assert!(p[0].message.contains("not a valid endpoint name"));

        let p = problems(
            "version: 1\nendpoints:\n  - name: a\n    kind: jira\n    stage: test\n    auth: {}\n",
        );
        assert_eq!(
            (p[0].field.as_str(), p[0].line),
            ("endpoints[0].auth", Some(6))
        );
    }

    #[test]
    fn bad_secret_reference_is_reported() {
        let p = problems(&GOOD.replace("relay/snow#username", "'relay snow#username'"));
        assert_eq!(p[0].field, "endpoints[1].auth.basic.username");
        assert!(p[0].message.contains("secret reference"), "{p:?}");
    }

    #[test]
    fn interpolation() {
        let e = |n: &str| (n == "A").then(|| "x".to_owned());
        assert_eq!(
            interpolate("a: ${A}\nb: $${A} $5", e).unwrap(),
            "a: x\nb: ${A} $5"
        );
        let p = interpolate("a: 1\nb: ${MISSING}", e).unwrap_err();
        assert_eq!(p.line, Some(2));
        assert!(interpolate("${lower}", e).is_err());
        assert!(interpolate("${A", e).is_err());
        // Comments are not interpolated; `#` inside a value or quotes is not a comment.
        assert_eq!(
            interpolate("a: ${A} # see ${UNSET}\n# ${UNSET}\nb: s#${A} '# ${A}'", e).unwrap(),
            "a: x # see ${UNSET}\n# ${UNSET}\nb: s#x '# x'"
        );
    }

    #[test]
    fn limits_are_bounded() {
        let p = problems(&GOOD.replace(
            "version: 1",
            "version: 1\nlimits:\n  max_body_bytes: 5000000",
        ));
        assert_eq!(p[0].field, "limits.max_body_bytes");
    }

    #[test]
    fn rendered_error_names_the_file() {
        let e =
            Config::from_yaml("version: 1\nendpoints: []\n", "conf/relay.yaml", env).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("conf/relay.yaml:2:"), "{s}");
    }
}
#[cfg(test)]
mod path_tests {
    use super::{parse_problem, path_at, RawConfig};

    fn field_of(yaml: &str) -> (String, Option<u64>, String) {
        let e = serde_saphyr::from_str::<RawConfig>(yaml)
            .err()
            .expect("an error");
        let p = parse_problem(yaml, &e);
        (p.field, p.line, p.message)
    }

    #[test]
    fn parse_errors_get_the_path_of_their_position() {
        let head = "version: 1\nendpoints:\n  - name: a\n    kind: jira\n    stage: test\n";
        let cases = [
            (format!("{head}    auth: {{}}\n    colour: red\n"), "endpoints[0].colour", 7, "unknown field"),
            (format!("{head}    auth: {{ token: {{ secret: relay/x#t }}, bogus: 1 }}\n"), "endpoints[0].auth.bogus", 6, "unknown field"),
            ("version: 1\nendpoints:\n  - name: a\n    stage: test\n    auth: {}\n".to_owned(), "endpoints[0]", 5, "missing field"),
            ("version: 1\nendpoints: [ 5 ]\n".to_owned(), "endpoints[0]", 2, ""),
            ("version: one\nendpoints: []\n".to_owned(), "version", 1, ""),
            (format!("{head}    auth: {{}}\n  - name: b\n    kind: jira\n    stage: tset\n    auth: {{}}\n"), "endpoints[1].stage", 9, "unknown variant"),
        ];
        for (yaml, field, line, needle) in cases {
            let (f, l, m) = field_of(&yaml);
            assert_eq!((f.as_str(), l), (field, Some(line)), "{yaml}: {m}");
            assert!(m.contains(needle) && !m.contains(" at line "), "{m}");
        }
    }

    #[test]
    fn path_at_positions() {
        assert_eq!(path_at("a: 1\n", 9, 1, false), "");
        // A syntax error: the open sequence is the innermost node there.
        assert_eq!(path_at("a: [1, 2\n", 1, 8, false), "a");
        assert_eq!(
            path_at("a:\n  b:\n    - x\n    - { c: d }\n", 4, 9, false),
            "a.b[1].c"
        );
        assert_eq!(
            path_at("a:\n  b:\n    - x\n    - { c: d }\n", 4, 9, true),
            "a.b[1]"
        );
    }
}
