//! Building AWS SDK configuration for the adapters (feature `aws`).
//!
//! The ingress has seconds, not minutes, to answer Jira: every AWS call gets a
//! short attempt and operation timeout so that an unreachable queue or secret
//! store turns into a prompt 503 (and Jira's retry) instead of a hung request.
//!
//! The SDK crates are built without `default-https-client` (hyper and rustls on
//! aws-lc, beside the connectors' reqwest on ring): [`defaults`] gives them
//! [`ReqwestHttpClient`], the SDK's HTTP client trait over the same reqwest the
//! connectors use, so a binary carries one HTTP stack and one TLS stack.
//! Every SDK configuration of the project starts from [`defaults`]; one loaded
//! from `aws_config::defaults` alone has no HTTP client and fails its first call.

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;
use aws_config::Region;
pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `aws_config::defaults` (latest behaviour version) with the project's HTTP
/// client ([`ReqwestHttpClient`]: rustls with ring, the Mozilla trust roots).
/// Plain `http://` endpoints (a local emulator) work too.
pub fn defaults() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(ReqwestHttpClient::default())
}

/// The AWS SDK's HTTP client on reqwest (HTTP/1.1, rustls with ring).
///
/// The SDK asks for a connector per operation with that operation's settings;
/// one reqwest client (one connection pool) is kept per connect timeout. The
/// SDK's own attempt and operation timeouts bound every call; the read timeout
/// is applied to the whole exchange. No redirects are followed (the SDK sees
/// every answer as sent). Request bodies must be in memory, which every
/// operation this project calls has (SQS, Secrets Manager, SSM: small JSON).
#[derive(Clone, Debug, Default)]
pub struct ReqwestHttpClient {
    clients: Arc<Mutex<Vec<PooledClient>>>,
}

/// A reqwest client and the connect timeout it was built with.
type PooledClient = (Option<Duration>, reqwest::Client);

