//! Hostile clients against the real accept loop (`attnscope::listen`) on loopback: half
//! request headers that never finish (slowloris), idle keep-alive connections, more
//! connections than the cap, and one address taking every connection. Small limits keep it
//! fast; the server must keep answering normal requests throughout.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use attnscope::listen::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: Limits) -> (SocketAddr, tempfile::TempDir) {
    let (st, dir) = common::state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        attnscope::app(st),
        limits,
        std::future::pending(),
    ));
    (addr, dir)
}

/// Reads until the server closes the connection (or `within` passes); returns what came
/// and whether it was closed.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// A normal JSON translation over a fresh connection; returns the status line.
async fn translate(addr: SocketAddr) -> String {
    let body = r#"{"text":"I am cold.","max_len":5}"#;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/translate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (text, _) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let (addr, _d) = start(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // Half a header, then nothing.
            tcp.write_all(b"POST /api/translate HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
        }
        slow.push(tcp);
    }
    let began = Instant::now();
    // Normal clients are served meanwhile.
    assert_eq!(translate(addr).await, "HTTP/1.1 200 OK");
    for tcp in &mut slow {
        let (_, closed) = read_until_closed(tcp, Duration::from_secs(5)).await;
        assert!(closed, "a slow connection was still open after 5 s");
    }
    let took = began.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // A keep-alive connection that goes idle after one answer is closed too.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(closed, "an idle keep-alive connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_caps_get_a_json_503_and_the_server_recovers() {
    let (addr, _d) = start(Limits {
        max_connections: 6,
        per_client: 4,
        header_read_timeout: Duration::from_secs(30),
    })
    .await;
    // Four idle connections from 127.0.0.1 take this address's share.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    let (text, closed) = read_until_closed(&mut fifth, Duration::from_secs(5)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let e: attnscope_protocol::ErrorBody = serde_json::from_str(body).unwrap();
    assert_eq!(e.error, "busy");
    assert!(e.message.contains("your address"), "{}", e.message);
    // From another loopback address: the global cap (6) is reached at 2 more.
    let other = |n: u8| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from(([127, 0, 0, n], 0))).unwrap();
        sock.connect(addr).await.unwrap()
    };
    let a = other(2).await;
    let b = other(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = other(3).await;
    let (text, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(text.contains("too many open connections"), "{text}");
    // Closing connections frees their slots.
    drop((held, a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(translate(addr).await, "HTTP/1.1 200 OK");
}

/// Sends `body` as an SSE request and returns the connection after the response head.
async fn open_stream(addr: SocketAddr, body: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/translate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_dropped_streams_slow_readers_and_limit_requests_leave_normal_clients_served() {
    let (addr, _d) = start(Limits::default()).await;
    let long_text = "I am cold. ".repeat(180);
    let limit_body = serde_json::json!({
        "text": long_text.trim(),
        "beam": 16,
        "max_len": 256,
        "attention": "sparsemax",
        "temperature": 0.05,
    })
    .to_string();
    let mut tasks = Vec::new();
    // Clients that go away mid-stream, in waves.
    for wave in 0..4 {
        for _ in 0..25 {
            tasks.push(tokio::spawn(async move {
                let mut tcp =
                    open_stream(addr, r#"{"text":"I am cold. You are here.","max_len":40}"#).await;
                let mut buf = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
                drop(tcp);
            }));
        }
        tokio::time::sleep(Duration::from_millis(20 * wave)).await;
    }
    // Slow readers: a byte now and then.
    for _ in 0..10 {
        tasks.push(tokio::spawn(async move {
            let mut tcp = open_stream(addr, r#"{"text":"You are here.","max_len":30}"#).await;
            let mut byte = [0u8; 1];
            for _ in 0..50 {
                if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Requests with every option at its limit.
    for _ in 0..4 {
        let body = limit_body.clone();
        tasks.push(tokio::spawn(async move {
            let mut tcp = open_stream(addr, &body).await;
            let (text, _) = read_until_closed(&mut tcp, Duration::from_secs(2)).await;
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 200"),
                "{text}"
            );
        }));
    }
    // Meanwhile every normal client is answered.
    let mut ok = 0;
    for _ in 0..20 {
        if translate(addr).await == "HTTP/1.1 200 OK" {
            ok += 1;
        }
    }
    assert_eq!(ok, 20, "normal clients failed during the storm");
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        translate(addr).await,
        "HTTP/1.1 200 OK",
        "the server lives on"
    );
}
