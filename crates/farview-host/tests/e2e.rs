//! End to end over loopback: a real host (wgpu on the machine's adapter, openh264, quinn) and the
//! SDK; the stream is checked by ffmpeg, a decoder nobody here wrote.
//!
//! These tests must pass on a loaded machine (`stress-ng --cpu 2` beside the suite on two cores):
//! they wait on conditions with generous bounds instead of sleeping for a fixed time, and assert
//! on what the host and SDK did (frame numbers, counters, headers), never on how fast they did it.
//! Host logs go to the captured test output (shown for a failing test; `FARVIEW_TEST_LOG` sets the
//! filter).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use farview_client::{ClientError, Connection, ErrorCode};
use farview_encode::psnr_rgba;

/// Host logs into the test's captured output, once per test binary.
fn logs() {
    let filter = std::env::var("FARVIEW_TEST_LOG").unwrap_or_else(|_| "farview_host=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// Polls `cond` until it holds, failing with `what` after `within`. The bound only has to end a
/// test whose condition never comes: make it generous, a loaded machine is slow.
async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next frame; a closed connection fails the test with the host's reason.
async fn frame(conn: &Connection) -> farview_client::Frame {
    conn.next_frame()
        .await
        .unwrap_or_else(|e| panic!("the stream ended: {e}"))
}

/// Microseconds since the Unix epoch: the clock of the frame headers' timestamps (host and test
/// share the machine).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_model_that_ffmpeg_decodes_to_what_the_host_rendered() {
    logs();
    stream_and_compare(true).await;
}

/// The same with the CPU colour conversion (the fallback path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_colour_conversion_streams_the_same() {
    logs();
    stream_and_compare(false).await;
}

