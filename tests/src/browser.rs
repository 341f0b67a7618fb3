//! # A real browser for the portal's end-to-end tests
//!
//! [`Browser::start`] spawns `chromedriver --port=<free port>` and opens a WebDriver
//! session ([`fantoccini`]) with headless Chromium, so a test can drive the portal
//! served by the real `ivan serve` as a user would: navigate, fill forms, click,
//! upload files, read the page, run JavaScript, take screenshots.
//!
//! ## What is installed
//!
//! `ops/test.sh` installs the Debian packages `chromium` and `chromium-driver` when
//! `chromedriver` or `/usr/lib/chromium/chromium` is missing. Debian's
//! `/usr/bin/chromium` is a shell wrapper, so the session names the real binary,
//! `/usr/lib/chromium/chromium`, in `goog:chromeOptions.binary`. Elsewhere, set
//! `IVAN_CHROMEDRIVER` (the driver to run) and `IVAN_CHROMIUM` (the browser binary).
//! Chromium runs with `--headless --no-sandbox --disable-gpu
//! --disable-background-networking --disable-dev-shm-usage --window-size=1280,1024`
//! and a throw-away profile directory of its own.
//!
//! ## Passkeys: the virtual authenticator
//!
//! Chrome's WebDriver extension for WebAuthn (not in fantoccini, so issued as a
//! custom [`WebDriverCompatibleCommand`]) adds an authenticator that answers
//! `navigator.credentials.create()` / `.get()` without any user: CTAP2, internal
//! transport (a platform authenticator, like a phone's or laptop's), resident keys,
//! user verification always succeeds. See
//! [`Browser::add_virtual_authenticator`], [`Browser::authenticator_credentials`]
//! and [`Browser::remove_virtual_authenticator`] (removing it, or starting a second
//! `Browser`, gives "a browser without the passkey").
//!
//! WebAuthn needs a secure context: navigate to `http://localhost:PORT/...`, not
//! `http://127.0.0.1:PORT/...` (see [`localhost_url`]).
//!
//! Measured with Chromium 156: with an authenticator that holds no matching
//! credential, `navigator.credentials.get()` rejects with `NotAllowedError` at
//! once; with no authenticator at all, a ceremony waits for its WebAuthn `timeout`
//! (honoured as given, e.g. 1 s) and, without one, outlasts the 30-s WebDriver
//! script timeout. So "a browser without the passkey" is best a browser with a
//! fresh, empty authenticator.
//!
//! ## Concurrency
//!
//! Each browser costs about 300 MB, and `cargo test` runs the tests of a binary in
//! parallel threads (each `#[tokio::test]` on a runtime of its own). A process-wide
//! semaphore ([`MAX_BROWSERS`] permits, a tokio semaphore, which works across
//! runtimes) bounds how many browsers live at once in one test binary: each
//! `Browser` holds a permit from before chromedriver starts until it is closed or
//! dropped. Test binaries themselves run one after the other.
//!
//! ## Clean-up
//!
//! [`Browser::close`] ends the WebDriver session (Chromium quits) and then kills
//! chromedriver. Dropping a `Browser` without closing it (a failing test) kills
//! chromedriver's whole process group, Chromium included; its profile directory
//! is removed either way.
//!
//! ## Screenshots
//!
//! [`Browser::screenshot`] writes `<target dir>/portal-screenshots/<name>.png`, the
//! target dir being `$CARGO_TARGET_DIR` (relative paths taken from the workspace
//! root) or else `<workspace root>/target` (see [`screenshot_dir`]).
//!
//! ## Failures
//!
//! The helpers panic with a message naming what was looked for, the current URL and
//! an excerpt of the page source; [`Browser::client`] gives the raw fantoccini
//! client for anything else.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many browsers may live at once in one test process.
pub const MAX_BROWSERS: usize = 2;

/// How long [`Browser::wait_for`] and [`Browser::wait_for_url_containing`] wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// How long chromedriver gets to answer `/status`.
const DRIVER_START: Duration = Duration::from_secs(20);

const DEFAULT_CHROMIUM: &str = "/usr/lib/chromium/chromium";

fn slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_BROWSERS)))
        .clone()
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where [`Browser::screenshot`] writes: `<target dir>/portal-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    };
    target.join("portal-screenshots")
}

/// `url` with its host `127.0.0.1` replaced by `localhost`, which browsers treat as
/// a secure context (WebAuthn refuses to work on `http://127.0.0.1`). `Server::base`
/// is `http://127.0.0.1:PORT`, so `localhost_url(&server.url("/portal"))`.
pub fn localhost_url(url: &str) -> String {
    url.replacen("://127.0.0.1:", "://localhost:", 1)
}

/// Chrome's WebAuthn extension commands, relative to `session/{id}/webauthn/`.
#[derive(Debug)]
struct SessionCmd {
    method: Method,
    /// Below `session/{id}/`: `webauthn/…`, or chromedriver's `goog/cdp/execute`.
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for SessionCmd {
    fn endpoint(
        &self,
        base_url: &Url,
        session_id: Option<&str>,
    ) -> Result<Url, url_error::ParseError> {
        let session = session_id.expect("a WebDriver session is open");
        base_url.join(&format!("session/{session}/{}", self.path))
    }

    fn method_and_body(&self, _request_url: &Url) -> (Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(ToString::to_string),
        )
    }
}

