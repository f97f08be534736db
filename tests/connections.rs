//! Connection-level defences of a real `copains api` process over real sockets (#17 item 1):
//! headers that never finish and bodies that stall are cut off, one address cannot hold
//! more than its share of connections while another keeps being served, and the open-file
//! limit is raised to the hard limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Reads until the server answers or closes; `None` if it does neither within `wait`.
async fn answer_or_close(s: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => Some(format!("error: {e}")),
        Err(_) => None,
    }
}

async fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    sock.connect(to).await.unwrap()
}

#[tokio::test]
async fn slow_and_greedy_clients_are_cut_off_and_others_still_served() {
    let db = TestDb::new("connlimits");
    let dir = temp_dir("connlimits");
    let p = Proc::start(
        "api",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_HEADER_TIMEOUT_MS", "1000".to_owned()),
            ("COPAINS_BODY_TIMEOUT_MS", "1000".to_owned()),
            ("COPAINS_MAX_CONNECTIONS_PER_IP", "40".to_owned()),
        ],
        &dir,
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{}", p.port).parse().unwrap();

    // The open-file limit: soft raised to hard.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "soft == hard: {line}");

    // Headers that never finish: the connection is closed after the header timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let got = answer_or_close(&mut slow, Duration::from_secs(15)).await;
    assert!(
        got.is_some(),
        "a request whose headers never end is not cut off"
    );
    assert!(!got.unwrap().contains("200 OK"));

    // A body that stalls: cut off after the body timeout (an error answer or a close).
    let mut stall = TcpStream::connect(addr).await.unwrap();
    stall
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"login\":",
        )
        .await
        .unwrap();
    let got = answer_or_close(&mut stall, Duration::from_secs(15)).await;
    assert!(got.is_some(), "a stalled body is not cut off");

    // One address fills its share with half-open requests; its next connection is closed
    // at once, while a client on another address is served as usual.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut s = connect_from([127, 0, 0, 1], addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect_from([127, 0, 0, 1], addr).await;
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let got = answer_or_close(&mut extra, Duration::from_secs(5)).await;
    let got = got.expect("the over-cap connection was neither closed nor answered");
    assert!(!got.contains("200 OK"), "over the cap yet served: {got}");
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = other
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Once the held sockets time out (header timeout), the address is served again.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await
            && r.status() == 200
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the address was not served again after its sockets closed"
    );
}