async fn stream_and_compare(gpu_conversion: bool) {
    logs();
    require_ffmpeg();
    let host = TestHost::start_with(|c| {
        c.stream.color_conversion = if gpu_conversion {
            farview_host::ColorConversion::Gpu
        } else {
            farview_host::ColorConversion::Cpu
        }
    })
    .await;
    let conn = host.connect().await;
    assert_eq!(
        (conn.stream_info().width, conn.stream_info().height),
        (WIDTH, HEIGHT)
    );
    let model = conn.load_model(MODEL).await.unwrap();
    assert_eq!(model.triangles, 12);
    assert_eq!(model.textures, 1);
    let cam_seq = conn.set_camera(framing_pose(&model, 0.6)).await.unwrap();
    // Ask for the keyframe only once the pose shows, so the keyframe carries it.
    while conn.next_frame().await.unwrap().header.last_command_seq < cam_seq {}
    conn.request_keyframe().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h264");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut numbers = Vec::new();
    // The host's copies of the first and the last received frame it still holds, by index in
    // the file. The tap keeps the last 16 rendered frames: a device delayed by a loaded machine
    // may receive a frame after the tap has moved past it, so take the nearest ones it holds.
    let mut first_rendered = None;
    let mut last_rendered = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while numbers.len() < 60 {
        assert!(Instant::now() < deadline, "fewer than 60 frames in 300 s");
        let frame = frame(&conn).await;
        if numbers.is_empty()
            && !(frame.header.keyframe && frame.header.last_command_seq >= cam_seq)
        {
            continue;
        }
        assert_eq!(
            (frame.header.width as u32, frame.header.height as u32),
            (WIDTH, HEIGHT)
        );
        // The detail it was drawn at: the level-of-detail budget (1 px, raised to at most
        // 8 px by the frame-time budget when a loaded machine renders late), and the box's 12
        // triangles.
        let detail = frame
            .header
            .detail
            .expect("version 6 headers report the detail");
        assert!(
            (1000..=8000).contains(&detail.lod_error_millipx),
            "{detail:?}"
        );
        assert_eq!(detail.triangles, 12);
        file.write_all(&frame.data).unwrap();
        numbers.push(frame.header.frame_number);
        // Grab the host's copy while the tap still holds it.
        if let Some(tapped) = host.tap.get(frame.header.frame_number) {
            let at = numbers.len() - 1;
            if first_rendered.is_none() {
                first_rendered = Some((at, tapped));
            } else {
                last_rendered = Some((at, tapped));
            }
        }
    }
    drop(file);
    let (Some(first), Some(last)) = (first_rendered, last_rendered) else {
        panic!("the tap held fewer than two of the 60 frames received");
    };
    eprintln!(
        "comparing received frames {} and {} with the host's copies",
        first.0, last.0
    );

    let (count, w, h) = ffprobe_frames(&path);
    assert_eq!(
        (count, w, h),
        (60, WIDTH, HEIGHT),
        "ffprobe frame count and size"
    );
    let decoded = ffmpeg_decode_rgba(&path, WIDTH, HEIGHT);
    assert_eq!(decoded.len(), 60);
    let fg = foreground_fraction(&decoded[0]);
    assert!(
        fg > 0.05,
        "first decoded frame is (almost) background only: {:.1}% foreground",
        fg * 100.0
    );
    for (decoded, rendered) in [(&decoded[first.0], &first.1), (&decoded[last.0], &last.1)] {
        let psnr = psnr_rgba(decoded, &rendered.rgba).unwrap();
        eprintln!("frame {}: PSNR {psnr:.2} dB", rendered.frame_number);
        assert!(
            psnr >= 35.0,
            "decoded frame {} vs rendered: PSNR {psnr:.2} dB < 35",
            rendered.frame_number
        );
    }
    conn.close().await;
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_change_shows_in_the_first_frame_that_names_its_sequence() {
    logs();
    // A deep tap: every frame received is looked up, and a device delayed by a loaded machine
    // receives frames well after the host rendered them.
    let host = TestHost::start_with_tap(|_| {}, 128).await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    let seq_a = conn.set_camera(framing_pose(&model, 0.0)).await.unwrap();
    let before = loop {
        let f = frame(&conn).await;
        if f.header.last_command_seq >= seq_a
            && let Some(tapped) = host.tap.get(f.header.frame_number)
        {
            break tapped;
        }
    };
    let seq_b = conn.set_camera(framing_pose(&model, 2.0)).await.unwrap();
    assert!(seq_b > seq_a);
    let mut saw_old = 0;
    let after = loop {
        let f = frame(&conn).await;
        let tapped = host.tap.get(f.header.frame_number).unwrap_or_else(|| {
            panic!(
                "the tap no longer holds frame {} (128 frames deep)",
                f.header.frame_number
            )
        });
        if f.header.last_command_seq >= seq_b {
            break tapped;
        }
        // Frames that do not name the change yet are rendered with the old pose, pixel for pixel.
        assert!(
            tapped.rgba == before.rgba,
            "frame {} changed before naming seq {seq_b}",
            f.header.frame_number
        );
        saw_old += 1;
    };
    eprintln!("{saw_old} frames in flight before the change showed");
    let diff = after
        .rgba
        .iter()
        .zip(&before.rgba)
        .filter(|(a, b)| a.abs_diff(**b) > 16)
        .count();
    assert!(
        diff > after.rgba.len() / 50,
        "new pose changed only {diff} channel values"
    );
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_model_requests_get_typed_errors_and_the_stream_goes_on() {
    logs();
    let assets = tempfile::tempdir().unwrap();
    let src = repo_root().join("assets/BoxTextured");
    std::fs::create_dir(assets.path().join("BoxTextured")).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(
            e.path(),
            assets.path().join("BoxTextured").join(e.file_name()),
        )
        .unwrap();
    }
    std::fs::write(assets.path().join("not_json.gltf"), b"this is not json").unwrap();
    std::fs::write(
        assets.path().join("truncated.glb"),
        b"glTF\x02\x00\x00\x00\xff\xff\x00\x00",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/hostname", assets.path().join("escape.gltf")).unwrap();
    let root = assets.path().to_path_buf();
    let host = TestHost::start_with(|c| c.assets_root = root).await;
    let conn = host.connect().await;

    let cases = [
        ("missing/model.gltf", ErrorCode::MODEL_NOT_FOUND),
        ("../Cargo.toml", ErrorCode::MODEL_PATH_FORBIDDEN),
        ("/etc/passwd", ErrorCode::MODEL_PATH_FORBIDDEN),
        (
            "BoxTextured/../../outside.gltf",
            ErrorCode::MODEL_PATH_FORBIDDEN,
        ),
        ("escape.gltf", ErrorCode::MODEL_PATH_FORBIDDEN),
        ("not_json.gltf", ErrorCode::MODEL_MALFORMED),
        ("truncated.glb", ErrorCode::MODEL_MALFORMED),
    ];
    for (path, want) in cases {
        match conn.load_model(path).await {
            Err(ClientError::Host(e)) => {
                assert_eq!(e.code, want, "{path}: {}", e.message);
                assert!(!e.message.is_empty());
            }
            other => panic!("{path}: expected {want}, got {other:?}"),
        }
    }
    // Every deliberately broken file of the shared corpus, when it is present.
    let corpus = std::env::var_os("FARVIEW_CORPUS")
        .map_or_else(|| repo_root().join("../shared/corpus"), Into::into);
    let bad = corpus.join("bad");
    if bad.is_dir() {
        let bad_root = bad.canonicalize().unwrap();
        let host2 = TestHost::start_with(|c| c.assets_root = bad_root).await;
        let conn2 = host2.connect().await;
        let mut n = 0;
        for e in std::fs::read_dir(&bad).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if !(name.ends_with(".gltf") || name.ends_with(".glb")) {
                continue;
            }
            match conn2.load_model(&name).await {
                Ok(m) => eprintln!(
                    "{name}: loaded ({} triangles), accepted as the corpus allows",
                    m.triangles
                ),
                Err(ClientError::Host(e)) => {
                    assert!(
                        e.code.name().starts_with("model_"),
                        "{name}: unexpected code {}",
                        e.code
                    );
                    n += 1;
                }
                Err(other) => panic!("{name}: connection-level failure {other}"),
            }
        }
        assert!(n > 20, "only {n} corpus files were rejected");
        conn2
            .ping()
            .await
            .expect("host still answers after the whole bad corpus");
        host2.handle.shutdown().await;
    } else {
        eprintln!(
            "skipping the shared bad corpus: {} not found (set FARVIEW_CORPUS)",
            bad.display()
        );
    }

    // The connection is intact: the good model loads and frames keep coming.
    let model = conn.load_model(MODEL).await.unwrap();
    assert_eq!(model.triangles, 12);
    conn.ping().await.unwrap();
    let f1 = conn.next_frame().await.unwrap().header.frame_number;
    let f2 = conn.next_frame().await.unwrap().header.frame_number;
    assert!(f2 > f1);
    host.handle.shutdown().await;
}

async fn raw_connection(host: &TestHost) -> quinn::Connection {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let fp = farview_client::Fingerprint::parse(&host.handle.fingerprint).unwrap();
    endpoint.set_default_client_config(farview_client::quic_client_config(fp).unwrap());
    endpoint
        .connect(host.handle.quic_addr, "farview-host")
        .unwrap()
        .await
        .unwrap()
}

fn close_code(e: quinn::ConnectionError) -> u64 {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_control_bytes_close_only_that_connection() {
    logs();
    let host = TestHost::start().await;

    let conn = raw_connection(&host).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0xFF; 64]).await.unwrap();
    assert_eq!(
        close_code(conn.closed().await),
        1,
        "garbage → protocol error close"
    );

    let conn = raw_connection(&host).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut big = (100_000u32).to_be_bytes().to_vec();
    big.extend(std::iter::repeat_n(0u8, 1000));
    send.write_all(&big).await.unwrap();
    assert_eq!(
        close_code(conn.closed().await),
        1,
        "oversized frame → protocol error close"
    );

    // Valid framing, but not Hello first.
    let conn = raw_connection(&host).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let msg = farview_protocol::ClientMessage {
        seq: 1,
        request: farview_protocol::Request::Ping,
    };
    send.write_all(&farview_protocol::encode_message(&msg).unwrap())
        .await
        .unwrap();
    assert_eq!(
        close_code(conn.closed().await),
        1,
        "no Hello → protocol error close"
    );

    // The host keeps serving the next device.
    let good = host.connect().await;
    good.load_model(MODEL).await.unwrap();
    good.next_frame().await.unwrap();
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_reading_gets_fresh_frames_not_a_backlog() {
    logs();
    require_ffmpeg();
    let host = TestHost::start_with(|c| c.stream.max_frame_age_ms = 200).await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    conn.set_camera(framing_pose(&model, 0.3)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.h264");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut received = 0;
    // Start the file at a keyframe.
    loop {
        let f = frame(&conn).await;
        if f.header.keyframe {
            file.write_all(&f.data).unwrap();
            received += 1;
            break;
        }
    }
    let before = frame(&conn).await;
    file.write_all(&before.data).unwrap();
    received += 1;

    // Stop reading while the host renders 60 more frames (two seconds at 30 fps; longer on a
    // loaded machine) and the SDK has had to drop some.
    let rendered = |m: &str| value(m, "farview_frames_rendered_total");
    let at_pause = rendered(&scrape(&host).await);
    let (h, c) = (&host, &conn);
    eventually(
        Duration::from_secs(120),
        "the host renders 60 frames and the SDK drops some while the device is away",
        move || async move {
            rendered(&scrape(h).await) >= at_pause + 60.0 && c.frames_dropped() > 0
        },
    )
    .await;

    // No backlog: once the device reads again, a frame rendered after it came back arrives after
    // at most what the SDK buffers (8) and the host's pipeline holds (a few), not the 60 frames
    // rendered while it was away.
    let resumed_us = now_us();
    let mut old = 0;
    let mut last = loop {
        let f = frame(&conn).await;
        file.write_all(&f.data).unwrap();
        received += 1;
        if f.header.render_start_us >= resumed_us {
            break f;
        }
        old += 1;
        assert!(
            old <= 20,
            "{old} frames rendered before the device came back, and counting: a backlog"
        );
    };
    eprintln!("{old} frames rendered while away came after the device resumed");
    // A few fresh frames more, so the file shows the stream going on from there.
    for _ in 0..5 {
        last = frame(&conn).await;
        file.write_all(&last.data).unwrap();
        received += 1;
    }
    drop(file);
    let gap = last.header.frame_number - before.header.frame_number + 1 - (received - 1);
    assert!(
        gap > 20,
        "frames should have been dropped while the device was away (gap {gap})"
    );
    assert!(
        conn.frames_dropped() > 0,
        "the SDK counts the frames it dropped"
    );
    // Drops never broke the bitstream: ffmpeg decodes every frame we received without an error.
    let (count, _, _) = ffprobe_frames(&path);
    assert_eq!(count, received);
    ffmpeg_decode_rgba(&path, WIDTH, HEIGHT);
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_capacity_is_told_why_and_health_reports_the_host() {
    logs();
    let host = TestHost::start_with(|c| c.max_connections = 1).await;
    let first = host.connect().await;
    first.next_frame().await.unwrap();
    match farview_client::Connection::connect(host.options()).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, u64::from(farview_protocol::CloseCode::AT_CAPACITY.0));
            assert!(reason.contains("capacity"), "{reason}");
        }
        other => panic!("expected a capacity refusal, got {other:?}"),
    }
    // The first device is undisturbed.
    first.ping().await.unwrap();
    first.next_frame().await.unwrap();

    // GET /healthz over plain HTTP/1.1.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["connections"], 1);
    assert_eq!(body["quic_fingerprint"], host.handle.fingerprint.as_str());
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_the_device_why() {
    logs();
    let host = TestHost::start().await;
    let conn = host.connect().await;
    conn.next_frame().await.unwrap();
    host.handle.shutdown().await;
    let err = loop {
        match conn.next_frame().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match err {
        ClientError::Host(e) => assert_eq!(e.code, ErrorCode::SHUTTING_DOWN),
        ClientError::Closed { code, .. } => assert_eq!(
            code,
            u64::from(farview_protocol::CloseCode::SHUTTING_DOWN.0)
        ),
        other => panic!("unexpected {other:?}"),
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_move_with_the_stream() {
    logs();
    let host = TestHost::start().await;
    let before = scrape(&host).await;
    assert_eq!(value(&before, "farview_frames_sent_total"), 0.0);
    assert_eq!(value(&before, "farview_encoder_bitrate_bps"), 0.0);
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    conn.set_camera(framing_pose(&model, 0.3)).await.unwrap();
    for _ in 0..20 {
        conn.next_frame().await.unwrap();
    }
    let after = scrape(&host).await;
    for series in [
        "farview_frames_rendered_total",
        "farview_frames_encoded_total",
        "farview_frames_sent_total",
        "farview_keyframes_total",
        "farview_sent_bytes_total",
        "farview_stage_duration_seconds_count{stage=\"render\"}",
        "farview_stage_duration_seconds_count{stage=\"encode\"}",
        "farview_stage_duration_seconds_count{stage=\"send\"}",
        "farview_frame_size_bytes_count",
    ] {
        assert!(value(&after, series) > 0.0, "{series} did not move");
    }
    assert!(value(&after, "farview_frames_sent_total") >= 20.0);
    assert!(value(&after, "farview_encoder_bitrate_bps") > 0.0);
    assert!(after.contains("farview_frames_dropped_total{reason=\"stale\"}"));
    assert!(after.contains("farview_sessions{status=\"connected\"}"));
    // The process's own figures come with them (the prometheus crate's process collector).
    assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    let rtt = after
        .lines()
        .find(|l| l.starts_with("farview_quic_rtt_seconds{"))
        .expect("the attached device's rtt");
    // Labelled by the session operators know (here an ad-hoc stream), not a transport id.
    assert!(
        rtt.starts_with("farview_quic_rtt_seconds{session=\"sessionless-"),
        "{rtt}"
    );
    let rtt: f64 = rtt.rsplit(' ').next().unwrap().parse().unwrap();
    // Seconds, not milliseconds (a loaded machine inflates loopback RTT, but not to minutes).
    assert!(rtt > 0.0 && rtt < 60.0, "loopback rtt {rtt}");
    // Every sample line is `name{labels} value` or `name value`: well-formed for a scraper.
    for l in after
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line {l}");
        assert!(
            l.starts_with("farview_") || l.starts_with("process_"),
            "{l}"
        );
    }
    conn.close().await;
    host.handle.shutdown().await;
}

/// A UDP relay on loopback between a device and the host that drops a settable share of the
/// packets in both directions (per mille), to induce loss without root or `tc`.
async fn loss_proxy(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let (addr, drop, _rate) = relay(upstream).await;
    (addr, drop)
}

/// The relay behind [`loss_proxy`], with a bandwidth limit (bits/s, 0: none) on the host →
/// device direction: packets wait their turn (a bottleneck queue of up to 200 ms) and are dropped
/// when it is longer, as at a slow link.
async fn relay(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(upstream).await.unwrap();
    let addr = front.local_addr().unwrap();
    let drop = Arc::new(AtomicU32::new(0));
    let rate = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = Arc::new(std::sync::Mutex::new(None));
    let lose = |seed: &mut u64, drop: &AtomicU32| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 1000) < u64::from(drop.load(Ordering::Relaxed))
    };
    {
        let (front, back, drop, client) =
            (front.clone(), back.clone(), drop.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if !lose(&mut seed, &drop) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    {
        let (drop, rate) = (drop.clone(), rate.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut seed = 0x2545_F491_4F6C_DD1Du64;
            // When the link is next free.
            let mut free_at = tokio::time::Instant::now();
            while let Ok(n) = back.recv(&mut buf).await {
                let to = *client.lock().unwrap();
                let Some(to) = to else { continue };
                if lose(&mut seed, &drop) {
                    continue;
                }
                let bps = rate.load(Ordering::Relaxed);
                if bps > 0 {
                    let now = tokio::time::Instant::now();
                    free_at = free_at.max(now);
                    if free_at - now > std::time::Duration::from_millis(200) {
                        continue; // queue full: tail drop
                    }
                    free_at += std::time::Duration::from_secs_f64(n as f64 * 8.0 / bps as f64);
                    tokio::time::sleep_until(free_at).await;
                }
                let _ = front.send_to(&buf[..n], to).await;
            }
        });
    }
    (addr, drop, rate)
}

/// Keeps frames flowing through `conn` (camera moving, device reading) until the host's encoder
/// bitrate satisfies `done`, or `within` passes; returns the last bitrate read. A stream that ends
/// fails the test at once with its reason: the bitrate gauge sums the host's *live* encoders, so
/// after the stream ends it reads 0, which used to be reported as a failed recovery
/// ("1372000 -> 0").
async fn drive_until(
    host: &TestHost,
    conn: &Connection,
    model: &farview_client::LoadedModel,
    within: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let start = Instant::now();
    let mut angle = 0.0f32;
    loop {
        angle += 0.05;
        // Short waits: under loss a request or a frame may take a while; the next round retries.
        match tokio::time::timeout(
            Duration::from_millis(500),
            conn.set_camera(framing_pose(model, angle)),
        )
        .await
        {
            Ok(Err(e)) if !matches!(e, ClientError::Host(_)) => panic!("the stream ended: {e}"),
            _ => {}
        }
        if let Ok(Err(e)) =
            tokio::time::timeout(Duration::from_millis(200), conn.next_frame()).await
        {
            panic!("the stream ended: {e}");
        }
        let b = value(&scrape(host).await, "farview_encoder_bitrate_bps");
        assert!(b > 0.0, "the host has no live encoder: the stream ended");
        if done(b) || start.elapsed() > within {
            return b;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn induced_loss_lowers_the_bitrate_and_recovery_raises_it() {
    logs();
    use std::sync::atomic::Ordering;
    logs();
    let host = TestHost::start_with(|c| {
        c.stream.bitrate_bps = 4_000_000;
        c.stream.min_bitrate_bps = 500_000;
    })
    .await;
    let (proxy, drop) = loss_proxy(host.handle.quic_addr).await;
    let conn = farview_client::Connection::connect(
        farview_client::ConnectOptions::new(proxy, &host.handle.fingerprint).unwrap(),
    )
    .await
    .unwrap();
    let model = conn.load_model(MODEL).await.unwrap();
    // Generous bounds: each phase ends as soon as its condition holds. The controller backs off
    // at most every 500 ms and probes up at most every 2 s (10 % a step), and a loaded machine
    // adds its own hiccups (late frames count as congestion too), so a phase may take a while.
    // A stream under way (20 frames, however long they take), then at the ceiling.
    for i in 0..20 {
        conn.set_camera(framing_pose(&model, i as f32 * 0.05))
            .await
            .unwrap();
        frame(&conn).await;
    }
    let clean = drive_until(&host, &conn, &model, Duration::from_secs(90), |b| {
        b >= 4_000_000.0
    })
    .await;
    assert_eq!(
        clean, 4_000_000.0,
        "no loss: the encoder runs at (or returns to) the ceiling"
    );
    drop.store(150, Ordering::Relaxed);
    let lossy = drive_until(&host, &conn, &model, Duration::from_secs(90), |b| {
        b <= 1_500_000.0
    })
    .await;
    assert!(
        lossy <= 1_500_000.0,
        "15 % loss should lower the bitrate, at {lossy}"
    );
    drop.store(0, Ordering::Relaxed);
    let recovered = drive_until(&host, &conn, &model, Duration::from_secs(120), |b| {
        b > lossy * 1.25
    })
    .await;
    assert!(
        recovered > lossy * 1.25,
        "after the loss stops the bitrate should rise again: {lossy} -> {recovered}"
    );
    eprintln!("bitrate: clean {clean}, under loss {lossy}, recovered {recovered}");
    conn.close().await;
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_are_honoured_at_once_and_sdk_statistics_add_up() {
    logs();
    let host = TestHost::start().await;
    let conn = host.connect().await;
    // Every request the statistics track is sent after this.
    let started = Instant::now();
    let model = conn.load_model(MODEL).await.unwrap();
    conn.take_frame_statistics();
    let dropped_before = conn.frames_dropped();
    let mut taken = Vec::new();
    for i in 0..10 {
        conn.set_camera(framing_pose(&model, i as f32 * 0.1))
            .await
            .unwrap();
        taken.push(frame(&conn).await);
    }
    let window = started.elapsed();
    let stats = conn.take_frame_statistics();
    // The statistics are those of the frames the app took (timings vary with the machine's load;
    // what they are computed from does not).
    assert_eq!(stats.frames_received, 10, "{stats:?}");
    let gaps: Vec<u64> = taken
        .windows(2)
        .map(|w| w[1].received_us.saturating_sub(w[0].received_us))
        .collect();
    assert_eq!(stats.arrival_gap, farview_client::summarize(&gaps));
    let latency: Vec<u64> = taken
        .iter()
        .map(|f| farview_client::FrameTimings::of(f).total_us)
        .collect();
    assert_eq!(stats.latency, farview_client::summarize(&latency));
    let skipped: u64 = taken
        .windows(2)
        .map(|w| w[1].header.frame_number - w[0].header.frame_number - 1)
        .sum();
    assert_eq!(stats.frames_skipped_by_host, skipped);
    // Every camera change showed in a frame taken within the window.
    assert!(
        stats.command_to_frame.p50_ms > 0.0
            && stats.command_to_frame.max_ms <= window.as_secs_f64() * 1000.0,
        "command-to-frame {:?} over a {window:?} window",
        stats.command_to_frame
    );
    assert!(stats.latency.p50_ms > 0.0);

    // Every keyframe request is answered with an IDR at once: the host flags the next frame it
    // encodes before it replies, so of the frames encoded after the reply at most one (already
    // being encoded then) comes before the IDR. Frames encoded earlier (queued on the way or in
    // the SDK's buffer) are not counted: how many there are depends on the machine's load.
    // Frames taken in the second window.
    let mut frames = 0u64;
    for round in 0..5 {
        // Let a few P-frames pass so the IDR is not a leftover of the previous request.
        for _ in 0..4 {
            frame(&conn).await;
            frames += 1;
        }
        let asked = now_us();
        conn.request_keyframe().await.unwrap();
        let scheduled = now_us();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut later = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "round {round}: no keyframe within 60 s of the request"
            );
            let f = frame(&conn).await;
            frames += 1;
            if f.header.keyframe && f.header.encode_end_us > asked {
                break;
            }
            if f.header.encode_end_us > scheduled {
                later += 1;
                assert!(
                    later <= 1,
                    "round {round}: {later} frames encoded after the request was scheduled came before its IDR"
                );
            }
        }
    }
    let after = conn.take_frame_statistics();
    assert_eq!(after.frames_received, frames, "a new window: {after:?}");
    // Drops (if the test fell behind on a loaded machine) are counted per window.
    assert_eq!(
        stats.frames_dropped_by_sdk + after.frames_dropped_by_sdk,
        conn.frames_dropped() - dropped_before
    );
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_pacing_skips_an_unchanged_view_but_keeps_the_stream_alive() {
    logs();
    let host = TestHost::start_with(|c| c.stream.skip_unchanged_frames = true).await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    let seq = conn.set_camera(framing_pose(&model, 0.4)).await.unwrap();
    while frame(&conn).await.header.last_command_seq < seq {}
    // A static view: the render loop skips its ticks (30 a second) instead of rendering the same
    // frame again, except for a keepalive about once a second. Watch until it has skipped 60 ticks
    // (two seconds; longer on a loaded machine), reading whatever frames arrive.
    let skipped = |m: &str| value(m, "farview_frames_skipped_unchanged_total");
    let rendered = |m: &str| value(m, "farview_frames_rendered_total");
    let m0 = scrape(&host).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut frames = 0;
    let m1 = loop {
        if let Ok(f) = tokio::time::timeout(Duration::from_millis(100), conn.next_frame()).await {
            f.unwrap_or_else(|e| panic!("the stream ended: {e}"));
            frames += 1;
        }
        let m = scrape(&host).await;
        if skipped(&m) >= skipped(&m0) + 60.0 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "an unchanged view: fewer than 60 ticks skipped in 120 s"
        );
    };
    let (skips, renders) = (skipped(&m1) - skipped(&m0), rendered(&m1) - rendered(&m0));
    eprintln!("static view: {skips} ticks skipped, {renders} frames rendered, {frames} received");
    // 60 skipped ticks span at least two seconds, so the keepalive rendered at least once.
    assert!(renders >= 1.0, "no keepalive while the view was unchanged");
    assert!(
        renders < skips,
        "{renders} frames rendered against {skips} ticks skipped for an unchanged view"
    );
    // A change is rendered, and a keyframe request is honoured without a change.
    let seq = conn.set_camera(framing_pose(&model, 0.8)).await.unwrap();
    let f = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let f = frame(&conn).await;
            if f.header.last_command_seq >= seq {
                break f;
            }
        }
    })
    .await
    .expect("a change is rendered");
    assert!(f.header.last_command_seq >= seq);
    let asked = now_us();
    conn.request_keyframe().await.unwrap();
    let f = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let f = frame(&conn).await;
            if f.header.keyframe && f.header.encode_end_us > asked {
                break f;
            }
        }
    })
    .await
    .expect("a keyframe request renders a frame");
    assert!(f.header.keyframe);
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_slower_than_the_stream_lowers_the_bitrate() {
    logs();
    use std::sync::atomic::Ordering;
    logs();
    let host = TestHost::start_with(|c| {
        c.stream.bitrate_bps = 4_000_000;
        c.stream.min_bitrate_bps = 500_000;
    })
    .await;
    let (proxy, _drop, rate) = relay(host.handle.quic_addr).await;
    let conn = farview_client::Connection::connect(
        farview_client::ConnectOptions::new(proxy, &host.handle.fingerprint).unwrap(),
    )
    .await
    .unwrap();
    let model = conn.load_model(MODEL).await.unwrap();
    // A stream under way (20 frames, however long they take), then at the ceiling.
    for i in 0..20 {
        conn.set_camera(framing_pose(&model, i as f32 * 0.05))
            .await
            .unwrap();
        frame(&conn).await;
    }
    let clean = drive_until(&host, &conn, &model, Duration::from_secs(90), |b| {
        b >= 4_000_000.0
    })
    .await;
    assert_eq!(
        clean, 4_000_000.0,
        "an unlimited link: the encoder runs at (or returns to) the ceiling"
    );
    // A 1 Mbit/s link under a 4 Mbit/s stream: the queue grows (RTT up), then overflows (loss).
    rate.store(1_000_000, Ordering::Relaxed);
    let start = Instant::now();
    let lowered = drive_until(&host, &conn, &model, Duration::from_secs(90), |b| {
        b <= 2_000_000.0
    })
    .await;
    eprintln!("slow link: bitrate {lowered} after {:?}", start.elapsed());
    assert!(
        lowered <= 2_000_000.0,
        "the bitrate did not drop for a 1 Mbit/s link: {lowered}"
    );
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_lists_the_models_it_offers_and_each_loads() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let (models, truncated) = conn.list_models().await.unwrap();
    assert!(!truncated);
    let paths: Vec<&str> = models.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "BoxTextured/BoxTextured.gltf",
            "Fox/Fox.glb",
            "compressed/Box-Draco/Box.gltf",
            "compressed/BoxTexturedWebp/BoxTexturedWebp.gltf",
            "compressed/MeshoptFallbackBox/meshopt-fallback.gltf",
            "compressed/SimpleInstancing/SimpleInstancing.glb",
        ]
    );
    for m in &models {
        let on_disk = std::fs::metadata(host.assets.join(&m.path)).unwrap().len();
        assert_eq!(m.bytes, on_disk, "{}", m.path);
        // What the list names is what LoadModel takes, compressed files included.
        let loaded = conn.load_model(&m.path).await.unwrap();
        assert!(loaded.triangles > 0, "{}", m.path);
    }
    conn.close().await;
    host.finish().await;
}

