//! What the picture pipeline adds, checked in pixels on the machine's real adapter: normal
//! maps, per-texture samplers, emissive and unlit materials, material variants, tone mapping,
//! the background and the environment drawn behind the scene, MSAA and the selection outline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use farview_render::{
    AdapterChoice, BlockFormat, Camera, Environment, FrameRenderer, GpuContext, Lighting, Outline,
    RenderQuality, TextureCompression, ToneMapping,
};
use farview_scene::{
    Aabb, Light, Material, Mesh, Model, ModelNode, Primitive, Sampler, Scene, StateOverride,
    Texture, TextureRef, Transform, Wrap,
};
use glam::Vec3;

const SIZE: u32 = 64;

fn gpu() -> GpuContext {
    GpuContext::new(AdapterChoice::Auto)
        .expect("an adapter: install mesa-vulkan-drivers on machines without a GPU")
}

fn texture(width: u32, height: u32, texels: &[[u8; 4]]) -> Texture {
    assert_eq!(texels.len(), (width * height) as usize);
    Texture {
        name: None,
        width,
        height,
        rgba8: texels.concat(),
        basis: None,
    }
}

/// A 2x2 quad facing +Z with UVs `uv_min..uv_max` (u left to right, v top to bottom), tangents
/// along +X, drawn with `materials[0]` (and the others for variants).
fn quad(
    materials: Vec<Material>,
    textures: Vec<Texture>,
    uv_min: f32,
    uv_max: f32,
    variants: Vec<(usize, usize)>,
) -> Model {
    let positions = vec![
        [-1.0, -1.0, 0.0],
        [1.0, -1.0, 0.0],
        [1.0, 1.0, 0.0],
        [-1.0, 1.0, 0.0],
    ];
    let prim = Primitive {
        normals: vec![[0.0, 0.0, 1.0]; 4],
        tangents: vec![[1.0, 0.0, 0.0, 1.0]; 4],
        uvs: vec![
            [uv_min, uv_max],
            [uv_max, uv_max],
            [uv_max, uv_min],
            [uv_min, uv_min],
        ],
        indices: vec![0, 1, 2, 0, 2, 3],
        material: Some(0),
        variant_materials: variants,
        bounds: Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p))),
        positions,
        ..Primitive::default()
    };
    Model {
        meshes: vec![Mesh {
            name: None,
            primitives: vec![prim],
            ..Mesh::default()
        }],
        materials,
        textures,
        nodes: vec![ModelNode {
            name: None,
            local: Transform::IDENTITY,
            mesh: Some(0),
            children: vec![],
            ..ModelNode::default()
        }],
        roots: vec![0],
        ..Model::default()
    }
}

fn scene_of(model: Model) -> (Scene, farview_scene::ModelInfo) {
    let mut scene = Scene::default();
    let info = scene.add_model("quad", model).unwrap();
    (scene, info)
}

/// Looks at the quad head-on; `distance` 4 leaves a border of background around it.
fn camera(distance: f32) -> Camera {
    Camera::looking_at(Vec3::new(0.0, 0.0, distance), Vec3::ZERO, 0.8, 0.1, 20.0)
}

fn render(gpu: &GpuContext, lighting: Lighting, quality: RenderQuality, scene: &Scene) -> Vec<u8> {
    let mut r = FrameRenderer::with_quality(gpu, SIZE, SIZE, lighting, quality).unwrap();
    r.render_blocking(scene, &camera(4.0)).unwrap()
}

fn px(f: &[u8], x: u32, y: u32) -> [u8; 3] {
    let i = ((y * SIZE + x) * 4) as usize;
    [f[i], f[i + 1], f[i + 2]]
}

fn srgb_u8(linear: f32) -> u8 {
    let s = if linear <= 0.003_130_8 {
        linear * 12.92
    } else {
        1.055 * linear.powf(1.0 / 2.4) - 0.055
    };
    (s * 255.0).round() as u8
}

