//! # ivan-e2e — the end-to-end harness
//!
//! Starts the real `ivan` binary as a child process, against a temp SQLite file or a
//! fresh PostgreSQL database (created per test, dropped afterwards), and talks to it
//! over HTTP and its command line, as an operator or a client would.
//!
//! The binary is `$IVAN_BIN`, or `ivan` next to the test executable's `deps/`
//! directory (what `cargo build --bin ivan` produces in the same profile);
//! `ops/test.sh` builds it first.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod filing;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ivan_server::app::App;
use ivan_server::config::Config;
use retention::testing::{ManualClock, TempPg};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Path of the `ivan` binary under test.
pub fn ivan_bin() -> PathBuf {
    if let Ok(p) = std::env::var("IVAN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let bin = profile_dir.join("ivan");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --bin ivan` first (ops/test.sh does)",
        bin.display()
    );
    bin
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One installation of ivan: a data dir and a database.
#[derive(Debug)]
pub struct Instance {
    pub backend: Backend,
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// Environment every command and server of this instance gets (e.g. the
    /// originals store), after the data dir and database.
    pub env: Vec<(String, String)>,
    _pg: Option<TempPg>,
}

impl Instance {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let (database_url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", data_dir.join("ivan.db").display()),
                None,
            ),
            Backend::Postgres => {
                let pg = TempPg::create()
                    .await
                    .expect("PostgreSQL for tests (ops/test.sh starts it; or set IVAN_TEST_PG)");
                (pg.url().to_owned(), Some(pg))
            }
        };
        Self {
            backend,
            dir,
            data_dir,
            database_url,
            env: Vec::new(),
            _pg: pg,
        }
    }

    /// `ivan` with this instance's data dir and database, and a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// `ivan ARGS` run by a wrapper command that execs it (e.g. `prlimit …  --`), with
    /// this instance's environment.
    fn command_under(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut cmd = match wrapper {
            [] => Command::new(ivan_bin()),
            [program, rest @ ..] => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(ivan_bin());
                cmd
            }
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("IVAN_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("IVAN_DATA_DIR", &self.data_dir)
            .env("IVAN_DATABASE_URL", &self.database_url)
            .env("USER", "e2e-operator")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .args(args)
            .kill_on_drop(true);
        cmd
    }

    /// Runs `ivan ARGS` to completion (at most 120 s).
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with(&[], args).await
    }

    /// [`Instance::run`] with extra environment variables.
    pub async fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        tokio::time::timeout(
            Duration::from_secs(120),
            self.command(args).envs(env.iter().copied()).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("ivan {args:?} did not finish in 120 s"))
        .unwrap()
    }

    /// Runs `ivan ARGS`, asserting success; returns stdout.
    pub async fn run_ok(&self, args: &[&str]) -> String {
        self.run_ok_with(&[], args).await
    }

    /// [`Instance::run_ok`] with extra environment variables (e.g. the ledger's
    /// origin, which every command that appends, reads included, must agree on).
    pub async fn run_ok_with(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let out = self.run_with(env, args).await;
        assert!(
            out.status.success(),
            "ivan {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `ivan serve` on a free loopback port and waits until it listens.
    pub async fn serve(&self) -> Server {
        self.serve_with(&[]).await
    }

    pub async fn serve_with(&self, extra_env: &[(&str, &str)]) -> Server {
        self.serve_on("127.0.0.1:0", extra_env).await
    }

    /// `ivan serve` listening on `listen` (for tests that must know the port
    /// before the server starts, e.g. for links the CLI mails).
    pub async fn serve_on(&self, listen: &str, extra_env: &[(&str, &str)]) -> Server {
        self.serve_under(&[], listen, extra_env).await
    }

    /// `ivan serve` on a free loopback port with its open-file limit (soft and hard)
    /// set to `limit`, as a small machine or a hostile load would leave it.
    pub async fn serve_with_open_files(&self, limit: u64, extra_env: &[(&str, &str)]) -> Server {
        let nofile = format!("--nofile={limit}:{limit}");
        self.serve_under(&["prlimit", &nofile, "--"], "127.0.0.1:0", extra_env)
            .await
    }

    async fn serve_under(
        &self,
        wrapper: &[&str],
        listen: &str,
        extra_env: &[(&str, &str)],
    ) -> Server {
        let log_path = self.dir.path().join(format!("serve-{}.log", uuid_like()));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = self.command_under(wrapper, &["serve", "--listen", listen]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!("ivan serve did not start in 60 s; log: {}", read(&log_path))
            })
            .unwrap();
        let Some(line) = line else {
            panic!("ivan serve exited before listening: {}", read(&log_path));
        };
        let base = line
            .strip_prefix("ivan listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            run: Run::Process(child),
            base,
            log_path,
            http: server_client(),
        }
    }

    /// PostgreSQL only: an outage of this instance's database (`down`), or its end.
    pub async fn pg_outage(&self, down: bool) {
        self._pg
            .as_ref()
            .expect("a PostgreSQL instance")
            .set_accepting_connections(!down)
            .await
            .unwrap();
    }

    /// Puts this instance's data dir on a tmpfs of `mib` MiB (before anything is
    /// written to it), so a test can fill the disk. Needs root, as CI runs.
    pub fn small_data_disk(&self, mib: u32) -> SmallDisk {
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&self.data_dir)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "cannot mount a tmpfs on {} (the disk-full tests need root)",
            self.data_dir.display()
        );
        SmallDisk {
            at: self.data_dir.clone(),
        }
    }

    /// One number this instance's database answers `sql` with (e.g. a `COUNT(*)`).
    pub async fn count(&self, sql: &'static str) -> i64 {
        let db = self.db().await;
        let n = retention::on_pool!(&db, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .unwrap();
        db.close().await;
        n
    }

    /// A connection to this instance's database, for inspecting (or tampering
    /// with) it directly.
    pub async fn db(&self) -> retention::Db {
        retention::Db::connect(
            &self.database_url,
            2,
            retention::MigrationPolicy::RequireCurrent,
        )
        .await
        .unwrap()
    }
}

