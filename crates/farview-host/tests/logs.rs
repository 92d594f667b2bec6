//! `--log-format json`: the real binary writes one JSON object per log line, with the message
//! and fields a log shipper indexes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let data = tempfile::tempdir().unwrap();
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let mut child = Command::new(env!("CARGO_BIN_EXE_farview-host"))
        .env("FARVIEW_ALLOW_SOFTWARE_ADAPTER", "true")
        .args(["--log-format", "json", "--quic-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--assets-root")
        .arg(&assets)
        .env("FARVIEW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("farview-host starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Bounded: start-up on a loaded software rasterizer takes seconds, not minutes.
    let listening = tokio::time::timeout(Duration::from_secs(120), async {
        let mut seen: Vec<String> = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            // Drivers may print their own lines on stderr; ours are all JSON.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                seen.push(line);
                continue;
            };
            assert!(
                v["timestamp"].is_string() && v["level"].is_string(),
                "{line}"
            );
            if v["fields"]["message"] == "host listening" {
                return (v, seen);
            }
        }
        panic!("the host exited before listening; non-JSON lines: {seen:?}");
    })
    .await
    .expect("the host logs that it listens");
    // Mesa's device-select layer no longer prints outside the log at start (`main` turns it
    // off); other driver lines, if any, are not ours to silence.
    let (listening, seen) = listening;
    assert!(
        !seen.iter().any(|l| l.contains("XDG_RUNTIME_DIR")),
        "Mesa's device-select layer printed: {seen:?}"
    );
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["fields"]["fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 64),
        "{listening}"
    );
    child.kill().await.unwrap();
}
