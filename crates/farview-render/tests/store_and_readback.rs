//! The GPU model store (submit draws only inserted models, skips and counts the rest, evicts
//! what the scene freed) and readback on a device shared by several streams (issue #9, bug 9).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use farview_render::{
    AdapterChoice, Camera, FrameRenderer, GpuContext, Lighting, RenderError, strip_padding,
};
use farview_scene::{ImportLimits, Model, ModelInfo, Scene};
use glam::Vec3;

fn model(path: &str) -> Model {
    let assets = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets"));
    farview_scene::import_file(assets, path, &ImportLimits::default()).unwrap()
}

fn camera_for(info: &ModelInfo) -> Camera {
    let c = info.bounds.center();
    let r = info.bounds.size().length() * 0.5;
    let d = r / 22.5f32.to_radians().sin() * 1.1;
    Camera::looking_at(
        c + Vec3::new(0.5, 0.4, 1.0).normalize() * d,
        c,
        45f32.to_radians(),
        d * 0.1,
        d * 4.0,
    )
}

fn gpu() -> GpuContext {
    GpuContext::new(AdapterChoice::Auto)
        .expect("an adapter: install mesa-vulkan-drivers on machines without a GPU")
}

/// Submits one frame and waits for it: tightly packed pixels.
fn frame(r: &mut FrameRenderer, scene: &Scene, cam: &Camera, tag: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    r.submit(scene, cam, tag).unwrap();
    let f = r.collect(true, &mut buf).unwrap().unwrap();
    assert_eq!(f.tag, tag);
    strip_padding(&buf, f)
}

fn is_uniform(rgba: &[u8]) -> bool {
    rgba.chunks_exact(4).all(|p| p == &rgba[..4])
}

#[test]
fn submit_draws_only_inserted_models_and_never_uploads() {
    let gpu = gpu();
    let mut scene = Scene::default();
    let info = scene
        .add_model("box", model("BoxTextured/BoxTextured.gltf"))
        .unwrap();
    let cam = camera_for(&info);
    let mut r = FrameRenderer::new(&gpu, 128, 96, Lighting::default()).unwrap();

    // Not inserted: nothing drawn, nothing uploaded, the entity counted as skipped (each frame).
    for tag in 0..2 {
        let empty = frame(&mut r, &scene, &cam, tag);
        assert!(
            is_uniform(&empty),
            "a model that was never inserted was drawn"
        );
        assert_eq!(r.model_count(), 0, "submit uploaded a model");
        let s = r.stats();
        assert_eq!((s.draws, s.triangles), (0, 0));
        assert_eq!(s.skipped_entities, 1, "{s:?}");
    }
    let before = r.held_bytes();

    // Uploaded off the render thread, inserted on it: drawn from the next frame on, and the
    // same picture as the blocking helper's.
    let uploader = r.uploader();
    let scene_model = scene.model(info.model).unwrap().clone();
    let uploaded = std::thread::spawn(move || uploader.upload(&scene_model))
        .join()
        .unwrap()
        .unwrap();
    let bytes = uploaded.gpu_bytes();
    r.insert_model(info.model, uploaded);
    assert!(r.has_model(info.model));
    assert_eq!(r.held_bytes(), before + bytes);
    let drawn = frame(&mut r, &scene, &cam, 2);
    let s = r.stats();
    assert_eq!((s.skipped_entities, s.triangles), (0, 12), "{s:?}");
    assert!(!is_uniform(&drawn));
    let mut reference = FrameRenderer::new(&gpu, 128, 96, Lighting::default()).unwrap();
    assert_eq!(reference.render_blocking(&scene, &cam).unwrap(), drawn);
}

