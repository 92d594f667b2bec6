//! The host tried as a hostile or careless device would: raw QUIC peers that break the protocol,
//! forge log lines, hoard upload memory, or vanish without closing. Each test pins a bug that was
//! found this way (issue #9) and failed before its fix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestHost, metric};
use farview_client::{Fingerprint, quic_client_config};
use farview_protocol::{
    ClientMessage, ErrorCode, FrameDecoder, MAX_CONTROL_MESSAGE, PROTOCOL_VERSION, Reply, Request,
    ServerMessage, UPLOAD_MAGIC, decode_message, encode_message,
};

/// A device with no SDK in between: it writes whatever bytes a test wants.
struct RawDevice {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl RawDevice {
    async fn connect(addr: SocketAddr, fingerprint: &str) -> Self {
        Self::try_connect(addr, fingerprint)
            .await
            .expect("connection")
    }

    /// `None` when the host refused or dropped the connection during set-up.
    async fn try_connect(addr: SocketAddr, fingerprint: &str) -> Option<Self> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(
            quic_client_config(Fingerprint::parse(fingerprint).unwrap()).unwrap(),
        );
        let conn = endpoint.connect(addr, "farview-host").unwrap().await.ok()?;
        let (send, recv) = conn.open_bi().await.ok()?;
        Some(Self {
            _endpoint: endpoint,
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(MAX_CONTROL_MESSAGE),
        })
    }

    async fn send(&mut self, seq: u64, request: Request) {
        let bytes = encode_message(&ClientMessage { seq, request }).unwrap();
        // A host that closed on us shows up in the reply, not here.
        let _ = self.send.write_all(&bytes).await;
    }

    async fn hello(&mut self, version: u16, client: &str) {
        self.send(
            1,
            Request::Hello {
                version,
                client: client.into(),
                session: None,
            },
        )
        .await;
    }

    /// The next message, or `None` when the stream or connection ended first.
    async fn next(&mut self) -> Option<ServerMessage> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some(payload) = self.decoder.next_frame().unwrap() {
                return Some(decode_message(&payload).unwrap());
            }
            match tokio::time::timeout(Duration::from_secs(20), self.recv.read(&mut buf)).await {
                Ok(Ok(Some(n))) => self.decoder.push(&buf[..n]).unwrap(),
                _ => return None,
            }
        }
    }

    /// The reply to `seq`, skipping events.
    async fn reply(&mut self, seq: u64) -> Option<Result<Reply, farview_protocol::WireError>> {
        loop {
            match self.next().await? {
                ServerMessage::Reply { seq: s, result } if s == seq => return Some(result),
                _ => {}
            }
        }
    }

    async fn upload(&self, id: u64, bytes: &[u8]) {
        let mut s = self.conn.open_uni().await.unwrap();
        let mut header = UPLOAD_MAGIC.to_vec();
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        // The host may refuse (stop) the stream; the reason comes back with the load.
        if s.write_all(&header).await.is_ok() && s.write_all(bytes).await.is_ok() {
            let _ = s.finish();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.stopped()).await;
        }
    }
}

fn code_of(r: Option<Result<Reply, farview_protocol::WireError>>) -> Option<ErrorCode> {
    match r {
        Some(Err(e)) => Some(e.code),
        _ => None,
    }
}

/// Bug 3: the typed replies for an unsupported version and for a first message that is not
/// Hello were lost to the close frame (0 of 15 tries reached the device).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_refusals_reach_the_device_before_the_close() {
    let host = TestHost::start().await;
    let (addr, fp) = (host.handle.quic_addr, host.handle.fingerprint.clone());
    let mut got = (0, 0);
    for _ in 0..15 {
        let mut d = RawDevice::connect(addr, &fp).await;
        d.hello(PROTOCOL_VERSION + 40, "old").await;
        if code_of(d.reply(1).await) == Some(ErrorCode::UNSUPPORTED_VERSION) {
            got.0 += 1;
        }
        let mut d = RawDevice::connect(addr, &fp).await;
        d.send(7, Request::Ping).await;
        if code_of(d.reply(7).await) == Some(ErrorCode::HELLO_REQUIRED) {
            got.1 += 1;
        }
    }
    assert_eq!(got, (15, 15), "typed refusals that reached the device");
    host.handle.shutdown().await;
}

