//! Helpers shared by the `relay serve` integration tests: the real binary as
//! a child process on 127.0.0.1, bounded in time.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_relay");
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub struct Serve {
    pub child: Child,
    pub base: String,
    /// Where stdout and stderr go when kept ([`Serve::spawn_logged`]).
    logs: Option<(PathBuf, PathBuf)>,
}

impl Serve {
    pub fn spawn(dir: &Path, port: u16) -> Self {
        Self::spawn_with(
            dir,
            port,
            &["--workers", "2", "--visibility-timeout-secs", "10"],
        )
    }

    /// `relay serve` on `dir/relay.yaml` + `dir/secrets.yaml`, queue in
    /// `dir/data`, with extra arguments; output discarded.
    pub fn spawn_with(dir: &Path, port: u16, extra: &[&str]) -> Self {
        Self::start(dir, port, extra, None)
    }

    /// As [`Serve::spawn_with`], logging at `rust_log` into `dir/stdout.log`
    /// and `dir/stderr.log` ([`Serve::stop`] returns both).
    pub fn spawn_logged(dir: &Path, port: u16, extra: &[&str], rust_log: &str) -> Self {
        Self::start(dir, port, extra, Some(rust_log))
    }

    fn start(dir: &Path, port: u16, extra: &[&str], rust_log: Option<&str>) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(dir.join("relay.yaml"))
            .args(["--secrets"])
            .arg(dir.join("secrets.yaml"))
            .args(["--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra);
        let logs = match rust_log {
            Some(level) => {
                let (out, err) = (dir.join("stdout.log"), dir.join("stderr.log"));
                cmd.env("RUST_LOG", level)
                    .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
                    .stderr(Stdio::from(std::fs::File::create(&err).unwrap()));
                Some((out, err))
            }
            None => {
                cmd.env_remove("RUST_LOG")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                None
            }
        };
        Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            logs,
        }
    }

    fn stderr_text(&self) -> String {
        self.logs
            .as_ref()
            .map(|(_, err)| std::fs::read_to_string(err).unwrap_or_default())
            .unwrap_or_default()
    }

    pub async fn ready(&mut self) {
        // Over HTTPS the test's own certificate: readiness does not check it
        // (the tests that are about the certificate do).
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(self.base.starts_with("https://"))
            .build()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("relay serve exited early: {status}\n{}", self.stderr_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "relay serve did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, the exit awaited (30 s), and the kept stdout and stderr.
    pub async fn stop(&mut self) -> String {
        self.signal("-TERM");
        self.wait_exit(Duration::from_secs(30)).await;
        match &self.logs {
            Some((out, err)) => format!(
                "{}\n{}",
                std::fs::read_to_string(out).unwrap(),
                std::fs::read_to_string(err).unwrap()
            ),
            None => String::new(),
        }
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "relay serve did not exit in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn relay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `relay queue stats` until nothing is visible, in flight or delayed.
pub async fn drained(data: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let (ok, out, err) = relay(&["queue", "stats", "--data-dir", data.to_str().unwrap()]);
        assert!(ok, "{err}");
        // Drained: nothing queued, and nothing parked in the link store.
        if out.starts_with("visible 0  in_flight 0  delayed 0")
            && out.trim_end().ends_with("parked 0")
        {
            return out;
        }
        assert!(start.elapsed() < limit, "queue not drained: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A logged-in operator console session over plain HTTP (cookies by hand).
pub struct ConsoleSession {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub client: reqwest::Client,
}

/// The first `name="csrf" value="…"` of a page.
pub fn csrf_in(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

impl ConsoleSession {
    /// Logs in; `Err(status)` when the console refuses.
    pub async fn login(base: &str, user: &str, password: &str) -> Result<Self, u16> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = client.get(format!("{base}/login")).send().await.unwrap();
        let login_cookie = set_cookie(&form, "relay_console_login").expect("login cookie");
        let token = csrf_in(&form.text().await.unwrap());
        let r = client
            .post(format!("{base}/login"))
            .header("cookie", &login_cookie)
            .form(&[
                ("csrf", token.as_str()),
                ("username", user),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        if r.status() != 303 {
            return Err(r.status().as_u16());
        }
        let cookie = set_cookie(&r, "relay_console").expect("session cookie");
        let mut s = Self {
            base: base.to_owned(),
            cookie,
            csrf: String::new(),
            client,
        };
        let (_, page) = s.get("/feed").await;
        s.csrf = csrf_in(&page);
        assert!(!s.csrf.is_empty(), "no CSRF token on the feed page");
        Ok(s)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A form post; returns the status and the `Location` (or body).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match loc {
            Some(l) => (status, l),
            None => (status, r.text().await.unwrap()),
        }
    }
}

/// `config/relay.yaml` with its `${…}` filled in for the sandboxes at
/// `jira` and `sn` (secrets named `relay/<id>`).
pub fn shipped(jira: &str, sn: &str) -> String {
    let yaml = std::fs::read_to_string(repo().join("config/relay.yaml")).unwrap();
    [
        ("${RELAY_PAYLOAD_LIMIT_BYTES}", "262144"),
        ("${RELAY_STAGE}", "test"),
        ("${RELAY_WEBHOOK_SECRET_ARN}", "relay/webhook"),
        (
            "${RELAY_SERVICENOW_SENDER_SECRET_ARN}",
            "relay/servicenow-sender",
        ),
        ("${RELAY_SERVICENOW_SECRET_ARN}", "relay/servicenow"),
        ("${RELAY_JIRA_SECRET_ARN}", "relay/jira"),
        ("${RELAY_SERVICENOW_URL}", sn),
        ("${RELAY_JIRA_URL}", jira),
        (
            "${RELAY_JIRA_INTEGRATION_ACCOUNT_ID}",
            "712020:relay-integration",
        ),
        ("${RELAY_SERVICENOW_INTEGRATION_USER}", "relay.integration"),
    ]
    .iter()
    .fold(yaml, |y, (from, to)| y.replace(from, to))
}
