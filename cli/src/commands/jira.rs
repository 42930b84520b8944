//! `relay jira`: the admin webhook that feeds the relay (`webhook`), and
//! connecting an `oauth_3lo` connection (`oauth login`).

use super::{emit, load, runtime};
use crate::{jira_admin, oauth_login};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: JiraCommand,
}

#[derive(clap::Subcommand)]
enum JiraCommand {
    /// Register, list or delete the Jira admin webhook (needs Jira admin rights).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
        /// The config: its endpoints give the webhook URL, its connection the Jira site and credentials.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Local secrets file (chmod 600); `RELAY_SECRET_<ID>` variables override it.
        #[arg(long, global = true)]
        secrets: Option<PathBuf>,
        /// The jira connection (site + credentials) to manage webhooks with.
        #[arg(long, default_value = "jira", global = true)]
        connection: String,
    },
    /// OAuth 2.0 (3LO): connect an `oauth_3lo` connection to a Jira site.
    Oauth {
        #[command(subcommand)]
        command: OauthCommand,
    },
}

#[derive(clap::Subcommand)]
enum OauthCommand {
    /// Consent in the browser, then store the refresh token in the connection's secret.
    Login {
        /// The jira connection with auth kind `oauth_3lo`.
        #[arg(long, default_value = "jira")]
        connection: String,
        /// The relay's config file.
        #[arg(long)]
        config: PathBuf,
        /// Local secrets file (chmod 600) to read the client from and write the refresh token to.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Use AWS Secrets Manager (credentials from the usual chain) instead of a local file.
        #[arg(long, conflicts_with = "secrets")]
        secrets_manager: bool,
        /// Port of the redirect URI http://127.0.0.1:PORT/callback (registered in the app).
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// Only print the authorize URL; do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
}

#[derive(clap::Subcommand)]
enum WebhookCommand {
    /// Register the relay's webhook: all issue, comment and attachment events.
    Register {
        /// Where Jira reaches the relay, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod
        #[arg(long)]
        public_url: String,
        /// The relay endpoint the webhook posts to.
        #[arg(long, default_value = "jira")]
        endpoint: String,
        /// Only issues matching this JQL (e.g. "project = SUP").
        #[arg(long)]
        jql: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List the site's admin webhooks (token values masked).
    List,
    /// Delete an admin webhook by id.
    Delete { id: String },
}

pub fn run(a: Args) -> Result<(), String> {
    match a.command {
        JiraCommand::Webhook {
            command,
            config,
            secrets,
            connection,
        } => runtime()?.block_on(webhook(command, config, secrets, connection)),
        JiraCommand::Oauth {
            command:
                OauthCommand::Login {
                    connection,
                    config,
                    secrets,
                    secrets_manager,
                    port,
                    no_browser,
                },
        } => runtime()?.block_on(async {
            let c = load(&config)?;
            let store = oauth_login::open_store(secrets.as_deref(), secrets_manager).await?;
            let opts = oauth_login::Login {
                connection,
                port,
                open_browser: !no_browser,
            };
            let report = oauth_login::run(&c, store, &opts).await?;
            emit(&report)
        }),
    }
}

async fn webhook(
    command: WebhookCommand,
    config: Option<PathBuf>,
    secrets: Option<PathBuf>,
    connection: String,
) -> Result<(), String> {
    let config = config.ok_or("pass --config (the relay's config file)")?;
    let c = load(&config)?;
    let store: std::sync::Arc<dyn shared::secrets::SecretStore> =
        std::sync::Arc::new(crate::serve::open_secrets(secrets.as_deref())?);
    let admin = jira_admin::JiraAdmin::new(c, store, &connection)?;
    match command {
        WebhookCommand::Register {
            public_url,
            endpoint,
            jql,
            name,
        } => {
            let w = admin
                .register(&endpoint, &public_url, jql.as_deref(), name.as_deref())
                .await?;
            emit(&format!("registered {}\n", jira_admin::line(&w)))
        }
        WebhookCommand::List => {
            let list = admin.list().await?;
            let mut out: String = list.iter().map(|w| jira_admin::line(w) + "\n").collect();
            out.push_str(&format!("{} webhook(s)\n", list.len()));
            emit(&out)
        }
        WebhookCommand::Delete { id } => {
            admin.delete(&id).await?;
            emit(&format!("deleted webhook {id}\n"))
        }
    }
}