/// No environment light worth speaking of, no tone mapping: colours are easy to predict.
fn plain_lighting() -> Lighting {
    Lighting {
        fallback_ambient: Vec3::ZERO,
        tone_mapping: ToneMapping::None,
        ..Lighting::default()
    }
}

fn lit(material: Material) -> Material {
    Material {
        metallic_factor: 0.0,
        roughness_factor: 1.0,
        ..material
    }
}

#[test]
fn unlit_and_emissive_materials_show_their_colour_and_the_background_is_as_set() {
    let gpu = gpu();
    // Unlit: the base colour as is (gamma 2.2 for display, as the reference viewer encodes).
    let unlit = Material {
        base_color_factor: [0.5, 0.25, 0.0, 1.0],
        unlit: true,
        ..Material::default()
    };
    let (scene, _) = scene_of(quad(vec![unlit], vec![], 0.0, 1.0, vec![]));
    let mut lighting = plain_lighting();
    lighting.background = Vec3::new(0.0, 0.5, 1.0);
    let f = render(&gpu, lighting, RenderQuality::MEDIUM, &scene);
    let c = px(&f, SIZE / 2, SIZE / 2);
    let expect = |v: f32| (v.powf(1.0 / 2.2) * 255.0).round() as i32;
    for (got, want) in c.iter().zip([expect(0.5), expect(0.25), 0]) {
        assert!((i32::from(*got) - want).abs() <= 2, "unlit {c:?}");
    }
    // The background is the colour given, not tone mapped.
    assert_eq!(px(&f, 1, 1), [0, srgb_u8(0.5), 255]);

    // Emissive texture x factor: a black, unlit-by-anything quad glows with the texture.
    let emissive = lit(Material {
        base_color_factor: [0.0, 0.0, 0.0, 1.0],
        emissive_factor: [1.0, 1.0, 1.0],
        emissive_texture: Some(TextureRef::new(0)),
        ..Material::default()
    });
    let tex = texture(1, 1, &[[0, 128, 0, 255]]);
    let (scene, _) = scene_of(quad(vec![emissive], vec![tex], 0.0, 1.0, vec![]));
    let f = render(&gpu, plain_lighting(), RenderQuality::MEDIUM, &scene);
    let c = px(&f, SIZE / 2, SIZE / 2);
    // sRGB 128 is linear 0.216; gamma 2.2 for display gives 127.
    assert!(
        c[0] < 4 && c[1].abs_diff(127) <= 3 && c[2] < 4,
        "emissive {c:?}"
    );
}

#[test]
fn a_normal_map_turns_the_surface_towards_a_light() {
    let gpu = gpu();
    // A light from the right (+X) at a grazing angle: the flat quad barely catches it, a normal
    // map tilting the surface to +X catches much more.
    let tilted = {
        let n = Vec3::new(0.6, 0.0, 0.8);
        let enc = |v: f32| ((v * 0.5 + 0.5) * 255.0).round() as u8;
        texture(1, 1, &[[enc(n.x), enc(n.y), enc(n.z), 255]])
    };
    let scene_for = |normal_map: bool| {
        let m = lit(Material {
            normal_texture: normal_map.then(|| TextureRef::new(0)),
            ..Material::default()
        });
        let (mut scene, _) = scene_of(quad(vec![m], vec![tilted.clone()], 0.0, 1.0, vec![]));
        scene
            .add_light(Light {
                direction: Vec3::new(-0.95, 0.0, -0.31),
                intensity: 3.0,
                ..Light::SUN
            })
            .unwrap();
        render(&gpu, plain_lighting(), RenderQuality::MEDIUM, &scene)
    };
    let flat = px(&scene_for(false), SIZE / 2, SIZE / 2);
    let mapped = px(&scene_for(true), SIZE / 2, SIZE / 2);
    assert!(
        u32::from(mapped[0]) > u32::from(flat[0]) + 40,
        "normal map {mapped:?} vs flat {flat:?}"
    );
}