/// A small filesystem mounted for a test; unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Fills the disk with one file; returns its path (remove it to free the space).
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.at.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // Whatever partial block is left.
        while f.write_all(&[0u8; 512]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

fn uuid_like() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The HTTP client a [`Server`] is driven with (30 s per request).
fn server_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A running `ivan serve`.
#[derive(Debug)]
pub struct Server {
    run: Run,
    pub base: String,
    log_path: PathBuf,
    pub http: reqwest::Client,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/submissions` of `body` as `application/xml` with API token `token`.
    pub async fn submit(&self, token: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/submissions"))
            .bearer_auth(token)
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// [`Server::submit`] that must be accepted (`201`, else it panics with the
    /// answer): the submission's view.
    pub async fn file(&self, token: &str, body: impl Into<reqwest::Body>) -> serde_json::Value {
        let r = self.submit(token, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// GET, the answer's body as JSON (whatever its status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.unwrap()
    }

    /// [`Server::get_auth`], the answer's body as JSON (whatever its status).
    pub async fn get_auth_json(&self, path: &str, token: &str) -> serde_json::Value {
        self.get_auth(path, token).await.json().await.unwrap()
    }

    /// GET with `Authorization: Bearer TOKEN`.
    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Sends only the head of a request announcing a `content_length`-byte body
    /// with `Expect: 100-continue`, as careful HTTP clients do for large uploads,
    /// and returns the server's final answer (status, lower-cased header lines,
    /// body) without ever sending the body. A server that refuses by the
    /// announced length answers at once; one that wants the body would answer
    /// `100 Continue` (which this returns as status 100).
    pub async fn send_head_only(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        content_length: usize,
    ) -> (u16, Vec<String>, String) {
        use tokio::io::AsyncWriteExt;
        let mut stream = self.connect().await;
        let head = self.head(
            path,
            &format!("content-length: {content_length}\r\nexpect: 100-continue"),
            headers,
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        read_answer(&mut stream).await
    }

    /// `POST` of `body` without a Content-Length, in HTTP/1.1 chunks of `chunk`
    /// bytes, as a client streaming a document it has not measured sends it.
    pub async fn send_chunked(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunk: usize,
    ) -> (u16, Vec<String>, String) {
        use tokio::io::AsyncWriteExt;
        let mut stream = self.connect().await;
        let head = self.head(path, "transfer-encoding: chunked", headers);
        stream.write_all(head.as_bytes()).await.unwrap();
        for part in body.chunks(chunk.max(1)) {
            let size = format!("{:x}\r\n", part.len());
            // The server may answer (413) and close before the whole body is sent.
            if stream.write_all(size.as_bytes()).await.is_err()
                || stream.write_all(part).await.is_err()
                || stream.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        read_answer(&mut stream).await
    }

    async fn connect(&self) -> tokio::net::TcpStream {
        let authority = self.base.trim_start_matches("http://");
        tokio::net::TcpStream::connect(authority).await.unwrap()
    }

    fn head(&self, path: &str, framing: &str, headers: &[(&str, &str)]) -> String {
        let authority = self.base.trim_start_matches("http://");
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\n{framing}\r\nconnection: close\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    pub fn log(&self) -> String {
        read(&self.log_path)
    }

    /// The value of one series on `/metrics` (`name` or `name{labels}` as printed),
    /// 0 when it is not there yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (at most 60 s) until the series `series` on `/metrics` reads `value`:
    /// how a test knows where requests inside the server are, without sleeping.
    pub async fn metric_reaches(&self, series: &str, value: f64) {
        eventually(60, &format!("{series} reaches {value}"), || async {
            (self.metric(series).await == value).then_some(())
        })
        .await;
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.run {
            Run::Process(child) => child,
            Run::InProcess { .. } => panic!("an in-process server is not a process"),
        }
    }

    fn signal(&self, sig: &str) {
        let Run::Process(child) = &self.run else {
            panic!("an in-process server takes no signals");
        };
        let pid = child.id().expect("server still running");
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// SIGTERM, without waiting.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits (at most 60 s) for the process to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let log = self.log();
        tokio::time::timeout(Duration::from_secs(60), self.child().wait())
            .await
            .unwrap_or_else(|_| panic!("ivan serve did not stop in 60 s: {log}"))
            .unwrap()
    }

    /// Stops the server (SIGTERM, or an in-process server's shutdown) and waits (at
    /// most 60 s) for it to end: its exit status (0 for an in-process server whose
    /// run returned `Ok`).
    pub async fn stop(mut self) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        if let Run::InProcess { stop, task } = &mut self.run {
            let _ = stop.take().map(|s| s.send(()));
            let ended = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("the in-process server did not stop in 60 s")
                .expect("the in-process server's task");
            if let Err(e) = &ended {
                eprintln!("in-process server: {e}");
            }
            return std::process::ExitStatus::from_raw(if ended.is_ok() { 0 } else { 1 << 8 });
        }
        self.signal("-TERM");
        self.wait().await
    }

    /// SIGKILL: the process dies wherever it is.
    pub async fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child().wait().await;
    }
}

/// The workers of an in-process server that wait on its clock between passes (the
/// pre-registration sweeper, the retention sweeper, the certificate expiry check, the
/// CRL fetch and the forwarding worker): what [`ManualClock::settled`] waits for after
/// an advance.
pub const CLOCK_WORKERS: usize = 5;

/// How a [`Server`] runs: `ivan serve` as a child process, or an
/// [`ivan_server::app::App`] on a task of the test's own runtime.
#[derive(Debug)]
enum Run {
    Process(Child),
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<ivan_server::Result<()>>,
    },
}

impl Instance {
    /// The server built in-process ([`App::build`]) with this instance's data dir and
    /// database, the `IVAN_*` variables `env` (as [`Instance::serve_with`] takes
    /// them), and `clock`, a manual clock the test moves: deadlines, lockouts and
    /// session ends pass when it says, and the workers that wait between passes
    /// wake then, with no real time spent. For what needs no real process
    /// (signals, kill -9 and file locks do).
    pub async fn serve_in_process(&self, env: &[(&str, &str)], clock: Arc<ManualClock>) -> Server {
        let config = Config {
            data_dir: self.data_dir.clone(),
            database_url: Some(self.database_url.clone()),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        }
        .with_vars(env.iter().copied())
        .unwrap();
        // The server's log goes to the test's captured output (shown when it fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_test_writer()
            .try_init();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = App::build(config, clock).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        Server {
            run: Run::InProcess {
                stop: Some(stop),
                task,
            },
            base,
            log_path: self.dir.path().join("in-process.log"),
            http: server_client(),
        }
    }
}

/// For each `name`, makes `name::sqlite` and `name::postgres` tests that call the
/// async fn `name(instance)` in scope with a fresh instance of that backend.
#[macro_export]
macro_rules! e2e_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Instance::new($crate::Backend::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Instance::new($crate::Backend::Postgres).await).await;
            }
        }
    )*};
}

/// A loopback port that was free a moment ago.
/// Reads an HTTP/1.1 answer (a `100 Continue` counts as one) until its head and the
/// body its Content-Length announces are in, or the peer closes: status, header
/// lines in lower case, body.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (u16, Vec<String>, String) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the head and the announced body of the answer are in.
    let text = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let want = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                if head.starts_with("HTTP/1.1 100") || body.len() >= want || n == 0 {
                    return text;
                }
            } else if n == 0 {
                return text;
            }
        }
    })
    .await
    .expect("no answer to the request head in 30 s");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let headers = lines.map(str::to_ascii_lowercase).collect();
    (status, headers, body.to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `ivan witness serve`: a witness of logs, in its own process, with its
/// key and state under the directory it was started in.
#[derive(Debug)]
pub struct Witness {
    _child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its cosignature verifier key.
    pub vkey: String,
    /// Its state file (the checkpoint it cosigned last, per log).
    pub state: PathBuf,
    log_path: PathBuf,
}

impl Witness {
    /// Starts a witness named `name` of the logs whose C2SP verifier keys are
    /// `logs`, keeping its key and state in `dir`.
    pub async fn start(dir: &Path, name: &str, logs: &[&str]) -> Self {
        let key = dir.join("witness-key.pem");
        let state = dir.join("witness-state.json");
        let out = Command::new(ivan_bin())
            .args(["witness", "vkey", "--name", name, "--key"])
            .arg(&key)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vkey = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
        let log_path = dir.join(format!("witness-{}.log", uuid_like()));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(ivan_bin());
        cmd.args([
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            name,
            "--key",
        ])
        .arg(&key)
        .arg("--state")
        .arg(&state);
        for l in logs {
            cmd.args(["--log", l]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = listening_on(&mut child, "witness", &log_path).await;
        Self {
            _child: child,
            base,
            vkey,
            state,
            log_path,
        }
    }

    pub fn log(&self) -> String {
        read(&self.log_path)
    }
}

/// The address a peer process announces on its first stdout line (`… listening on
/// URL`), within 30 s; panics with its log (`log_path`) if it does not.
async fn listening_on(child: &mut Child, what: &str, log_path: &Path) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} did not start: {}", read(log_path)))
        .unwrap()
        .unwrap_or_else(|| panic!("{what} exited: {}", read(log_path)));
    line.rsplit_once(" listening on ")
        .unwrap_or_else(|| panic!("unexpected first line of {what}: {line:?}"))
        .1
        .to_owned()
}

