//! The real `farview-host` binary killed with SIGKILL mid-stream and started again on the same
//! data directory: the session it served is recorded as `error`, with the counters the host
//! last checkpointed and `stoppedAt` when it was last known alive, not when it came back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use farview_client::{CreateSession, SessionClient};
use farview_session::{Clock, RecordStore, Status, SystemClock};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const KEY: &str = "crash-key";
/// Bounds on waits that normally take a second or two (software rendering on a loaded machine
/// can take much longer).
const PATIENCE: Duration = Duration::from_secs(90);

struct HostProcess {
    child: Child,
    http: String,
}

impl HostProcess {
    /// Starts the binary on `config` and waits for its "listening" line.
    async fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_farview-host"))
            .env("FARVIEW_ALLOW_SOFTWARE_ADAPTER", "true")
            .arg("--config")
            .arg(config)
            .env("FARVIEW_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("farview-host starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("the host says where it listens")
            .unwrap()
            .expect("the host exited before listening");
        // "farview-host listening: quic <addr> http <addr> fingerprint <hex>"
        let words: Vec<&str> = line.split_whitespace().collect();
        let http = words
            .iter()
            .position(|w| *w == "http")
            .and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self {
            http: format!("http://{http}"),
            child,
        }
    }

    fn api(&self) -> SessionClient {
        SessionClient::new(&self.http, KEY).unwrap()
    }
}

fn config(dir: &Path) -> PathBuf {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets")
        .canonicalize()
        .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let file = dir.join("host.toml");
    let toml = format!(
        r#"data_dir = {data:?}
quic_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
assets_root = {assets:?}

[sessions]
api_keys = ["{KEY}"]
allow_sessionless = false

[sessions.sizes.small]
width = 128
height = 96
fps = 30.0
bitrate_bps = 500000
max_triangles = 100000
"#,
        data = dir.join("data"),
    );
    std::fs::write(&file, toml).unwrap();
    file
}

/// Polls `f` until it returns `Some`, for at most [`PATIENCE`].
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_records_its_sessions_counters_and_when_it_was_last_alive() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let db = dir.path().join("data/sessions.db");

    let mut host = HostProcess::start(&config).await;
    let api = host.api();
    let created = api
        .create_session(&CreateSession::new("1:0:0", "small"))
        .await
        .unwrap();
    let session = api.session(&created.id).wait_ready(PATIENCE).await.unwrap();
    let id = Uuid::parse_str(&session.id).unwrap();
    let device = api.connect(&session).await.unwrap();
    // The device keeps reading (a device that stops reading stalls its stream).
    let reader = tokio::spawn(async move { while device.next_frame().await.is_ok() {} });

    // Streaming: the host checkpoints the counters every few seconds.
    let store = RecordStore::open(&db).unwrap();
    wait_for("frames sent, checkpointed", || {
        store
            .get(id)
            .unwrap()
            .filter(|r| r.status == Status::Connected && r.frames_sent > 0)
    })
    .await;
    host.child.kill().await.unwrap(); // SIGKILL: no shutdown code runs
    reader.abort();
    // What the dead host left: a live record with its last counters, and its last heartbeat.
    let persisted = store.get(id).unwrap().unwrap();
    let alive_ms = store.last_alive_ms().unwrap().expect("a heartbeat");
    drop(store);
    assert_eq!(persisted.status, Status::Connected);

    let restarted_ms = SystemClock.now_ms();
    let mut host = HostProcess::start(&config).await;
    let after = host.api().session(&session.id).properties().await.unwrap();
    assert_eq!(
        (after.status.as_str(), after.stop_reason.as_deref()),
        ("error", Some("host restarted"))
    );
    assert!(persisted.frames_sent > 0);
    assert_eq!(
        after.counters.frames_sent, persisted.frames_sent,
        "the counters the host last checkpointed"
    );
    let record = RecordStore::open(&db).unwrap().get(id).unwrap().unwrap();
    assert_eq!(
        record.stopped_at_ms,
        Some(alive_ms),
        "stopped when last known alive"
    );
    assert!(
        alive_ms < restarted_ms,
        "{alive_ms} is before the restart at {restarted_ms}"
    );
    assert!(after.stopped_at.is_some());
    host.child.kill().await.unwrap();
}