#[test]
fn models_the_scene_frees_are_evicted() {
    let gpu = gpu();
    let mut scene = Scene::default();
    let a = scene
        .add_model("box", model("BoxTextured/BoxTextured.gltf"))
        .unwrap();
    let b = scene.add_model("fox", model("Fox/Fox.glb")).unwrap();
    let cam = camera_for(&a);
    let mut r = FrameRenderer::new(&gpu, 64, 64, Lighting::default()).unwrap();
    assert_eq!(r.upload_missing(&scene).unwrap(), 2);
    assert_eq!(
        r.upload_missing(&scene).unwrap(),
        0,
        "nothing left to upload"
    );
    let with_both = r.held_bytes();

    // Explicit eviction between frames.
    scene.destroy(b.root).unwrap();
    assert!(scene.model(b.model).is_none());
    assert_eq!(r.evict_unused(&scene), 1);
    assert!(!r.has_model(b.model) && r.has_model(a.model));
    assert!(r.held_bytes() < with_both);
    // The old name evicts too, and uploads nothing.
    r.sync_models(&scene).unwrap();
    assert_eq!(r.model_count(), 1);

    // Eviction inside submit.
    scene.destroy(a.root).unwrap();
    frame(&mut r, &scene, &cam, 0);
    assert_eq!(r.model_count(), 0);
    assert_eq!(
        r.stats().skipped_entities,
        0,
        "a freed model has no entities to skip"
    );

    // Explicit eviction of one model; its entities are skipped, not drawn from stale assets.
    let c = scene
        .add_model("box again", model("BoxTextured/BoxTextured.gltf"))
        .unwrap();
    r.upload_missing(&scene).unwrap();
    assert!(r.evict_model(c.model));
    assert!(!r.evict_model(c.model));
    assert!(is_uniform(&frame(&mut r, &scene, &cam, 1)));
    assert_eq!(r.stats().skipped_entities, 1);
}

#[test]
fn a_readback_past_its_timeout_is_transient_and_the_frame_survives() {
    let gpu = gpu();
    let mut scene = Scene::default();
    let info = scene.add_model("fox", model("Fox/Fox.glb")).unwrap();
    let cam = camera_for(&info);
    let mut r = FrameRenderer::new(&gpu, 320, 240, Lighting::default()).unwrap();
    let reference = r.render_blocking(&scene, &cam).unwrap();

    // Nothing polls this device between the submit and the collect, so the map callback cannot
    // have run: with no time to wait, the collect must time out, and say it is worth retrying.
    r.set_readback_timeout(Duration::ZERO);
    let mut buf = Vec::new();
    r.submit(&scene, &cam, 7).unwrap();
    let e = r.collect(true, &mut buf).unwrap_err();
    assert!(
        matches!(e, RenderError::ReadbackTimeout { tag: 7, .. }),
        "{e:?}"
    );
    assert!(e.is_transient(), "{e}");
    assert_eq!(r.in_flight(), 1, "the timed-out frame must stay in flight");

    // Retried with time to wait, the same frame comes back intact.
    r.set_readback_timeout(Duration::from_secs(30));
    let f = r.collect(true, &mut buf).unwrap().unwrap();
    assert_eq!(f.tag, 7);
    assert_eq!(strip_padding(&buf, f), reference);
    assert_eq!(r.in_flight(), 0);

    // A full ring is transient too; device loss and other failures are not.
    assert!(RenderError::RingFull(3).is_transient());
    assert!(!RenderError::DeviceLost("test".into()).is_transient());
    assert!(!RenderError::Readback("test".into()).is_transient());
}