/// A running `ivan sandbox-authority`: the authority peer, in its own process.
#[derive(Debug)]
pub struct SandboxAuthority {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub base: String,
    log_path: PathBuf,
    /// A client able to talk to it (with the client identity when it wants one).
    pub http: reqwest::Client,
}

impl SandboxAuthority {
    /// Starts `ivan sandbox-authority --listen 127.0.0.1:0 ARGS…`, logging into `dir`.
    pub async fn start(dir: &Path, args: &[&str], http: reqwest::Client) -> Self {
        let log_path = dir.join(format!("sandbox-{}.log", uuid_like()));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(ivan_bin())
            .args(["sandbox-authority", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("IVAN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = listening_on(&mut child, "sandbox-authority", &log_path).await;
        Self {
            child,
            base,
            log_path,
            http,
        }
    }

    /// `GET path`, read as JSON.
    async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await;
        r.unwrap().json().await.unwrap()
    }

    /// `GET /v1/_stats`.
    pub async fn stats(&self) -> serde_json::Value {
        self.get_json("/v1/_stats").await
    }

    /// Ends its down period now (`POST /v1/_outage/end`).
    pub async fn end_outage(&self) {
        let r = self
            .http
            .post(format!("{}/v1/_outage/end", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// `GET /v1/_messages`.
    pub async fn messages(&self) -> Vec<serde_json::Value> {
        let listed = self.get_json("/v1/_messages").await;
        listed.as_array().unwrap().clone()
    }

    pub fn log(&self) -> String {
        read(&self.log_path)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Polls `check` (every 200 ms) until it answers `Some`, and returns that; panics
/// naming `what` after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(secs, check)
        .await
        .unwrap_or_else(|| panic!("not within {secs} s: {what}"))
}

/// Polls `check` (every 200 ms) until it answers `Some`, at most `secs` seconds:
/// [`eventually`] for a caller that explains a `None` itself.
pub async fn within<T, F, Fut>(secs: u64, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A real SMTP server (Python aiosmtpd, `tests/peers/smtp_sink.py`, from the test
/// virtualenv that `ops/test.sh` puts first on PATH) that keeps every message.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    pub async fn start(dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp_sink.py");
        let dir = dir.join(format!("smtp-{}", uuid_like()));
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (ops/test.sh installs it into its virtualenv)");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .expect("smtp sink did not start in 30 s")
        .unwrap()
        .expect("smtp sink exited (is aiosmtpd installed?)");
        let port = line
            .strip_prefix("smtp listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { child, port, dir }
    }

    /// Every message received so far, oldest first, as text.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort();
        files.iter().map(|p| read(p)).collect()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A problem document without its `instance` (the request id, different on every
/// answer): for comparing two answers that must be alike.
pub fn sans_instance(problem: &serde_json::Value) -> serde_json::Value {
    let mut p = problem.clone();
    if let Some(fields) = p.as_object_mut() {
        assert!(
            fields.remove("instance").is_some(),
            "no instance in {problem}"
        );
    }
    p
}

/// Every message of the development mail sink (`<data_dir>/mail/*.eml`, one file per
/// message), in sending order, as one text.
pub fn dev_mail(data_dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(data_dir.join("mail"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}
