//! Renders on the machine's real adapter (Mesa's software rasterizer in CI) and checks pixels.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use farview_render::{
    AdapterChoice, Camera, FrameRenderer, GpuContext, Lighting, RenderQuality, strip_padding,
};
use farview_scene::{ImportLimits, ModelInfo, Scene};
use glam::Vec3;

fn assets() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets"))
}

fn scene(path: &str) -> (Scene, ModelInfo) {
    let model = farview_scene::import_file(assets(), path, &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    let info = scene.add_model(path, model).unwrap();
    (scene, info)
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

fn background_u8() -> [u8; 3] {
    // Lighting::default().background is linear; the target stores sRGB.
    Lighting::default().background.to_array().map(|c| {
        let s = if c <= 0.003_130_8 {
            c * 12.92
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        (s * 255.0).round() as u8
    })
}

fn coverage(rgba: &[u8]) -> f64 {
    let bg = background_u8();
    let fg = rgba
        .chunks_exact(4)
        .filter(|p| (0..3).any(|i| p[i].abs_diff(bg[i]) > 3))
        .count();
    fg as f64 / (rgba.len() / 4) as f64
}

fn gpu() -> GpuContext {
    GpuContext::new(AdapterChoice::Auto)
        .expect("an adapter: install mesa-vulkan-drivers on machines without a GPU")
}

#[test]
fn renders_the_textured_box_and_hides_it_on_request() {
    let gpu = gpu();
    eprintln!("adapter: {}", gpu.summary());
    let (mut scene, info) = scene("BoxTextured/BoxTextured.gltf");
    let cam = camera_for(&info);
    let mut r = FrameRenderer::new(&gpu, 320, 240, Lighting::default()).unwrap();
    let frame = r.render_blocking(&scene, &cam).unwrap();
    assert_eq!(frame.len(), 320 * 240 * 4);
    let cov = coverage(&frame);
    assert!(
        cov > 0.10 && cov < 0.9,
        "box covers {:.1}% of the frame",
        cov * 100.0
    );
    assert_eq!(r.stats().triangles, 12);
    // The texture is sampled: the box is not one flat colour.
    let distinct: std::collections::HashSet<[u8; 3]> =
        frame.chunks_exact(4).map(|p| [p[0], p[1], p[2]]).collect();
    assert!(
        distinct.len() > 50,
        "only {} distinct colours: texture not applied?",
        distinct.len()
    );

    scene.set_visible(info.root, false).unwrap();
    let hidden = r.render_blocking(&scene, &cam).unwrap();
    assert_eq!(coverage(&hidden), 0.0, "hidden model left pixels behind");
}

#[test]
fn readback_handles_row_padding_and_the_ring_overlaps_frames() {
    let gpu = gpu();
    let (scene, info) = scene("Fox/Fox.glb");
    let cam = camera_for(&info);
    // 650 * 4 = 2600 bytes per row: padded to 2816 for the copy.
    let mut r = FrameRenderer::new(&gpu, 650, 366, Lighting::default()).unwrap();
    let reference = r.render_blocking(&scene, &cam).unwrap();
    assert!(coverage(&reference) > 0.02, "fox not visible");

    let mut buf = Vec::new();
    for tag in 0..3 {
        r.submit(&scene, &cam, tag).unwrap();
    }
    assert!(
        r.submit(&scene, &cam, 99).is_err(),
        "a fourth frame must not overwrite an uncollected one"
    );
    for tag in 0..3 {
        let f = r.collect(true, &mut buf).unwrap().unwrap();
        assert_eq!(f.tag, tag, "frames come back in submission order");
        assert_eq!(f.stride, 2816);
        assert_eq!(
            strip_padding(&buf, f),
            reference,
            "pipelined frame {tag} differs from the blocking render"
        );
    }
    assert!(r.collect(true, &mut buf).unwrap().is_none());
}

#[test]
fn software_backends_agree() {
    // Where both Mesa rasterizers exist (CI), GL and Vulkan must draw the same picture.
    let (Ok(gl), Ok(vk)) = (
        GpuContext::new(AdapterChoice::Gl),
        GpuContext::new(AdapterChoice::Vulkan),
    ) else {
        eprintln!("skipping: needs both a GL and a Vulkan adapter");
        return;
    };
    let (scene, info) = scene("BoxTextured/BoxTextured.gltf");
    let cam = camera_for(&info);
    let a = FrameRenderer::new(&gl, 256, 256, Lighting::default())
        .unwrap()
        .render_blocking(&scene, &cam)
        .unwrap();
    let b = FrameRenderer::new(&vk, 256, 256, Lighting::default())
        .unwrap()
        .render_blocking(&scene, &cam)
        .unwrap();
    let psnr = farview_encode::psnr_rgba(&a, &b).unwrap();
    assert!(
        psnr > 30.0,
        "{} vs {}: PSNR {psnr:.1} dB",
        gl.summary(),
        vk.summary()
    );
}

#[test]
fn invalid_sizes_are_errors() {
    let gpu = gpu();
    assert!(FrameRenderer::new(&gpu, 0, 240, Lighting::default()).is_err());
    assert!(FrameRenderer::new(&gpu, 321, 240, Lighting::default()).is_err());
    assert!(FrameRenderer::new(&gpu, 1 << 20, 240, Lighting::default()).is_err());
}

/// A camera-facing quad filling the middle of the frame, with a 4x1 texture (left half red,
/// right half green) sampled through `material`.
fn quad_scene(material: farview_scene::Material, colors: Vec<[f32; 4]>) -> Scene {
    use farview_scene::{Aabb, Mesh, Model, ModelNode, Primitive, Texture, Transform};
    let positions = vec![
        [-1.0, -1.0, 0.0],
        [1.0, -1.0, 0.0],
        [1.0, 1.0, 0.0],
        [-1.0, 1.0, 0.0],
    ];
    let prim = Primitive {
        normals: vec![[0.0, 0.0, 1.0]; 4],
        // Set 0 spans the left texel only, set 1 the right texel only.
        uvs: vec![[0.24, 0.5], [0.26, 0.5], [0.26, 0.5], [0.24, 0.5]],
        uvs1: vec![[0.74, 0.5], [0.76, 0.5], [0.76, 0.5], [0.74, 0.5]],
        colors,
        indices: vec![0, 1, 2, 0, 2, 3],
        material: Some(0),
        bounds: Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p))),
        positions,
        ..Primitive::default()
    };
    let model = Model {
        meshes: vec![Mesh {
            name: None,
            primitives: vec![prim],
            ..Mesh::default()
        }],
        materials: vec![farview_scene::Material {
            base_color_texture: material
                .base_color_texture
                .or(Some(farview_scene::TextureRef::new(0))),
            ..material
        }],
        textures: vec![Texture {
            name: None,
            width: 4,
            height: 1,
            rgba8: [
                [255, 0, 0, 255],
                [255, 0, 0, 255],
                [0, 255, 0, 255],
                [0, 255, 0, 255],
            ]
            .concat(),
            basis: None,
        }],
        nodes: vec![ModelNode {
            name: None,
            local: Transform::IDENTITY,
            mesh: Some(0),
            children: vec![],
            ..ModelNode::default()
        }],
        roots: vec![0],
        ..Model::default()
    };
    let mut scene = Scene::default();
    // Light the quad head-on so colours are easy to read.
    scene
        .add_light(farview_scene::Light {
            direction: -Vec3::Z,
            ..farview_scene::Light::SUN
        })
        .unwrap();
    scene.add_model("quad", model).unwrap();
    scene
}

fn centre_pixel(gpu: &GpuContext, scene: &Scene) -> [u8; 4] {
    let cam = Camera::looking_at(Vec3::new(0.0, 0.0, 4.0), Vec3::ZERO, 0.8, 0.1, 10.0);
    let mut r = FrameRenderer::new(gpu, 64, 64, Lighting::default()).unwrap();
    let f = r.render_blocking(scene, &cam).unwrap();
    let i = (32 * 64 + 32) * 4;
    [f[i], f[i + 1], f[i + 2], f[i + 3]]
}

#[test]
fn vertex_colours_uv_sets_uv_transform_and_alpha_modes() {
    use farview_scene::{AlphaMode, Material};
    let gpu = gpu();
    let plain = Material {
        metallic_factor: 0.0,
        ..Material::default()
    };
    let white = vec![[1.0; 4]; 4];
    let bg = background_u8();

    // UV set 0 reads the red texel, set 1 the green one.
    let p = centre_pixel(&gpu, &quad_scene(plain.clone(), white.clone()));
    // (The head-on light adds a small white specular term to every channel.)
    assert!(p[0] > 150 && p[0] > p[1] + 120, "set 0: {p:?}");
    let set1 = Material {
        base_color_texture: Some(farview_scene::TextureRef {
            tex_coord: 1,
            ..farview_scene::TextureRef::new(0)
        }),
        ..plain.clone()
    };
    let p = centre_pixel(&gpu, &quad_scene(set1, white.clone()));
    assert!(p[1] > 150 && p[1] > p[0] + 120, "set 1: {p:?}");
    // A UV offset of +0.5 moves set 0 from the red half onto the green half.
    let shifted = Material {
        base_color_texture: Some(farview_scene::TextureRef {
            transform: [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]],
            ..farview_scene::TextureRef::new(0)
        }),
        ..plain.clone()
    };
    let p = centre_pixel(&gpu, &quad_scene(shifted, white.clone()));
    assert!(p[1] > 150 && p[1] > p[0] + 120, "uv transform: {p:?}");

    // Vertex colours multiply: blue vertices on a red texel leave almost nothing but ambient.
    let p = centre_pixel(
        &gpu,
        &quad_scene(plain.clone(), vec![[0.0, 0.0, 1.0, 1.0]; 4]),
    );
    assert!(p[0] < 70 && p[1] < 70 && p[2] < 70, "red x blue: {p:?}");
    let p = centre_pixel(
        &gpu,
        &quad_scene(plain.clone(), vec![[1.0, 1.0, 1.0, 1.0]; 4]),
    );
    assert!(p[0] > 150, "red x white: {p:?}");

    // Alpha: MASK below the cutoff draws nothing; BLEND at 0.5 lands between background and red.
    let half = vec![[1.0, 1.0, 1.0, 0.5]; 4];
    let masked = Material {
        alpha_mode: AlphaMode::Mask,
        alpha_cutoff: 0.6,
        ..plain.clone()
    };
    let p = centre_pixel(&gpu, &quad_scene(masked, half.clone()));
    assert_eq!([p[0], p[1], p[2]], bg, "masked out");
    let opaque = centre_pixel(&gpu, &quad_scene(plain.clone(), half.clone()));
    let blended = Material {
        alpha_mode: AlphaMode::Blend,
        ..plain
    };
    let p = centre_pixel(&gpu, &quad_scene(blended, half));
    assert!(
        p[0] > bg[0] + 20 && p[0] + 20 < opaque[0],
        "blend: {p:?} between {bg:?} and {opaque:?}"
    );
}

