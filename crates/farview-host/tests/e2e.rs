//! End to end over loopback: a real host (wgpu on the machine's adapter, openh264, quinn) and the
//! SDK; the stream is checked by ffmpeg, a decoder nobody here wrote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use farview_client::{ClientError, ErrorCode};
use farview_encode::psnr_rgba;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_model_that_ffmpeg_decodes_to_what_the_host_rendered() {
    stream_and_compare(true).await;
}

/// The same with the CPU colour conversion (the fallback path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_colour_conversion_streams_the_same() {
    stream_and_compare(false).await;
}

async fn stream_and_compare(gpu_conversion: bool) {
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
    let mut rendered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while numbers.len() < 60 {
        assert!(Instant::now() < deadline, "fewer than 60 frames in 120 s");
        let frame = conn.next_frame().await.unwrap();
        if numbers.is_empty()
            && !(frame.header.keyframe && frame.header.last_command_seq >= cam_seq)
        {
            continue;
        }
        assert_eq!(
            (frame.header.width as u32, frame.header.height as u32),
            (WIDTH, HEIGHT)
        );
        file.write_all(&frame.data).unwrap();
        numbers.push(frame.header.frame_number);
        // Grab the host's copy while the tap still holds it.
        if numbers.len() == 1 || numbers.len() == 60 {
            rendered.push(
                host.tap
                    .get(frame.header.frame_number)
                    .expect("tap holds the frame just received"),
            );
        }
    }
    drop(file);

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
    for (decoded, rendered) in [(&decoded[0], &rendered[0]), (&decoded[59], &rendered[1])] {
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
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    let seq_a = conn.set_camera(framing_pose(&model, 0.0)).await.unwrap();
    let before = loop {
        let f = conn.next_frame().await.unwrap();
        if f.header.last_command_seq >= seq_a {
            break host.tap.get(f.header.frame_number).unwrap();
        }
    };
    let seq_b = conn.set_camera(framing_pose(&model, 2.0)).await.unwrap();
    assert!(seq_b > seq_a);
    let mut saw_old = 0;
    let after = loop {
        let f = conn.next_frame().await.unwrap();
        let tapped = host.tap.get(f.header.frame_number).unwrap();
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
        let f = conn.next_frame().await.unwrap();
        if f.header.keyframe {
            file.write_all(&f.data).unwrap();
            received += 1;
            break;
        }
    }
    let before = conn.next_frame().await.unwrap();
    file.write_all(&before.data).unwrap();
    received += 1;

    // Stop reading for two seconds: 60 frames' worth at 30 fps.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resumed = Instant::now();
    let mut last = before.clone();
    while resumed.elapsed() < Duration::from_millis(1500) {
        last = conn.next_frame().await.unwrap();
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
    let age_ms = last.received_us.saturating_sub(last.header.render_start_us) / 1000;
    assert!(
        age_ms < 500,
        "frame age after catching up is {age_ms} ms: the host queued a backlog"
    );
    // Drops never broke the bitstream: ffmpeg decodes every frame we received without an error.
    let (count, _, _) = ffprobe_frames(&path);
    assert_eq!(count, received);
    ffmpeg_decode_rgba(&path, WIDTH, HEIGHT);
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_capacity_is_told_why_and_health_reports_the_host() {
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

async fn scrape(host: &TestHost) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/plain; version=0.0.4"));
    // The body only.
    resp.split_once("\r\n\r\n").unwrap().1.to_owned()
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
    let rtt = after
        .lines()
        .find(|l| l.starts_with("farview_quic_rtt_seconds{"))
        .expect("the attached device's rtt");
    let rtt: f64 = rtt.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(rtt > 0.0 && rtt < 1.0, "loopback rtt {rtt}");
    // Every sample line is `name{labels} value` or `name value`: well-formed for a scraper.
    for l in after
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line {l}");
        assert!(l.starts_with("farview_"), "{l}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn induced_loss_lowers_the_bitrate_and_recovery_raises_it() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
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
    let bitrate = |t: &str| value(t, "farview_encoder_bitrate_bps");
    // Keeps frames flowing (camera moving, device reading) for `secs`, stopping early once
    // `done` holds for the scraped metrics.
    let run = |secs: u64, done: &'static (dyn Fn(f64) -> bool + Sync)| {
        let (conn, host, model) = (&conn, &host, &model);
        async move {
            let start = Instant::now();
            let mut angle = 0.0f32;
            let mut last = 0.0;
            while start.elapsed() < Duration::from_secs(secs) {
                angle += 0.05;
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    conn.set_camera(framing_pose(model, angle)),
                )
                .await;
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.next_frame()).await;
                last = bitrate(&scrape(host).await);
                if done(last) {
                    break;
                }
            }
            last
        }
    };
    let clean = run(2, &|_| false).await;
    assert_eq!(
        clean, 4_000_000.0,
        "no loss: the encoder stays at the ceiling"
    );
    drop.store(150, Ordering::Relaxed);
    let lossy = run(15, &|b| b <= 1_500_000.0).await;
    assert!(
        lossy <= 1_500_000.0,
        "15 % loss should lower the bitrate, at {lossy}"
    );
    drop.store(0, Ordering::Relaxed);
    let recovered = run(25, &|b| b >= 2_000_000.0).await;
    assert!(
        recovered > lossy * 1.25,
        "after the loss stops the bitrate should rise again: {lossy} -> {recovered}"
    );
    eprintln!("bitrate: clean {clean}, under loss {lossy}, recovered {recovered}");
    drop.store(0, Ordering::Relaxed);
    conn.close().await;
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_are_honoured_at_once_and_sdk_statistics_add_up() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    for i in 0..10 {
        conn.set_camera(framing_pose(&model, i as f32 * 0.1))
            .await
            .unwrap();
        conn.next_frame().await.unwrap();
    }
    let stats = conn.take_frame_statistics();
    assert!(stats.frames_received >= 10);
    assert!(
        stats.command_to_frame.p50_ms > 0.0 && stats.command_to_frame.max_ms < 1000.0,
        "{stats:?}"
    );
    assert!(stats.arrival_gap.p50_ms > 5.0 && stats.arrival_gap.p50_ms < 200.0);
    assert!(stats.latency.p50_ms > 0.0);
    // Every keyframe request is answered with an IDR among the next frames: at most the frames
    // already encoded and queued (two) come before it.
    for _ in 0..5 {
        // Let a few P-frames pass so the IDR is not a leftover of the previous request.
        for _ in 0..4 {
            conn.next_frame().await.unwrap();
        }
        conn.request_keyframe().await.unwrap();
        let mut got = None;
        for k in 0..4 {
            if conn.next_frame().await.unwrap().header.keyframe {
                got = Some(k);
                break;
            }
        }
        assert!(got.is_some(), "no keyframe within 4 frames of the request");
    }
    let after = conn.take_frame_statistics();
    assert!(after.frames_received >= 20, "a new window: {after:?}");
    assert_eq!(after.frames_dropped_by_sdk, 0);
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_pacing_skips_an_unchanged_view_but_keeps_the_stream_alive() {
    use std::time::{Duration, Instant};
    let host = TestHost::start_with(|c| c.stream.skip_unchanged_frames = true).await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    let seq = conn.set_camera(framing_pose(&model, 0.4)).await.unwrap();
    while conn.next_frame().await.unwrap().header.last_command_seq < seq {}
    // Static for 2.5 s at 30 fps: instead of ~75 frames only keepalives arrive (about 1 a second).
    let start = Instant::now();
    let mut frames = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        if tokio::time::timeout(Duration::from_millis(300), conn.next_frame())
            .await
            .is_ok()
        {
            frames += 1;
        }
    }
    assert!(
        (1..=6).contains(&frames),
        "{frames} frames of an unchanged view"
    );
    // A change renders at once, and a keyframe request is honoured without a change.
    let seq = conn.set_camera(framing_pose(&model, 0.8)).await.unwrap();
    let f = tokio::time::timeout(Duration::from_millis(500), conn.next_frame())
        .await
        .expect("a change is rendered at once")
        .unwrap();
    assert!(f.header.last_command_seq >= seq);
    conn.request_keyframe().await.unwrap();
    let f = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let f = conn.next_frame().await.unwrap();
            if f.header.keyframe {
                break f;
            }
        }
    })
    .await
    .expect("a keyframe request renders a frame");
    assert!(f.header.keyframe);
    let m = scrape(&host).await;
    assert!(value(&m, "farview_frames_skipped_unchanged_total") > 30.0);
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_slower_than_the_stream_lowers_the_bitrate() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
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
    for i in 0..20 {
        conn.set_camera(framing_pose(&model, i as f32 * 0.05))
            .await
            .unwrap();
        conn.next_frame().await.unwrap();
    }
    assert_eq!(
        value(&scrape(&host).await, "farview_encoder_bitrate_bps"),
        4_000_000.0
    );
    // A 1 Mbit/s link under a 4 Mbit/s stream: the queue grows (RTT up), then overflows (loss).
    rate.store(1_000_000, Ordering::Relaxed);
    let start = Instant::now();
    let mut angle = 1.0f32;
    let mut lowered = None;
    while start.elapsed() < Duration::from_secs(15) {
        angle += 0.05;
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            conn.set_camera(framing_pose(&model, angle)),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_millis(200), conn.next_frame()).await;
        let b = value(&scrape(&host).await, "farview_encoder_bitrate_bps");
        if b <= 2_000_000.0 {
            lowered = Some(b);
            break;
        }
    }
    eprintln!("slow link: bitrate {lowered:?} after {:?}", start.elapsed());
    assert!(
        lowered.is_some(),
        "the bitrate did not drop for a 1 Mbit/s link"
    );
    host.handle.shutdown().await;
}
