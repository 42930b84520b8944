//! The relay's configuration: one YAML file, loaded once, validated with
//! messages that name the file, the line and the field.
//!
//! Loading goes in three steps: `${ENV}` interpolation (so one file can name
//! stage-specific secret ids that the SAM template passes in), typed parsing
//! with `serde-saphyr` (every parse error carries the field path and the line),
//! then semantic checks over the parsed tree, which keep the YAML line of each
//! checked item so they can point at it too. Secrets never appear in the file:
//! it names them by [`crate::secrets::secret::SecretRef`].

pub use model::*;
use problem::{parse_problem, problem};
pub use problem::{render_problems, Problem};
use serde::Deserialize;
use serde_saphyr::Spanned;

pub mod model;
pub mod problem;
pub mod schema;
pub mod users;
use std::collections::HashSet;

use std::path::{Path, PathBuf};

/// The typed, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub version: u32,
    pub limits: Limits,
    pub endpoints: Vec<Endpoint>,
    /// Outbound systems the rules write to.
    pub connections: Vec<crate::outbound::connections::Connection>,
    /// Ordered routing and mapping rules.
    pub rules: Vec<crate::rules::model::Rule>,
    /// Per-endpoint whitelists by endpoint name (`endpoints[].whitelist`);
    /// kept here so that `Endpoint` stays a plain auth/routing record.
    pub whitelists: std::collections::BTreeMap<String, crate::rules::whitelist::Whitelist>,
    /// What of a payload each endpoint's whitelist and rules can read, by
    /// endpoint name: the worker builds only that (see
    /// [`crate::rules::projection`]).
    pub projections: std::collections::BTreeMap<String, crate::rules::projection::Projection>,
    /// Reconciliation sweeps by endpoint name (`endpoints[].reconcile`).
    pub reconcile: std::collections::BTreeMap<String, crate::reconcile::spec::ReconcileSpec>,
    /// User sweeps by endpoint name (`endpoints[].reconcile_users`).
    pub reconcile_users:
        std::collections::BTreeMap<String, crate::reconcile::users_spec::UserSweepSpec>,
    /// How people are mapped between the systems (`users:`), for mappings
    /// with `user: true`.
    pub users: Option<crate::config::users::UsersSpec>,
}

// ---------------------------------------------------------------------------
// Errors

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
    connections: Vec<Spanned<crate::outbound::connections::ConnectionSpec>>,
    #[serde(default)]
    rules: Vec<Spanned<crate::rules::check::RuleSpec>>,
    #[serde(default)]
    users: Option<Spanned<crate::config::users::UsersSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: Spanned<String>,
    kind: SourceKind,
    stage: Stage,
    auth: Spanned<EndpointAuth>,
    #[serde(default)]
    whitelist: Option<Spanned<crate::rules::whitelist::WhitelistSpec>>,
    #[serde(default)]
    reconcile: Option<Spanned<crate::reconcile::spec::ReconcileYaml>>,
    #[serde(default)]
    reconcile_users: Option<Spanned<crate::reconcile::users_spec::UserSweepYaml>>,
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
    pub fn whitelist(&self, endpoint: &str) -> Option<&crate::rules::whitelist::Whitelist> {
        self.whitelists.get(endpoint)
    }

    /// The outbound connection with this name.
    pub fn connection(&self, name: &str) -> Option<&crate::outbound::connections::Connection> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// Turns a serde-saphyr error about `text` into a [`Problem`] that also names
/// the field at the error's position.
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
    let mut user_sweeps = Vec::new();
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
        if let Some(r) = ep.reconcile_users {
            user_sweeps.push((i, name.clone(), ep.kind, r));
        }
        endpoints.push(Endpoint {
            name,
            kind: ep.kind,
            stage: ep.stage,
            auth: ep.auth.value,
        });
    }
    let connections = crate::outbound::connections::check_connections(raw.connections, problems);
    let rules = crate::rules::check::check_rules(raw.rules, &endpoints, &connections, problems);
    let mut reconcile = std::collections::BTreeMap::new();
    for (i, name, kind, raw) in sweeps {
        let spec =
            crate::reconcile::spec::check(i, &name, kind, &raw, &connections, &rules, problems);
        if let Some(spec) = spec {
            reconcile.insert(name, spec);
        }
    }
    let mut reconcile_users = std::collections::BTreeMap::new();
    for (i, name, kind, raw) in user_sweeps {
        let spec = crate::reconcile::users_spec::check(
            i,
            &name,
            kind,
            &raw,
            &connections,
            &rules,
            problems,
        );
        if let Some(spec) = spec {
            reconcile_users.insert(name, spec);
        }
    }
    let users = check_users(raw.users, &connections, &rules, problems);
    let projections = endpoints
        .iter()
        .map(|e| {
            let p = crate::rules::projection::Projection::for_endpoint(
                &e.name,
                whitelists.get(&e.name),
                &rules,
            );
            (e.name.clone(), p)
        })
        .collect();
    Config {
        version: raw.version.value,
        limits,
        endpoints,
        connections,
        rules,
        whitelists,
        projections,
        reconcile,
        reconcile_users,
        users,
    }
}

/// The `users:` section: its connections exist and are of the right kind,
/// and a rule that maps a user has it.
fn check_users(
    raw: Option<Spanned<crate::config::users::UsersSpec>>,
    connections: &[crate::outbound::connections::Connection],
    rules: &[crate::rules::model::Rule],
    problems: &mut Vec<Problem>,
) -> Option<crate::config::users::UsersSpec> {
    use crate::outbound::connections::ConnectionKind;
    if raw.is_none() {
        for (i, r) in rules.iter().enumerate() {
            if let Some((t, _)) = r.map.iter().find(|(_, m)| m.user) {
                problems.push(Problem {
                    line: r.lines.map.get(t).copied().or(r.lines.rule),
                    column: None,
                    field: format!("rules[{i}].map.{t}"),
                    message: "`user: true` needs a `users:` section that says how people are matched".into(),
                    fix: Some("add `users: { jira: <jira connection>, servicenow: <servicenow connection> }` (see docs/users.md)".into()),
                });
            }
        }
        return None;
    }
    let spec = raw?;
    let mut ok = true;
    for (field, name, kind) in [
        ("users.jira", &spec.value.jira, ConnectionKind::Jira),
        (
            "users.servicenow",
            &spec.value.servicenow,
            ConnectionKind::Servicenow,
        ),
    ] {
        if !connections
            .iter()
            .any(|c| &c.name == name && c.kind == kind)
        {
            ok = false;
            problems.push(problem(
                &spec,
                field,
                format!(
                    "no {} connection is named `{name}`",
                    format!("{kind:?}").to_lowercase()
                ),
                "name a connection of that kind from `connections:`",
            ));
        }
    }
    ok.then_some(spec.value)
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
    use super::problem::{parse_problem, path_at};
    use super::RawConfig;

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
