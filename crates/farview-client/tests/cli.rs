//! The `farview` CLI against a real host in-process: session create/show/list/extend/stop print
//! JSON, `stream --session` connects through the API and writes a stream ffprobe can count, and a
//! failed `stream` run gives its device slot back at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use farview_host::{Config, HostOptions, StreamConfig};

const KEY: &str = "cli-test-key";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

async fn farview(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_farview"))
            .args(&args)
            .env_remove("FARVIEW_API")
            .env_remove("FARVIEW_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Runs the CLI with the API flags; returns the parsed JSON on success.
async fn api_json(api: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "--api".to_owned(),
        api.to_owned(),
        "--api-key".into(),
        KEY.into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = farview(all).await;
    assert!(
        out.status.success(),
        "farview {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "farview {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_session_commands_and_stream_through_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        // Machines without a GPU (CI) render on the software rasterizer.
        allow_software_adapter: true,
        data_dir: dir.path().join("data"),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: repo_root().join("assets"),
        stream: StreamConfig::default(),
        ..Config::default()
    };
    config.sessions.api_keys = vec![KEY.into()];
    config.sessions.allow_sessionless = false;
    let standard = config.sessions.sizes.get_mut("standard").unwrap();
    standard.width = 320;
    standard.height = 240;
    standard.fps = 30.0;
    let host = farview_host::start(config, HostOptions::default())
        .await
        .expect("host starts");
    let api = format!("http://{}", host.http_addr);

    // Without API flags the session commands say what they need, as a usage error (2).
    let out = farview(vec!["session".into(), "list".into()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api"));

    // Health needs no key, and neither does the API's description.
    let out = farview(vec!["--api".into(), api.clone(), "health".into()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["status"], "ok");
    let openapi = reqwest_get(host.http_addr, "/v1/openapi.json").await;
    assert!(openapi.starts_with("HTTP/1.1 200"), "{openapi}");

    let created = api_json(
        &api,
        &[
            "session", "create", "--lease", "0:10:0", "--size", "standard",
        ],
    )
    .await;
    let id = created["id"]
        .as_str()
        .expect("create prints the id")
        .to_owned();
    assert_eq!(created["maxLeaseTime"], "0:10:0");
    assert_eq!(created["size"], "standard");

    let shown = api_json(&api, &["session", "show", &id]).await;
    assert_eq!(shown["id"], id.as_str());
    let listed = api_json(&api, &["session", "list"]).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "list includes the new session: {listed}"
    );

    // Stream through the session: address, fingerprint and token come from the API. The first
    // device binds the session and is shown the secret that takes it back.
    let h264 = dir.path().join("session.h264");
    let with_api = |args: &[&str]| -> Vec<String> {
        ["--api", api.as_str(), "--api-key", KEY]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let out = farview(with_api(&[
        "stream",
        "--session",
        &id,
        "--model",
        "BoxTextured/BoxTextured.gltf",
        "--frames",
        "12",
        "--out",
        h264.to_str().unwrap(),
        "--json",
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stream: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stream["frames"], 12);
    assert_eq!(stream["complete"], true);
    let secret = stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume secret: "))
        .unwrap_or_else(|| panic!("the CLI shows the resume secret: {stderr}"))
        .trim()
        .to_owned();
    let probe = ffprobe_stream(&h264);
    assert_eq!(
        (&probe["width"], &probe["height"], &probe["nb_read_frames"]),
        (
            &serde_json::json!(320),
            &serde_json::json!(240),
            &serde_json::json!("12")
        ),
        "ffprobe: {probe}"
    );

    let shown = api_json(&api, &["session", "show", &id]).await;
    assert!(shown["counters"]["framesSent"].as_u64().unwrap() >= 12);
    assert_eq!(shown["counters"]["modelsLoaded"], 1);

    // A second run without the secret is refused (exit 3) and told what to pass.
    let again = [
        "stream",
        "--session",
        &id,
        "--model",
        "BoxTextured/BoxTextured.gltf",
        "--frames",
        "3",
    ];
    let out = farview(with_api(&again)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("session_resume_required") && stderr.contains("--resume-secret"),
        "{stderr}"
    );
    // With it: the list of models, then a run written as MP4 and PNG snapshots.
    let out = farview(with_api(&[
        "models",
        "--session",
        &id,
        "--resume-secret",
        &secret,
    ]))
    .await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listed.contains("BoxTextured/BoxTextured.gltf"), "{listed}");
    let mp4 = dir.path().join("session.mp4");
    let pngs = dir.path().join("pngs");
    let out = farview(with_api(&[
        "stream",
        "--session",
        &id,
        "--resume-secret",
        &secret,
        "--model",
        "BoxTextured/BoxTextured.gltf",
        "--frames",
        "20",
        "--mp4",
        mp4.to_str().unwrap(),
        "--png",
        pngs.to_str().unwrap(),
        "--every",
        "8",
        "--yaw",
        "45",
        "--pitch",
        "20",
        "--distance",
        "4",
        "--json",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resumed["mp4_frames"], 20);
    assert_eq!(resumed["png_snapshots"], 3, "frames 0, 8 and 16");
    check_mp4(&mp4, 20, resumed["media_duration_s"].as_f64().unwrap());
    let snapshot = image::open(pngs.join("frame-000008.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(snapshot.dimensions(), (320, 240));
    let centre = snapshot.get_pixel(160, 120).0;
    let corner = snapshot.get_pixel(2, 2).0;
    assert!(
        centre.iter().zip(corner).any(|(a, b)| a.abs_diff(b) > 40),
        "the box is in the middle of the snapshot: centre {centre:?}, corner {corner:?}"
    );

    let extended = api_json(&api, &["session", "extend", &id, "--lease", "0:20:0"]).await;
    assert_eq!(extended["maxLeaseTime"], "0:20:0");

    let stopped = api_json(&api, &["session", "stop", &id]).await;
    assert_eq!(stopped["status"], "stopped");
    // Stopping twice is fine.
    api_json(&api, &["session", "stop", &id]).await;
    let all = api_json(&api, &["session", "list", "--all"]).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["status"] == "stopped")
    );

    // Errors: the API's status and code reach stderr with a failing exit status.
    let out = farview(vec![
        "--api".into(),
        api.clone(),
        "--api-key".into(),
        KEY.into(),
        "session".into(),
        "extend".into(),
        id.clone(),
        "--lease".into(),
        "0:30:0".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(3), "a refusal by the API");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("409"), "stderr: {err}");
    let out = farview(vec![
        "--api".into(),
        api.clone(),
        "--api-key".into(),
        "wrong".into(),
        "session".into(),
        "list".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    let out = farview(vec![
        "--api".into(),
        api.clone(),
        "--api-key".into(),
        KEY.into(),
        "stream".into(),
        "--session".into(),
        id.clone(),
        "--model".into(),
        "BoxTextured/BoxTextured.gltf".into(),
        "--out".into(),
        dir.path().join("x.h264").to_str().unwrap().into(),
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "a stopped session cannot stream"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));

    // A lease that ends mid-run: the CLI says what it received, leaves a playable MP4 and exits
    // 3 (ended by the host), not 2 (usage).
    let short = api_json(&api, &["session", "create", "--lease", "0:0:6", "--wait"]).await;
    let short_id = short["id"].as_str().unwrap().to_owned();
    let mp4 = dir.path().join("lease.mp4");
    let out = farview(with_api(&[
        "stream",
        "--session",
        &short_id,
        "--model",
        "BoxTextured/BoxTextured.gltf",
        "--frames",
        "100000",
        "--mp4",
        mp4.to_str().unwrap(),
        "--json",
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("a summary after the lease ended ({e}): {stderr}"));
    assert_eq!(summary["complete"], false);
    let frames = summary["frames"].as_u64().unwrap();
    assert!(frames > 0, "{summary}");
    assert!(
        summary["stopped"].as_str().unwrap().contains("lease"),
        "{summary}"
    );
    assert_eq!(summary["mp4_frames"], frames);
    check_mp4(&mp4, frames, summary["media_duration_s"].as_f64().unwrap());

    host.shutdown().await;
}

/// ffprobe decodes every frame of the MP4, and its duration is the host's frame clock (not
/// ffmpeg's 25 fps guess for a raw stream).
fn check_mp4(path: &Path, frames: u64, media_duration_s: f64) {
    let s = &ffprobe_stream(path);
    assert_eq!(s["nb_read_frames"], frames.to_string(), "{s}");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240))
    );
    let duration: f64 = s["duration"].as_str().unwrap().parse().unwrap();
    // The last frame lasts as long as the one before it; the summary assumes 1/fps for it.
    assert!(
        (duration - media_duration_s).abs() < 0.25,
        "MP4 lasts {duration} s, the host's frames span {media_duration_s} s"
    );
    if frames > 1 {
        let at_25_fps = frames as f64 / 25.0;
        assert!(
            (duration - at_25_fps).abs() > 0.1 || (media_duration_s - at_25_fps).abs() < 0.1,
            "the MP4's timing is the host's, not 25 fps"
        );
    }
}

/// What ffprobe says of a file's video stream, having decoded every frame.
fn ffprobe_stream(path: &Path) -> serde_json::Value {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,width,height,duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (apt install ffmpeg)");
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe {}: {e} {}",
            path.display(),
            String::from_utf8_lossy(&probe.stderr)
        )
    });
    json["streams"][0].clone()
}

/// A raw GET, so the test needs no HTTP client of its own.
async fn reqwest_get(http: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The device connections the host counts, from `GET /healthz`.
async fn host_connections(http: SocketAddr) -> u64 {
    let body: serde_json::Value = reqwest::get(format!("http://{http}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["connections"]
        .as_u64()
        .expect("healthz reports connections")
}

/// Polls `/healthz` until the host counts `want` connections; fails after `within`.
async fn wait_for_connections(http: SocketAddr, want: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let n = host_connections(http).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the host still counts {n} device connections after {within:?} (want {want})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue #9, bug 1: a failed run used to exit without closing its connection, so the host held
/// the device's slot until its idle timeout (30 s then) and four mistyped model names locked every
/// device out ("host is at capacity (4 devices)").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_stream_runs_close_their_connection_so_the_host_never_fills_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        // Machines without a GPU (CI) render on the software rasterizer.
        allow_software_adapter: true,
        data_dir: dir.path().join("data"),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: repo_root().join("assets"),
        max_connections: 4,
        // Longer than every bound below, so only a close can free a slot in time.
        quic_idle_timeout_ms: 60_000,
        stream: StreamConfig {
            width: 320,
            height: 240,
            fps: 30.0,
            ..StreamConfig::default()
        },
        ..Config::default()
    };
    // Streams here name no session.
    config.sessions.allow_sessionless = true;
    let host = farview_host::start(config, HostOptions::default())
        .await
        .expect("host starts");
    let (quic, http) = (host.quic_addr, host.http_addr);
    let stream = |model: &str, out: &Path| -> Vec<String> {
        [
            "stream",
            "--addr",
            &quic.to_string(),
            "--fingerprint",
            &host.fingerprint,
            "--model",
            model,
            "--frames",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // More failed runs than the host has slots: each one must fail for its own reason, never
    // because an earlier run still holds a slot.
    for run in 1..=5 {
        let out = farview(stream(
            "BoxTextured/BoxTexturd.gltf",
            &dir.path().join("typo.h264"),
        ))
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "run {run}: {stderr}");
        assert!(
            stderr.contains("model_not_found"),
            "run {run} should fail with model_not_found: {stderr}"
        );
    }
    // The slots are free again well before the host's idle timeout (60 s here).
    wait_for_connections(http, 0, Duration::from_secs(30)).await;

    // A wrong fingerprint names both: the one given and the one the host has (exit 4).
    let mut wrong = stream("BoxTextured/BoxTextured.gltf", &dir.path().join("w.h264"));
    let at = wrong.iter().position(|a| a == "--fingerprint").unwrap() + 1;
    wrong[at] = "ab".repeat(32);
    let out = farview(wrong).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("fingerprint mismatch")
            && stderr.contains(&"ab".repeat(32))
            && stderr.contains(&host.fingerprint),
        "{stderr}"
    );
    // The models a host offers, without a session on a host that allows that.
    let out = farview(
        [
            "models",
            "--addr",
            &quic.to_string(),
            "--fingerprint",
            &host.fingerprint,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Fox/Fox.glb"));
    wait_for_connections(http, 0, Duration::from_secs(30)).await;

    let h264 = dir.path().join("good.h264");
    let started = Instant::now();
    let out = farview(stream("BoxTextured/BoxTextured.gltf", &h264)).await;
    assert!(
        out.status.success(),
        "a valid run after five failed ones: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["frames"], 3);
    eprintln!(
        "valid run after the failed ones took {:?}",
        started.elapsed()
    );
    // A successful run closes too.
    wait_for_connections(http, 0, Duration::from_secs(30)).await;
    host.shutdown().await;
}

/// The first frame of a raw H.264 file as RGBA (ffmpeg, told the stream is BT.709 limited range).
fn first_frame_rgba(path: &Path, width: u32, height: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=in_color_matrix=bt709:in_range=tv:out_range=pc,format=rgba",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg (apt install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), (width * height * 4) as usize);
    out.stdout
}

/// `stream` sets the look its flags ask for before loading, and the host frames the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flags_set_the_look_and_the_host_frames_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (320u32, 240u32);
    let mut config = Config {
        // Machines without a GPU (CI) render on the software rasterizer.
        allow_software_adapter: true,
        data_dir: dir.path().join("data"),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: repo_root().join("assets"),
        stream: StreamConfig {
            width: w,
            height: h,
            fps: 30.0,
            ..StreamConfig::default()
        },
        ..Config::default()
    };
    // Streams here name no session.
    config.sessions.allow_sessionless = true;
    let host = farview_host::start(config, HostOptions::default())
        .await
        .expect("host starts");
    let run = |out: &Path, look: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "stream",
            "--addr",
            &host.quic_addr.to_string(),
            "--fingerprint",
            &host.fingerprint,
            "--model",
            "BoxTextured/BoxTextured.gltf",
            "--frames",
            "3",
            "--orbits",
            "0",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(look.iter().map(|s| s.to_string()));
        args
    };

    // A red background, no tone mapping, exposure 2: the corners are red, and the model (framed
    // by the host) sits in the middle of the picture.
    let h264 = dir.path().join("red.h264");
    let out = farview(run(
        &h264,
        &[
            "--environment",
            "neutral_sky",
            "--background",
            "1,0,0",
            "--tone-mapping",
            "none",
            "--exposure",
            "2",
        ],
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rgba = first_frame_rgba(&h264, w, h);
    let px = |x: u32, y: u32| {
        let i = ((y * w + x) * 4) as usize;
        [rgba[i], rgba[i + 1], rgba[i + 2]]
    };
    for (x, y) in [(4, 4), (w - 5, 4), (4, h - 5), (w - 5, h - 5)] {
        let [r, g, b] = px(x, y);
        assert!(
            r > 240 && g < 15 && b < 15,
            "corner ({x}, {y}) is {r},{g},{b}"
        );
    }
    let [r, g, b] = px(w / 2, h / 2);
    assert!(
        !(r > 200 && g < 40 && b < 40),
        "the centre shows the model, not the background: {r},{g},{b}"
    );

    // Drawing the environment replaces the background colour.
    let sky = dir.path().join("sky.h264");
    let out = farview(run(&sky, &["--show-environment", "--background", "1,0,0"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rgba = first_frame_rgba(&sky, w, h);
    let [r, g, b] = [rgba[16], rgba[17], rgba[18]];
    assert!(
        g > 40 && b > 40,
        "the sky shows behind the model: {r},{g},{b}"
    );

    // An environment the host does not have: its code on stderr, a failing exit status.
    let out = farview(run(&dir.path().join("x.h264"), &["--environment", "nope"])).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("environment_not_found"), "stderr: {err}");
    let out = farview(run(
        &dir.path().join("x.h264"),
        &["--tone-mapping", "sepia"],
    ))
    .await;
    assert!(!out.status.success(), "an unknown tone mapping is refused");

    // A model's animations are listed, and one plays by name; an unknown one is refused with
    // the list.
    let fox = |animation: &str| -> Vec<String> {
        let out = dir.path().join("fox.h264");
        let args = [
            "stream",
            "--addr",
            &host.quic_addr.to_string(),
            "--fingerprint",
            &host.fingerprint,
            "--model",
            "Fox/Fox.glb",
            "--frames",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--animation",
            animation,
        ];
        args.iter().map(|s| s.to_string()).collect()
    };
    let out = farview(fox("walk")).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("animations: Survey, Walk, Run"),
        "stderr: {err}"
    );
    let out = farview(fox("Dance")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no animation \"Dance\" (it has: Survey, Walk, Run)"),
        "stderr: {err}"
    );
    host.shutdown().await;
}