/// A large model is shown at full detail as soon as it is read and uploaded; its levels of
/// detail are built in the background and swapped in between frames, after which the frames
/// report far fewer triangles drawn (a flat grid simplifies to almost nothing within a pixel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_of_detail_are_built_after_a_model_is_shown() {
    logs();
    let host = TestHost::start().await;
    let conn = host.connect().await;
    // 120 x 120 quads: 28,800 triangles in two clusters.
    let grid = farview_scene::synthetic::grid_glb(120);
    let model = conn.upload_model("grid", &grid).await.unwrap();
    assert_eq!(model.triangles, 28_800);
    let cam_seq = conn.set_camera(framing_pose(&model, 0.6)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no frame drawn with levels in 120 s: triangles per frame {seen:?}"
        );
        let frame = frame(&conn).await;
        if frame.header.last_command_seq < cam_seq {
            continue;
        }
        let detail = frame
            .header
            .detail
            .expect("version 6 headers report the detail");
        assert!(detail.triangles <= 28_800, "{detail:?}");
        if seen.last() != Some(&detail.triangles) {
            seen.push(detail.triangles);
        }
        if detail.triangles < 28_800 / 10 {
            break;
        }
    }
    // Whatever was drawn before the levels came was the whole grid.
    assert!(
        seen[..seen.len() - 1].iter().all(|&t| t == 28_800),
        "{seen:?}"
    );
}
