//! The server's read and idle timeouts, the early 413 and the connection cap, over raw
//! TCP sockets (a client library would hide exactly what these tests look at).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{TestApp, TestAppBuilder};

async fn serve(app: TestAppBuilder) -> (TestApp, SocketAddr) {
    let app = app.spawn().await;
    let addr = app.serve_tcp().await;
    (app, addr)
}

fn quick() -> TestAppBuilder {
    TestApp::builder()
        .env("HTTP_HEADER_TIMEOUT", "400ms")
        .env("HTTP_BODY_TIMEOUT", "600ms")
        .env("HTTP_IDLE_TIMEOUT", "1200ms")
}

/// Reads until the server closes the connection (or `limit` passes: then `None`);
/// answers what was read and when the close came.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => {
                return Some((String::from_utf8_lossy(&seen).into_owned(), started.elapsed()));
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole response (headers and a `Content-Length` body).
async fn one_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before a response");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn unfinished_heads_and_silent_connections_are_closed() {
    let (_app, addr) = serve(quick()).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        let (_, after) = until_closed(stream, Duration::from_secs(5))
            .await
            .expect("closed by the header timeout");
        assert!(after < Duration::from_millis(1500), "{after:?}");
    }
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
    let (_app, addr) = serve(quick()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = until_closed(&mut stream, Duration::from_secs(5)).await;
    let (seen, _) = closed.expect("closed");
    assert!(!seen.contains("200 OK"), "the slow head was served: {seen}");
    assert!(started.elapsed() < Duration::from_millis(4000));
}

#[tokio::test]
async fn an_unfinished_body_gets_408_and_the_connection_closes() {
    let (_app, addr) = serve(quick()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\":",
        )
        .await
        .unwrap();
    let (seen, after) = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed by the body timeout");
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    assert!(seen.contains("\"REQUEST_TIMEOUT\""), "{seen}");
    assert!(seen.to_ascii_lowercase().contains("connection: close"), "{seen}");
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(2000)).contains(&after),
        "{after:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_app, addr) = serve(quick()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let response = one_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Kept alive past the header timeout: idle is not a slow head...
    let started = Instant::now();
    assert!(
        until_closed(&mut stream, Duration::from_millis(800))
            .await
            .is_none(),
        "closed before the idle timeout"
    );
    // ...and usable again.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(one_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let (_, after) = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed by the idle timeout");
    assert!(started.elapsed() > Duration::from_millis(1200), "{after:?}");
    assert!(after < Duration::from_millis(2500), "{after:?}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    let (_app, addr) = serve(TestApp::builder()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
        )
        .await
        .unwrap();
    let (seen, _) = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("answered and closed at once");
    assert!(seen.starts_with("HTTP/1.1 413"), "{seen}");
    assert!(seen.contains("\"PAYLOAD_TOO_LARGE\""), "{seen}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let (_app, addr) = serve(
        TestApp::builder()
            .env("HTTP_MAX_CONNECTIONS", "3")
            .env("HTTP_HEADER_TIMEOUT", "30s"),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(one_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // The fourth connects (the kernel's backlog) but is not served while three are open.
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf))
            .await
            .is_err(),
        "served past the cap"
    );
    drop(held.pop());
    assert!(one_response(&mut fourth).await.starts_with("HTTP/1.1 200"));
}
