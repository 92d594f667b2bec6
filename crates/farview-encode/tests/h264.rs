//! openh264 output checked by ffmpeg (Debian's), a decoder nobody here wrote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;

use farview_encode::{
    EncoderSettings, I420Frame, OpenH264Encoder, VideoEncoder, nal_types, rgba_to_i420,
};

const W: u32 = 320;
const H: u32 = 240;

/// A moving pattern with detail, so P-frames carry real residuals.
fn pattern(t: u32, noise: bool) -> Vec<u8> {
    let mut seed = 0x1234_5678u32.wrapping_add(t);
    (0..W * H)
        .flat_map(|i| {
            let (x, y) = (i % W, i / W);
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = if noise { (seed >> 24) as u8 / 2 } else { 0 };
            [
                ((x + t * 3) % 256) as u8 ^ n,
                ((y * 2 + t) % 256) as u8,
                (((x ^ y) + t) % 256) as u8,
                255,
            ]
        })
        .collect()
}

fn i420(t: u32, noise: bool) -> I420Frame {
    let mut f = I420Frame::new(W, H).unwrap();
    rgba_to_i420(&pattern(t, noise), W as usize * 4, &mut f).unwrap();
    f
}

fn settings() -> EncoderSettings {
    EncoderSettings {
        width: W,
        height: H,
        bitrate_bps: 4_000_000,
        max_fps: 30.0,
        ..Default::default()
    }
}