#[test]
fn each_texture_uses_its_own_sampler() {
    let gpu = gpu();
    // A 2x1 texture, red then green, on UVs -1..2: repeat tiles it, clamp stretches the edge
    // texels outward, mirror reflects it. Unlit so the colours read directly.
    let tex = texture(2, 1, &[[255, 0, 0, 255], [0, 255, 0, 255]]);
    let frame_with = |wrap: Wrap| {
        let m = Material {
            unlit: true,
            base_color_texture: Some(TextureRef {
                sampler: Sampler {
                    wrap_u: wrap,
                    wrap_v: wrap,
                    mag: farview_scene::Filter::Nearest,
                    min: farview_scene::Filter::Nearest,
                    mipmap: None,
                },
                ..TextureRef::new(0)
            }),
            ..Material::default()
        };
        let (scene, _) = scene_of(quad(vec![m], vec![tex.clone()], -1.0, 2.0, vec![]));
        let mut r =
            FrameRenderer::with_quality(&gpu, SIZE, SIZE, plain_lighting(), RenderQuality::MEDIUM)
                .unwrap();
        // Close enough that the quad fills the frame: u runs -1..2 across it.
        r.render_blocking(&scene, &camera(2.2)).unwrap()
    };
    // Read one texel per third of the frame, in the middle of each u unit's halves.
    let colour = |f: &[u8], u: f32| {
        let x = ((u + 1.0) / 3.0 * SIZE as f32) as u32;
        let c = px(f, x.min(SIZE - 1), SIZE / 2);
        if c[0] > 200 && c[1] < 60 {
            'R'
        } else if c[1] > 200 && c[0] < 60 {
            'G'
        } else {
            '?'
        }
    };
    let us = [-0.75, -0.25, 0.25, 0.75, 1.25, 1.75];
    let read = |f: &[u8]| us.iter().map(|u| colour(f, *u)).collect::<String>();
    assert_eq!(read(&frame_with(Wrap::Repeat)), "RGRGRG");
    assert_eq!(read(&frame_with(Wrap::ClampToEdge)), "RRRGGG");
    assert_eq!(read(&frame_with(Wrap::MirroredRepeat)), "GRRGGR");
}

#[test]
fn variants_swap_the_material_a_primitive_draws() {
    let gpu = gpu();
    let red = Material {
        unlit: true,
        base_color_factor: [1.0, 0.0, 0.0, 1.0],
        ..Material::default()
    };
    let blue = Material {
        base_color_factor: [0.0, 0.0, 1.0, 1.0],
        ..red.clone()
    };
    let (mut scene, info) = scene_of(quad(vec![red, blue], vec![], 0.0, 1.0, vec![(1, 1)]));
    let centre = |scene: &Scene| {
        px(
            &render(&gpu, plain_lighting(), RenderQuality::MEDIUM, scene),
            SIZE / 2,
            SIZE / 2,
        )
    };
    assert!(centre(&scene)[0] > 200, "default material");
    let set = |scene: &mut Scene, variant| {
        scene
            .set_state_override(
                info.root,
                StateOverride {
                    variant,
                    ..Default::default()
                },
            )
            .unwrap();
        scene.update_world_transforms();
    };
    set(&mut scene, Some(1));
    let c = centre(&scene);
    assert!(c[2] > 200 && c[0] < 20, "variant 1: {c:?}");
    // A variant that does not map this primitive draws its default material.
    set(&mut scene, Some(0));
    assert!(centre(&scene)[0] > 200, "unmapped variant");
}

