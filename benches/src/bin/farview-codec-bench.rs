//! `farview-codec-bench`: our encoder stage against Debian's ffmpeg + libx264
//! (`-preset ultrafast -tune zerolatency`) on the same rendered frames, at the same bitrate, in
//! the same run: ms per frame and PSNR (Y, against the I420 both encoders were given).
//!
//! ```text
//! cargo run --release -p farview-benches --bin farview-codec-bench -- --frames 120 --bitrate 4000000
//! ```
//! x264's time is ffmpeg's `-benchmark` real time divided by the frame count: it includes reading
//! the raw frames from a file in the page cache, which is small next to encoding.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use farview_encode::{EncoderSettings, I420Frame, OpenH264Encoder, VideoEncoder, rgba_to_i420};
use farview_render::{AdapterChoice, FrameRenderer, GpuContext, Lighting};

#[derive(Debug, Parser)]
struct Args {
    /// Frames (an orbit of the model).
    #[arg(long, default_value_t = 120)]
    frames: usize,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Target bitrate for both encoders.
    #[arg(long, default_value_t = 4_000_000)]
    bitrate: u32,
    #[arg(long, default_value_t = 60.0)]
    fps: f32,
    /// Model under assets/.
    #[arg(long, default_value = "Fox/Fox.glb")]
    model: String,
}

fn psnr_y(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Decodes an H.264 file with ffmpeg to I420 frames.
fn decode(path: &Path, w: u32, h: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ffmpeg decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = (w * h * 3 / 2) as usize;
    Ok(out.stdout.chunks(n).map(<[u8]>::to_vec).collect())
}

fn mean_psnr(source: &[I420Frame], decoded: &[Vec<u8>]) -> f64 {
    let n = source.len().min(decoded.len());
    source
        .iter()
        .zip(decoded)
        .map(|(s, d)| psnr_y(s.y(), &d[..s.y().len().min(d.len())]))
        .sum::<f64>()
        / n.max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (w, h) = (args.width, args.height);
    let gpu = GpuContext::new(AdapterChoice::Auto)?;
    let (scene, info) = farview_benches::scene_with(&args.model)?;
    let mut renderer = FrameRenderer::new(&gpu, w, h, Lighting::default())?;
    let mut frames = Vec::with_capacity(args.frames);
    let base = farview_benches::framing_camera(&info);
    for i in 0..args.frames {
        let angle = i as f32 / args.frames as f32 * std::f32::consts::TAU;
        let mut cam = base;
        let c = info.bounds.center();
        let off = cam.position - c;
        let rot = glam::Quat::from_rotation_y(angle);
        cam.position = c + rot * off;
        cam.rotation = rot * cam.rotation;
        let rgba = renderer.render_blocking(&scene, &cam)?;
        let mut f = I420Frame::new(w, h)?;
        rgba_to_i420(&rgba, w as usize * 4, &mut f)?;
        frames.push(f);
    }
    let dir = tempfile::tempdir()?;

    // Ours.
    let mut enc = OpenH264Encoder::new(EncoderSettings {
        width: w,
        height: h,
        bitrate_bps: args.bitrate,
        max_fps: args.fps,
        keyframe_interval: None,
        threads: 1,
        max_slice_bytes: None,
    })?;
    let ours = dir.path().join("openh264.h264");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&ours)?);
    let mut times = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        let t = Instant::now();
        let e = enc.encode(f, i == 0)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        out.write_all(&e.data)?;
    }
    out.flush()?;
    drop(out);
    times.sort_by(f64::total_cmp);
    let ours_ms = times[times.len() / 2];
    let ours_mean = times.iter().sum::<f64>() / times.len() as f64;

    // x264 through ffmpeg, single- and multi-threaded.
    let raw = dir.path().join("in.yuv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&raw)?);
        for fr in &frames {
            f.write_all(fr.as_bytes())?;
        }
    }
    let mut x264 = Vec::new();
    for threads in ["1", "0"] {
        let path = dir.path().join(format!("x264-{threads}.h264"));
        let b = args.bitrate.to_string();
        let out = Command::new("ffmpeg")
            // `-benchmark` reports at info level; -nostats keeps the progress line out.
            .args([
                "-y",
                "-hide_banner",
                "-nostats",
                "-loglevel",
                "info",
                "-benchmark",
            ])
            .args(["-f", "rawvideo", "-pix_fmt", "yuv420p"])
            .args(["-s", &format!("{w}x{h}"), "-r", &args.fps.to_string(), "-i"])
            .arg(&raw)
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-b:v", &b, "-maxrate", &b, "-bufsize", &b, "-threads", threads,
            ])
            .args(["-f", "h264"])
            .arg(&path)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "ffmpeg libx264: {} (is Debian's ffmpeg installed?)",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let rtime = text
            .split("rtime=")
            .nth(1)
            .and_then(|r| r.trim_start().split('s').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        x264.push((threads, path, rtime * 1000.0 / frames.len() as f64));
    }

    let kbps = |p: &Path| -> anyhow::Result<f64> {
        Ok(
            std::fs::metadata(p)?.len() as f64 * 8.0 * f64::from(args.fps)
                / frames.len() as f64
                / 1000.0,
        )
    };
    println!(
        "farview-codec-bench: {} frames of {} at {w}x{h}, target {} kbit/s at {} fps, rendered on {}",
        frames.len(),
        args.model,
        args.bitrate / 1000,
        args.fps,
        gpu.summary()
    );
    println!("| encoder | ms/frame | actual kbit/s | Y-PSNR dB |");
    println!("|---|---:|---:|---:|");
    println!(
        "| openh264 (our stage, 1 thread) | {ours_ms:.2} median, {ours_mean:.2} mean | {:.0} | {:.2} |",
        kbps(&ours)?,
        mean_psnr(&frames, &decode(&ours, w, h)?)
    );
    for (threads, path, ms) in &x264 {
        let label = if *threads == "1" {
            "1 thread"
        } else {
            "auto threads"
        };
        println!(
            "| x264 ultrafast zerolatency ({label}) | {ms:.2} mean | {:.0} | {:.2} |",
            kbps(path)?,
            mean_psnr(&frames, &decode(path, w, h)?)
        );
    }
    Ok(())
}