/// A log sink for the test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Bug 2: client strings were logged raw before authentication: a newline and an ANSI escape in
/// the client name forged a log line, and a huge name wrote a huge line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_cannot_forge_or_flood_log_lines() {
    let logs = Captured::default();
    // Global: the host logs from runtime workers and its own threads.
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let _ = tracing::dispatcher::set_global_default(dispatch);

    let host = TestHost::start().await;
    let (addr, fp) = (host.handle.quic_addr, host.handle.fingerprint.clone());
    let forged =
        "evil\n2026-11-28T00:00:00.000000Z  INFO farview_host: FORGED admin login\u{1b}[2J";
    let mut d = RawDevice::connect(addr, &fp).await;
    d.hello(PROTOCOL_VERSION, forged).await;
    assert!(matches!(d.reply(1).await, Some(Ok(Reply::Welcome(_)))));
    // A model path and an upload name are client strings too.
    d.send(
        2,
        Request::LoadModel {
            path: "nope\nFORGED path\u{1b}[31m.glb".into(),
        },
    )
    .await;
    assert_eq!(code_of(d.reply(2).await), Some(ErrorCode::MODEL_NOT_FOUND));
    let mut big = RawDevice::connect(addr, &fp).await;
    big.hello(PROTOCOL_VERSION, &"x".repeat(900 * 1024)).await;
    assert!(matches!(big.reply(1).await, Some(Ok(Reply::Welcome(_)))));
    drop((d, big));
    host.handle.shutdown().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("device said hello"),
        "the hello was not logged:\n{text}"
    );
    for line in text.lines() {
        assert!(
            !line.contains("FORGED")
                || line.contains("device said hello")
                || line.contains("request refused"),
            "a client string started its own log line: {line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "an escape reached the log: {line:?}"
        );
        assert!(line.len() < 4096, "a {}-byte log line", line.len());
    }
}

/// Bug 6: uploads never loaded stayed in memory until their connection ended (4 x 256 MiB per
/// connection by configuration). A host-wide budget now refuses past it, with a clear code, and
/// gives the bytes back once an upload is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_share_a_host_wide_budget() {
    let host = TestHost::start_with(|c| c.upload_budget_bytes = 1 << 20).await;
    let (addr, fp) = (host.handle.quic_addr, host.handle.fingerprint.clone());
    let junk = vec![0x5au8; 700 * 1024];
    let mut a = RawDevice::connect(addr, &fp).await;
    a.hello(PROTOCOL_VERSION, "a").await;
    a.reply(1).await.unwrap().unwrap();
    let mut b = RawDevice::connect(addr, &fp).await;
    b.hello(PROTOCOL_VERSION, "b").await;
    b.reply(1).await.unwrap().unwrap();
    // Device a holds 700 KiB it has not loaded; device b's 700 KiB would pass 1 MiB.
    a.upload(1, &junk).await;
    b.upload(1, &junk).await;
    b.send(
        2,
        Request::LoadUploadedModel {
            upload: 1,
            name: "b".into(),
        },
    )
    .await;
    let refused = b.reply(2).await.unwrap().unwrap_err();
    assert_eq!(refused.code, ErrorCode::UPLOAD_BUDGET_SPENT, "{refused}");
    assert!(refused.message.contains("budget"), "{}", refused.message);
    // Loading a's upload (junk: it fails to import) gives its bytes back; b's next upload fits.
    a.send(
        2,
        Request::LoadUploadedModel {
            upload: 1,
            name: "a".into(),
        },
    )
    .await;
    assert_eq!(code_of(a.reply(2).await), Some(ErrorCode::MODEL_MALFORMED));
    b.upload(2, &junk).await;
    b.send(
        3,
        Request::LoadUploadedModel {
            upload: 2,
            name: "b".into(),
        },
    )
    .await;
    assert_eq!(code_of(b.reply(3).await), Some(ErrorCode::MODEL_MALFORMED));
    assert_eq!(metric(&host, "farview_upload_bytes_held").await, 0.0);
    // An upload whose connection ends leaves the budget with it, not after a timer.
    a.upload(2, &junk).await;
    assert_eq!(
        metric(&host, "farview_upload_bytes_held").await,
        junk.len() as f64
    );
    drop(a);
    let started = std::time::Instant::now();
    while metric(&host, "farview_upload_bytes_held").await > 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a closed connection's upload still holds the budget"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.handle.shutdown().await;
}

