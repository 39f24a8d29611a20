//! Connection exhaustion: idle TCP connections to the public port must neither starve the
//! admin port nor stay open forever (header and idle timeouts, a connection cap that fits
//! the process's open-files limit).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use test_support::service::Launch;
use test_support::session_api;

use crate::helpers::{start_service, start_service_with};

/// The service run through `prlimit`, under a lowered open-files limit.
fn prlimit(open_files: u32) -> Launch {
    let found = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "prlimit is missing: install it with `apt-get install -y util-linux`"
    );
    let mut command = std::process::Command::new("prlimit");
    command.arg(format!("--nofile={open_files}:{open_files}"));
    Launch::wrapped(command)
}

/// Waits until the server closes `stream` (EOF or reset), or panics after `limit`.
async fn closed_by_server_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            // A response (408/400) may come first; the close follows.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn idle_public_connections_do_not_starve_the_admin_port() {
    // 256 descriptors for the whole process; the default public cap (4096) cannot fit and
    // is lowered so that the admin port keeps descriptors of its own.
    const IDLE_CONNECTIONS: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let service = start_service_with(
        prlimit(256),
        dir.path(),
        &[("ISM_HTTP_HEADER_TIMEOUT_SECS", "120")],
    );
    let created = service.create_session(json!({})).await;

    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        // The kernel completes the handshake from the backlog even when the service does
        // not accept: the attacker's view is the same either way.
        // Once the cap and the listen backlog are full, a connect no longer completes.
        match tokio::time::timeout(
            Duration::from_millis(500),
            TcpStream::connect(service.public_addr),
        )
        .await
        {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    assert!(idle.len() > 64, "only {} connections opened", idle.len());
    // The admin port answers at once, reads and writes, on new connections (a client
    // with a pooled connection from before the flood would prove nothing).
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let admin = tokio::time::timeout(Duration::from_secs(2), async {
        let health = fresh
            .get(format!("{}/healthz", service.admin_url))
            .send()
            .await
            .expect("admin healthz");
        assert_eq!(health.status(), StatusCode::OK);
        let response = session_api::close_session(&fresh, &service.admin_url, &created.id).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    })
    .await;
    assert!(
        admin.is_ok(),
        "the admin port did not answer within 2 s while the public port was flooded\n{}",
        service.log()
    );
    // The public port is saturated: a further request is not served.
    let public = tokio::time::timeout(Duration::from_secs(1), service.public_healthz()).await;
    assert!(public.is_err(), "the public port was not saturated");
    assert!(
        service.log().contains("connection limit reached"),
        "{}",
        service.log()
    );

    // Once the idle connections go, the public port serves again.
    drop(idle);
    let response = tokio::time::timeout(Duration::from_secs(10), service.public_healthz())
        .await
        .expect("public port serves again");
    assert_eq!(response.status(), StatusCode::OK);
    service.stop();
}

#[tokio::test]
async fn connections_that_send_no_request_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(
        dir.path(),
        &[
            ("ISM_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("ISM_HTTP_IDLE_TIMEOUT_SECS", "60"),
        ],
    );
    // Nothing at all.
    let mut silent = TcpStream::connect(service.public_addr).await.unwrap();
    let waited = closed_by_server_within(&mut silent, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    // Half a request head, trickled.
    let mut slow = TcpStream::connect(service.admin_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    closed_by_server_within(&mut slow, Duration::from_secs(5)).await;
    // Kept alive after a response, then silent: the same timeout applies.
    let mut kept = TcpStream::connect(service.public_addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    closed_by_server_within(&mut kept, Duration::from_secs(5)).await;
    service.stop();
}

#[tokio::test]
async fn a_stalled_request_body_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(
        dir.path(),
        &[
            ("ISM_HTTP_HEADER_TIMEOUT_SECS", "60"),
            ("ISM_HTTP_IDLE_TIMEOUT_SECS", "1"),
        ],
    );
    let mut stalled = TcpStream::connect(service.public_addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/sessions/123456/join HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pin\":",
        )
        .await
        .unwrap();
    let waited = closed_by_server_within(&mut stalled, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    service.stop();
}
