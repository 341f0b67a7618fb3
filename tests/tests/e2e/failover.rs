//! PostgreSQL failover (docs/OPERATIONS.md, "PostgreSQL failover"): with synchronous
//! replication, a replica promoted after the primary dies holds every filing `ivan`
//! acknowledged, and `ivan` pointed at it carries on with a log that verifies.
//!
//! The test makes its own two clusters in a temporary directory (`initdb`,
//! `pg_basebackup`, the PostgreSQL binaries `ops/test.sh` installs) on free loopback
//! ports, run as the `postgres` user when the test runs as root, and removes them.

use std::path::{Path, PathBuf};
use std::process::Command;

use ivan_e2e::filing::{file_signed, report, set_attr, set_up};
use ivan_e2e::{Backend, Instance, free_port};

/// The directory of the PostgreSQL server binaries (`initdb`, `pg_ctl`, …).
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (ops/test.sh)")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// A PostgreSQL tool, run as the `postgres` user when this is root (the server
/// refuses to run as root).
fn pg_command(tool: &str) -> Command {
    let bin = pg_bin().join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    }
}

/// Runs a PostgreSQL tool, asserting that it succeeds.
fn pg(tool: &str, args: &[&str]) {
    let out = pg_command(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Appends `lines` to a cluster's `postgresql.auto.conf` (read last, so they win over
/// what `initdb` and `pg_basebackup -R` wrote).
fn configure(data: &Path, lines: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.auto.conf"))
        .unwrap();
    writeln!(f, "{lines}").unwrap();
}

/// The cluster in `data`, stopped immediately (as a crash would) when dropped.
struct Cluster {
    data: PathBuf,
}

impl Cluster {
    fn start(data: &Path) -> Self {
        let log = data.with_extension("log");
        let (data_s, log_s) = (data.to_str().unwrap(), log.to_str().unwrap());
        pg(
            "pg_ctl",
            &["-D", data_s, "-l", log_s, "-w", "-t", "60", "start"],
        );
        Cluster {
            data: data.to_owned(),
        }
    }

    fn crash(&self) {
        pg(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default();
        let _ = pg_command("pg_ctl")
            .args(["-D", data, "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_synchronous_replica_has_every_acknowledged_filing() {
    let tmp = tempfile::Builder::new()
        .prefix("ivan-failover")
        .tempdir()
        .unwrap();
    let root = tmp.path();
    if is_root() {
        let out = Command::new("chown")
            .args(["postgres:postgres", root.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let (primary_port, replica_port) = (free_port(), free_port());
    let (primary, replica) = (root.join("primary"), root.join("replica"));
    let socket_dir = root.to_str().unwrap();

    // The primary: commits wait for the replica named `replica`.
    pg(
        "initdb",
        &[
            "-D",
            primary.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
        ],
    );
    configure(
        &primary,
        &format!(
            "port = {primary_port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\nwal_level = replica\n\
             max_wal_senders = 4\nsynchronous_commit = on\n\
             synchronous_standby_names = 'replica'"
        ),
    );
    let primary_cluster = Cluster::start(&primary);
    // The replica: a base backup streaming from the primary, as `replica`.
    let port = primary_port.to_string();
    let on_primary = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
    let replica_dir = replica.to_str().unwrap();
    pg(
        "pg_basebackup",
        &[&on_primary[..], &["-D", replica_dir, "-R", "-X", "stream"]].concat(),
    );
    configure(
        &replica,
        &format!(
            "port = {replica_port}\nprimary_conninfo = 'host=127.0.0.1 port={primary_port} \
             user=postgres application_name=replica'\n\
             # Once promoted, it has no standby of its own to wait for.\n\
             synchronous_standby_names = ''"
        ),
    );
    let replica_cluster = Cluster::start(&replica);
    pg("createdb", &[&on_primary[..], &["ivan"]].concat());

    let mut inst = Instance::new(Backend::Sqlite).await;
    inst.database_url = format!("postgres://postgres@127.0.0.1:{primary_port}/ivan");
    let filer = set_up(&inst, "12345678").await;
    let server = inst.serve_with(&[]).await;
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let xml = set_attr(
            &report(&filer.registration, 0),
            "senderReference",
            &format!("FO-{i}"),
        );
        acknowledged.push(file_signed(&inst, &server, &filer, &xml).await);
    }

    // The primary dies; the replica is promoted; ivan is pointed at it.
    primary_cluster.crash();
    drop(server);
    pg(
        "pg_ctl",
        &["-D", replica.to_str().unwrap(), "-w", "promote"],
    );
    inst.database_url = format!("postgres://postgres@127.0.0.1:{replica_port}/ivan");
    let server = inst.serve_with(&[]).await;
    for id in &acknowledged {
        let r = server
            .get_auth(&format!("/api/v1/submissions/{id}"), &filer.token)
            .await;
        assert_eq!(
            r.status(),
            200,
            "acknowledged filing {id} is on the promoted replica"
        );
    }
    let xml = set_attr(
        &report(&filer.registration, 0),
        "senderReference",
        "FO-AFTER",
    );
    file_signed(&inst, &server, &filer, &xml).await;
    assert!(server.stop().await.success());
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
    drop(replica_cluster);
}
