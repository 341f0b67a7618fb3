//! The front door under hostile clients, through the real binary: idle and slow
//! connections cannot exhaust the server, JSON routes take only small bodies.
//! Connection handling does not touch the record, so these run on SQLite only.

use std::time::Duration;

use ivan_e2e::{Backend, Instance, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn authority(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Opens a connection to `server` from the loopback address `from`.
async fn connect_from(server: &Server, from: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((from, 0)))?;
    socket.connect(authority(server).parse().unwrap()).await
}

/// Waits up to `within` for the server to close `conn` (EOF or reset); returns
/// whatever it sent first.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
}

/// 2,000 idle connections from one client against a server allowed 1,024 open files:
/// without caps they take every descriptor and nobody else gets an answer. With the
/// default per-source cap (256) the flood keeps 256 slots and `/healthz` answers
/// another client in under a second; the connections over the cap are closed at once.
/// Defaults only, so the same test shows the failure on a binary without the caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_exhaust_the_server() {
    let inst = Instance::new(Backend::Sqlite).await;
    let server = inst.serve_with_open_files(1024, &[]).await;
    let mut flood = Vec::new();
    for _ in 0..2000 {
        // A server that stops accepting leaves connects hanging in the backlog.
        let connect = connect_from(&server, [127, 0, 0, 2]);
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            flood.push(c);
        }
    }
    assert!(flood.len() > 1000, "the flood opened only {}", flood.len());
    // Another client is served at once.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = quick.get(server.url("/healthz")).send().await;
        let r = r.unwrap_or_else(|e| panic!("/healthz unanswered during the flood: {e}"));
        assert_eq!(r.status(), 200);
    }
    // Of the flood, only the capped number is still open.
    let mut open = 0;
    for c in &mut flood {
        if closed_within(c, Duration::from_millis(5)).await.is_none() {
            open += 1;
        }
    }
    assert!(
        open <= 256,
        "{open} idle connections of one client are still open"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("ivan_http_connections_refused_total{cap=\"source\"}"),
        "{metrics}"
    );
    drop(flood);
    assert!(server.stop().await.success());
}

/// A client that sends half a request head and then nothing is cut off after the
/// header read timeout (default 10 s), and so is an idle keep-alive connection after
/// its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let inst = Instance::new(Backend::Sqlite).await;
    let server = inst.serve().await;
    let addr = authority(&server);

    // Half a request head, never a byte, and one answered request then idle.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let within = Duration::from_secs(15);
    let (slow, silent, idle) = tokio::join!(
        closed_within(&mut slow, within),
        closed_within(&mut silent, within),
        closed_within(&mut idle, within),
    );
    let slow = slow.expect("a half-sent request head is still open after 15 s");
    assert!(
        slow.is_empty() || slow.starts_with("HTTP/1.1 408"),
        "{slow}"
    );
    silent.expect("a silent connection is still open after 15 s");
    let idle = idle.expect("an idle keep-alive connection is still open after 15 s");
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    assert!(server.stop().await.success());
}

/// The JSON API takes small bodies (`http.json_body_limit_bytes`, 64 KiB); only the
/// submission endpoint takes documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_routes_refuse_large_bodies() {
    let inst = Instance::new(Backend::Sqlite).await;
    let filer = ivan_e2e::filing::set_up(&inst, "12345678").await;
    let server = inst.serve().await;
    let big = format!(
        "{{\"phone\":\"+421901123456\",\"holder_name\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let r = server
        .http
        .post(server.url("/api/v1/phone-accesses"))
        .bearer_auth(&filer.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "{}", r.text().await.unwrap());
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    // Announced by Content-Length alone: refused without reading the body.
    let (status, _, _) = server
        .send_head_only(
            "/api/v1/phone-accesses",
            &[
                ("authorization", &format!("Bearer {}", filer.token)),
                ("content-type", "application/json"),
            ],
            50 * 1024 * 1024,
        )
        .await;
    assert_eq!(status, 413);
    // The submission endpoint still takes a document of that size class.
    let (status, _, _) = server
        .send_head_only(
            "/api/v1/submissions",
            &[
                ("authorization", &format!("Bearer {}", filer.token)),
                ("content-type", "application/xml"),
            ],
            200 * 1024,
        )
        .await;
    assert_eq!(status, 100);
    assert!(server.stop().await.success());
}
