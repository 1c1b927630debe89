//! What every connection of a listener can make the server hold: the release binary
//! (`trunkline serve`, a process of its own) with `N` connections, each of which sends the
//! largest head allowed and then the largest body allowed but its last byte, and stalls there.
//! The server's resident memory (`VmRSS`, and the peak `VmHWM`) is read from `/proc` before and
//! while they all wait, for three bodies:
//!
//! - `POST /api/v1/carriers` with a valid token: 64 KiB (`MAX_API_BODY`);
//! - `POST /status/login`, anonymous: 4 KiB (the login form);
//! - `POST /freeswitch/xml`, anonymous with no allow-list or credentials configured: 512 KiB
//!   (`MAX_FETCH_BODY`).
//!
//! `cargo bench --bench connection_memory` (about a minute): 4,096 connections, the default
//! `http_max_connections`. Under `cargo test` a short pass with 64 connections checks that each
//! connection is held and the figures are read. Loopback only; every connection is closed at
//! the end.

#[allow(dead_code)]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::process::Server;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The most of a head trunkline buffers (`serve::MAX_HEAD_BYTES`), less room for the request
/// line and the headers every request carries.
const HEAD_PADDING: usize = 15 * 1024;

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: usize,
    authorized: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "API body, 64 KiB, with a token",
        path: "/api/v1/carriers",
        content_type: "application/json",
        body: 64 * 1024,
        authorized: true,
    },
    Case {
        name: "login form, 4 KiB, anonymous",
        path: "/status/login",
        content_type: "application/x-www-form-urlencoded",
        body: 4 * 1024,
        authorized: false,
    },
    Case {
        name: "fetch body, 512 KiB, anonymous (no allow-list)",
        path: "/freeswitch/xml",
        content_type: "application/x-www-form-urlencoded",
        body: 512 * 1024,
        authorized: false,
    },
];

fn kib_field(pid: u32, name: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A connection that has sent the whole head and all of the body but its last byte.
async fn stalled(addr: SocketAddr, case: &Case, token: &str) -> TcpStream {
    let auth = if case.authorized {
        format!("authorization: Bearer {token}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{auth}x-padding: {}\r\n\r\n",
        case.path,
        case.content_type,
        case.body,
        "x".repeat(HEAD_PADDING)
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&vec![b'a'; case.body - 1])
        .await
        .expect("body");
    stream
}

#[tokio::main]
async fn main() {
    let connections = if common::benchmarking() { 4096 } else { 64 };
    let dir = tempfile::tempdir().expect("temp dir");
    // The body deadline far enough that no connection is closed while the figures are read.
    let config = format!(
        "database_url = \"sqlite://{}\"\nhttp_body_timeout_seconds = 600\nhttp_header_timeout_seconds = 600\n",
        dir.path().join("trunkline.db").display()
    );
    let server = Server::start(dir.path(), &config).await;
    let token = server.token(&["--platform-admin"]);
    let pid = server.pid();
    println!("connection_memory: {connections} connections per case, release binary pid {pid}");
    println!(
        "| what each connection sends | RSS before | RSS held | per connection | peak (VmHWM) |"
    );
    println!("|---|---|---|---|---|");
    for case in CASES {
        let before = kib_field(pid, "VmRSS:");
        let mut held = Vec::with_capacity(connections);
        for _ in 0..connections {
            held.push(stalled(server.addr, case, &token).await);
        }
        // Let the server read what is in flight.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = kib_field(pid, "VmRSS:");
        let peak = kib_field(pid, "VmHWM:");
        assert_eq!(held.len(), connections);
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} MiB |",
            case.name,
            before / 1024.0,
            during / 1024.0,
            (during - before) / connections as f64,
            peak / 1024.0
        );
        drop(held);
        // The connections close; the next case starts from what the allocator keeps.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
