//! Idle and slow clients against the real `trunkline serve` binary, started with the
//! open-files soft limit a systemd service gets by default (1,024): connections that send
//! nothing, half a head or half a body are closed on their deadlines (`src/serve.rs`), a full
//! listener sheds its oldest waiting connections, and FreeSWITCH's fetches are answered
//! throughout. The deadlines are set short here so that the test is; their defaults are in the
//! README. Every latency is printed, none asserted (SECURITY.md has the figures).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::app::metric_value;
use support::process::{Server, free_loopback_addr};
use support::raw_http::{is_complete_200, raw_fetch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How late after its deadline a connection may be closed: the sweeper looks every tenth of
/// the shortest deadline, and thousands of sockets close on two shared cores.
const SLACK: Duration = Duration::from_secs(2);
/// How early: deadlines are kept in whole milliseconds.
const EARLY: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &std::path::Path, settings: &str) -> String {
    format!(
        "database_url = \"sqlite://{}\"\n{settings}",
        dir.join("trunkline.db").display()
    )
}

/// One FreeSWITCH-shaped fetch on a new connection; how long it took. Fails the test unless
/// it is answered with a whole `200`.
async fn fetch(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (head, body) = raw_fetch(addr, "");
    stream.write_all(&head).await.expect("head sent");
    stream.write_all(&body).await.expect("body sent");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("response read");
    assert!(
        is_complete_200(&response),
        "{}",
        String::from_utf8_lossy(&response)
    );
    started.elapsed()
}

async fn fetches(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(fetch(addr).await);
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// When the server closed `stream` (end of file or reset), measured from `since`. Fails the
/// test if it is still open after [`WAIT`].
async fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let read_until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read_until_closed)
        .await
        .expect("closed by the server")
}

/// Whether the server has closed `stream` (a read returns at once with nothing).
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// `/metrics` as Prometheus reads it, with a scrape token made by the command line.
async fn metrics(server: &Server) -> String {
    let token = server.token(&["--metrics"]);
    support::app::metrics_text(&reqwest::Client::new(), &server.base, &token).await
}

fn assert_within(what: &str, closed: &[Duration], deadline: Duration) {
    let (first, last) = (closed.iter().min().unwrap(), closed.iter().max().unwrap());
    assert!(
        *first + EARLY >= deadline && *last <= deadline + SLACK,
        "{what}: closed between {first:?} and {last:?}, deadline {deadline:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_and_five_hundred_slow_bodies_leave_every_fetch_answered() {
    let (_, open_files) = trunkline::serve::raise_open_files_limit().expect("rlimit");
    assert!(
        open_files >= 3_000,
        "this test holds 2,500 sockets; the hard open-files limit is {open_files}"
    );
    let dir = tempfile::tempdir().unwrap();
    let header = Duration::from_secs(4);
    let body = Duration::from_secs(5);
    let server = Server::start_with_open_files(
        dir.path(),
        &config(
            dir.path(),
            "http_header_timeout_seconds = 4\nhttp_body_timeout_seconds = 5\n",
        ),
        1024,
    )
    .await;
    let log = server.output();
    assert!(
        log.contains("open-files limit raised") && log.contains("raised_from=1024"),
        "{log}"
    );
    let addr = server.addr;
    let quiet = fetches(addr, 200).await;

    // 2,000 connections that send nothing, 500 that send a fetch's head and 100 bytes of its
    // body, then nothing.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        let stream = TcpStream::connect(addr).await.expect("idle connect");
        idle.push((stream, Instant::now()));
    }
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(addr).await.expect("slow connect");
        let (head, body) = raw_fetch(addr, "");
        stream.write_all(&head).await.unwrap();
        stream.write_all(&body[..100]).await.unwrap();
        slow.push((stream, Instant::now()));
    }
    let held = fetches(addr, 200).await;
    let opened = Instant::now();
    let idle_closed: Vec<_> = idle
        .into_iter()
        .map(|(s, since)| tokio::spawn(closed_after(s, since)))
        .collect();
    let slow_closed: Vec<_> = slow
        .into_iter()
        .map(|(s, since)| tokio::spawn(closed_after(s, since)))
        .collect();
    let mut idle_times = Vec::new();
    for t in idle_closed {
        idle_times.push(t.await.unwrap());
    }
    let mut slow_times = Vec::new();
    for t in slow_closed {
        slow_times.push(t.await.unwrap());
    }
    println!(
        "fetches on new connections, quiet: p50 {:?} p99 {:?}; with 2,500 held: p50 {:?} p99 {:?} ({:?} after the last was opened)",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&held, 0.5),
        percentile(&held, 0.99),
        opened.elapsed(),
    );
    assert!(
        percentile(&held, 1.0) < header,
        "the fetches ran while every connection was still held"
    );
    assert_within("connections that sent nothing", &idle_times, header);
    assert_within("connections that stopped mid-body", &slow_times, body);
    let text = metrics(&server).await;
    let timed_out = |phase: &str| {
        metric_value(
            &text,
            "trunkline_http_connections_timed_out_total",
            &["listener=\"http\"", &format!("phase=\"{phase}\"")],
        )
    };
    assert_eq!(timed_out("header"), 2_000.0, "{text}");
    assert_eq!(timed_out("body"), 500.0, "{text}");
}

