//! The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver, with the fantoccini client), runs a real migration between two harness
//! redis-servers using only the page: configure, validate, fix the failed check, start, watch
//! the progress move, cut over, read the timeline. Screenshots land in `target/dashboard/`.
//!
//! Nothing downloads a browser: chromium and chromium-driver come from Debian
//! (`scripts/test.sh` installs them as root). A missing one fails the test with that fix.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::app::TestApp;
use crate::common::redis::{free_port, RedisServer};

const STEP: Duration = Duration::from_secs(60);

/// The browser's binary and chromedriver, or a panic that says how to install them.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| {
                names.iter().find_map(|n| {
                    let out = Command::new("which").arg(n).output().ok()?;
                    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
                    (!path.is_empty()).then(|| PathBuf::from(path))
                })
            })
    };
    let fix = "install Debian's packages: `apt-get install -y chromium chromium-driver` \
               (scripts/test.sh does it when run as root)";
    let chromium = find(&["/usr/bin/chromium", "chromium", "chromium-browser"])
        .unwrap_or_else(|| panic!("the dashboard test needs chromium: {fix}"));
    let driver = find(&["/usr/bin/chromedriver", "chromedriver"])
        .unwrap_or_else(|| panic!("the dashboard test needs chromedriver: {fix}"));
    (chromium, driver)
}

