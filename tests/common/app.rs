//! `spawn_app`: the real application, in-process, on a free port and a temp data dir.
//!
//! Logs are captured into a buffer (so a test can prove no password reaches them) and printed
//! only with `TEST_LOG=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ferry::app::Application;
use ferry::app::StopHandle;
use ferry::config::{AuthSettings, LogFormat, Role, Settings, TokenSetting};
use serde_json::{json, Value};

/// Everything any test's app has logged so far.
pub static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = LogSink(buffer.clone());
    let subscriber =
        ferry::telemetry::get_subscriber("info,ferry=debug", LogFormat::Json, false, sink);
    ferry::telemetry::init_subscriber(subscriber);
    buffer
});

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(buf)?;
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub data_dir: Arc<tempfile::TempDir>,
    pub client: reqwest::Client,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
    settings: Settings,
    handle: StopHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn settings_for(data_dir: &Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp data dir"));
    let settings = settings_for(dir.path());
    spawn_with(settings, dir).await
}

/// An app that requires the bearer token in `$env_var` (set here) named `name`, role `admin`.
pub async fn spawn_app_with_token(name: &str, env_var: &str, token: &str) -> TestApp {
    spawn_app_with_tokens(&[(name, env_var, token, Role::Admin)]).await
}

/// An app with several tokens: `(name, env var, value, role)` each (the variables are set here).
pub async fn spawn_app_with_tokens(tokens: &[(&str, &str, &str, Role)]) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp data dir"));
    let mut settings = settings_for(dir.path());
    settings.auth = AuthSettings {
        tokens: tokens
            .iter()
            .map(|(name, env_var, token, role)| {
                std::env::set_var(env_var, token);
                TokenSetting {
                    name: name.to_string(),
                    token_env: env_var.to_string(),
                    role: *role,
                }
            })
            .collect(),
    };
    spawn_with(settings, dir).await
}

/// An app serving HTTPS with `cert_file` and `key_file`; its client trusts `ca_file`.
pub async fn spawn_https_app(cert_file: &Path, key_file: &Path, ca_file: &Path) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp data dir"));
    let mut settings = settings_for(dir.path());
    settings.http.tls = Some(ferry::config::HttpTlsSettings {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
    });
    let mut app = spawn_with(settings, dir).await;
    let ca = std::fs::read(ca_file).expect("read the test CA");
    app.client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("https client");
    app.address = format!("https://127.0.0.1:{}", app.port);
    app
}

pub async fn spawn_with(settings: Settings, data_dir: Arc<tempfile::TempDir>) -> TestApp {
    spawn_with_engine(settings, data_dir, ferry::supervisor::real_engine()).await
}

/// An app whose supervisor runs `engine` instead of the transfer engine.
pub async fn spawn_with_engine(
    settings: Settings,
    data_dir: Arc<tempfile::TempDir>,
    engine: ferry::supervisor::EngineFn,
) -> TestApp {
    LazyLock::force(&LOGS);
    let app = Application::build_with_engine(&settings, engine)
        .await
        .expect("the application builds");
    let port = app.port();
    let handle = app.handle();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        data_dir,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client"),
        token: None,
        settings,
        handle,
        task,
    }
}

impl TestApp {
    pub fn path(&self) -> PathBuf {
        self.data_dir.path().to_path_buf()
    }

    /// Stops the app gracefully and waits until it has released the data dir.
    pub async fn stop(self) -> (Settings, Arc<tempfile::TempDir>) {
        self.handle.stop(true).await;
        self.task
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        (self.settings, self.data_dir)
    }

    /// Stops the app and starts a new one on the same data dir.
    pub async fn restart(self) -> TestApp {
        let token = self.token.clone();
        let (settings, dir) = self.stop().await;
        let mut app = spawn_with(settings, dir).await;
        app.token = token;
        app
    }

    /// A request to `path`, with the bearer token when the app has one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{path}", self.address));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// POSTs `body` as `application/octet-stream` (an RDB upload).
    pub async fn post_bytes(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::PATCH, path)
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    /// Creates a migration and returns its view.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn create(&self, source: &str, target: &str) -> Value {
        let response = self
            .post_json(
                "/v1/migrations",
                &json!({"source": {"url": source}, "target": {"url": target}}),
            )
            .await;
        assert_eq!(response.status(), 201, "create failed");
        response.json().await.expect("view JSON")
    }

    pub async fn view(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/migrations/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("view JSON")
    }

    pub async fn action(&self, id: &str, action: &str) -> reqwest::Response {
        self.post(&format!("/v1/migrations/{id}/{action}")).await
    }

    /// The type names of a migration's events, in order.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        let page: Value = self
            .get(&format!("/v1/migrations/{id}/events?limit=1000"))
            .await
            .json()
            .await
            .expect("events JSON");
        page["events"]
            .as_array()
            .expect("events array")
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Polls the migration until `done` holds for its view, or fails after `timeout`.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.view(id).await;
            if done(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached within {timeout:?}; last view: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Asserts an error response is problem+json with `status`, and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status, "{body}");
    for key in ["type", "title", "detail"] {
        assert!(body[key].is_string(), "problem without `{key}`: {body}");
    }
    body
}