#[tokio::test]
async fn a_keep_alive_connection_and_a_trickled_head_have_deadlines_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &config(
            dir.path(),
            "http_header_timeout_seconds = 3\nhttp_idle_timeout_seconds = 2\n",
        ),
    )
    .await;
    let addr = server.addr;

    // Keep-alive: one answered request, then silence.
    let mut keep_alive = TcpStream::connect(addr).await.unwrap();
    keep_alive
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = [0u8; 12];
    keep_alive.read_exact(&mut response).await.unwrap();
    assert_eq!(&response, b"HTTP/1.1 200");
    let answered = Instant::now();
    let idle = tokio::spawn(closed_after(keep_alive, answered));

    // Slowloris: a head one byte every 200 ms, never finished.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle.write_all(b"G").await.unwrap();
    let first_byte = Instant::now();
    let writer = tokio::spawn(async move {
        let (mut read, mut write) = trickle.into_split();
        for byte in b"ET /healthz HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 100].iter())
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        let mut buf = [0u8; 256];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return first_byte.elapsed(),
                Ok(_) => {}
            }
        }
    });

    assert_within(
        "a keep-alive connection",
        &[idle.await.unwrap()],
        Duration::from_secs(2),
    );
    assert_within(
        "a head sent a byte at a time",
        &[writer.await.unwrap()],
        Duration::from_secs(3),
    );
    let text = metrics(&server).await;
    for phase in ["idle", "header"] {
        let closed = metric_value(
            &text,
            "trunkline_http_connections_timed_out_total",
            &[&format!("phase=\"{phase}\"")],
        );
        assert_eq!(closed, 1.0, "{phase}: {text}");
    }
}

#[tokio::test]
async fn a_full_listener_sheds_its_oldest_waiting_connections_and_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &config(
            dir.path(),
            "http_max_connections = 16\nhttp_header_timeout_seconds = 60\n",
        ),
    )
    .await;
    let addr = server.addr;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    fetch(addr).await;

    // The fetch and the newest 15 fit; everything older went, long before its 60 s deadline
    // (`closed_after` gives up after 30 s).
    let mut newest = idle.split_off(25);
    let started = Instant::now();
    for stream in idle {
        closed_after(stream, started).await;
    }
    for (i, stream) in newest.iter_mut().enumerate() {
        assert!(
            !is_closed(stream).await,
            "connection {} of 40 was shed",
            26 + i
        );
    }
    let shed = metric_value(
        &metrics(&server).await,
        "trunkline_http_connections_shed_total",
        &["why=\"max_connections\""],
    );
    assert!(shed >= 25.0, "shed {shed}");
    assert!(
        server.output().contains("listener full"),
        "{}",
        server.output()
    );
}

