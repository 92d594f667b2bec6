//! No ghosts: the demo's content (the fox walking while the camera turns, on the renderer's
//! flat background) rendered for real, encoded at the host's default bitrate, decoded by
//! ffmpeg, and *every* frame checked against what was rendered: no stray pixels on the
//! background away from the model, and a Y-PSNR floor per frame. A mean over the clip would
//! hide a trail of specks: the background is most of the picture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Command;

use farview_encode::{
    EncoderSettings, I420Frame, OpenH264Encoder, VideoEncoder, background_residue, i420_to_rgba,
    psnr_plane, rgba_to_i420,
};
use farview_render::{AdapterChoice, Camera, FrameRenderer, GpuContext, Lighting};
use farview_scene::{ImportLimits, Scene};
use glam::{Quat, Vec3};

const W: u32 = 1280;
const H: u32 = 720;
const FRAMES: usize = 90;

#[test]
fn a_walking_model_leaves_no_residue_on_the_background() {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "ffmpeg is needed (apt install ffmpeg)");
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let model =
        farview_scene::import_file(&assets, "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    let info = scene.add_model("Fox/Fox.glb", model).unwrap();
    let walk = scene
        .animations(info.root)
        .unwrap()
        .iter()
        .position(|a| a.name == "Walk")
        .expect("Fox has a Walk animation");
    let gpu = GpuContext::new(AdapterChoice::Auto)
        .expect("an adapter: install mesa-vulkan-drivers on machines without a GPU");
    let mut renderer = FrameRenderer::new(&gpu, W, H, Lighting::default()).unwrap();
    // Framed whole, from the front and a little above; the camera turns a third of the way
    // round while the fox walks on the spot: its legs sweep over background every frame.
    let c = info.bounds.center();
    let r = info.bounds.size().length() * 0.5;
    let fov = 45f32.to_radians();
    let d = r / (fov * 0.5).sin() * 1.1;
    let eye = c + Vec3::new(0.3, 0.3, 1.0).normalize() * d;

    // Host defaults: 8 Mbit/s at 60 fps.
    let mut enc = OpenH264Encoder::new(EncoderSettings {
        width: W,
        height: H,
        ..EncoderSettings::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("walk.h264");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut rendered = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        scene.pose_at(info.root, walk, i as f32 / 60.0).unwrap();
        let turn = Quat::from_rotation_y(i as f32 / FRAMES as f32 * 2.1);
        let cam = Camera::looking_at(c + turn * (eye - c), c, fov, (d - r) * 0.5, (d + r) * 2.0);
        let rgba = renderer.render_blocking(&scene, &cam).unwrap();
        let mut f = I420Frame::new(W, H).unwrap();
        rgba_to_i420(&rgba, W as usize * 4, &mut f).unwrap();
        file.write_all(&enc.encode(&f, i == 0).unwrap().data)
            .unwrap();
        rendered.push((rgba, f));
    }
    drop(file);

    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = (W * H * 3 / 2) as usize;
    assert_eq!(
        out.stdout.len(),
        size * FRAMES,
        "ffmpeg decoded every frame"
    );
    let mut total = 0;
    for (i, ((rgba, source), bytes)) in rendered
        .iter()
        .zip(out.stdout.chunks_exact(size))
        .enumerate()
    {
        let mut decoded = I420Frame::new(W, H).unwrap();
        decoded.copy_from_packed(bytes).unwrap();
        let psnr = psnr_plane(source.y(), decoded.y());
        let residue =
            background_residue(&i420_to_rgba(&decoded), rgba, W as usize, H as usize, 12, 4)
                .unwrap();
        assert!(
            residue.background > (W * H / 2) as usize,
            "frame {i}: the background check covered only {} pixels",
            residue.background
        );
        assert!(
            residue.stray <= 8,
            "frame {i}: {} background pixels more than 12 levels off (worst {}): residue",
            residue.stray,
            residue.worst
        );
        assert!(psnr >= 45.0, "frame {i}: Y-PSNR {psnr:.2} dB < 45");
        total += residue.stray;
    }
    eprintln!("stray background pixels over {FRAMES} frames: {total}");
    assert!(
        total <= 20,
        "{total} stray background pixels over {FRAMES} frames"
    );
}