#[test]
fn gpu_and_cpu_colour_conversion_agree() {
    let gpu = gpu();
    let (scene, info) = scene("BoxTextured/BoxTextured.gltf");
    let cam = camera_for(&info);
    let (w, h) = (320, 240);
    let mut rgba_renderer = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    let rgba = rgba_renderer.render_blocking(&scene, &cam).unwrap();
    let mut cpu = farview_encode::I420Frame::new(w, h).unwrap();
    farview_encode::rgba_to_i420(&rgba, w as usize * 4, &mut cpu).unwrap();

    let mut i420_renderer = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    assert!(i420_renderer.enable_gpu_i420().unwrap());
    let gpu_i420 = i420_renderer.render_blocking(&scene, &cam).unwrap();
    assert_eq!(gpu_i420.len(), (w * h * 3 / 2) as usize);
    let max_diff = gpu_i420
        .iter()
        .zip(cpu.as_bytes())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    let differing = gpu_i420
        .iter()
        .zip(cpu.as_bytes())
        .filter(|(a, b)| a != b)
        .count();
    eprintln!("GPU vs CPU I420: max abs diff {max_diff}, {differing} bytes differ");
    assert!(max_diff <= 2, "GPU and CPU conversion differ by {max_diff}");
    // The frame has content (not a trivially equal blank frame).
    let luma = &gpu_i420[..(w * h) as usize];
    let distinct: std::collections::HashSet<u8> = luma.iter().copied().collect();
    assert!(distinct.len() > 50, "only {} luma levels", distinct.len());

    // Widths that are not a multiple of 8 keep RGBA readback (the CPU converts).
    let mut odd = FrameRenderer::new(&gpu, 324, 240, Lighting::default()).unwrap();
    assert!(!odd.enable_gpu_i420().unwrap());
}

/// Discarding shaders are separate pipelines (`_clip` entry points, used only for alpha-tested
/// materials and while cut planes are set): check at every quality that the alpha test and a
/// cut plane still discard, and that the plain pipelines still draw.
#[test]
fn alpha_test_and_cut_planes_discard_at_every_quality() {
    use farview_scene::{AlphaMode, CutPlane, Material};
    let gpu = gpu();
    let bg = background_u8();
    let cam = Camera::looking_at(Vec3::new(0.0, 0.0, 4.0), Vec3::ZERO, 0.8, 0.1, 10.0);
    let plain = Material {
        metallic_factor: 0.0,
        ..Material::default()
    };
    let pixel = |f: &[u8], x: usize, y: usize| {
        let i = (y * 64 + x) * 4;
        [f[i], f[i + 1], f[i + 2]]
    };
    for quality in [
        RenderQuality::HIGH,
        RenderQuality::MEDIUM,
        RenderQuality::FAST,
    ] {
        // A fresh renderer per scene: every quad scene's model has the same id.
        let render = |scene: &Scene| {
            FrameRenderer::with_quality(&gpu, 64, 64, Lighting::default(), quality)
                .unwrap()
                .render_blocking(scene, &cam)
                .unwrap()
        };
        let half = vec![[1.0, 1.0, 1.0, 0.5]; 4];

        let drawn = render(&quad_scene(plain.clone(), half.clone()));
        assert_ne!(pixel(&drawn, 32, 32), bg, "{quality:?}: plain quad drawn");

        let masked = Material {
            alpha_mode: AlphaMode::Mask,
            alpha_cutoff: 0.6,
            ..plain.clone()
        };
        let f = render(&quad_scene(masked.clone(), half.clone()));
        assert_eq!(pixel(&f, 32, 32), bg, "{quality:?}: masked out");
        let kept = Material {
            alpha_cutoff: 0.4,
            ..masked
        };
        let f = render(&quad_scene(kept, half.clone()));
        assert_ne!(pixel(&f, 32, 32), bg, "{quality:?}: above the cutoff");

        // Cut away x > 0: the right half of the quad goes, the left half stays.
        let mut cut = quad_scene(plain.clone(), half.clone());
        cut.add_cut_plane(CutPlane {
            normal: Vec3::X,
            distance: 0.0,
        })
        .unwrap();
        let f = render(&cut);
        assert_eq!(pixel(&f, 44, 32), bg, "{quality:?}: cut side");
        assert_eq!(
            pixel(&f, 20, 32),
            pixel(&drawn, 20, 32),
            "{quality:?}: kept side"
        );
    }
}

/// Screen-space transmission: glass shows the frame behind it (here a red quad over the left
/// half of the view): sharp when smooth, blurred across the frame when rough.
#[test]
fn transmissive_glass_shows_the_geometry_behind_it() {
    use farview_scene::{
        Aabb, Material, Mesh, Model, ModelNode, Primitive, Transform, Transmission,
    };
    let gpu = gpu();
    let quad = |x0: f32, x1: f32, z: f32, material: usize| {
        let positions = vec![[x0, -1.0, z], [x1, -1.0, z], [x1, 1.0, z], [x0, 1.0, z]];
        Primitive {
            normals: vec![[0.0, 0.0, 1.0]; 4],
            uvs: vec![[0.0, 0.0]; 4],
            indices: vec![0, 1, 2, 0, 2, 3],
            material: Some(material),
            bounds: Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p))),
            positions,
            ..Primitive::default()
        }
    };
    let glass_scene = |roughness: f32, ior: f32| {
        let red = Material {
            base_color_factor: [1.0, 0.0, 0.0, 1.0],
            unlit: true,
            ..Material::default()
        };
        let glass = Material {
            base_color_factor: [1.0, 1.0, 1.0, 1.0],
            metallic_factor: 0.0,
            roughness_factor: roughness,
            ior,
            transmission: Some(Transmission {
                factor: 1.0,
                texture: None,
            }),
            ..Material::default()
        };
        let model = Model {
            meshes: vec![Mesh {
                name: None,
                // Red behind the left half; the glass across the whole view in front.
                primitives: vec![quad(-3.0, 0.0, -1.0, 0), quad(-3.0, 3.0, 0.0, 1)],
                ..Mesh::default()
            }],
            materials: vec![red, glass],
            nodes: vec![ModelNode {
                name: None,
                local: Transform::IDENTITY,
                mesh: Some(0),
                children: vec![],
                ..ModelNode::default()
            }],
            roots: vec![0],
            ..Model::default()
        };
        let mut scene = Scene::default();
        scene.add_model("glass", model).unwrap();
        scene
    };
    let cam = Camera::looking_at(Vec3::new(0.0, 0.0, 2.0), Vec3::ZERO, 0.8, 0.1, 10.0);
    let render = |scene: &Scene| {
        FrameRenderer::with_quality(&gpu, 64, 64, Lighting::default(), RenderQuality::MEDIUM)
            .unwrap()
            .render_blocking(scene, &cam)
            .unwrap()
    };
    let pixel = |f: &[u8], x: usize| {
        let i = (32 * 64 + x) * 4;
        [i32::from(f[i]), i32::from(f[i + 1]), i32::from(f[i + 2])]
    };

    let smooth = render(&glass_scene(0.0, 1.0));
    let (left, right) = (pixel(&smooth, 12), pixel(&smooth, 52));
    let sharp_red = left[0];
    assert!(
        left[0] > 150 && left[0] > left[1] + 100,
        "red through smooth glass: {left:?}"
    );
    assert!(
        right[0] < 90 && (right[0] - right[1]).abs() < 30,
        "background through smooth glass: {right:?}"
    );

    // Rough glass (ior 1.5, roughness 1) samples the coarsest mip: both sides see the same
    // blurred average of the frame behind: half red, half background, so a dimmer red.
    let rough = render(&glass_scene(1.0, 1.5));
    let (left, right) = (pixel(&rough, 12), pixel(&rough, 52));
    assert!(
        (left[0] - right[0]).abs() < 12,
        "rough glass blurs: {left:?} vs {right:?}"
    );
    assert!(
        left[0] > left[1] + 60 && left[0] + 20 < sharp_red,
        "a dimmer red than {sharp_red}: {left:?}"
    );
}

/// The mean absolute difference of two RGBA frames over their colour channels.
fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
    let total: u64 = a
        .chunks_exact(4)
        .zip(b.chunks_exact(4))
        .map(|(p, q)| (0..3).map(|i| u64::from(p[i].abs_diff(q[i]))).sum::<u64>())
        .sum();
    total as f64 / (a.len() / 4 * 3) as f64
}

