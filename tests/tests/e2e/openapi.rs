//! The two OpenAPI documents the binary serves — the employer API's
//! (`/api/v1/openapi.json`) and the mobile API's (`/mobile/v1/openapi.json`) — are
//! valid per an independent validator (the `openapi-spec-validator` CLI, which
//! `ops/test.sh` installs into its virtualenv from `ops/test-requirements.txt`), and
//! match their snapshots under `tests/snapshots/`, so a change to the published
//! contract is a reviewed diff. `UPDATE_SNAPSHOTS=1` rewrites the snapshots instead.
//!
//! The documents do not depend on the backend: one SQLite instance serves them.

use std::path::PathBuf;

use ivan_e2e::{Backend, Instance};
use serde_json::{Map, Value};

/// The documents: (route, snapshot file name).
const DOCUMENTS: [(&str, &str); 2] = [
    ("/api/v1/openapi.json", "openapi-api-v1.json"),
    ("/mobile/v1/openapi.json", "openapi-mobile-v1.json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_openapi_documents_are_valid_and_match_their_snapshots() {
    let inst = Instance::new(Backend::Sqlite).await;
    let server = inst.serve().await;
    let mut failures = Vec::new();
    for (route, snapshot) in DOCUMENTS {
        let r = server.get(route).await;
        assert_eq!(r.status(), 200, "{route}");
        let doc: Value = r.json().await.unwrap();
        let pretty = pretty_sorted(&doc);

        // Valid per an independent implementation of the specification.
        let file = inst.dir.path().join(snapshot);
        std::fs::write(&file, &pretty).unwrap();
        let out = tokio::process::Command::new("openapi-spec-validator")
            .arg(&file)
            .output()
            .await
            .expect(
                "openapi-spec-validator (ops/test.sh installs it from ops/test-requirements.txt \
                 into its virtualenv and puts that on PATH)",
            );
        if !out.status.success() {
            failures.push(format!(
                "{route} is not a valid OpenAPI document ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }

        // The published contract changes only on purpose.
        let path = snapshot_path(snapshot);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &pretty).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_SNAPSHOTS=1 to write it",
                path.display()
            )
        });
        if expected != pretty {
            failures.push(format!(
                "{route} differs from {} (run with UPDATE_SNAPSHOTS=1 to accept the change, \
                 then review the diff):\n{}",
                path.display(),
                first_difference(&expected, &pretty)
            ));
        }
    }
    server.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("snapshots")
        .join(name)
}

/// `v` pretty-printed with every object's keys in sorted order, plus a final newline.
fn pretty_sorted(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    let mut s = serde_json::to_string_pretty(&sort(v)).unwrap();
    s.push('\n');
    s
}

/// The first differing line of two texts, with its number, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let mut e = expected.lines();
    let mut a = actual.lines();
    for n in 1.. {
        match (e.next(), a.next()) {
            (None, None) => break,
            (x, y) if x == y => {}
            (x, y) => {
                return format!(
                    "line {n}:\n  snapshot: {}\n  served:   {}",
                    x.unwrap_or("<end>"),
                    y.unwrap_or("<end>")
                );
            }
        }
    }
    "the texts differ only in line endings".into()
}