/// A UDP relay that can be cut: afterwards the device is silent, as a killed process is.
async fn cuttable_relay(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(upstream).await.unwrap();
    let addr = front.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let client = Arc::new(Mutex::new(None));
    {
        let (front, back, cut, client) = (front.clone(), back.clone(), cut.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if !cut.load(Ordering::Relaxed) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = back.recv(&mut buf).await {
                let to = *client.lock().unwrap();
                if let Some(to) = to
                    && !cut.load(Ordering::Relaxed)
                {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
    }
    (addr, cut)
}

/// Bug 1 (host side): a device that vanished without closing held its place until a 30 s idle
/// timeout, so a host at capacity refused everyone meanwhile. The idle timeout is now short and
/// configurable, and the host pings at a third of it so live devices never reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_device_frees_its_place_within_the_idle_timeout() {
    let host = TestHost::start_with(|c| {
        c.max_connections = 1;
        c.quic_idle_timeout_ms = 3_000;
    })
    .await;
    let (addr, fp) = (host.handle.quic_addr, host.handle.fingerprint.clone());
    let (relay, cut) = cuttable_relay(addr).await;
    let mut gone = RawDevice::connect(relay, &fp).await;
    gone.hello(PROTOCOL_VERSION, "vanishing").await;
    gone.reply(1).await.unwrap().unwrap();
    // A live device idles longer than the timeout without losing its place (the host's pings
    // keep it alive).
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    gone.send(2, Request::Ping).await;
    assert!(matches!(gone.reply(2).await, Some(Ok(Reply::Pong { .. }))));
    // While it holds the only place, another device is refused...
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        let mut d = RawDevice::try_connect(addr, &fp).await?;
        d.hello(PROTOCOL_VERSION, "second").await;
        d.reply(1).await
    })
    .await
    .unwrap();
    assert!(
        refused.is_none(),
        "a second device got in at capacity: {refused:?}"
    );
    // ...then it vanishes, and the place is free within a bounded wait.
    cut.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let welcomed = loop {
        if let Some(mut d) = RawDevice::try_connect(addr, &fp).await {
            d.hello(PROTOCOL_VERSION, "next").await;
            if let Some(Ok(Reply::Welcome(_))) = d.reply(1).await {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the vanished device still holds the host's only place"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(welcomed < Duration::from_secs(20), "{welcomed:?}");
    drop(gone);
    host.handle.shutdown().await;
}

/// Bug 9: with several streams on one shared GPU, a readback that was slow to complete ended
/// its session ("render loop failed: GPU readback failed"). A readback that outlasts its budget
/// is now waited for again (counted), and the stream goes on with the same frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readback_that_outlasts_its_budget_is_retried_not_fatal() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    for _ in 0..3 {
        conn.next_frame().await.unwrap();
    }
    assert_eq!(metric(&host, "farview_readback_retries_total").await, 0.0);
    // The renderer's real timeout path: three readbacks get no budget for their first wait.
    host.tap.slow_readbacks(common::WIDTH, common::HEIGHT, 3);
    let mut last = 0;
    for _ in 0..30 {
        let f = conn.next_frame().await.expect("the stream goes on");
        assert!(f.header.frame_number >= last);
        last = f.header.frame_number;
    }
    assert_eq!(metric(&host, "farview_readback_retries_total").await, 3.0);
    conn.ping().await.expect("the connection is still open");
    host.handle.shutdown().await;
}