#[test]
fn an_animated_skin_is_drawn_in_its_pose() {
    let gpu = gpu();
    let (mut scene, info) = scene("Fox/Fox.glb");
    let cam = camera_for(&info);
    let mut r = FrameRenderer::new(&gpu, 320, 240, Lighting::default()).unwrap();
    let rest = r.render_blocking(&scene, &cam).unwrap();
    let play = |index, start| farview_scene::AnimationCommand::Play {
        index,
        speed: 1.0,
        looping: true,
        start,
    };
    scene.animate(info.root, play(2, 0.3)).unwrap();
    scene.update_world_transforms();
    let run = r.render_blocking(&scene, &cam).unwrap();
    assert!(
        r.stats().posed_bytes > 0,
        "the posed vertices were uploaded"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    image::save_buffer(
        out.join("fox-run-0.3.png"),
        &run,
        320,
        240,
        image::ColorType::Rgba8,
    )
    .unwrap();
    let moved = mean_difference(&rest, &run);
    assert!(
        moved > 1.0,
        "the run pose looks like the rest pose ({moved:.2})"
    );
    // Same time again: the same picture (the pose is a function of time, nothing accumulates).
    scene.animate(info.root, play(2, 0.3)).unwrap();
    scene.update_world_transforms();
    let again = r.render_blocking(&scene, &cam).unwrap();
    assert_eq!(mean_difference(&run, &again), 0.0);
    // Stop: back to the rest pose, exactly.
    scene
        .animate(info.root, farview_scene::AnimationCommand::Stop)
        .unwrap();
    scene.update_world_transforms();
    let back = r.render_blocking(&scene, &cam).unwrap();
    assert!(mean_difference(&rest, &back) < 0.01);
}

/// The x centre of the pixels that are not background, in 0..1.
fn centre_x(rgba: &[u8], width: usize) -> f64 {
    let bg = background_u8();
    let (mut sum, mut n) = (0.0f64, 0.0f64);
    for (i, p) in rgba.chunks_exact(4).enumerate() {
        if (0..3).any(|c| p[c].abs_diff(bg[c]) > 3) {
            sum += (i % width) as f64;
            n += 1.0;
        }
    }
    sum / n.max(1.0) / width as f64
}

#[test]
fn morph_weights_move_the_drawn_mesh_every_time_they_change() {
    use farview_scene::animation::{Animation, Channel, ChannelPath, Interpolation};
    use farview_scene::{Aabb, Mesh, Model, ModelNode, MorphTarget, Primitive};
    // A quad whose one morph target slides it 1 m to the right; a 1 s animation drives the
    // weight 0 → 1.
    let quad = Primitive {
        positions: vec![
            [-0.5, -0.5, 0.0],
            [0.5, -0.5, 0.0],
            [0.5, 0.5, 0.0],
            [-0.5, 0.5, 0.0],
        ],
        normals: vec![[0.0, 0.0, 1.0]; 4],
        uvs: vec![[0.0, 0.0]; 4],
        indices: vec![0, 1, 2, 0, 2, 3],
        bounds: Aabb {
            min: Vec3::new(-0.5, -0.5, 0.0),
            max: Vec3::new(0.5, 0.5, 0.0),
        },
        targets: vec![MorphTarget {
            positions: vec![[1.0, 0.0, 0.0]; 4],
            ..MorphTarget::default()
        }],
        ..Primitive::default()
    };
    let model = Model {
        meshes: vec![Mesh {
            primitives: vec![quad],
            weights: vec![0.0],
            ..Mesh::default()
        }],
        nodes: vec![ModelNode {
            mesh: Some(0),
            ..ModelNode::default()
        }],
        roots: vec![0],
        animations: vec![Animation {
            name: "slide".into(),
            channels: vec![Channel {
                node: 0,
                path: ChannelPath::Weights,
                interpolation: Interpolation::Linear,
                times: vec![0.0, 1.0],
                values: vec![0.0, 1.0],
                components: 1,
            }],
            duration: 1.0,
        }],
        ..Model::default()
    };
    let gpu = gpu();
    let mut scene = Scene::default();
    let info = scene.add_model("quad", model).unwrap();
    let cam = Camera::looking_at(
        Vec3::new(0.5, 0.0, 4.0),
        Vec3::new(0.5, 0.0, 0.0),
        0.8,
        0.1,
        10.0,
    );
    let mut r = FrameRenderer::new(&gpu, 160, 120, Lighting::default()).unwrap();
    let mut at = |scene: &mut Scene, t: f32| {
        scene.pose_at(info.root, 0, t).unwrap();
        scene.update_world_transforms();
        r.render_blocking(scene, &cam).unwrap()
    };
    // One renderer throughout: each new weight must reach its posed vertex buffer.
    let start = at(&mut scene, 0.0);
    let end = at(&mut scene, 1.0);
    let back = at(&mut scene, 0.0);
    let (x0, x1) = (centre_x(&start, 160), centre_x(&end, 160));
    assert!(x1 - x0 > 0.1, "the quad slid right: {x0:.3} -> {x1:.3}");
    assert_eq!(mean_difference(&start, &back), 0.0, "and back");
}

/// Culling leaves out only what cannot be seen: the same frame, pixel for pixel, with and
/// without it, in a forest that reaches far beyond the view on every side, and with a walking
/// (skinned) fox straddling the frame's right edge, whose posed bounds are what counts.
#[test]
fn frustum_culling_changes_no_pixel() {
    let gpu = gpu();
    let glb = farview_scene::synthetic::forest_glb(1000);
    let model = farview_scene::synthetic::import(&glb, &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    scene.add_model("forest", model).unwrap();
    let fox =
        farview_scene::import_file(assets(), "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    let fox = scene.add_model("Fox/Fox.glb", fox).unwrap();
    // Scaled to about 0.8 units and centred where the frame's right edge cuts it, one unit
    // ahead, in front of the trees.
    let place = |scene: &mut Scene, scale: f32, translation: Vec3| {
        let t = farview_scene::Transform {
            translation,
            rotation: glam::Quat::from_rotation_y(1.2),
            scale: Vec3::splat(scale),
        };
        scene.set_local_transform(fox.root, t).unwrap();
        scene.update_world_transforms();
        scene.world_bounds(fox.root).unwrap()
    };
    let b = place(&mut scene, 0.01, Vec3::ZERO);
    let scale = 0.01 * 0.8 / b.size().max_element();
    let b = place(&mut scene, scale, Vec3::ZERO);
    let target = Vec3::new(1.0, 1.2, 1.0);
    place(&mut scene, scale, target - b.center());
    scene.pose_at(fox.root, 1, 0.4).unwrap();
    // Inside the forest at head height, looking along a row.
    let cam = Camera::looking_at(
        Vec3::new(0.0, 1.6, 2.0),
        Vec3::new(0.0, 0.8, -10.0),
        60f32.to_radians(),
        0.1,
        200.0,
    );
    let (w, h) = (320, 180);
    let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    let culled_frame = r.render_blocking(&scene, &cam).unwrap();
    let culled = r.stats();
    r.set_frustum_culling(false);
    let full_frame = r.render_blocking(&scene, &cam).unwrap();
    let full = r.stats();
    eprintln!(
        "draws {} of {} ({} culled), triangles {} of {}",
        culled.draws, full.draws, culled.culled, culled.triangles, full.triangles
    );
    assert_eq!(full.culled, 0);
    assert!(
        culled.culled > 500,
        "most of 1000 trees lie outside a 60° view: {} culled",
        culled.culled
    );
    assert!(culled.triangles < full.triangles / 2);
    let differing = culled_frame
        .chunks_exact(4)
        .zip(full_frame.chunks_exact(4))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "culling changed {differing} pixels");
    // The fox is in the picture (part of it), so the check covered a skinned draw at the edge.
    let orange = culled_frame
        .chunks_exact(4)
        // Fox orange (about 123, 74, 17 here), not trunk brown (g - b about 30).
        .filter(|p| p[0] > 90 && p[0] > p[1] + 35 && p[1] > p[2] + 45)
        .count();
    assert!(
        orange > 50,
        "the fox should show at the right edge: {orange} orange pixels"
    );
}

/// Repeated meshes with the same state are one instanced draw, and batching changes no pixel:
/// a forest (a thousand trees sharing a few meshes), some trees mirrored (they draw with other
/// pipelines and never share a batch with unmirrored ones), some tinted (another state, another
/// batch) and a skinned fox (its own posed vertices, never batched).
#[test]
fn instancing_changes_no_pixel() {
    let gpu = gpu();
    let glb = farview_scene::synthetic::forest_glb(1000);
    let model = farview_scene::synthetic::import(&glb, &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    let forest = scene.add_model("forest", model).unwrap();
    let trees = scene.children(forest.root).unwrap().to_vec();
    assert!(trees.len() > 1000, "{} children", trees.len());
    for (i, &t) in trees.iter().enumerate() {
        if i % 7 == 3 {
            let mut local = scene.entity(t).unwrap().local;
            local.scale.x = -local.scale.x;
            scene.set_local_transform(t, local).unwrap();
        }
        if i % 11 == 5 {
            scene
                .set_state_override(
                    t,
                    farview_scene::StateOverride {
                        tint: Some([1.0, 0.2, 0.2, 0.6]),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
    }
    let fox =
        farview_scene::import_file(assets(), "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    let fox = scene.add_model("Fox/Fox.glb", fox).unwrap();
    scene
        .set_local_transform(
            fox.root,
            farview_scene::Transform {
                translation: Vec3::new(0.0, 0.0, -2.0),
                rotation: glam::Quat::IDENTITY,
                scale: Vec3::splat(0.01),
            },
        )
        .unwrap();
    scene.pose_at(fox.root, 1, 0.4).unwrap();
    // A second fox of the same model in another pose, both posed on the GPU only: same mesh,
    // same state, but each draws its own posed vertices, so they must not share a draw.
    let fox2 = scene.instantiate("Fox/Fox.glb", fox.model).unwrap();
    scene
        .set_local_transform(
            fox2.root,
            farview_scene::Transform {
                translation: Vec3::new(1.5, 0.0, -2.0),
                rotation: glam::Quat::IDENTITY,
                scale: Vec3::splat(0.01),
            },
        )
        .unwrap();
    scene.pose_at(fox2.root, 2, 0.1).unwrap();
    scene.set_cpu_posing(false);
    scene.update_world_transforms();
    let cam = Camera::looking_at(
        Vec3::new(0.0, 6.0, 8.0),
        Vec3::new(0.0, 0.0, -12.0),
        60f32.to_radians(),
        0.1,
        200.0,
    );
    let (w, h) = (320, 180);
    let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    let batched_frame = r.render_blocking(&scene, &cam).unwrap();
    let batched = r.stats();
    r.set_instancing(false);
    let single_frame = r.render_blocking(&scene, &cam).unwrap();
    let single = r.stats();
    eprintln!(
        "batched: {} draws for {} instances; unbatched: {} draws",
        batched.draws, batched.instances, single.draws
    );
    assert_eq!(single.draws, single.instances);
    assert_eq!(batched.instances, single.instances);
    assert_eq!(batched.triangles, single.triangles);
    assert!(
        batched.draws * 10 < single.draws,
        "a few meshes in three states and two windings: {} draws of {}",
        batched.draws,
        single.draws
    );
    let differing = batched_frame
        .chunks_exact(4)
        .zip(single_frame.chunks_exact(4))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "batching changed {differing} pixels");
    // The tinted trees drew with their own state: without the tints, the picture changes.
    for (i, &t) in trees.iter().enumerate() {
        if i % 11 == 5 {
            scene
                .set_state_override(t, farview_scene::StateOverride::default())
                .unwrap();
        }
    }
    r.set_instancing(true);
    let untinted = r.render_blocking(&scene, &cam).unwrap();
    let retinted = batched_frame
        .chunks_exact(4)
        .zip(untinted.chunks_exact(4))
        .filter(|(a, b)| a != b)
        .count();
    assert!(retinted > 200, "tints changed only {retinted} pixels");
}

/// Skinning on the GPU (the deform compute pass) draws what skinning on the CPU draws: Fox in
/// each of its animations, posed both ways by one renderer, and by a scene that does not pose
/// on the CPU at all (only joint matrices reach the GPU then).
#[test]
fn gpu_posing_draws_what_cpu_posing_draws() {
    let gpu = gpu();
    let (mut boxed, boxed_info) = scene("Fox/Fox.glb");
    let (rest_scene, _) = scene("Fox/Fox.glb");
    let (mut scene, info) = scene("Fox/Fox.glb");
    boxed.set_cpu_posing(false);
    let cam = camera_for(&info);
    let (w, h) = (320, 240);
    let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    // Its own renderer: posed buffers are kept by entity id, and the two scenes' ids coincide.
    let mut boxed_renderer = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    assert!(
        r.gpu_posing(),
        "llvmpipe and lavapipe run compute shaders; this test is about the GPU path"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (index, t) in [(0, 0.6), (1, 0.4), (2, 0.3)] {
        scene.pose_at(info.root, index, t).unwrap();
        scene.update_world_transforms();
        boxed.pose_at(boxed_info.root, index, t).unwrap();
        boxed.update_world_transforms();
        r.set_gpu_posing(true);
        let on_gpu = r.render_blocking(&scene, &cam).unwrap();
        let gpu_stats = r.stats();
        let gpu_only = boxed_renderer.render_blocking(&boxed, &cam).unwrap();
        let boxed_stats = boxed_renderer.stats();
        r.set_gpu_posing(false);
        let on_cpu = r.render_blocking(&scene, &cam).unwrap();
        let cpu_stats = r.stats();
        image::save_buffer(
            out.join(format!("fox-gpu-posed-{index}.png")),
            &on_gpu,
            w,
            h,
            image::ColorType::Rgba8,
        )
        .unwrap();
        assert!(gpu_stats.gpu_posed_vertices > 1000, "{gpu_stats:?}");
        assert!(boxed_stats.gpu_posed_vertices > 1000, "{boxed_stats:?}");
        assert_eq!(cpu_stats.gpu_posed_vertices, 0);
        // Joint matrices and weights, not vertices, cross to the GPU.
        assert!(
            gpu_stats.posed_bytes * 20 < cpu_stats.posed_bytes,
            "{} bytes on the GPU path, {} on the CPU path",
            gpu_stats.posed_bytes,
            cpu_stats.posed_bytes
        );
        // The two sides round differently in the last bits; no pixel may differ visibly.
        for (name, frame) in [("gpu", &on_gpu), ("gpu, no cpu pose", &gpu_only)] {
            let worst = frame
                .chunks_exact(4)
                .zip(on_cpu.chunks_exact(4))
                .map(|(a, b)| (0..3).map(|i| a[i].abs_diff(b[i])).max().unwrap_or(0))
                .max()
                .unwrap_or(0);
            let differing = frame
                .chunks_exact(4)
                .zip(on_cpu.chunks_exact(4))
                .filter(|(a, b)| a != b)
                .count();
            eprintln!("animation {index}: {name}: {differing} pixels differ, worst {worst}");
            assert!(
                differing < 40 && mean_difference(frame, &on_cpu) < 0.05,
                "animation {index}, {name}: {differing} pixels differ (worst by {worst})"
            );
        }
        let rest = r.render_blocking(&rest_scene, &cam).unwrap();
        assert!(
            mean_difference(&rest, &on_gpu) > 0.5,
            "animation {index} moved the fox"
        );
    }
}

/// `EXT_mesh_gpu_instancing`: the 125 instances of SimpleInstancing's one mesh are one
/// instanced draw per primitive, and the picture is the same as with a draw each.
#[test]
fn gpu_instancing_extension_draws_its_instances_in_one_draw() {
    let gpu = gpu();
    let (scene, info) = scene("compressed/SimpleInstancing/SimpleInstancing.glb");
    let cam = camera_for(&info);
    let mut r = FrameRenderer::new(&gpu, 320, 240, Lighting::default()).unwrap();
    let batched = r.render_blocking(&scene, &cam).unwrap();
    let stats = r.stats();
    r.set_instancing(false);
    let single = r.render_blocking(&scene, &cam).unwrap();
    eprintln!("{stats:?}; unbatched {:?}", r.stats());
    assert_eq!(stats.instances, 125);
    assert_eq!(stats.draws, 1);
    assert_eq!(r.stats().draws, 125);
    assert_eq!(batched, single);
    assert!(coverage(&batched) > 0.05, "the cubes are in view");
}

/// A rolling heightfield of `n` x `n` vertices, 60 units wide, with levels of detail and
/// clusters as import makes them.
/// A model of one mesh on one node, from its primitives and materials.
fn one_mesh_model(
    primitives: Vec<farview_scene::Primitive>,
    materials: Vec<farview_scene::Material>,
) -> farview_scene::Model {
    use farview_scene::{Mesh, ModelNode};
    farview_scene::Model {
        materials,
        meshes: vec![Mesh {
            primitives,
            ..Mesh::default()
        }],
        nodes: vec![ModelNode {
            mesh: Some(0),
            ..ModelNode::default()
        }],
        roots: vec![0],
        ..farview_scene::Model::default()
    }
}

fn terrain_model(n: usize) -> farview_scene::Model {
    let mut model = bare_terrain_model(n);
    for p in &mut model.meshes[0].primitives {
        farview_scene::lod::attach(p, 2);
    }
    model
}

/// [`terrain_model`] without levels, as an import that leaves them for later makes it.
fn bare_terrain_model(n: usize) -> farview_scene::Model {
    use farview_scene::{Aabb, Primitive};
    let mut positions = Vec::with_capacity(n * n);
    for z in 0..n {
        for x in 0..n {
            let (fx, fz) = (
                x as f32 / (n - 1) as f32 * 60.0 - 30.0,
                z as f32 / (n - 1) as f32 * 60.0 - 30.0,
            );
            let y = 3.0 * (fx * 0.21).sin() * (fz * 0.17).cos()
                + 0.8 * (fx * 0.9 + fz * 0.7).sin()
                + 0.25 * (fx * 2.3).sin() * (fz * 1.9).cos();
            positions.push([fx, y, fz]);
        }
    }
    // Normals from the heightfield.
    let h = |x: usize, z: usize| positions[z.min(n - 1) * n + x.min(n - 1)][1];
    let step = 60.0 / (n - 1) as f32;
    let mut normals = Vec::with_capacity(n * n);
    for z in 0..n {
        for x in 0..n {
            let dx = h(x + 1, z) - h(x.saturating_sub(1), z);
            let dz = h(x, z + 1) - h(x, z.saturating_sub(1));
            normals.push(Vec3::new(-dx, 2.0 * step, -dz).normalize().to_array());
        }
    }
    let mut indices = Vec::new();
    for z in 0..n - 1 {
        for x in 0..n - 1 {
            let i = (z * n + x) as u32;
            let w = n as u32;
            indices.extend_from_slice(&[i, i + w, i + 1, i + 1, i + w, i + w + 1]);
        }
    }
    let prim = Primitive {
        uvs: vec![[0.0; 2]; positions.len()],
        bounds: Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p))),
        normals,
        positions,
        indices,
        ..Primitive::default()
    };
    one_mesh_model(vec![prim], vec![])
}

/// Two `fast` renderers of `w` x `h`: one culling as by default, one drawing everything in view
/// in one pass (no occlusion culling), the reference its frames must equal.
fn culling_and_reference(gpu: &GpuContext, w: u32, h: u32) -> (FrameRenderer, FrameRenderer) {
    let renderer = || {
        FrameRenderer::with_quality(gpu, w, h, Lighting::default(), RenderQuality::FAST).unwrap()
    };
    let mut reference = renderer();
    reference.set_occlusion_culling(false);
    (renderer(), reference)
}

/// Hilly terrain (`terrain_model(400)`, 60 m square) with a wall across its left side, along
/// x = -20, and a low sun.
fn terrain_behind_a_wall() -> Scene {
    let mut scene = Scene::default();
    scene.add_model("terrain", terrain_model(400)).unwrap();
    scene
        .add_model(
            "wall",
            box_model(Vec3::new(-20.0, -5.0, -30.0), Vec3::new(-19.5, 9.0, -0.5)),
        )
        .unwrap();
    scene
        .add_light(farview_scene::Light {
            direction: Vec3::new(-0.6, -0.35, -0.7).normalize(),
            ..farview_scene::Light::SUN
        })
        .unwrap();
    scene
}

/// Clusters drawn in phase 2 leave out their meshlets hidden behind what phase 1 drew: hilly
/// terrain behind a wall, first seen only through the wall (so none of its clusters is seen),
/// then from where the wall covers the left half of the view. The clusters along the wall's
/// edge are drawn in phase 2, and their meshlets behind the wall are left out. Every frame's
/// pixels match a renderer that does not cull.
#[test]
fn meshlets_of_clusters_half_behind_a_wall_are_left_out_where_it_hides_them() {
    let gpu = gpu();
    let scene = terrain_behind_a_wall();
    let (w, h) = (320, 180);
    let (mut culling, mut reference) = culling_and_reference(&gpu, w, h);
    // Twice in front of the wall (the first frame draws all it has not seen; the second, what
    // shows: the wall), then back and to the side.
    let facing_wall = Camera::looking_at(
        Vec3::new(-22.0, 2.0, -15.0),
        Vec3::new(-12.0, 2.0, -15.0),
        1.0,
        0.1,
        200.0,
    );
    let eye = Vec3::new(-27.0, 7.0, 0.0);
    let beside = Camera::looking_at(eye, eye + Vec3::new(10.0, -1.5, 0.0), 1.0, 0.1, 200.0);
    let mut hidden = Vec::new();
    for (i, cam) in [facing_wall, facing_wall, beside].iter().enumerate() {
        let got = culling.render_blocking(&scene, cam).unwrap();
        let stats = culling.stats();
        let want = reference.render_blocking(&scene, cam).unwrap();
        eprintln!(
            "frame {i}: {} of {} triangles, {} meshlets hidden, {} clusters occluded",
            stats.triangles,
            reference.stats().triangles,
            stats.meshlets_occluded,
            stats.occluded
        );
        let differing = differing_pixels(&got, &want);
        assert_eq!(differing, 0, "frame {i}: {differing} pixels changed");
        hidden.push(stats.meshlets_occluded);
    }
    // The first frame tested nothing (no depth before its second phase); the second drew the
    // wall first and hid the terrain's clusters whole.
    assert_eq!(hidden[..2], [0, 0], "{hidden:?}");
    assert!(hidden[2] > 0, "{hidden:?}");
}

/// `render_blocking_into` leaves in a reused buffer what `render_blocking` returns, at a width
/// whose rows are padded in the readback (100 px: 400 bytes a row, 512 apart) and at one whose
/// rows are not, frame after frame.
#[test]
fn frames_rendered_into_a_reused_buffer_match_render_blocking() {
    let gpu = gpu();
    let mut scene = Scene::default();
    scene.add_model("terrain", bare_terrain_model(50)).unwrap();
    let cam = |x: f32| {
        Camera::looking_at(
            Vec3::new(x, 14.0, 20.0),
            Vec3::ZERO,
            60f32.to_radians(),
            0.1,
            200.0,
        )
    };
    let mut reused = vec![0xab; 7];
    for (w, h) in [(100, 60), (64, 32)] {
        let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
        for x in [-20.0, 5.0] {
            let want = r.render_blocking(&scene, &cam(x)).unwrap();
            r.render_blocking_into(&scene, &cam(x), &mut reused)
                .unwrap();
            assert_eq!(want.len(), (w * h * 4) as usize);
            assert!(reused == want, "{w} x {h}, camera at x = {x}");
        }
    }
}

/// A primitive whose buffers are larger than one staging chunk (8 MiB) is uploaded chunk by
/// chunk through one reused staging buffer; it draws exactly what the same triangles draw as
/// four primitives small enough to be uploaded whole. (A 600 x 600 terrain: 26 MB of vertices
/// and 8.6 MB of indices, each strip 6.5 MB and 2.2 MB.)
#[test]
fn buffers_uploaded_in_chunks_draw_as_ones_uploaded_whole() {
    let gpu = gpu();
    let n = 600;
    let whole = bare_terrain_model(n);
    let p = &whole.meshes[0].primitives[0];
    assert!(p.positions.len() * 72 > 8 << 20 && p.indices.len() * 4 > 8 << 20);
    // Four strips of rows, each sharing its first row with the strip before.
    let strips: Vec<farview_scene::Primitive> = (0..4)
        .map(|k| {
            let (r0, r1) = (k * (n - 1) / 4, ((k + 1) * (n - 1) / 4).min(n - 1));
            let rows = r0 * n..(r1 + 1) * n;
            let mut indices = Vec::new();
            for z in 0..r1 - r0 {
                for x in 0..n - 1 {
                    let (i, w) = ((z * n + x) as u32, n as u32);
                    indices.extend_from_slice(&[i, i + w, i + 1, i + 1, i + w, i + w + 1]);
                }
            }
            let positions = p.positions[rows.clone()].to_vec();
            farview_scene::Primitive {
                bounds: farview_scene::Aabb::from_points(
                    positions.iter().map(|q| Vec3::from_array(*q)),
                ),
                positions,
                normals: p.normals[rows.clone()].to_vec(),
                uvs: p.uvs[rows].to_vec(),
                indices,
                ..farview_scene::Primitive::default()
            }
        })
        .collect();
    assert!(strips.iter().all(|s| s.positions.len() * 72 < 8 << 20));
    assert_eq!(
        strips.iter().map(|s| s.indices.len()).sum::<usize>(),
        p.indices.len()
    );
    let cam = Camera::looking_at(
        Vec3::new(-20.0, 14.0, 20.0),
        Vec3::new(5.0, 0.0, -5.0),
        60f32.to_radians(),
        0.1,
        200.0,
    );
    let (w, h) = (320, 180);
    let frame = |model: farview_scene::Model| {
        let mut scene = Scene::default();
        scene.add_model("terrain", model).unwrap();
        let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
        let frame = r.render_blocking(&scene, &cam).unwrap();
        (frame, r.stats().triangles)
    };
    let (chunked, chunked_triangles) = frame(whole);
    let (split, split_triangles) = frame(one_mesh_model(strips, vec![]));
    assert_eq!(chunked_triangles, 2 * 599 * 599);
    assert_eq!(split_triangles, chunked_triangles);
    let lit = chunked.chunks_exact(4).filter(|p| p[1] > 20).count();
    assert!(
        lit * 2 > (w * h) as usize,
        "the terrain fills the view ({lit} lit pixels)"
    );
    let differing = differing_pixels(&chunked, &split);
    assert_eq!(differing, 0, "{differing} pixels differ");
}

/// Levels of detail within a 1-pixel budget look like full detail (PSNR >= 35 dB over the
/// frame, and no pixel far off), with far fewer triangles; clusters outside the view are left
/// out without changing a pixel.
#[test]
fn levels_of_detail_stay_within_their_error_and_culled_clusters_change_no_pixel() {
    let gpu = gpu();
    let model = terrain_model(600);
    let lod = model.meshes[0].primitives[0].lod.clone().expect("levels");
    assert!(lod.clusters.len() >= 32, "{} clusters", lod.clusters.len());
    let mut scene = Scene::default();
    scene.add_model("terrain", model).unwrap();
    // A low sun, so every slope shows.
    scene
        .add_light(farview_scene::Light {
            direction: Vec3::new(-0.6, -0.35, -0.7).normalize(),
            ..farview_scene::Light::SUN
        })
        .unwrap();
    // Low over the terrain, looking across it: near clusters full, far ones coarse, many out
    // of view behind and beside.
    let cam = Camera::looking_at(
        Vec3::new(-20.0, 4.0, 20.0),
        Vec3::new(10.0, 0.0, -10.0),
        60f32.to_radians(),
        0.1,
        200.0,
    );
    let (w, h) = (640, 360);
    let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    r.set_lod_error_px(0.0);
    let full = r.render_blocking(&scene, &cam).unwrap();
    let full_stats = r.stats();
    r.set_frustum_culling(false);
    let unculled = r.render_blocking(&scene, &cam).unwrap();
    let unculled_stats = r.stats();
    r.set_frustum_culling(true);
    r.set_lod_error_px(1.0);
    let lod_frame = r.render_blocking(&scene, &cam).unwrap();
    let lod_stats = r.stats();
    eprintln!("full {full_stats:?}\nunculled {unculled_stats:?}\nlod {lod_stats:?}");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (name, f) in [("terrain-full.png", &full), ("terrain-lod.png", &lod_frame)] {
        image::save_buffer(out.join(name), f, w, h, image::ColorType::Rgba8).unwrap();
    }
    // Culling clusters: fewer triangles, the same pixels.
    assert!(full_stats.clusters_culled > 0 && unculled_stats.clusters_culled == 0);
    assert!(full_stats.triangles < unculled_stats.triangles);
    assert_eq!(full, unculled, "culled clusters changed the picture");
    // Levels: far fewer triangles, within the budget.
    assert!(lod_stats.coarse_draws > 0, "{lod_stats:?}");
    assert!(
        lod_stats.triangles * 2 < full_stats.triangles,
        "{} of {} triangles",
        lod_stats.triangles,
        full_stats.triangles
    );
    let db = farview_render::psnr_rgb(&full, &lod_frame);
    let off = full
        .chunks_exact(4)
        .zip(lod_frame.chunks_exact(4))
        .filter(|(a, b)| (0..3).any(|i| a[i].abs_diff(b[i]) > 48))
        .count();
    eprintln!("PSNR {db:.2} dB against full detail; {off} pixels off by more than 48");
    assert!(db >= 35.0, "{db:.2} dB");
    assert!(off * 1000 < (w * h) as usize, "{off} pixels far off");
}

/// Clusters, groups of clusters and the whole mesh drawn at different levels side by side
/// meet without cracks: a terrain filling the frame shows no background anywhere at budgets
/// from 1 to 16 pixels, with merged levels drawn. Far instances of it draw a merged level of
/// the whole, batched, within the budget.
#[test]
fn merged_levels_meet_their_neighbours_without_cracks() {
    let gpu = gpu();
    let model = terrain_model(600);
    let lod = model.meshes[0].primitives[0].lod.clone().expect("levels");
    assert!(!lod.groups.is_empty() && !lod.merged.is_empty());
    let mut scene = Scene::default();
    let terrain = scene.add_model("terrain", model).unwrap();
    // A low sun, so every slope shows.
    scene
        .add_light(farview_scene::Light {
            direction: Vec3::new(-0.6, -0.35, -0.7).normalize(),
            ..farview_scene::Light::SUN
        })
        .unwrap();
    scene.update_world_transforms();
    let background = |rgba: &[u8]| {
        let bg = background_u8();
        rgba.chunks_exact(4)
            .filter(|p| (0..3).all(|i| p[i].abs_diff(bg[i]) <= 3))
            .count()
    };
    // Above the terrain, looking down at 60 degrees: near clusters full, the far ones coarse,
    // all of the frame covered.
    let cam = Camera::looking_at(
        Vec3::new(0.0, 10.0, 6.0),
        Vec3::new(0.0, 10.0 - 0.866, 6.0 - 0.5),
        60f32.to_radians(),
        0.1,
        500.0,
    );
    let (w, h) = (480, 270);
    let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    r.set_lod_error_px(0.0);
    let full = r.render_blocking(&scene, &cam).unwrap();
    assert_eq!(background(&full), 0, "the terrain fills the frame");
    let mut merged = 0;
    for px in [1.0, 4.0, 16.0] {
        r.set_lod_error_px(px);
        let frame = r.render_blocking(&scene, &cam).unwrap();
        let stats = r.stats();
        eprintln!("{px} px: {stats:?}");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
        image::save_buffer(
            out.join(format!("terrain-merged-{px}.png")),
            &frame,
            w,
            h,
            image::ColorType::Rgba8,
        )
        .unwrap();
        assert_eq!(background(&frame), 0, "{px} px: cracks show the background");
        merged += stats.merged_draws;
        if px == 1.0 {
            let db = farview_render::psnr_rgb(&full, &frame);
            assert!(db >= 35.0, "{db:.2} dB at 1 px");
        }
    }
    assert!(merged > 0, "no merged level was drawn");

    // Three instances far away: each draws a merged level of the whole, in one batch.
    for (k, x) in [-80.0f32, 0.0, 80.0].into_iter().enumerate() {
        let root = if k == 0 {
            terrain.root
        } else {
            scene
                .instantiate(&format!("terrain {k}"), terrain.model)
                .unwrap()
                .root
        };
        scene
            .set_local_transform(
                root,
                farview_scene::Transform {
                    translation: Vec3::new(x, 0.0, -400.0),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    scene.update_world_transforms();
    let far = Camera::looking_at(
        Vec3::new(0.0, 300.0, -100.0),
        Vec3::new(0.0, 0.0, -400.0),
        60f32.to_radians(),
        0.1,
        2000.0,
    );
    r.set_lod_error_px(0.0);
    let full = r.render_blocking(&scene, &far).unwrap();
    let full_stats = r.stats();
    r.set_lod_error_px(1.0);
    let frame = r.render_blocking(&scene, &far).unwrap();
    let stats = r.stats();
    eprintln!("far: {stats:?}");
    assert!(stats.merged_draws >= 1 && stats.instances >= 3 && stats.draws < stats.instances);
    assert!(stats.triangles * 20 < full_stats.triangles, "{stats:?}");
    let db = farview_render::psnr_rgb(&full, &frame);
    assert!(db >= 35.0, "{db:.2} dB far away");
    let covered = coverage(&frame);
    assert!(covered > 0.01, "the instances are in view: {covered}");
}

/// One box from `min` to `max`, each face its own four vertices with its normal.
fn box_model(min: Vec3, max: Vec3) -> farview_scene::Model {
    use farview_scene::{Aabb, Primitive};
    let (mut positions, mut normals, mut indices) = (Vec::new(), Vec::new(), Vec::new());
    for axis in 0..3 {
        for side in [-1.0f32, 1.0] {
            let mut n = Vec3::ZERO;
            n[axis] = side;
            let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
            let base = positions.len() as u32;
            for (a, b) in [(0, 0), (1, 0), (1, 1), (0, 1)] {
                let mut p = Vec3::ZERO;
                p[axis] = if side > 0.0 { max[axis] } else { min[axis] };
                p[u] = if a == 0 { min[u] } else { max[u] };
                p[v] = if b == 0 { min[v] } else { max[v] };
                positions.push(p.to_array());
                normals.push(n.to_array());
            }
            // Counter-clockwise seen from outside.
            if side > 0.0 {
                indices.extend([base, base + 1, base + 2, base, base + 2, base + 3]);
            } else {
                indices.extend([base, base + 2, base + 1, base, base + 3, base + 2]);
            }
        }
    }
    let prim = Primitive {
        uvs: vec![[0.0; 2]; positions.len()],
        bounds: Aabb { min, max },
        normals,
        positions,
        indices,
        ..Primitive::default()
    };
    one_mesh_model(vec![prim], vec![])
}

/// Counts pixels that differ between two frames.
fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .filter(|(x, y)| x != y)
        .count()
}

/// Occlusion culling never leaves out anything visible: a renderer that culls, carried along a
/// walk through a forest (with a jump that turns the view around, and back), draws exactly the
/// pixels of one that does not, frame after frame, while leaving out most trees; the same for
/// a heightfield's clusters hidden behind a wall. Some trees are tinted see-through (blended,
/// drawn after the environment) and one is selected (outlined, never culled). Single-sampled
/// and multisampled (on Vulkan where there is one; GL draws multisampled frames in one pass).
#[test]
fn occlusion_culling_never_leaves_out_a_visible_object() {
    let gpu = gpu();
    let glb = farview_scene::synthetic::forest_glb(1000);
    let model = farview_scene::synthetic::import(&glb, &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    let forest = scene.add_model("forest", model).unwrap();
    let trees = scene.children(forest.root).unwrap().to_vec();
    for (i, &t) in trees.iter().enumerate() {
        let state = match i % 53 {
            7 => farview_scene::StateOverride {
                see_through: Some(true),
                ..Default::default()
            },
            19 => farview_scene::StateOverride {
                selected: Some(true),
                ..Default::default()
            },
            _ => continue,
        };
        scene.set_state_override(t, state).unwrap();
    }
    scene.update_world_transforms();
    // Multisampled depth is read on backends other than GL (on GL, made readable, it broke
    // MSAA frames): there multisampled frames are drawn in one pass.
    let gl = gpu.summary().contains("(Gl,");
    for quality in [RenderQuality::MEDIUM, RenderQuality::HIGH] {
        eprintln!("{} {quality:?}", gpu.summary());
        occlusion_culling_matches(&gpu, &scene, quality, !gl || quality.msaa_samples == 1);
    }
    match GpuContext::new(AdapterChoice::Vulkan) {
        Ok(vk) if !gl => drop(vk),
        Ok(vk) => {
            eprintln!("{} {:?}", vk.summary(), RenderQuality::HIGH);
            occlusion_culling_matches(&vk, &scene, RenderQuality::HIGH, true);
        }
        Err(e) => eprintln!("no Vulkan adapter, multisampled culling not checked here: {e}"),
    }
}

fn occlusion_culling_matches(gpu: &GpuContext, scene: &Scene, quality: RenderQuality, culls: bool) {
    let (w, h) = (320, 180);
    let renderer = || FrameRenderer::with_quality(gpu, w, h, Lighting::default(), quality).unwrap();
    let mut culling = renderer();
    let mut reference = renderer();
    reference.set_occlusion_culling(false);
    reference.set_occlusion_culling(false);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // A walk along a row at head height, a turn-around (nothing seen before is in view), then
    // back to where the walk was.
    let mut cameras: Vec<Camera> = (0..6)
        .map(|i| {
            let z = 2.0 - 0.4 * i as f32;
            Camera::looking_at(
                Vec3::new(0.2 * i as f32, 1.6, z),
                Vec3::new(0.5, 0.8, z - 12.0),
                60f32.to_radians(),
                0.1,
                200.0,
            )
        })
        .collect();
    cameras.push(Camera::looking_at(
        Vec3::new(1.0, 1.6, 0.0),
        Vec3::new(1.0, 0.8, 12.0),
        60f32.to_radians(),
        0.1,
        200.0,
    ));
    cameras.push(cameras[5]);
    let mut occluded = Vec::new();
    for (i, cam) in cameras.iter().enumerate() {
        let got = culling.render_blocking(scene, cam).unwrap();
        let stats = culling.stats();
        let want = reference.render_blocking(scene, cam).unwrap();
        let all = reference.stats();
        eprintln!(
            "frame {i}: {} occluded, {} of {} triangles",
            stats.occluded, stats.triangles, all.triangles
        );
        let differing = differing_pixels(&got, &want);
        if differing > 0 || i == 5 {
            image::save_buffer(
                out.join(format!("occlusion-got-{}.png", quality.msaa_samples)),
                &got,
                w,
                h,
                image::ColorType::Rgba8,
            )
            .unwrap();
            image::save_buffer(
                out.join(format!("occlusion-want-{}.png", quality.msaa_samples)),
                &want,
                w,
                h,
                image::ColorType::Rgba8,
            )
            .unwrap();
        }
        assert_eq!(
            differing, 0,
            "frame {i}: occlusion culling changed {differing} pixels"
        );
        assert_eq!(all.occluded, 0);
        // The forest is in view: green crowns, not a blank frame.
        let green = want
            .chunks_exact(4)
            .filter(|p| p[1] > p[0].saturating_add(20) && p[1] > p[2].saturating_add(20))
            .count();
        assert!(
            green * 10 > (w * h) as usize,
            "frame {i}: {green} green pixels"
        );
        occluded.push(stats.occluded);
    }
    // Once the walk is under way, trees hidden behind nearer ones are left out (after a jump,
    // nothing seen before is in view: that frame and the next draw everything that shows).
    if !culls {
        assert!(occluded.iter().all(|&n| n == 0), "{occluded:?} occluded");
        return;
    }
    assert!(
        occluded[1..6].iter().all(|&n| n > 0) && occluded.iter().sum::<u32>() > 100,
        "{occluded:?} occluded"
    );

    // A low view across hilly terrain with a wall in front: clusters behind the wall are left
    // out, nothing more (the hills and the wall's edge show).
    let terrain = terrain_behind_a_wall();
    // (New renderers: model ids are per scene.)
    let mut culling = renderer();
    let mut reference = renderer();
    reference.set_occlusion_culling(false);
    let mut clusters_occluded = 0;
    for i in 0..4 {
        // Above the hills, the wall filling the left half of the view.
        let eye = Vec3::new(-27.0 + 0.3 * i as f32, 7.0, 0.0);
        let cam = Camera::looking_at(eye, eye + Vec3::new(10.0, -1.5, 0.0), 1.0, 0.1, 200.0);
        let got = culling.render_blocking(&terrain, &cam).unwrap();
        clusters_occluded += culling.stats().occluded;
        let want = reference.render_blocking(&terrain, &cam).unwrap();
        eprintln!(
            "terrain frame {i}: {} occluded, {} triangles",
            culling.stats().occluded,
            culling.stats().triangles
        );
        let differing = differing_pixels(&got, &want);
        if i == 3 {
            image::save_buffer(
                out.join("occlusion-terrain.png"),
                &got,
                w,
                h,
                image::ColorType::Rgba8,
            )
            .unwrap();
        }
        assert_eq!(
            differing, 0,
            "terrain frame {i}: {differing} pixels changed"
        );
    }
    assert!(clusters_occluded > 0, "no cluster was hidden by the wall");
}

/// A frame that saw nothing before it has no depth to test what is in view against. With many
/// draws it draws the nearest first, in rounds (the near phase: the nearest 1 in 32, then 1 in
/// 16, ...), and tests the rest against the depth each round leaves; with fewer it draws them
/// all. Either way the next frame draws first only what that
/// frame's final depth shows, not all it drew. Walls in a row, seen end on: the first hides the
/// rest. Without the near phase the first frame of 96 walls drew them all (25 with one round of
/// the nearest quarter); without the final
/// depth, the second frame of 40 drew all 40 again (a camera passing through a wall into a view
/// across the city paid two frames of the whole city), also with a frame drawn in one pass
/// (culling off) between the two. Pixels match a renderer that does not cull, frame after
/// frame, including a step into the first wall.
#[test]
fn frames_that_saw_nothing_before_them_draw_near_walls_first_and_the_next_only_what_showed() {
    let gpu = gpu();
    for walls in [40, 96] {
        let drawn = walls_seen_end_on(&gpu, walls);
        // The first frame, and the first inside the first wall (the one wall drawn before now
        // faces away: nothing seen before shows), saw nothing before them. Under the near
        // phase's 64 draws they draw every wall; over it, the first round's nearest 1 in 32
        // (up to the distance of the wall 96 / 32 in: 4 walls), which hide the rest from the
        // later rounds and phase 2.
        let from_nothing = if walls < 64 { walls } else { 4 } * 12;
        assert_eq!(drawn[0], from_nothing, "{walls}: {drawn:?}");
        assert_eq!(drawn[2], from_nothing, "{walls}: {drawn:?}");
        // The frames after them draw the nearest wall and the few next ones the pyramid
        // cannot call hidden, not all their predecessor drew.
        assert!(
            drawn[1] * 10 <= walls * 12 && drawn[3] * 10 <= walls * 12,
            "{walls}: {drawn:?}"
        );
    }
}

/// The near phase's later rounds reach farther and test against the depth of the rounds
/// before: two rows of 48 walls seen end on, the left row from 3 m, the right from 50 m. The
/// first round (the nearest 1 in 32: 3 walls in) draws the left row's first 4 walls, which hide
/// the rest of that row but nothing on the right. The next rounds reach no wall still pending
/// until the nearest quarter, which reaches the right row's first wall; it hides the rest of
/// its row. So the frame draws 5 walls. With one round of the nearest 1 in 32 the right row's
/// 48 walls would all be drawn in phase 2 (nothing hid them), and with one round of the
/// nearest quarter the first 24 of the left row (its walls were untested within the round).
/// The pixels match a renderer that does not cull.
#[test]
fn later_near_rounds_reach_farther_and_hide_what_the_first_did_not_reach() {
    let gpu = gpu();
    let mut scene = Scene::default();
    for i in 0..48 {
        let z = -3.0 - 2.0 * i as f32;
        // (Its right side stops short of the middle of the view, so that its boxes' screen
        // rectangles end in the tiles of the left half.)
        let left = box_model(Vec3::new(-4.0, -2.0, z - 0.5), Vec3::new(-0.001, 2.0, z));
        scene.add_model(&format!("left {i}"), left).unwrap();
        let z = -50.0 - 2.0 * i as f32;
        let right = box_model(Vec3::new(0.0, -30.0, z - 0.5), Vec3::new(60.0, 30.0, z));
        scene.add_model(&format!("right {i}"), right).unwrap();
    }
    scene.update_world_transforms();
    let (w, h) = (320, 180);
    let (mut culling, mut reference) = culling_and_reference(&gpu, w, h);
    let cam = Camera::looking_at(
        Vec3::ZERO,
        Vec3::new(0.0, 0.0, -10.0),
        60f32.to_radians(),
        0.05,
        300.0,
    );
    let got = culling.render_blocking(&scene, &cam).unwrap();
    let drawn = culling.stats().triangles;
    let want = reference.render_blocking(&scene, &cam).unwrap();
    assert_eq!(
        reference.stats().triangles,
        96 * 12,
        "every wall is in view"
    );
    let differing = differing_pixels(&got, &want);
    assert_eq!(differing, 0, "{differing} pixels changed");
    // Both halves of the view are walls, not background.
    let lit = |x0: usize, x1: usize| {
        (0..h as usize)
            .flat_map(|y| (x0..x1).map(move |x| (y * w as usize + x) * 4))
            .filter(|&o| want[o] > 40)
            .count()
    };
    let half = (w as usize / 2) * h as usize;
    assert!(
        lit(0, w as usize / 2) * 10 > half * 9,
        "the left row fills its half"
    );
    assert!(
        lit(w as usize / 2, w as usize) * 10 > half * 9,
        "the right row fills its half"
    );
    assert_eq!(drawn, 5 * 12, "drawn: {} walls", drawn / 12);
}

/// Triangles drawn by a culling renderer over `walls` walls in a row seen end on, from a new
/// renderer: twice from in front of the row (with a frame of culling off between), then twice
/// from a step inside the first wall (whose faces all face away). Every frame's pixels are
/// checked against a renderer that does not cull.
fn walls_seen_end_on(gpu: &GpuContext, walls: u64) -> Vec<u64> {
    let mut scene = Scene::default();
    for i in 0..walls {
        let z = -3.0 - 2.0 * i as f32;
        let wall = box_model(Vec3::new(-2.0, -2.0, z - 0.5), Vec3::new(2.0, 2.0, z));
        scene.add_model(&format!("wall {i}"), wall).unwrap();
    }
    scene.update_world_transforms();
    let (w, h) = (320, 180);
    let (mut culling, mut reference) = culling_and_reference(gpu, w, h);
    let at = |z: f32| {
        Camera::looking_at(
            Vec3::new(0.0, 0.0, z),
            Vec3::new(0.0, 0.0, z - 10.0),
            60f32.to_radians(),
            0.05,
            200.0,
        )
    };
    let mut drawn = Vec::new();
    for (i, z) in [0.0, 0.0, -3.2, -3.2].into_iter().enumerate() {
        let cam = at(z);
        if i == 1 {
            culling.set_occlusion_culling(false);
            culling.render_blocking(&scene, &cam).unwrap();
            assert_eq!(culling.stats().triangles, walls * 12);
            culling.set_occlusion_culling(true);
        }
        let got = culling.render_blocking(&scene, &cam).unwrap();
        let stats = culling.stats();
        let want = reference.render_blocking(&scene, &cam).unwrap();
        let all = reference.stats().triangles;
        eprintln!(
            "{walls} walls, frame {i}: {} of {all} triangles, {} occluded",
            stats.triangles, stats.occluded
        );
        let differing = differing_pixels(&got, &want);
        assert_eq!(differing, 0, "frame {i}: {differing} pixels changed");
        let lit = want.chunks_exact(4).filter(|p| p[0] > 40).count();
        assert!(
            lit * 4 > (w * h) as usize,
            "frame {i}: a wall fills the view ({lit} lit pixels)"
        );
        assert_eq!(all, walls * 12, "frame {i}: every wall is in view");
        drawn.push(stats.triangles);
    }
    drawn
}

/// Levels built after a model is shown (`lod::build_levels`, `upload_levels`,
/// `attach_levels`) draw exactly what levels built at import draw; until they come, the model
/// is drawn whole at full detail.
#[test]
fn levels_built_after_the_model_is_shown_draw_as_import_built_ones() {
    let gpu = gpu();
    let light = farview_scene::Light {
        direction: Vec3::new(-0.6, -0.35, -0.7).normalize(),
        ..farview_scene::Light::SUN
    };
    let cam = Camera::looking_at(
        Vec3::new(-20.0, 4.0, 20.0),
        Vec3::new(10.0, 0.0, -10.0),
        60f32.to_radians(),
        0.1,
        200.0,
    );
    let (w, h) = (320, 180);
    let frame = |model: farview_scene::Model, later: bool| {
        let mut scene = Scene::default();
        let info = scene.add_model("terrain", model).unwrap();
        scene.add_light(light).unwrap();
        let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
        let first = r.render_blocking(&scene, &cam).unwrap();
        let first_stats = r.stats();
        if later {
            let model = scene.model(info.model).unwrap().clone();
            let never = std::sync::atomic::AtomicBool::new(false);
            let levels = farview_scene::lod::build_levels(&model, 2, &never);
            assert_eq!(levels.primitives.len(), 1);
            let uploaded = r.uploader().upload_levels(&levels);
            assert_eq!(r.attach_levels(info.model, uploaded), 1);
            // A model that is not there takes nothing.
            let again = r.uploader().upload_levels(&levels);
            assert_eq!(r.attach_levels(farview_scene::ModelId(99), again), 0);
        }
        let after = r.render_blocking(&scene, &cam).unwrap();
        (first, first_stats, after, r.stats())
    };
    let (_, at_import_stats, at_import, _) = frame(terrain_model(300), false);
    let (whole, whole_stats, later, later_stats) = frame(bare_terrain_model(300), true);
    eprintln!("at import {at_import_stats:?}\nbefore {whole_stats:?}\nafter {later_stats:?}");
    assert_eq!(
        whole_stats.coarse_draws, 0,
        "no levels before they are attached"
    );
    assert_eq!(whole_stats.triangles, 299 * 299 * 2);
    assert!(later_stats.coarse_draws > 0);
    assert_eq!(later_stats.triangles, at_import_stats.triangles);
    assert_eq!(differing_pixels(&later, &at_import), 0);
    assert!(farview_render::psnr_rgb(&whole, &later) >= 35.0);
}

/// A box of `n` x `n` separate quads a face (each quad its own four vertices, as CAD exports
/// write flat faces), in two primitives with levels of detail; its one material double-sided
/// or not.
fn tessellated_box_model(n: usize, double_sided: bool) -> farview_scene::Model {
    use farview_scene::Primitive;
    let mut p = Primitive::default();
    for axis in 0..3 {
        for side in [-1.0f32, 1.0] {
            let mut normal = Vec3::ZERO;
            normal[axis] = side;
            let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
            for i in 0..n {
                for j in 0..n {
                    let base = p.positions.len() as u32;
                    for (a, b) in [(0, 0), (1, 0), (1, 1), (0, 1)] {
                        let mut q = Vec3::ZERO;
                        q[axis] = side;
                        q[u] = (i + a) as f32 / n as f32 * 2.0 - 1.0;
                        q[v] = (j + b) as f32 / n as f32 * 2.0 - 1.0;
                        p.positions.push(q.to_array());
                        p.normals.push(normal.to_array());
                    }
                    if side > 0.0 {
                        p.indices
                            .extend([base, base + 1, base + 2, base, base + 2, base + 3]);
                    } else {
                        p.indices
                            .extend([base, base + 2, base + 1, base, base + 3, base + 2]);
                    }
                }
            }
        }
    }
    // Two primitives: the four sides, then the top and bottom (each over 512 triangles), so
    // the second primitive's groups sit at their own place in the batch key.
    let split = p.indices.len() / 3 * 2;
    let mut top = p.clone();
    top.indices = p.indices.split_off(split);
    let mut prims = Vec::new();
    for mut q in [p, top] {
        q.uvs = vec![[0.0; 2]; q.positions.len()];
        q.bounds = farview_scene::Aabb::from_points(
            q.indices
                .iter()
                .map(|&i| Vec3::from_array(q.positions[i as usize])),
        );
        q.material = Some(0);
        farview_scene::lod::attach(&mut q, 2);
        assert!(q.lod.is_some());
        prims.push(q);
    }
    one_mesh_model(
        prims,
        vec![farview_scene::Material {
            base_color_factor: [0.7, 0.45, 0.3, 1.0],
            double_sided,
            ..farview_scene::Material::default()
        }],
    )
}

/// A bumpy sphere of radius about 1 with smooth normals: every way of facing, and with
/// `rings` x `sides` x 2 triangles past 16 k, several clusters.
fn bumpy_sphere_model(rings: usize, sides: usize) -> farview_scene::Model {
    use farview_scene::Primitive;
    let mut p = Primitive::default();
    for r in 0..=rings {
        let theta = std::f32::consts::PI * r as f32 / rings as f32;
        for s in 0..sides {
            let phi = std::f32::consts::TAU * s as f32 / sides as f32;
            let radius = 1.0 + 0.05 * (7.0 * phi).sin() * (9.0 * theta).cos();
            let dir = Vec3::new(
                theta.sin() * phi.cos(),
                theta.cos(),
                theta.sin() * phi.sin(),
            );
            p.positions.push((dir * radius).to_array());
            p.normals.push(dir.to_array());
        }
    }
    for r in 0..rings {
        for s in 0..sides {
            let a = (r * sides + s) as u32;
            let b = (r * sides + (s + 1) % sides) as u32;
            let (c, d) = (a + sides as u32, b + sides as u32);
            p.indices.extend([a, b, c, b, d, c]);
        }
    }
    p.uvs = vec![[0.0; 2]; p.positions.len()];
    p.bounds = farview_scene::Aabb::from_points(p.positions.iter().map(|q| Vec3::from_array(*q)));
    farview_scene::lod::attach(&mut p, 2);
    one_mesh_model(vec![p], vec![])
}

/// Renders `scene` from each of `views` (eye, target) at full detail and at 1 px with both
/// renderers, and hands each pair of frames and statistics to `check`.
fn compare_views(
    scene: &Scene,
    (culling, reference): (&mut FrameRenderer, &mut FrameRenderer),
    views: &[(Vec3, Vec3)],
    mut check: impl FnMut(
        f32,
        Vec3,
        (&[u8], farview_render::RenderStats),
        (&[u8], farview_render::RenderStats),
    ),
) {
    for lod_px in [0.0, 1.0] {
        for &(eye, target) in views {
            culling.set_lod_error_px(lod_px);
            reference.set_lod_error_px(lod_px);
            let cam = Camera::looking_at(eye, target, 60f32.to_radians(), 0.05, 200.0);
            let a = culling.render_blocking(scene, &cam).unwrap();
            let stats = culling.stats();
            let b = reference.render_blocking(scene, &cam).unwrap();
            check(lod_px, eye, (&a, stats), (&b, reference.stats()));
        }
    }
}

/// Leaving out facing groups that face away changes no pixel, from outside, from inside and
/// from far off, for plain, mirrored, squashed and turned instances of a box of separate quads
/// (batched), a double-sided box seen from inside (whose far side must stay), and a sphere of
/// several clusters; and it leaves triangles out.
#[test]
fn facing_culling_changes_no_pixel() {
    use farview_scene::Transform;
    let gpu = gpu();
    let mut scene = Scene::default();
    let boxes = scene
        .add_model("boxes", tessellated_box_model(12, false))
        .unwrap();
    let place = |scene: &mut Scene, root, translation, scale, yaw: f32| {
        scene
            .set_local_transform(
                root,
                Transform {
                    translation,
                    rotation: glam::Quat::from_rotation_y(yaw),
                    scale,
                },
            )
            .unwrap();
    };
    place(
        &mut scene,
        boxes.root,
        Vec3::new(-3.0, 0.0, 0.0),
        Vec3::ONE,
        0.0,
    );
    for (k, (translation, scale, yaw)) in [
        (Vec3::new(3.0, 0.0, 0.0), Vec3::new(-1.0, 1.0, 1.0), 0.0),
        (Vec3::new(0.0, 0.0, -4.0), Vec3::new(2.0, 0.5, 1.0), 0.3),
        (Vec3::new(0.0, 3.0, 0.0), Vec3::ONE, 0.8),
        (Vec3::new(-3.0, 0.0, -6.0), Vec3::ONE, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        let i = scene.instantiate(&format!("box {k}"), boxes.model).unwrap();
        place(&mut scene, i.root, translation, scale, yaw);
    }
    let inside = scene
        .add_model("room", tessellated_box_model(12, true))
        .unwrap();
    place(
        &mut scene,
        inside.root,
        Vec3::new(0.0, 0.0, 6.0),
        Vec3::splat(2.0),
        0.0,
    );
    let sphere = scene
        .add_model("sphere", bumpy_sphere_model(110, 90))
        .unwrap();
    let lod = scene.model(sphere.model).unwrap().meshes[0].primitives[0]
        .lod
        .clone()
        .unwrap();
    assert!(lod.clusters.len() > 1, "the sphere is clustered");
    place(
        &mut scene,
        sphere.root,
        Vec3::new(0.0, 0.0, 3.0),
        Vec3::ONE,
        0.0,
    );
    scene.update_world_transforms();
    let (w, h) = (320, 180);
    let mut culling = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    let mut reference = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    reference.set_facing_culling(false);
    // Frustum culling off in both: a meshlet out of view is left out by both, but counted as
    // facing away by one of them only when its group faces away.
    culling.set_frustum_culling(false);
    reference.set_frustum_culling(false);
    let (mut faced_away, mut meshlets_culled) = (0, 0);
    // Full detail, then levels within a pixel.
    let views = [
        (Vec3::new(0.0, 1.5, -12.0), Vec3::ZERO),
        (Vec3::new(9.0, 4.0, 9.0), Vec3::ZERO),
        (Vec3::new(-8.0, -2.0, 2.0), Vec3::new(0.0, 0.0, 2.0)),
        (Vec3::new(0.0, 15.0, 0.5), Vec3::ZERO),
        // Inside the double-sided room, looking at its far wall and the sphere.
        (Vec3::new(0.5, 0.5, 7.5), Vec3::new(0.0, 0.0, 3.0)),
        // Close to the sphere's surface.
        (Vec3::new(0.3, 0.4, 4.3), Vec3::new(0.0, 0.0, 3.0)),
    ];
    compare_views(
        &scene,
        (&mut culling, &mut reference),
        &views,
        |lod_px, eye, (a, stats), (b, reference_stats)| {
            eprintln!(
                "{lod_px} px, eye {eye}: {} of {} triangles, {} faced away",
                stats.triangles, reference_stats.triangles, stats.faced_away
            );
            assert_eq!(reference_stats.faced_away, 0);
            assert_eq!(
                stats.triangles + stats.faced_away,
                reference_stats.triangles,
                "what is left out is what is not drawn"
            );
            assert_eq!(differing_pixels(a, b), 0, "eye {eye}: pixels differ");
            assert!(coverage(a) > 0.02, "eye {eye}: something is drawn");
            faced_away += stats.faced_away;
            meshlets_culled += stats.meshlets_culled;
        },
    );
    assert!(faced_away > 10_000, "{faced_away} triangles faced away");
    assert!(meshlets_culled > 0, "the sphere's meshlets are tested");
}

/// Meshlets of a clustered mesh outside the view are left out without changing a pixel: a
/// bumpy sphere and a terrain seen from close by, at grazing angles and from inside the
/// sphere, so that clusters straddle the view's edges, at full detail and at 1 px.
#[test]
fn meshlet_frustum_culling_changes_no_pixel() {
    use farview_scene::Transform;
    let gpu = gpu();
    let mut scene = Scene::default();
    scene
        .add_model("sphere", bumpy_sphere_model(110, 90))
        .unwrap();
    let ground = scene
        .add_model("ground", bumpy_sphere_model(120, 120))
        .unwrap();
    // The second sphere squashed into a wide bumpy floor below the first, turned so that its
    // clusters do not line up with the view.
    scene
        .set_local_transform(
            ground.root,
            Transform {
                translation: Vec3::new(0.0, -2.5, 0.0),
                rotation: glam::Quat::from_rotation_y(0.5),
                scale: Vec3::new(8.0, 0.3, 8.0),
            },
        )
        .unwrap();
    scene.update_world_transforms();
    let (w, h) = (320, 180);
    let mut culling = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    let mut reference = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
    reference.set_frustum_culling(false);
    let (mut meshlets_culled, mut saved) = (0, 0);
    let views = [
        // Close to the sphere's surface, looking along it.
        (Vec3::new(0.3, 0.4, 1.5), Vec3::new(2.0, 0.0, 0.0)),
        // Low over the floor, towards the sphere.
        (Vec3::new(-5.0, -1.6, -5.0), Vec3::ZERO),
        // Down at the floor from above, the sphere half in view.
        (Vec3::new(2.0, 3.0, 3.0), Vec3::new(3.0, -2.5, 4.0)),
        // Inside the sphere.
        (Vec3::new(0.0, 0.2, 0.0), Vec3::new(1.0, 0.3, 0.5)),
    ];
    compare_views(
        &scene,
        (&mut culling, &mut reference),
        &views,
        |lod_px, eye, (a, stats), (b, reference_stats)| {
            eprintln!(
                "{lod_px} px, eye {eye}: {} of {} triangles, {} meshlets and {} clusters culled",
                stats.triangles,
                reference_stats.triangles,
                stats.meshlets_culled,
                stats.clusters_culled
            );
            assert_eq!(reference_stats.clusters_culled, 0);
            assert!(stats.triangles <= reference_stats.triangles);
            assert_eq!(differing_pixels(a, b), 0, "eye {eye}: pixels differ");
            assert!(coverage(a) > 0.02, "eye {eye}: something is drawn");
            meshlets_culled += stats.meshlets_culled;
            saved += reference_stats.triangles - stats.triangles;
        },
    );
    assert!(meshlets_culled > 100, "{meshlets_culled} meshlets culled");
    assert!(saved > 10_000, "{saved} triangles saved");
}