#[test]
fn exposure_and_tone_mapping_shape_bright_colours() {
    let gpu = gpu();
    let bright = Material {
        unlit: true,
        base_color_factor: [1.0, 1.0, 1.0, 1.0],
        ..Material::default()
    };
    let (scene, _) = scene_of(quad(vec![bright], vec![], 0.0, 1.0, vec![]));
    let centre = |tone_mapping, exposure| {
        let lighting = Lighting {
            tone_mapping,
            exposure,
            ..plain_lighting()
        };
        px(
            &render(&gpu, lighting, RenderQuality::MEDIUM, &scene),
            SIZE / 2,
            SIZE / 2,
        )[0]
    };
    // Without tone mapping white clips at 255; KHR PBR Neutral compresses 1.0 below it, and
    // more exposure pushes it back up; ACES darkens mid-tones more.
    assert_eq!(centre(ToneMapping::None, 1.0), 255);
    let neutral = centre(ToneMapping::KhrPbrNeutral, 1.0);
    assert!((200..250).contains(&neutral), "neutral {neutral}");
    assert!(centre(ToneMapping::KhrPbrNeutral, 4.0) > neutral + 5);
    let aces = centre(ToneMapping::AcesFilmic, 0.25);
    assert!(aces < neutral, "aces {aces} vs neutral {neutral}");
    assert!(centre(ToneMapping::None, 0.25) < 160);
}

#[test]
fn the_environment_lights_the_scene_and_can_be_drawn_behind_it() {
    let gpu = gpu();
    let env = Environment::load_default(&gpu).unwrap();
    let white = lit(Material::default());
    let (scene, _) = scene_of(quad(vec![white], vec![], 0.0, 1.0, vec![]));
    let dark = render(&gpu, plain_lighting(), RenderQuality::MEDIUM, &scene);
    let lighting = Lighting {
        environment: Some(env.clone()),
        ..Lighting::default()
    };
    let with_env = render(&gpu, lighting.clone(), RenderQuality::MEDIUM, &scene);
    let (d, e) = (px(&dark, 32, 32), px(&with_env, 32, 32));
    assert!(d[0] < 5, "no light: {d:?}");
    assert!(e[0] > 60, "the sky lights a white quad: {e:?}");
    // Behind the quad: the background colour, or the sky when it is shown (brighter above the
    // horizon than below, as the neutral sky is).
    let bg = lighting.background.to_array().map(srgb_u8);
    assert_eq!(px(&with_env, 1, 1), bg);
    let shown = render(
        &gpu,
        Lighting {
            show_environment: true,
            ..lighting
        },
        RenderQuality::MEDIUM,
        &scene,
    );
    let (top, bottom) = (px(&shown, 1, 1), px(&shown, 1, SIZE - 2));
    assert_ne!(top, bg);
    let sum = |c: [u8; 3]| c.iter().map(|v| u32::from(*v)).sum::<u32>();
    assert!(sum(top) > sum(bottom), "sky {top:?} over ground {bottom:?}");
    // The quad itself is drawn as before.
    assert_eq!(px(&shown, 32, 32), e);
}

#[test]
fn msaa_smooths_edges() {
    let gpu = gpu();
    let m = Material {
        unlit: true,
        base_color_factor: [1.0, 1.0, 1.0, 1.0],
        ..Material::default()
    };
    let (mut scene, info) = scene_of(quad(vec![m], vec![], 0.0, 1.0, vec![]));
    // Turn the quad so its edges are not pixel-aligned.
    scene
        .set_local_transform(
            info.root,
            Transform {
                rotation: glam::Quat::from_rotation_z(0.3),
                ..Transform::IDENTITY
            },
        )
        .unwrap();
    scene.update_world_transforms();
    let levels = |quality| {
        let lighting = Lighting {
            background: Vec3::ZERO,
            ..plain_lighting()
        };
        let f = render(&gpu, lighting, quality, &scene);
        let mut reds: Vec<u8> = f.chunks_exact(4).map(|p| p[0]).collect();
        reds.sort_unstable();
        reds.dedup();
        reds.len()
    };
    let hard = levels(RenderQuality::MEDIUM);
    assert_eq!(hard, 2, "without MSAA only black and white");
    let renderer =
        FrameRenderer::with_quality(&gpu, SIZE, SIZE, plain_lighting(), RenderQuality::default())
            .unwrap();
    if renderer.quality().msaa_samples < 4 {
        eprintln!("SKIPPED: this adapter cannot multisample the frame formats");
        return;
    }
    assert!(
        levels(RenderQuality::default()) >= 4,
        "MSAA gives edge tones"
    );
}

