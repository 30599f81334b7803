//! Graceful shutdown of the real binary: SIGTERM with a request in flight.

use std::time::Duration;

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{PASSWORD, REGISTER, Service, TestDb, email, eventually};

/// Opens a connection and sends a request's head with `Expect: 100-continue`; once the
/// server answers `100 Continue`, its handler is running and waiting for the body.
async fn request_in_flight(service: &Service, body_len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(service.addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {body_len}\r\nexpect: 100-continue\r\n\r\n",
        service.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("no 100 Continue")
            .unwrap();
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    stream
}

async fn refuses_connections(service: &Service) -> bool {
    TcpStream::connect(service.addr).await.is_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_request_in_flight_then_exits_cleanly() {
    let db = TestDb::create();
    let mut service = Service::builder().production(&db.url).spawn();
    let address = email("shutdown");
    let body = json!({
        "query": REGISTER,
        "variables": { "input": { "email": address, "password": PASSWORD } },
    })
    .to_string();
    let mut stream = request_in_flight(&service, body.len()).await;

    service.sigterm();
    eventually("stops accepting connections", || refuses_connections(&service))
        .within(Duration::from_secs(10))
        .await;

    // The slow client finally sends its body: the request is still served in full.
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("the in-flight request was not answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json_body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let value: serde_json::Value = serde_json::from_str(json_body).unwrap();
    assert_eq!(
        value["data"]["register"]["user"]["email"],
        address.as_str(),
        "{value}"
    );

    let status = service
        .wait_exit(Duration::from_secs(30))
        .expect("the process did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let messages: Vec<String> = service
        .json_lines()
        .iter()
        .map(|l| l["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(messages.iter().any(|m| m == "user registered"), "{messages:?}");
    let position = |message: &str| {
        messages
            .iter()
            .position(|m| m == message)
            .unwrap_or_else(|| panic!("no `{message}` in {messages:?}"))
    };
    assert!(position("mail worker stopped") < position("shutdown complete"));
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_timeout_bounds_a_request_that_never_finishes() {
    let db = TestDb::create();
    let mut service = Service::builder()
        .production(&db.url)
        .env("SHUTDOWN_TIMEOUT", "1s")
        .spawn();
    // This client never sends its body.
    let _stuck = request_in_flight(&service, 100).await;
    service.sigterm();
    let status = service
        .wait_exit(Duration::from_secs(30))
        .expect("SHUTDOWN_TIMEOUT did not end the process");
    assert!(status.success(), "{status:?}");
    let lines = service.lines().join("\n");
    assert!(lines.contains("SHUTDOWN_TIMEOUT passed"), "{lines}");
}