impl ReqwestHttpClient {
    fn client(&self, connect_timeout: Option<Duration>) -> reqwest::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = clients.iter().find(|(t, _)| *t == connect_timeout) {
            return c.clone();
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(t) = connect_timeout {
            builder = builder.connect_timeout(t);
        }
        // Building fails only when the TLS back end cannot start; the
        // connector then reports that on every call instead of panicking here.
        let client = builder.build().unwrap_or_else(|_| reqwest::Client::new());
        clients.push((connect_timeout, client.clone()));
        client
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(ReqwestConnector {
            client: self.client(settings.connect_timeout()),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    client: reqwest::Client,
    read_timeout: Option<Duration>,
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            let Some(bytes) = body.bytes().map(bytes::Bytes::copy_from_slice) else {
                return Err(ConnectorError::user(
                    "streaming request bodies are not supported by this HTTP client".into(),
                ));
            };
            let mut request = reqwest::Request::try_from(http::Request::from_parts(parts, bytes))
                .map_err(|e| ConnectorError::user(e.into()))?;
            if let Some(t) = read_timeout {
                *request.timeout_mut() = Some(t);
            }
            let mut response = client.execute(request).await.map_err(transport_error)?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let body = response.bytes().await.map_err(transport_error)?;
            let mut response = http::Response::new(SdkBody::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Timeouts and connection failures are retryable for the SDK; anything else
/// is reported as is.
fn transport_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_body() || e.is_request() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

/// The timeouts of every SDK configuration here: an unreachable queue or secret
/// store becomes a prompt error (and Jira's retry), not a hung request.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// Loads the standard AWS configuration (credential chain, region,
/// `AWS_ENDPOINT_URL`) with timeouts fit for a webhook handler. `endpoint`
/// overrides the endpoint (tests point it at a local emulator).
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = defaults().timeout_config(timeouts());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The SDK configuration of a Lambda function, from what Lambda sets in every
/// execution environment: the execution role's credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and
/// `AWS_REGION` (or `AWS_DEFAULT_REGION`); `AWS_ENDPOINT_URL` when set (a local
/// emulator). The same timeouts, HTTP client and retry behaviour as
/// [`sdk_config`], without the SDK's default credential chain (profile files,
/// SSO, web identity through STS, the container and instance metadata
/// endpoints), which a function never reaches: the chain's first provider is
/// these variables. Leaving it out keeps `aws-config`'s providers and the STS
/// client out of the functions' binaries.
///
/// Of the SDK's other environment settings, `AWS_USE_FIPS_ENDPOINT`,
/// `AWS_USE_DUALSTACK_ENDPOINT`, `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE` are
/// read as the SDK reads them. Settings it would read and this does not (the
/// per-service endpoint variables, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`) make
/// it fail rather than be dropped unseen.
///
/// Fails, naming the variable, when one Lambda always sets is missing or a
/// setting cannot be read.
pub fn lambda_sdk_config(env: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, String> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    for name in UNREAD_SETTINGS {
        if var(name).is_some() {
            return Err(format!(
                "{name} is set, but the functions do not read it: set AWS_ENDPOINT_URL (every \
                 AWS service) or remove it"
            ));
        }
    }
    let need = |name: &str| {
        var(name).ok_or_else(|| {
            if var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() {
                format!(
                    "{name} is not set, and the functions do not read credentials from a \
                     container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)"
                )
            } else {
                format!("{name} is not set (Lambda sets it for the function's execution role)")
            }
        })
    };
    let flag = |name: &str| match var(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!("{name} is `{other}`, not true or false")),
    };
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or("AWS_REGION is not set (Lambda sets it for every function)")?;
    let credentials = Credentials::new(
        need("AWS_ACCESS_KEY_ID")?,
        need("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut retry = RetryConfig::standard();
    if let Some(mode) = var("AWS_RETRY_MODE") {
        // The SDK's own reading of the value (trimmed, any case).
        let mode = mode
            .parse::<RetryMode>()
            .map_err(|_| format!("AWS_RETRY_MODE is `{mode}`, not standard or adaptive"))?;
        retry = retry.with_retry_mode(mode);
    }
    if let Some(n) = var("AWS_MAX_ATTEMPTS") {
        match n.parse::<u32>() {
            Ok(n) if n >= 1 => retry = retry.with_max_attempts(n),
            _ => return Err(format!("AWS_MAX_ATTEMPTS is `{n}`, not a whole number ≥ 1")),
        }
    }
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(ReqwestHttpClient::default())
        .timeout_config(timeouts())
        .retry_config(retry)
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT")?)
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT")?);
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    Ok(builder.build())
}

/// Endpoint settings the SDK's own loader would read and [`lambda_sdk_config`]
/// does not: the per-service URLs of the services the functions call, and the
/// switch that turns configured URLs off.
const UNREAD_SETTINGS: &[&str] = &[
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
];

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[tokio::test]
    async fn a_lambda_configuration_is_built_from_the_environment_lambda_sets() {
        let vars = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5599"),
        ];
        let conf = lambda_sdk_config(env(&vars)).unwrap();
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(conf.endpoint_url(), Some("http://127.0.0.1:5599"));
        assert!(conf.http_client().is_some(), "the project's HTTP client");
        let creds = conf
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("session"));
        assert_eq!(
            conf.timeout_config().and_then(|t| t.operation_timeout()),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let no_region = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        let e = lambda_sdk_config(env(&no_region)).unwrap_err();
        assert!(e.contains("AWS_REGION"), "{e}");
        let no_secret = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ];
        let e = lambda_sdk_config(env(&no_secret)).unwrap_err();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        let default_region = [
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ];
        let conf = lambda_sdk_config(env(&default_region)).unwrap();
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(conf.endpoint_url(), None);
        let container = [
            ("AWS_REGION", "eu-west-1"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:9/creds",
            ),
        ];
        let e = lambda_sdk_config(env(&container)).unwrap_err();
        assert!(
            e.contains("AWS_ACCESS_KEY_ID") && e.contains("container endpoint"),
            "{e}"
        );
    }

    #[test]
    fn the_sdk_settings_are_read_or_refused_never_dropped() {
        let base = [
            ("AWS_REGION", "us-gov-west-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ];
        let with = |extra: &'static [(&'static str, &'static str)]| {
            let vars: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            lambda_sdk_config(env(&vars))
        };
        let conf = with(&[
            ("AWS_USE_FIPS_ENDPOINT", "true"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "TRUE"),
            ("AWS_MAX_ATTEMPTS", "5"),
            ("AWS_RETRY_MODE", "adaptive"),
        ])
        .unwrap();
        assert_eq!(conf.use_fips(), Some(true));
        assert_eq!(conf.use_dual_stack(), Some(true));
        let retry = conf.retry_config().unwrap();
        assert_eq!(retry.max_attempts(), 5);
        assert_eq!(retry.mode(), RetryMode::Adaptive);
        let conf = with(&[]).unwrap();
        assert_eq!(conf.use_fips(), Some(false));
        assert_eq!(conf.retry_config().unwrap().max_attempts(), 3);
        for (extra, needle) in [
            (
                &[("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")][..],
                "AWS_ENDPOINT_URL_SQS is set",
            ),
            (
                &[("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")][..],
                "do not read it",
            ),
            (&[("AWS_USE_FIPS_ENDPOINT", "yes")][..], "not true or false"),
            (&[("AWS_MAX_ATTEMPTS", "0")][..], "AWS_MAX_ATTEMPTS"),
            (&[("AWS_RETRY_MODE", "eager")][..], "AWS_RETRY_MODE"),
        ] {
            let e = with(extra).unwrap_err();
            assert!(e.contains(needle), "{extra:?}: {e}");
        }
    }
}