/// Decodes a raw H.264 file with ffmpeg to packed I420, failing on any decoder complaint.
fn ffmpeg_decode_i420(path: &std::path::Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn have_ffmpeg() -> bool {
    let ok = |t: &str| {
        Command::new(t)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok("ffmpeg") && ok("ffprobe")
}

#[test]
fn keyframes_exactly_where_asked_and_ffmpeg_decodes_every_frame() {
    let mut enc = OpenH264Encoder::new(settings()).unwrap();
    let mut stream = Vec::new();
    let mut kinds = Vec::new();
    for t in 0..30 {
        let f = enc.encode(&i420(t, false), t == 17).unwrap();
        assert!(!f.data.is_empty());
        assert_eq!(f.data[..4], [0, 0, 0, 1], "Annex-B start code");
        kinds.push(f.keyframe);
        stream.extend_from_slice(&f.data);
    }
    let keyframes: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, vec![0, 17], "IDR at start and on request only");
    assert!(nal_types(&stream).any(|t| t == 7), "SPS present");

    if !have_ffmpeg() {
        eprintln!("skipping ffmpeg check: ffmpeg not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.h264");
    std::fs::write(&path, &stream).unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height,color_space,color_range,profile",
            "-of",
            "default=nw=1",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(text.contains("nb_read_frames=30"), "{text}");
    assert!(
        text.contains("width=320") && text.contains("height=240"),
        "{text}"
    );
    assert!(
        text.contains("color_space=bt709") && text.contains("color_range=tv"),
        "VUI colour description: {text}"
    );
    assert!(
        !text.contains("profile=High") && !text.contains("profile=Main"),
        "baseline profile expected: {text}"
    );

    let decoded = ffmpeg_decode_i420(&path);
    let frame_len = (W * H * 3 / 2) as usize;
    assert_eq!(decoded.len(), frame_len * 30);
    // Frame 0's luma against what we fed in.
    let input = i420(0, false);
    let y_len = (W * H) as usize;
    let sse: f64 = input
        .y()
        .iter()
        .zip(&decoded[..y_len])
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum();
    let psnr = 10.0 * (255.0f64.powi(2) / (sse / y_len as f64)).log10();
    assert!(psnr > 35.0, "decoded luma PSNR {psnr:.1} dB");
}

#[test]
fn periodic_intra_frames() {
    let mut enc = OpenH264Encoder::new(EncoderSettings {
        keyframe_interval: Some(10),
        ..settings()
    })
    .unwrap();
    let keyframes: Vec<u32> = (0..30)
        .filter(|&t| enc.encode(&i420(t, false), false).unwrap().keyframe)
        .collect();
    assert_eq!(keyframes, vec![0, 10, 20]);
}

#[test]
fn bitrate_changes_on_the_running_encoder_without_an_idr() {
    let mut enc = OpenH264Encoder::new(EncoderSettings {
        bitrate_bps: 6_000_000,
        ..settings()
    })
    .unwrap();
    // Average size of frames 10..40 after `from` (skipping rate-control settling), and whether
    // the first was an IDR. (On this noise openh264's scene-change detection inserts IDRs of
    // its own every 17 frames; a recreated encoder would start with one at once.)
    let run = |enc: &mut OpenH264Encoder, from: u32| {
        let frames: Vec<_> = (from..from + 40)
            .map(|t| enc.encode(&i420(t, true), false).unwrap())
            .collect();
        let avg = frames[10..].iter().map(|f| f.data.len()).sum::<usize>() as f64 / 30.0;
        (avg, frames[0].keyframe)
    };
    let (high, _) = run(&mut enc, 0);
    enc.set_bitrate(500_000).unwrap();
    assert_eq!(enc.settings().bitrate_bps, 500_000);
    let (low, idr) = run(&mut enc, 40);
    assert!(!idr, "a bitrate cut costs no IDR");
    assert!(
        low < high * 0.5,
        "bitrate cut did not shrink frames: {high:.0} → {low:.0} bytes"
    );
    enc.set_bitrate(6_000_000).unwrap();
    let (again, idr) = run(&mut enc, 80);
    assert!(!idr, "nor does raising it");
    assert!(
        again > low * 2.0,
        "bitrate rise did not grow frames: {low:.0} → {again:.0} bytes"
    );
    // Before the first frame openh264 takes no options: the encoder is recreated then, which
    // is free, and its first frame is the stream's IDR as always.
    let mut fresh = OpenH264Encoder::new(settings()).unwrap();
    fresh.set_bitrate(1_000_000).unwrap();
    assert_eq!(fresh.settings().bitrate_bps, 1_000_000);
    assert!(fresh.encode(&i420(0, true), false).unwrap().keyframe);
}

#[test]
fn wrong_sizes_are_errors() {
    let mut enc = OpenH264Encoder::new(settings()).unwrap();
    let other = I420Frame::new(W + 2, H).unwrap();
    assert!(enc.encode(&other, false).is_err());
    assert!(
        OpenH264Encoder::new(EncoderSettings {
            width: 321,
            ..settings()
        })
        .is_err()
    );
    assert!(
        OpenH264Encoder::new(EncoderSettings {
            max_fps: 0.0,
            ..settings()
        })
        .is_err()
    );
}

#[test]
fn sliced_multithreaded_output_has_several_slices_and_decodes() {
    let mut enc = OpenH264Encoder::new(EncoderSettings {
        threads: 2,
        max_slice_bytes: Some(1500),
        ..settings()
    })
    .unwrap();
    let mut stream = Vec::new();
    let mut slices_per_frame = Vec::new();
    for t in 0..10 {
        let f = enc.encode(&i420(t, true), false).unwrap();
        slices_per_frame.push(nal_types(&f.data).filter(|t| *t == 1 || *t == 5).count());
        stream.extend_from_slice(&f.data);
    }
    assert!(
        slices_per_frame.iter().all(|&n| n > 1),
        "several slices per picture: {slices_per_frame:?}"
    );
    assert!(have_ffmpeg(), "ffmpeg is needed (apt install ffmpeg)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sliced.h264");
    std::fs::write(&path, &stream).unwrap();
    assert_eq!(
        ffmpeg_decode_i420(&path).len(),
        (W * H * 3 / 2) as usize * 10
    );
}

#[test]
fn flush_behind_the_trait_holds_nothing_back_and_the_stream_goes_on() {
    // The host drives encoders as `Box<dyn VideoEncoder>`; openh264 is zero-latency, so every
    // picture came out of `encode` and `flush` has nothing left. Encoding after a flush still
    // works (the host flushes before a reconfiguration, not only at the end).
    let mut enc: Box<dyn VideoEncoder> = Box::new(OpenH264Encoder::new(settings()).unwrap());
    let first = enc.encode(&i420(0, false), false).unwrap();
    assert!(first.keyframe && !first.data.is_empty());
    for t in 1..5 {
        assert!(!enc.encode(&i420(t, false), false).unwrap().data.is_empty());
    }
    assert!(enc.flush().unwrap().is_empty());
    let after = enc.encode(&i420(5, false), true).unwrap();
    assert!(
        after.keyframe,
        "a forced keyframe after a flush must be an IDR"
    );
    assert_eq!(enc.name(), "openh264");
}