#[test]
fn a_selected_entity_gets_an_outline_around_it_not_over_it() {
    let gpu = gpu();
    let m = Material {
        unlit: true,
        base_color_factor: [0.0, 0.0, 1.0, 1.0],
        ..Material::default()
    };
    let (mut scene, info) = scene_of(quad(vec![m], vec![], 0.0, 1.0, vec![]));
    let lighting = Lighting {
        background: Vec3::ZERO,
        outline: Outline {
            color: Vec3::new(1.0, 1.0, 0.0),
            width_px: 3.0,
            pulse_period_s: 0.0,
        },
        ..plain_lighting()
    };
    let yellow = |f: &[u8]| {
        f.chunks_exact(4)
            .filter(|p| p[0] > 200 && p[1] > 200 && p[2] < 50)
            .count()
    };
    let before = render(&gpu, lighting.clone(), RenderQuality::MEDIUM, &scene);
    assert_eq!(yellow(&before), 0);
    scene
        .set_state_override(
            info.root,
            StateOverride {
                selected: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    scene.update_world_transforms();
    let after = render(&gpu, lighting, RenderQuality::MEDIUM, &scene);
    // The quad's centre stays blue; a ring of yellow surrounds it.
    let c = px(&after, SIZE / 2, SIZE / 2);
    assert!(c[2] > 200 && c[0] < 20, "centre {c:?}");
    let ring = yellow(&after);
    assert!(ring > 60, "outline pixels: {ring}");
    // The quad spans about 2 / (2 * 4 * tan(0.4)) of the frame: its edge is ~15 px from the
    // centre; the outline sits just outside it.
    let blue_half_width = (0..SIZE / 2)
        .take_while(|d| px(&after, SIZE / 2 + d, SIZE / 2)[2] > 200)
        .count() as u32;
    let edge = px(&after, SIZE / 2 + blue_half_width + 1, SIZE / 2);
    assert!(
        edge[0] > 200 && edge[1] > 200,
        "outline at the edge: {edge:?}"
    );
}

/// A rough dielectric and a polished metal.
fn rough_and_polished() -> [Material; 2] {
    [
        lit(Material {
            base_color_factor: [0.8, 0.4, 0.2, 1.0],
            ..Material::default()
        }),
        Material {
            base_color_factor: [0.9, 0.9, 0.9, 1.0],
            metallic_factor: 1.0,
            roughness_factor: 0.3,
            ..Material::default()
        },
    ]
}

#[test]
fn fast_shading_lights_per_vertex_close_to_full_shading() {
    let gpu = gpu();
    let env = Environment::load_default(&gpu).unwrap();
    let lighting = Lighting {
        environment: Some(env),
        ..Lighting::default()
    };
    // A rough dielectric and a polished metal: per-vertex light on a flat quad (whose normal
    // is the same everywhere) should land near the per-pixel result.
    for material in rough_and_polished() {
        let (scene, _) = scene_of(quad(vec![material], vec![], 0.0, 1.0, vec![]));
        let full = px(
            &render(&gpu, lighting.clone(), RenderQuality::MEDIUM, &scene),
            32,
            32,
        );
        let fast = px(
            &render(&gpu, lighting.clone(), RenderQuality::FAST, &scene),
            32,
            32,
        );
        assert!(full.iter().any(|c| *c > 40), "lit: {full:?}");
        for (f, p) in fast.iter().zip(full) {
            assert!(f.abs_diff(p) <= 20, "fast {fast:?} vs full {full:?}");
        }
    }
    // Textures still apply per pixel: unlit and textured, the fast path draws what the full one
    // draws.
    let tex = texture(2, 1, &[[255, 0, 0, 255], [0, 255, 0, 255]]);
    let m = Material {
        unlit: true,
        base_color_texture: Some(TextureRef::new(0)),
        ..Material::default()
    };
    let (scene, _) = scene_of(quad(vec![m], vec![tex], 0.0, 1.0, vec![]));
    let fast = render(&gpu, plain_lighting(), RenderQuality::FAST, &scene);
    let full = render(&gpu, plain_lighting(), RenderQuality::MEDIUM, &scene);
    for x in [20, 26, 32, 38, 44] {
        let (a, b) = (px(&fast, x, 32), px(&full, x, 32));
        assert!(
            a.iter().zip(b).all(|(p, q)| p.abs_diff(q) <= 2),
            "x {x}: {a:?} vs {b:?}"
        );
    }
    assert!(
        px(&fast, 20, 32)[0] > px(&fast, 44, 32)[0] + 100,
        "red left, green right"
    );
}

/// An untextured material at `fast` quality is lit and display-encoded at the vertices, and
/// its fragment stage only writes the colour (the plain fast variant). It draws what the
/// textured fast path draws for the same material with a white texture: rough, metallic,
/// emissive, unlit and alpha-tested (the clipping variant).
#[test]
fn untextured_fast_shading_draws_what_the_textured_fast_path_draws() {
    let gpu = gpu();
    let env = Environment::load_default(&gpu).unwrap();
    let lighting = Lighting {
        environment: Some(env),
        ..Lighting::default()
    };
    let white = texture(1, 1, &[[255, 255, 255, 255]]);
    let [rough, polished] = rough_and_polished();
    let materials = [
        rough,
        polished,
        Material {
            base_color_factor: [0.1, 0.1, 0.1, 1.0],
            emissive_factor: [0.2, 0.5, 0.9],
            ..Material::default()
        },
        Material {
            unlit: true,
            base_color_factor: [0.2, 0.7, 0.3, 1.0],
            ..Material::default()
        },
        Material {
            alpha_mode: farview_scene::AlphaMode::Mask,
            alpha_cutoff: 0.5,
            base_color_factor: [0.6, 0.6, 0.2, 0.8],
            ..Material::default()
        },
    ];
    for material in materials {
        let textured = Material {
            base_color_texture: Some(TextureRef::new(0)),
            ..material.clone()
        };
        let (plain_scene, _) = scene_of(quad(vec![material.clone()], vec![], 0.0, 1.0, vec![]));
        let (textured_scene, _) =
            scene_of(quad(vec![textured], vec![white.clone()], 0.0, 1.0, vec![]));
        let plain = render(&gpu, lighting.clone(), RenderQuality::FAST, &plain_scene);
        let with_texture = render(&gpu, lighting.clone(), RenderQuality::FAST, &textured_scene);
        let centre = px(&plain, 32, 32);
        let background = px(&plain, 1, 1);
        assert!(
            centre
                .iter()
                .zip(background)
                .any(|(c, b)| c.abs_diff(b) > 20),
            "{material:?}: the quad is drawn ({centre:?} on {background:?})"
        );
        // Only the display encoding's place differs: a highlight across a triangle is
        // interpolated after it instead of before.
        let diffs: Vec<u8> = plain
            .iter()
            .zip(&with_texture)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let worst = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        assert!(
            worst <= 8 && mean < 2.0,
            "{material:?}: differs by {worst} at worst, {mean:.2} on average"
        );
    }
}

#[test]
fn a_mirrored_entity_keeps_its_front_faces() {
    // Scale -1 on X turns the quad's winding clockwise on screen; a single-sided material must
    // still show its front (glTF: a negative determinant flips the front face).
    let gpu = gpu();
    let m = Material {
        unlit: true,
        base_color_factor: [1.0, 0.0, 0.0, 1.0],
        ..Material::default()
    };
    let (mut scene, info) = scene_of(quad(vec![m], vec![], 0.0, 1.0, vec![]));
    scene
        .set_local_transform(
            info.root,
            Transform {
                scale: Vec3::new(-1.0, 1.0, 1.0),
                ..Transform::IDENTITY
            },
        )
        .unwrap();
    scene.update_world_transforms();
    for quality in [RenderQuality::MEDIUM, RenderQuality::FAST] {
        let c = px(&render(&gpu, plain_lighting(), quality, &scene), 32, 32);
        assert!(c[0] > 200 && c[1] < 20, "{quality:?}: {c:?}");
    }
}

/// The two KTX2 textures in `assets/compressed/ktx2` (ETC1S 512², UASTC + Zstandard 256²) as
/// a model texture: RGBA8 transcoded on the CPU, with the container kept.
fn ktx2_texture(file: &str) -> Texture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/compressed/ktx2")
        .join(file);
    let bytes = std::fs::read(&path).unwrap();
    let ktx = basisu::Transcoder::new(&bytes).unwrap();
    let (width, height) = ktx.base_dimensions();
    let rgba8 = ktx
        .transcode(0, basisu::TargetFormat::Rgba32, basisu::DecodeFlags::NONE)
        .unwrap();
    Texture {
        name: Some(file.into()),
        width,
        height,
        rgba8,
        basis: Some(bytes.into()),
    }
}

/// KTX2 textures go to the GPU block-compressed where the adapter samples a block format:
/// a quarter of the memory, the file's own mipmaps, and the same picture as RGBA8 (the quad is
/// drawn at about 1:1 and, farther away, from the smaller mips).
#[test]
fn ktx2_textures_upload_block_compressed_where_the_adapter_samples_it() {
    let gpu = gpu();
    let formats: Vec<BlockFormat> = BlockFormat::ALL
        .into_iter()
        .filter(|f| gpu.block_format(TextureCompression::Only(*f)).is_some())
        .collect();
    eprintln!(
        "{}: block formats {formats:?}; auto picks {:?}",
        gpu.info().name,
        gpu.block_format(TextureCompression::Auto)
    );
    assert!(
        !formats.is_empty(),
        "llvmpipe and lavapipe sample BC7; this test checks the block-compressed upload"
    );
    let size = 256;
    for file in [
        "StainedGlassLamp_hardware_basecolor.ktx2",
        "StainedGlassLamp_bulbs_occlusion-rough-metal.ktx2",
    ] {
        let unlit = Material {
            base_color_texture: Some(TextureRef::new(0)),
            unlit: true,
            ..Material::default()
        };
        let texture = ktx2_texture(file);
        let texels = u64::from(texture.width * texture.height);
        let (scene, _) = scene_of(quad(vec![unlit], vec![texture], 0.0, 1.0, vec![]));
        for distance in [2.5, 12.0] {
            let cam = Camera::looking_at(Vec3::new(0.0, 0.0, distance), Vec3::ZERO, 0.8, 0.1, 50.0);
            let frame = |choice| {
                let mut r = FrameRenderer::with_quality(
                    &gpu,
                    size,
                    size,
                    plain_lighting(),
                    RenderQuality::MEDIUM,
                )
                .unwrap();
                r.set_texture_compression(choice);
                let f = r.render_blocking(&scene, &cam).unwrap();
                (f, r.stats().gpu_bytes)
            };
            let (plain, plain_bytes) = frame(TextureCompression::Off);
            for &format in &formats {
                let (blocks, block_bytes) = frame(TextureCompression::Only(format));
                let db = farview_render::psnr_rgb(&plain, &blocks);
                eprintln!(
                    "{file} at {distance}: {format:?} {db:.1} dB against RGBA8, GPU bytes {block_bytes} vs {plain_bytes}"
                );
                assert!(db > 32.0, "{file} {format:?} at {distance}: {db:.1} dB");
                // RGBA8 with mips is 4/3 x 4 bytes a texel, a block format 4/3 x 1.
                assert!(
                    plain_bytes - block_bytes >= texels * 3,
                    "{format:?}: {block_bytes} bytes vs {plain_bytes}"
                );
            }
        }
    }
}
