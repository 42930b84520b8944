//! `relay init`: a commented, valid two-way (or one-way) config and a secrets
//! skeleton for `relay serve`, from flags or, on a terminal, from answers.
//!
//! The rules are the shipped two-way config's (`config/relay.yaml`, the one
//! the round-trip tests run), with the operator's sites, project, issue
//! type, correlation field and table put in, and secrets named for a local
//! secrets file. `--discover` reads the live systems with the credentials
//! of `--secrets` first: it checks the project and the issue type, finds
//! the correlation field by name, and ends with `relay check --live` on the
//! written config.

use super::{emit, runtime};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SHIPPED: &str = include_str!("../../../config/relay.yaml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Both,
    JiraToServicenow,
    ServicenowToJira,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JiraAuth {
    /// Jira Cloud: account email + API token.
    EmailToken,
    /// Jira Data Center: personal access token.
    Bearer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SnAuth {
    /// Integration user name + password.
    Basic,
    /// OAuth 2.0 client credentials (an OAuth API endpoint on the instance).
    Oauth2,
}

#[derive(clap::Args)]
pub struct Args {
    /// Jira site, e.g. https://example.atlassian.net
    #[arg(long)]
    jira_url: Option<String>,
    #[arg(long, value_enum, default_value = "email-token")]
    jira_auth: JiraAuth,
    /// The Jira project key paired with the ServiceNow table.
    #[arg(long)]
    project: Option<String>,
    /// The issue type incidents become in Jira.
    #[arg(long, default_value = "Incident")]
    issue_type: String,
    /// The Jira custom field that holds the ServiceNow number: an id
    /// (`customfield_10050`) or, with --discover, its name.
    #[arg(long)]
    correlation_field: Option<String>,
    /// The Jira accountId of the integration user (its own changes are not sent back).
    #[arg(long, default_value = "CHANGE-ME-integration-account-id")]
    jira_integration_account: String,
    /// ServiceNow instance, e.g. https://example.service-now.com
    #[arg(long)]
    servicenow_url: Option<String>,
    #[arg(long, value_enum, default_value = "basic")]
    servicenow_auth: SnAuth,
    /// The ServiceNow table paired with the project (`incident`).
    #[arg(long, default_value = "incident")]
    table: String,
    /// The ServiceNow user the relay writes as (its own changes are not sent back).
    #[arg(long, default_value = "relay.integration")]
    servicenow_integration_user: String,
    #[arg(long, value_enum)]
    direction: Option<Direction>,
    /// Where to write relay.yaml and secrets.yaml.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
    /// Read the live systems (credentials from --secrets) to check the
    /// project and issue type, find the correlation field by name, and run
    /// the live check on the result.
    #[arg(long, requires = "secrets")]
    discover: bool,
    /// An existing secrets file with the connections' credentials (for --discover).
    #[arg(long)]
    secrets: Option<PathBuf>,
}

/// Asks on the terminal when a value is missing; otherwise says which flag.
struct Asker {
    tty: bool,
    input: Box<dyn BufRead>,
}

impl Asker {
    fn ask(&mut self, flag: &str, question: &str, default: Option<&str>) -> Result<String, String> {
        if !self.tty {
            return default.map(str::to_owned).ok_or_else(|| {
                format!("pass --{flag} (or run `relay init` on a terminal to be asked)")
            });
        }
        let mut out = std::io::stderr();
        match default {
            Some(d) => write!(out, "{question} [{d}]: "),
            None => write!(out, "{question}: "),
        }
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.input.read_line(&mut line).map_err(|e| e.to_string())?;
        let answer = line.trim();
        match (answer.is_empty(), default) {
            (false, _) => Ok(answer.to_owned()),
            (true, Some(d)) => Ok(d.to_owned()),
            (true, None) => Err(format!("no answer for --{flag}")),
        }
    }
}

fn site_url(url: &str, what: &str) -> Result<String, String> {
    shared::outbound::connections::check_base_url(url).map_err(|e| format!("{what}: {e}"))
}

fn project_key_ok(k: &str) -> bool {
    (2..=10).contains(&k.len())
        && k.starts_with(|c: char| c.is_ascii_uppercase())
        && k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// What `relay init` was told.
#[derive(Clone, Debug)]
pub struct Answers {
    pub jira_url: String,
    pub jira_auth: JiraAuth,
    pub project: String,
    pub issue_type: String,
    pub correlation_field: String,
    pub jira_integration_account: String,
    pub servicenow_url: String,
    pub servicenow_auth: SnAuth,
    pub table: String,
    pub servicenow_integration_user: String,
    pub direction: Direction,
}

fn answers(a: &Args, asker: &mut Asker) -> Result<Answers, String> {
    let jira_url = match &a.jira_url {
        Some(u) => u.clone(),
        None => asker.ask("jira-url", "Jira site URL (https://…atlassian.net)", None)?,
    };
    let jira_url = site_url(&jira_url, "--jira-url")?;
    let servicenow_url = match &a.servicenow_url {
        Some(u) => u.clone(),
        None => asker.ask(
            "servicenow-url",
            "ServiceNow instance URL (https://…service-now.com)",
            None,
        )?,
    };
    let servicenow_url = site_url(&servicenow_url, "--servicenow-url")?;
    let project = match &a.project {
        Some(p) => p.clone(),
        None => asker.ask("project", "Jira project key", None)?,
    }
    .to_ascii_uppercase();
    if !project_key_ok(&project) {
        return Err(format!(
            "--project `{project}` is not a Jira project key (2–10 capital letters, digits, `_`, starting with a letter)"
        ));
    }
    let direction = match a.direction {
        Some(d) => d,
        None => match asker
            .ask(
                "direction",
                "Direction: both, jira-to-servicenow or servicenow-to-jira",
                Some("both"),
            )?
            .as_str()
        {
            "both" => Direction::Both,
            "jira-to-servicenow" => Direction::JiraToServicenow,
            "servicenow-to-jira" => Direction::ServicenowToJira,
            other => return Err(format!("unknown direction `{other}`")),
        },
    };
    let correlation_field = match &a.correlation_field {
        Some(f) => f.clone(),
        None => asker.ask(
            "correlation-field",
            "Jira custom field holding the ServiceNow number (id, or name with --discover)",
            Some("customfield_10050"),
        )?,
    };
    if a.table != "incident" {
        return Err(format!(
            "--table {}: relay init writes state mappings for `incident` only so far; start from `incident` and edit the state tables by hand (see docs/configuration.md)",
            a.table
        ));
    }
    Ok(Answers {
        jira_url,
        jira_auth: a.jira_auth,
        project,
        issue_type: a.issue_type.clone(),
        correlation_field,
        jira_integration_account: a.jira_integration_account.clone(),
        servicenow_url,
        servicenow_auth: a.servicenow_auth,
        table: a.table.clone(),
        servicenow_integration_user: a.servicenow_integration_user.clone(),
        direction,
    })
}

/// Keeps the rules whose `from:` is kept; drops the endpoint that only fed
/// the dropped ones.
fn one_way(text: &str, keep_from: &str, drop_endpoint: &str) -> String {
    // Split into blocks at "  - name:" lines; a block runs to the next one.
    let mut out = String::new();
    let mut block = String::new();
    let mut section = "";
    let flush = |block: &mut String, out: &mut String, section: &str| {
        let is_item = block.starts_with("  - name:");
        let drop = is_item
            && match section {
                "rules" => !block.contains(&format!("\n    from: {keep_from}\n")),
                "endpoints" => block.starts_with(&format!("  - name: {drop_endpoint}\n")),
                _ => false,
            };
        if !drop {
            out.push_str(block);
        }
        block.clear();
    };
    for line in text.split_inclusive('\n') {
        let top =
            !line.starts_with(' ') && !line.starts_with('#') && line.trim_end().ends_with(':');
        if top || line.starts_with("  - name:") {
            flush(&mut block, &mut out, section);
            if top {
                section = line.trim_end().trim_end_matches(':');
            }
        }
        block.push_str(line);
    }
    flush(&mut block, &mut out, section);
    out
}

/// The config text for these answers.
pub fn config_text(a: &Answers) -> String {
    let body = SHIPPED
        .split_once("\nversion: 1\n")
        .map(|(_, rest)| rest)
        .unwrap_or(SHIPPED);
    let mut text = body.to_owned();
    let jira_auth = match a.jira_auth {
        JiraAuth::EmailToken => "      kind: email_token\n      email: relay/jira#email\n      token: relay/jira#api_token\n",
        JiraAuth::Bearer => "      kind: bearer\n      token: relay/jira#token\n",
    };
    let sn_auth = match a.servicenow_auth {
        SnAuth::Basic => "      kind: basic\n      username: relay/servicenow#username\n      password: relay/servicenow#password\n",
        SnAuth::Oauth2 => "      kind: oauth2\n      client_id: relay/servicenow#client_id\n      client_secret: relay/servicenow#client_secret\n",
    };
    text = text
        .replace(
            "      kind: email_token\n      email: ${RELAY_JIRA_SECRET_ARN}#email\n      token: ${RELAY_JIRA_SECRET_ARN}#api_token\n",
            jira_auth,
        )
        .replace(
            "      kind: basic\n      username: ${RELAY_SERVICENOW_SECRET_ARN}#username\n      password: ${RELAY_SERVICENOW_SECRET_ARN}#password\n",
            sn_auth,
        );
    if a.jira_auth == JiraAuth::Bearer {
        // Data Center speaks API v2 (wiki markup, not ADF).
        text = text.replace("    api: v3\n", "    api: v2\n");
    }
    for (from, to) in [
        ("${RELAY_PAYLOAD_LIMIT_BYTES}", "250000".to_owned()),
        ("${RELAY_STAGE}", "test".to_owned()),
        ("${RELAY_WEBHOOK_SECRET_ARN}", "relay/webhook".to_owned()),
        (
            "${RELAY_SERVICENOW_SENDER_SECRET_ARN}",
            "relay/servicenow-sender".to_owned(),
        ),
        ("${RELAY_SERVICENOW_URL}", a.servicenow_url.clone()),
        ("${RELAY_JIRA_URL}", a.jira_url.clone()),
        (
            "${RELAY_JIRA_INTEGRATION_ACCOUNT_ID}",
            a.jira_integration_account.clone(),
        ),
        (
            "${RELAY_SERVICENOW_INTEGRATION_USER}",
            a.servicenow_integration_user.clone(),
        ),
        ("project = SUP", format!("project = {}", a.project)),
        (
            "fields.project.key: { value: SUP }",
            format!("fields.project.key: {{ value: {} }}", a.project),
        ),
        (
            "fields.issuetype.name: { value: Incident }",
            format!(
                "fields.issuetype.name: {{ value: {} }}",
                quote(&a.issue_type)
            ),
        ),
        ("customfield_10050", a.correlation_field.clone()),
    ] {
        text = text.replace(from, &to);
    }
    text = match a.direction {
        Direction::Both => text,
        Direction::JiraToServicenow => one_way(&text, "jira", "servicenow"),
        Direction::ServicenowToJira => one_way(&text, "servicenow", "jira"),
    };
    let direction = match a.direction {
        Direction::Both => "both ways",
        Direction::JiraToServicenow => "Jira -> ServiceNow",
        Direction::ServicenowToJira => "ServiceNow -> Jira",
    };
    format!(
        "# jira-relay: Jira {project} <-> ServiceNow {table}, {direction}. Written by `relay init`.\n\
         #\n\
         # Run it: relay serve --config relay.yaml --secrets secrets.yaml\n\
         # Check it against the live systems: relay check --live relay.yaml --secrets secrets.yaml\n\
         # Secrets are named here (`relay/jira#api_token`) and kept in secrets.yaml (chmod 600).\n\
         # Review before the first run: the caller (`caller_id: jira.integration`), the\n\
         # status/state tables (Jira status names as your site spells them), and the\n\
         # integration users in the two whitelists (the echo guard).\n\
         version: 1\n{text}",
        project = a.project,
        table = a.table,
    )
}

fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '_')
    {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

fn random_hex(bytes: usize) -> String {
    shared::support::random::hex(bytes)
}

/// The secrets skeleton: generated values for what the relay owns (the
/// webhook token and HMAC key, the ServiceNow sender's password, the
/// console), placeholders for the credentials the operator brings.
pub fn secrets_text(a: &Answers) -> String {
    let jira = match a.jira_auth {
        JiraAuth::EmailToken => "  relay/jira:\n    email: CHANGE-ME-integration-user@example.com\n    api_token: CHANGE-ME-api-token\n",
        JiraAuth::Bearer => "  relay/jira:\n    token: CHANGE-ME-personal-access-token\n",
    };
    let sn = match a.servicenow_auth {
        SnAuth::Basic => format!(
            "  relay/servicenow:\n    username: {}\n    password: CHANGE-ME-password\n",
            a.servicenow_integration_user
        ),
        SnAuth::Oauth2 => "  relay/servicenow:\n    client_id: CHANGE-ME-client-id\n    client_secret: CHANGE-ME-client-secret\n".to_owned(),
    };
    format!(
        "# Secrets for relay.yaml (keep this file chmod 600; the relay refuses it otherwise).\n\
         # Generated here: the webhook token and HMAC key (give them to Jira with\n\
         # `relay jira webhook register`), the ServiceNow sender's credential (put it in\n\
         # the REST message of infra/servicenow/business-rule.js) and the console's.\n\
         # Replace every CHANGE-ME with the integration users' credentials.\n\
         secrets:\n\
         \x20 relay/console:\n    username: admin\n    password: {console}\n\
         \x20 relay/webhook:\n    token: {token}\n    hmac: {hmac}\n\
         \x20 relay/servicenow-sender:\n    username: relay-sender\n    password: {sender}\n\
         {jira}{sn}",
        console = random_hex(12),
        token = random_hex(24),
        hmac = random_hex(32),
        sender = random_hex(24),
    )
}

fn write_new(path: &Path, text: &str, force: bool, private: bool) -> Result<(), String> {
    if path.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it",
            path.display()
        ));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn run(a: Args) -> Result<(), String> {
    let mut asker = Asker {
        tty: std::io::stdin().is_terminal(),
        input: Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut ans = answers(&a, &mut asker)?;
    let config_path = a.out.join("relay.yaml");
    let secrets_path = a.out.join("secrets.yaml");
    if a.discover {
        let secrets = a.secrets.as_deref().ok_or("--discover needs --secrets")?;
        runtime()?.block_on(discover(&mut ans, secrets))?;
    }
    let text = config_text(&ans);
    // What is written must load: the same check as `relay validate`.
    shared::config::Config::from_yaml(&text, &config_path, |_| None)
        .map_err(|e| format!("relay init made a config that does not load (a bug): {e}"))?;
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    write_new(&config_path, &text, a.force, false)?;
    let wrote_secrets = if a.discover {
        false
    } else {
        write_new(&secrets_path, &secrets_text(&ans), a.force, true)?;
        true
    };
    let mut out = format!("wrote {}\n", config_path.display());
    if wrote_secrets {
        out.push_str(&format!(
            "wrote {} (chmod 600): replace each CHANGE-ME\n",
            secrets_path.display()
        ));
    }
    out.push_str(&format!(
        "next: relay check --live {} --secrets {}\n      relay serve --config {} --secrets {}\n",
        config_path.display(),
        a.secrets.as_deref().unwrap_or(&secrets_path).display(),
        config_path.display(),
        a.secrets.as_deref().unwrap_or(&secrets_path).display(),
    ));
    emit(&out)?;
    if a.discover {
        let secrets = a.secrets.as_deref().unwrap_or(&secrets_path);
        super::check::live(&config_path, Some(secrets))?;
    }
    Ok(())
}

/// Reads the live systems: the project and issue type exist, the
/// correlation field is found by id or by name.
async fn discover(ans: &mut Answers, secrets: &Path) -> Result<(), String> {
    let store: Arc<dyn shared::secrets::SecretStore> =
        Arc::new(crate::serve::open_secrets(Some(secrets))?);
    // The connection as the config will have it.
    let config = shared::config::Config::from_yaml(&config_text(ans), "relay.yaml", |_| None)
        .map_err(|e| e.to_string())?;
    let conn = config
        .connection("jira")
        .ok_or("the config has no jira connection")?;
    let site = crate::live::site::JiraSite::new(conn, store);
    if site.project(&ans.project).await?.is_none() {
        let known = site.projects().await?;
        return Err(format!(
            "Jira has no project {} the integration user can see; projects: {}",
            ans.project,
            known
                .iter()
                .map(|(_, k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let types = site.create_types(&ans.project).await?;
    if !types.iter().any(|t| t.name == ans.issue_type) {
        return Err(format!(
            "project {} has no issue type `{}`; it has: {}",
            ans.project,
            ans.issue_type,
            types
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let fields = site.fields().await?;
    let wanted = ans.correlation_field.clone();
    let found = fields.iter().find(|(f, _)| f.id == wanted).or_else(|| {
        fields
            .iter()
            .find(|(f, c)| *c && f.name.eq_ignore_ascii_case(&wanted))
    });
    match found {
        Some((f, _)) => {
            eprintln!("correlation field: {} ({})", f.id, f.name);
            ans.correlation_field = f.id.clone();
            Ok(())
        }
        None => Err(format!(
            "Jira has no field `{wanted}`; custom fields: {}",
            fields
                .iter()
                .filter(|(_, c)| *c)
                .map(|(f, _)| format!("{} ({})", f.id, f.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