/// Bug 9: several streams share one device; each renders and collects its own frames on its own
/// thread (the host's render threads), while another thread polls the device (as other streams'
/// non-blocking collects do). Any thread's poll or submit can take a stream's map callback and
/// fire it on its own thread, so a stream's `Wait` can return before its callback has run. The
/// renderer used to report that as a fatal "GPU readback failed: readback not mapped after the
/// GPU finished": 3 to 8 of this test's 4,800 readbacks, in each of three runs on llvmpipe
/// (lavapipe fails the same way).
#[test]
fn streams_sharing_a_device_never_lose_a_readback() {
    let choices: Vec<GpuContext> = [AdapterChoice::Gl, AdapterChoice::Vulkan]
        .into_iter()
        .filter_map(|c| GpuContext::new(c).ok())
        .collect();
    let contexts = if choices.is_empty() {
        vec![gpu()]
    } else {
        choices
    };
    let model = model("BoxTextured/BoxTextured.gltf");
    const STREAMS: usize = 6;
    const FRAMES: u64 = 800;
    for gpu in contexts {
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (gpu, stop) = (gpu.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = gpu.device().poll(wgpu::PollType::Poll);
                    std::thread::yield_now();
                }
            })
        };
        let streams: Vec<_> = (0..STREAMS)
            .map(|_| {
                let (gpu, model) = (gpu.clone(), model.clone());
                std::thread::spawn(move || {
                    let mut scene = Scene::default();
                    let info = scene.add_model("box", model).unwrap();
                    let cam =
                        Camera::looking_at(Vec3::new(1.0, 1.0, 2.0), Vec3::ZERO, 0.8, 0.1, 10.0);
                    let mut r = FrameRenderer::new(&gpu, 64, 64, Lighting::default()).unwrap();
                    let uploaded = r.uploader().upload(scene.model(info.model).unwrap());
                    r.insert_model(info.model, uploaded.unwrap());
                    let mut buf = Vec::new();
                    let mut failures = Vec::new();
                    for tag in 0..FRAMES {
                        r.submit(&scene, &cam, tag).unwrap();
                        match r.collect(true, &mut buf) {
                            Ok(Some(f)) if f.tag == tag && f.width == 64 => {}
                            other => {
                                failures.push(format!("frame {tag}: {other:?}"));
                                // Drain, so the next submit has a free buffer.
                                while r.in_flight() > 0 {
                                    let _ = r.collect(true, &mut buf);
                                }
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        let failures: Vec<String> = streams
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        stop.store(true, Ordering::Relaxed);
        poller.join().unwrap();
        assert!(
            failures.is_empty(),
            "{}: {} of {} readbacks failed: {:?}",
            gpu.summary(),
            failures.len(),
            STREAMS as u64 * FRAMES,
            &failures[..failures.len().min(5)]
        );
    }
}

/// The frame's walk over drawables remembers the last model it looked up: with entities of
/// two models interleaved and one of them out of the store, exactly that one's entities are
/// skipped and exactly the other's are drawn, whatever the order.
#[test]
fn entities_of_interleaved_models_are_drawn_or_skipped_by_their_own_model() {
    let gpu = gpu();
    let mut scene = Scene::default();
    let a = scene
        .add_model("box", model("BoxTextured/BoxTextured.gltf"))
        .unwrap();
    let b = scene
        .add_model("other box", model("BoxTextured/BoxTextured.gltf"))
        .unwrap();
    // A, B, A, B, A.
    for i in 0..3 {
        scene.instantiate(&format!("box {i}"), a.model).unwrap();
        if i < 2 {
            scene
                .instantiate(&format!("other box {i}"), b.model)
                .unwrap();
        }
    }
    let cam = camera_for(&a);
    let mut r = FrameRenderer::new(&gpu, 64, 64, Lighting::default()).unwrap();
    r.set_frustum_culling(false);
    r.set_occlusion_culling(false);
    r.upload_missing(&scene).unwrap();
    frame(&mut r, &scene, &cam, 0);
    let both = r.stats();
    assert_eq!(both.skipped_entities, 0, "{both:?}");
    assert_eq!(both.instances, 7, "{both:?}");

    assert!(r.evict_model(b.model));
    frame(&mut r, &scene, &cam, 1);
    let s = r.stats();
    assert_eq!(s.skipped_entities, 3, "B's three entities: {s:?}");
    assert_eq!(s.instances, 4, "A's four entities: {s:?}");
    assert_eq!(s.triangles, 4 * 12, "{s:?}");
}
