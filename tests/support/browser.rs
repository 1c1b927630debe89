//! A real headless Chromium, driven over the W3C WebDriver protocol (plain HTTP and JSON) by
//! Debian's `chromedriver`: for the status page's test. Without Chromium and its driver
//! (`apt-get install chromium chromium-driver`) a test prints one line saying it was skipped;
//! under `CI=true` that is a failure.
//!
//! Nothing outlives a [`Browser`], even when its test panics mid-session or the driver hangs
//! (issue #40). Dropping it ends the WebDriver session, so that chromedriver closes the browser,
//! then kills the driver's process group (the driver leads one, and the browser it starts
//! with its renderers and GPU process joins it), then every process still marked with the
//! browser's own temporary directory: crashpad's handlers put themselves in a session of their
//! own, but they inherit the environment, whose `TMPDIR` points into that directory. The
//! directory, which holds the profile (`--user-data-dir`) and everything chromedriver and
//! Chromium put in a temporary directory, goes last.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::process::{eventually, eventually_ok};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference in a response.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long ending the session may take before the processes are killed regardless.
const QUIT_LIMIT: Duration = Duration::from_secs(10);

/// A chromedriver process and one browser session on it; both end when this is dropped, and
/// their temporary directory is removed.
pub struct Browser {
    driver: Child,
    port: u16,
    base: String,
    session: String,
    http: reqwest::Client,
    /// Owned by this browser alone: `profile/` (the user data directory) and `tmp/` (the
    /// driver's and the browser's `TMPDIR`). Its path marks every process of this browser.
    dir: Option<tempfile::TempDir>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.end_session();
        }
        // SAFETY: killpg only sends a signal; the driver leads its own group (process_group(0)
        // at spawn), so this reaches the driver and the browser processes it started.
        unsafe {
            libc::killpg(self.driver.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.driver.wait();
        if let Some(dir) = self.dir.take() {
            for pid in processes_marked(dir.path()) {
                // SAFETY: as above, a signal to a process of this browser.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let deadline = std::time::Instant::now() + QUIT_LIMIT;
            while !processes_marked(dir.path()).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("the browser's directory {} stays: {e}", path.display());
            }
        }
    }
}

/// The processes whose command line or environment names `marker` (a [`Browser::marker`]),
/// read from `/proc`. A process that has exited but not been reaped yet shows neither.
pub fn processes_marked(marker: &Path) -> Vec<u32> {
    let marker = marker.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|pid| {
            ["cmdline", "environ"].iter().any(|file| {
                std::fs::read(format!("/proc/{pid}/{file}"))
                    .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(&*marker))
            })
        })
        .collect()
}

impl Browser {
    /// A headless Chromium, or `None` (after a skip line) when it is not installed here.
    pub async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
            assert!(
                !super::db::in_ci(),
                "CI=true but {CHROMIUM} or {DRIVER} is missing: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "skipped: no {CHROMIUM} / {DRIVER} here (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("trunkline-browser-")
            .tempdir()
            .expect("a temporary directory");
        let (profile, tmp) = (dir.path().join("profile"), dir.path().join("tmp"));
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = std::os::unix::process::CommandExt::process_group(
            Command::new(DRIVER)
                .arg(format!("--port={port}"))
                .env("TMPDIR", &tmp)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            port,
            base,
            session: String::new(),
            http: reqwest::Client::new(),
            dir: Some(dir),
        };
        let status = format!("{}/status", browser.base);
        eventually("chromedriver answering", Duration::from_secs(10), || {
            let request = browser.http.get(&status).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        let created = browser
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                                 "--disable-gpu", "--window-size=1400,900",
                                 "--disable-crash-reporter", "--disable-breakpad",
                                 format!("--user-data-dir={}", profile.display())]
                    }
                }}}),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Some(browser)
    }

    /// The directory this browser alone owns: every process of it names it (see
    /// [`processes_marked`]), and it is gone once the browser is dropped.
    pub fn marker(&self) -> &Path {
        self.dir.as_ref().expect("not dropped").path()
    }

    /// `DELETE /session/{id}`: chromedriver closes the browser. Blocking, with a bound, since
    /// it runs in `drop` (also while a panic unwinds, perhaps on the runtime's only thread).
    fn end_session(&self) {
        let ended = (|| -> std::io::Result<()> {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            let mut stream = std::net::TcpStream::connect_timeout(&addr, QUIT_LIMIT)?;
            stream.set_read_timeout(Some(QUIT_LIMIT))?;
            stream.set_write_timeout(Some(QUIT_LIMIT))?;
            write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.port
            )?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply)?;
            Ok(())
        })();
        if let Err(e) = ended {
            eprintln!("the WebDriver session did not end ({e}); killing its processes");
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let reply: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver JSON");
        reply["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    pub async fn url(&self) -> String {
        let url = self.call(reqwest::Method::GET, "/url", Value::Null).await;
        url.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT].as_str().map(str::to_string)
    }

    async fn element(&self, css: &str) -> String {
        match self.find(css).await {
            Some(id) => id,
            None => panic!("no element {css} on {}", self.url().await),
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// The visible text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let Some(id) = self.find(css).await else {
            return String::new();
        };
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{id}/text"),
                Value::Null,
            )
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` in the page and returns its result.
    pub async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until the text of `css` contains `wanted`, failing the test after `limit`.
    pub async fn wait_for_text(&self, css: &str, wanted: &str, limit: Duration) -> String {
        eventually_ok(&format!("{wanted:?} in {css}"), limit, || async {
            let text = self.text(css).await;
            match text.contains(wanted) {
                true => Ok(text),
                false => Err(format!("it shows {text:?}")),
            }
        })
        .await
    }

    /// Writes a PNG of the window under `target/status-page/`, and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("base64");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}