/// `url::ParseError`, named through reqwest (which re-exports `url::Url` only).
mod url_error {
    pub type ParseError = <reqwest::Url as std::str::FromStr>::Err;
}

/// Headless Chromium under chromedriver, with a WebDriver session open.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    driver: Child,
    driver_log: PathBuf,
    _profile: TempDir,
    /// Last, so it is released after the processes are gone.
    _permit: OwnedSemaphorePermit,
}

impl Browser {
    /// Waits for a free slot (at most [`MAX_BROWSERS`] at once), starts chromedriver
    /// on a free port and opens a session with headless Chromium.
    pub async fn start() -> Browser {
        let permit = slots()
            .acquire_owned()
            .await
            .expect("the browser semaphore is never closed");
        let profile = tempfile::tempdir().unwrap();
        let driver_log = profile.path().join("chromedriver.log");
        let chromedriver =
            std::env::var("IVAN_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());

        // The port is chosen by binding :0 and letting go; another process could
        // take it in between, so a driver that dies at once is retried.
        let mut attempt = 0;
        let (driver, port) = loop {
            attempt += 1;
            let port = free_port();
            let log = std::fs::File::create(&driver_log).unwrap();
            let mut driver = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                // Its own process group: Chromium and its helpers join it, and
                // Drop kills the whole group.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {chromedriver:?} ({e}): install chromium and \
                         chromium-driver (ops/test.sh does) or set IVAN_CHROMEDRIVER"
                    )
                });
            match wait_for_driver(&mut driver, port).await {
                Ok(()) => break (driver, port),
                Err(why) if attempt < 3 && why.contains("exited") => continue,
                Err(why) => {
                    let _ = driver.start_kill();
                    panic!(
                        "chromedriver on port {port} {why}; its log:\n{}",
                        read(&driver_log)
                    );
                }
            }
        };

        let chromium = std::env::var("IVAN_CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.into());
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1024",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            }),
        );
        // The URL must end with `/`: fantoccini joins `session` onto it.
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}/"))
                .await;
        let client = match connected {
            Ok(client) => client,
            Err(e) => {
                let mut driver = driver;
                let _ = driver.start_kill();
                panic!(
                    "no WebDriver session with {chromium} through chromedriver: {e}; \
                     chromedriver's log:\n{}",
                    read(&driver_log)
                );
            }
        };
        Browser {
            client,
            driver,
            driver_log,
            _profile: profile,
            _permit: permit,
        }
    }

    /// The fantoccini client, for anything the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// chromedriver's log so far (its stdout and stderr).
    pub fn driver_log(&self) -> String {
        read(&self.driver_log)
    }

    /// Ends the WebDriver session (Chromium quits) and kills chromedriver.
    pub async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("closing the WebDriver session: {e}");
        }
        // Drop kills chromedriver (and anything left in its process group).
    }

    // --- the virtual authenticator -------------------------------------------

    /// Adds a virtual WebAuthn authenticator (CTAP2, internal transport, resident
    /// keys, user verification that always succeeds, presence simulated) and
    /// returns its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let answer = self
            .webauthn(
                Method::POST,
                "authenticator".to_owned(),
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                })),
            )
            .await;
        // The spec answers with the id itself; accept `{"authenticatorId": ...}` too.
        match &answer {
            Value::String(id) => id.clone(),
            other => other["authenticatorId"]
                .as_str()
                .unwrap_or_else(|| panic!("addVirtualAuthenticator answered {answer}"))
                .to_owned(),
        }
    }

    /// The credentials (passkeys) stored in a virtual authenticator: a JSON array of
    /// objects with `credentialId`, `rpId`, `userHandle`, `isResidentCredential`,
    /// `privateKey`, `signCount` (binary values base64url).
    pub async fn authenticator_credentials(&self, authenticator_id: &str) -> Value {
        self.webauthn(
            Method::GET,
            format!("authenticator/{authenticator_id}/credentials"),
            None,
        )
        .await
    }

    /// Removes a virtual authenticator, and the credentials it holds.
    pub async fn remove_virtual_authenticator(&self, authenticator_id: &str) {
        self.webauthn(
            Method::DELETE,
            format!("authenticator/{authenticator_id}"),
            None,
        )
        .await;
    }

    async fn webauthn(&self, method: Method, path: String, body: Option<Value>) -> Value {
        let what = format!("{method} webauthn/{path}");
        self.client
            .issue_cmd(SessionCmd {
                method,
                path: format!("webauthn/{path}"),
                body,
            })
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    // --- navigation and the page ---------------------------------------------

    /// Navigates to `url` (absolute, or relative to the current page) and waits for
    /// the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("current URL: {e}"))
            .to_string()
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("page source: {e}"))
    }

    /// The element matching the CSS selector `css` now; panics if there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("find {css:?}: {e}\n{}", self.context().await),
        }
    }

    /// Every element matching `css` now (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find all {css:?}: {e}"))
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(_) => true,
            Err(e) if e.is_no_such_element() => false,
            Err(e) => panic!("find {css:?}: {e}"),
        }
    }

    /// Waits (at most [`WAIT`]) for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!(
                "waited {} s for {css:?}: {e}\n{}",
                WAIT.as_secs(),
                self.context().await
            ),
        }
    }

    /// Waits (at most [`WAIT`]) until the current URL contains `fragment`; returns it.
    pub async fn wait_for_url_containing(&self, fragment: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let url = self.current_url().await;
            if url.contains(fragment) {
                return url;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "waited {} s for a URL containing {fragment:?}\n{}",
                    WAIT.as_secs(),
                    self.context().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.click().await {
            panic!("click {css:?}: {e}\n{}", self.context().await);
        }
    }

    /// Clears the field matching `css`, then types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.clear().await {
            panic!("clear {css:?}: {e}\n{}", self.context().await);
        }
        if let Err(e) = element.send_keys(text).await {
            panic!("type into {css:?}: {e}\n{}", self.context().await);
        }
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        match element.text().await {
            Ok(text) => text,
            Err(e) => panic!("text of {css:?}: {e}\n{}", self.context().await),
        }
    }

    /// Chooses the file `path` in the `<input type=file>` matching `css`.
    pub async fn upload_file(&self, css: &str, path: &Path) {
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("file to upload {}: {e}", path.display()));
        let element = self.find(css).await;
        if let Err(e) = element.send_keys(&path.to_string_lossy()).await {
            panic!(
                "choose {} in {css:?}: {e}\n{}",
                path.display(),
                self.context().await
            );
        }
    }

    /// Runs `js` as the body of a function in the page (`arguments` are `args`) and
    /// returns what it returns (a returned Promise is awaited).
    pub async fn execute(&self, js: &str, args: Vec<Value>) -> Value {
        match self.client.execute(js, args).await {
            Ok(v) => v,
            Err(e) => panic!("script failed: {e}\nscript: {js}\n{}", self.context().await),
        }
    }

    /// Like [`Browser::execute`], with a callback as the last argument: the result
    /// is what the script passes to it (at most the session's script timeout, 30 s).
    pub async fn execute_async(&self, js: &str, args: Vec<Value>) -> Value {
        match self.client.execute_async(js, args).await {
            Ok(v) => v,
            Err(e) => panic!(
                "async script failed: {e}\nscript: {js}\n{}",
                self.context().await
            ),
        }
    }

    /// Saves a PNG of the viewport as `<screenshot_dir()>/<name>.png` and returns
    /// its path. `name` is a plain file name: ASCII letters, digits, `-`, `_`, `.`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "screenshot name {name:?} is not a plain file name"
        );
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Screenshots of the page as a desktop (1280 px wide) and a phone (390 px)
    /// show it: `<name>-1280.png` and `<name>-390.png`. Panics, naming the widest
    /// elements, if the page scrolls sideways at 390 px.
    pub async fn screenshots(&self, name: &str) {
        for (width, height, mobile) in [(1280, 1024, false), (390, 844, true)] {
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
            self.screenshot(&format!("{name}-{width}")).await;
            if width == 390 {
                let overflow = self
                    .execute(
                        "const w = document.documentElement.clientWidth;
                         if (document.documentElement.scrollWidth <= w) return null;
                         return [...document.querySelectorAll('body *')]
                           .filter(e => e.getBoundingClientRect().right > w + 1)
                           .slice(0, 5)
                           .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                                + (e.className ? '.' + e.className : '')
                                + ' ' + Math.round(e.getBoundingClientRect().right) + 'px');",
                        vec![],
                    )
                    .await;
                assert!(
                    overflow.is_null(),
                    "{name} scrolls sideways at 390 px; too wide: {overflow}\n{}",
                    self.context().await
                );
            }
        }
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`).
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.client
            .issue_cmd(SessionCmd {
                method: Method::POST,
                path: "goog/cdp/execute".to_owned(),
                body: Some(json!({"cmd": cmd, "params": params})),
            })
            .await
            .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
    }

    /// For failure messages: the current URL and the start of the page source.
    async fn context(&self) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let source = match self.client.source().await {
            Ok(s) => excerpt(&s, 3000),
            Err(e) => format!("(unavailable: {e})"),
        };
        format!("current URL: {url}\npage source:\n{source}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and Chromium share a process group (see `start`); killing the
        // group leaves no Chromium behind even if the session was never closed.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Polls chromedriver's `/status` until it says it is ready.
async fn wait_for_driver(driver: &mut Child, port: u16) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = tokio::time::Instant::now() + DRIVER_START;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("exited ({status}) before answering /status"));
        }
        if let Ok(r) = http.get(&url).send().await
            && let Ok(v) = r.json::<Value>().await
            && v["value"]["ready"] == Value::Bool(true)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "did not answer /status ready in {} s",
                DRIVER_START.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