#[tokio::test]
async fn xml_curl_on_its_own_listener_refuses_outsiders_before_reading_and_serves_only_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let xmlcurl = free_loopback_addr();
    let server = Server::start(
        dir.path(),
        &config(
            dir.path(),
            &format!("xmlcurl_listen = \"{xmlcurl}\"\nxmlcurl_allow = [\"127.0.0.1/32\"]\n"),
        ),
    )
    .await;

    // 127.0.0.2 is loopback too, but outside the allow-list: closed with nothing read.
    let outsider = TcpSocket::new_v4().unwrap();
    outsider.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut outsider = outsider.connect(xmlcurl).await.unwrap();
    let refused_at = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, outsider.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    println!("outsider closed after {:?}", refused_at.elapsed());

    fetch(xmlcurl).await;
    let client = reqwest::Client::new();
    let on_xmlcurl = client
        .get(format!("http://{xmlcurl}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        on_xmlcurl.status(),
        404,
        "the API is not on the xml_curl listener"
    );
    let (_, body) = raw_fetch(server.addr, "");
    let on_api = client
        .post(format!("{}/freeswitch/xml", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404, "fetches are not on the API listener");
    let rejected = metric_value(
        &metrics(&server).await,
        "trunkline_xmlcurl_rejected_total",
        &["why=\"ip\""],
    );
    assert_eq!(rejected, 1.0);
}

/// A free port on every address of both families: a dual-stack listener's address.
fn free_dual_stack_addr() -> SocketAddr {
    std::net::TcpListener::bind("[::]:0")
        .and_then(|l| l.local_addr())
        .expect("a free dual-stack port")
}

/// One fetch from `from` to `to`: the whole response, or nothing when the server closed the
/// connection without answering.
async fn fetch_from(from: std::net::IpAddr, to: SocketAddr) -> Vec<u8> {
    let socket = match from {
        std::net::IpAddr::V4(_) => TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(to).await.expect("connect");
    let (head, body) = raw_fetch(to, "");
    // A listener that refuses at accept may close before the request is written.
    let _ = stream.write_all(&head).await;
    let _ = stream.write_all(&body).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("answered or closed");
    response
}

#[tokio::test]
async fn an_ipv4_node_on_a_dual_stack_listener_is_matched_as_ipv4_on_either_listener() {
    let v4: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let v6: std::net::IpAddr = "::1".parse().unwrap();
    for own_listener in [false, true] {
        // Arrange: every listener on `[::]`, where an IPv4 node arrives as ::ffff:127.0.0.1.
        let dir = tempfile::tempdir().unwrap();
        let main = free_dual_stack_addr();
        let xmlcurl = own_listener.then(free_dual_stack_addr);
        let extra = xmlcurl.map_or(String::new(), |x| format!("xmlcurl_listen = \"{x}\"\n"));
        let server = Server::start_on(
            dir.path(),
            &config(
                dir.path(),
                &format!("xmlcurl_allow = [\"127.0.0.1/32\"]\n{extra}"),
            ),
            main,
        )
        .await;
        let port = xmlcurl.unwrap_or(main).port();

        // Act: the IPv4 node inside the list, an IPv6 client outside it.
        let inside = fetch_from(v4, SocketAddr::new(v4, port)).await;
        let outside = fetch_from(v6, SocketAddr::new(v6, port)).await;

        // Assert: the IPv4 node is served; the outsider is refused at accept on the endpoint's
        // own listener (closed, nothing answered) and with 403 on the shared one.
        assert!(
            is_complete_200(&inside),
            "own listener {own_listener}: {}",
            String::from_utf8_lossy(&inside)
        );
        if own_listener {
            assert!(outside.is_empty(), "{}", String::from_utf8_lossy(&outside));
        } else {
            assert!(
                outside.starts_with(b"HTTP/1.1 403"),
                "{}",
                String::from_utf8_lossy(&outside)
            );
        }
        let rejected = metric_value(
            &metrics(&server).await,
            "trunkline_xmlcurl_rejected_total",
            &["why=\"ip\""],
        );
        assert_eq!(rejected, 1.0, "own listener {own_listener}");
    }
}

#[tokio::test]
async fn bodies_and_heads_over_the_documented_limits_are_refused_before_they_are_held() {
    // Arrange
    let (_, store) = support::db::backends().await.into_iter().next().unwrap();
    let app = support::app::TestApp::start("sqlite", store).await;
    let client = reqwest::Client::new();

    // Act + Assert: an API body over MAX_API_BODY (64 KiB) is 413 with the API's JSON error;
    // one just under it is read and judged (422: the name is too long).
    let api = format!("{}/api/v1/carriers", app.base);
    for (size, expected) in [(64 * 1024 + 1, 413), (60 * 1024, 422)] {
        let body = format!("{{\"name\":\"{}\"}}", "x".repeat(size - 11));
        assert_eq!(body.len(), size);
        let response = client
            .post(&api)
            .bearer_auth(&app.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "a {size}-byte body");
        let json: serde_json::Value = response.json().await.unwrap();
        assert!(json["errors"][0]["detail"].is_string(), "{json}");
    }

    // The login form is read before anyone is authenticated: more than 4 KiB of it is refused.
    let login = format!("{}/status/login", app.base);
    for (size, expected) in [(4 * 1024 + 1, 413), (1024, 401)] {
        let form = format!("token={}", "x".repeat(size - 6));
        let response = client
            .post(&login)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "a {size}-byte login form");
    }

    // A request head past the 16 KiB buffer is answered 431 and never reaches a handler (hyper
    // checks the bound between reads, so a head that completes in the read that crosses it
    // still parses: the buffer holds at most one read more).
    for (size, expected) in [(64 * 1024, 431), (33 * 1024, 431), (4 * 1024, 200)] {
        let response = client
            .get(format!("{}/healthz", app.base))
            .header("x-padding", "x".repeat(size))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "a {size}-byte header");
    }
}