/// chromedriver on a free port, with a headless Chromium session; both end on drop.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Where the browser saves downloads (inside the profile, removed with it).
    pub(crate) downloads: PathBuf,
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let (chromium, driver_path) = browser_binaries();
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_path.display()));
        let profile = tempfile::tempdir().unwrap();
        // The flags this sandbox needs: no sandbox as root, no GPU, and nothing that phones home.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let prefs = json!({
            "download.default_directory": downloads,
            "download.prompt_for_download": false,
        });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args, "prefs": prefs}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver on {url}: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
            downloads,
        }
    }

    /// Saves a screenshot as `target/dashboard/<name>.png` and returns its path.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(
            std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into()),
        )
        .join("dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The text of the first element matching `css`, once `done` holds for it.
    pub(crate) async fn wait_text(
        &self,
        css: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + STEP;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if done(&text) {
                        return text;
                    }
                    last = text;
                }
            }
            if Instant::now() > deadline {
                let _ = self.screenshot("failure").await;
                panic!("{what}: `{css}` never matched within {STEP:?}; last text: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `css` to exist.
    pub(crate) async fn wait_for(&self, css: &str, what: &str) {
        self.wait_text(css, what, |_| true).await;
    }

    /// Clicks `css` once it exists and is enabled (found again on each try: the page redraws).
    pub(crate) async fn click(&self, css: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                let enabled = element.is_enabled().await.unwrap_or(false);
                if enabled && element.click().await.is_ok() {
                    return;
                }
            }
            if Instant::now() > deadline {
                let _ = self.screenshot("failure").await;
                panic!("`{css}` was never clickable within {STEP:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.clear().await.expect("clear");
        element.send_keys(text).await.expect("type");
    }

    pub(crate) async fn choose(&self, css: &str, value: &str) {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.select_by_value(value).await.expect("select");
    }

    /// Confirms the open confirmation dialog, checking that it names `server`.
    pub(crate) async fn confirm_naming(&self, server: &str) {
        self.wait_text("#confirm-text", "the confirmation names the server", |t| {
            t.contains(server)
        })
        .await;
        self.click("#confirm-ok").await;
    }

    pub(crate) async fn hash(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        url.fragment().unwrap_or_default().to_string()
    }

    pub(crate) async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

pub(crate) fn seed(server: &RedisServer, prefix: &str, n: usize) {
    let mut conn = server.conn();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("{prefix}:{i}"))
                .arg("v".repeat(64))
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
}

pub(crate) fn dbsize(server: &RedisServer) -> i64 {
    redis::cmd("DBSIZE").query(&mut server.conn()).unwrap()
}

/// Writes to the source until dropped, so that the live phase has something to apply.
struct Load(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Option<std::thread::JoinHandle<()>>,
);

impl Load {
    fn start(source: &RedisServer) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let mut conn = source.conn();
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _: Result<(), _> = redis::cmd("SET")
                    .arg(format!("live:{}", i % 500))
                    .arg(i)
                    .query(&mut conn);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Load(stop, Some(handle))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_a_live_migration_with_the_dashboard_only() {
    // A source that throttles its snapshot a little (so progress is seen moving) and forks at
    // once; a target that already holds some of its keys, so the first validation fails on them.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "200",
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&source, "src", 20_000);
    // Five of the source's own keys: replacing them leaves the target equal to the source, which
    // the verification after cutover checks (keys only on the target would fail it as extra).
    seed(&target, "src", 5);
    let app: TestApp = crate::helpers::app().await;
    let browser = Browser::start().await;
    let c = &browser.client;

    // 1. Configure: the form, with the guide beside it.
    c.goto(&format!("{}/#/new", app.address)).await.unwrap();
    browser
        .wait_text(
            "aside.guide",
            "the prerequisites are beside the form",
            |t| t.contains("Ferry can reach the source"),
        )
        .await;
    browser.fill("#name", "cache to the new host").await;
    browser.fill("#source-url", &source.url()).await;
    browser.fill("#target-url", &target.url()).await;
    browser.choose("#mode", "live").await;
    browser.click("#save-validate").await;

    // 2. Validate: target.conflicts fails, with what was found and the fix.
    let failed = "#checks tr[data-check='target.conflicts'][data-status='fail']";
    browser
        .wait_text(failed, "the conflict check fails", |t| {
            t.contains("already holds 5 keys")
        })
        .await;
    let id = browser
        .hash()
        .await
        .trim_start_matches("/migrations/")
        .to_string();
    assert_eq!(id.len(), 36, "the page shows the new migration: {id}");
    browser
        .wait_text("#checks", "every check is listed", |t| {
            t.contains("source.connect") && t.contains("capacity.memory")
        })
        .await;
    let start = c.find(Locator::Css("#start")).await.unwrap();
    assert!(
        !start.is_enabled().await.unwrap(),
        "start waits for a passing validation"
    );
    browser.screenshot("1-validation-failed").await;

    // The fix: edit the configuration (on conflict: replace), validate again.
    browser.click("#edit").await;
    browser.wait_for("#on-conflict", "the edit form").await;
    let kept = c
        .find(Locator::Css("#source-url"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(source.url().as_str()));
    browser.choose("#on-conflict", "replace").await;
    browser.click("#save-validate").await;
    browser
        .wait_text(
            "#checks tr[data-check='target.conflicts']",
            "the conflict check now warns",
            |t| t.contains("overwritten"),
        )
        .await;

    // 3. Migrate: start (the confirmation names the target), watch progress move.
    let load = Load::start(&source);
    browser.click("#start").await;
    browser.confirm_naming(&target.url()).await;
    browser.wait_for("#migrate", "the migration section").await;
    let keys_seen = browser
        .wait_text("[data-stat='keys'] .v", "keys are being written", |t| {
            t.split_whitespace()
                .next()
                .and_then(|n| n.replace(',', "").parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
        .await;
    browser.screenshot("2-snapshot").await;
    let phase = browser
        .wait_text("#phase", "the live phase", |t| t.starts_with("streaming"))
        .await;
    assert!(phase.contains("cut over when you are ready"), "{phase}");
    browser
        .wait_text(
            "[data-stat='commands'] .v",
            "live writes are applied",
            |t| t.replace(',', "").parse::<u64>().is_ok_and(|n| n > 0),
        )
        .await;
    browser
        .wait_text("[data-stat='rate'] .v", "an apply rate is shown", |t| {
            t.ends_with("ops/s")
        })
        .await;
    let percent = c
        .find(Locator::Css("#migrate [role='progressbar']"))
        .await
        .unwrap()
        .attr("aria-valuenow")
        .await
        .unwrap();
    assert_eq!(
        percent.as_deref(),
        Some("100"),
        "the snapshot is done (keys seen {keys_seen})"
    );
    c.find(Locator::Css("svg.chart polyline"))
        .await
        .expect("the lag chart");
    browser.screenshot("3-live").await;

    // Cut over (confirmed, naming the target) and read the verification.
    drop(load);
    browser.click("#cutover").await;
    browser.confirm_naming(&target.url()).await;
    browser
        .wait_text("h1 .badge", "the migration completes", |t| t == "completed")
        .await;
    browser
        .wait_text("#verification", "the verification report", |t| {
            t.contains("0 missing")
        })
        .await;
    browser.screenshot("4-completed").await;

    // The audit timeline: every event, with actor and time, filterable.
    browser.click("#timeline-link").await;
    browser
        .wait_text("#events tbody", "the timeline", |t| {
            t.contains("MigrationCompleted") && t.contains("CutoverStarted")
        })
        .await;
    browser.choose("#filter-type", "ValidationCompleted").await;
    let filtered = browser
        .wait_text("#event-count", "the type filter", |t| t.starts_with("2 of"))
        .await;
    assert!(filtered.contains("events"), "{filtered}");
    browser.screenshot("5-timeline").await;

    // The list shows it completed.
    c.goto(&format!("{}/#/migrations", app.address))
        .await
        .unwrap();
    browser
        .wait_text(
            &format!("#migrations tr[data-id='{id}']"),
            "the list",
            |t| t.contains("completed"),
        )
        .await;
    browser.screenshot("6-list").await;
    browser.close().await;

    // What the page did is what happened: the data moved, the history holds together.
    assert_eq!(
        dbsize(&target),
        dbsize(&source),
        "the target holds the source's keys, its own 5 replaced"
    );
    let view: Value = app.view(&id).await;
    assert_eq!(view["state"], "completed");
    let actors: Vec<Value> = app
        .get(&format!("/v1/migrations/{id}/events?limit=1000"))
        .await
        .json::<Value>()
        .await
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].clone())
        .collect();
    assert!(
        actors.contains(&json!("api")) && actors.contains(&json!("engine")),
        "{actors:?}"
    );
    let chain: Value = app.get("/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(chain["status"], "intact", "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_tokens_the_page_asks_for_one_and_sends_it_as_a_bearer_header() {
    let app = crate::common::app::spawn_app_with_token(
        "dashboard-user",
        "FERRY_TEST_DASH_TOKEN",
        "s3cret-dash",
    )
    .await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{}/#/migrations", app.address))
        .await
        .unwrap();
    browser
        .wait_text("#token-dialog", "the page asks for a token", |t| {
            t.contains("API token")
        })
        .await;
    browser.fill("#token-input", "s3cret-dash").await;
    browser.click("#token-dialog button[type='submit']").await;
    browser
        .wait_text("#migrations", "the list loads with the token", |t| {
            t.contains("No migrations yet")
        })
        .await;
    // No cookie holds it, and the page does not keep it anywhere but in memory.
    let stored: Value = c
        .execute("return [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)]", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(["", "{}", "{}"]));
    browser.close().await;
}
