//! GPU: the prefilters on the real adapter, read back.

use super::readback::{copy_level, read_level};
use super::*;

// --- GPU -------------------------------------------------------------------------------------

#[test]
fn options_are_checked() {
    let Some(gpu) = gpu() else { return };
    let map = EnvironmentMap::uniform([1.0; 3]);
    for bad in [
        EnvironmentOptions {
            source_size: 100,
            ..Default::default()
        },
        EnvironmentOptions {
            specular_size: 512,
            ..Default::default()
        },
        EnvironmentOptions {
            specular_size: 8,
            ..Default::default()
        },
        EnvironmentOptions {
            diffuse_size: 0,
            ..Default::default()
        },
        EnvironmentOptions {
            ggx_samples: 0,
            ..Default::default()
        },
        EnvironmentOptions {
            rotation_degrees: f32::NAN,
            ..Default::default()
        },
    ] {
        let err = Environment::with_options(&gpu, &map, &bad).unwrap_err();
        assert!(matches!(err, RenderError::Environment(_)), "{err}");
    }
}

#[test]
fn a_uniform_environment_prefilters_to_its_radiance() {
    let Some(gpu) = gpu() else { return };
    let l = [0.25f32, 1.5, 3.0];
    let options = EnvironmentOptions {
        source_size: 64,
        specular_size: 64,
        diffuse_size: 16,
        ..Default::default()
    };
    let env = Environment::with_options(&gpu, &EnvironmentMap::uniform(l), &options).unwrap();
    eprintln!("{} uniform bake {:?}", gpu.summary(), env.creation_time());
    assert_eq!(env.mip_count(), 5);
    let check = |what: &str, texels: &[[f32; 4]]| {
        for t in texels {
            for c in 0..3 {
                assert!((t[c] - l[c]).abs() <= 2e-3 * l[c], "{what}: {t:?} vs {l:?}");
            }
        }
    };
    for mip in 0..env.mip_count() {
        let texels = read_level(&gpu, &env.0.specular, mip);
        assert_eq!(texels.len(), 6 * (64usize >> mip).pow(2));
        check(&format!("specular mip {mip}"), &texels);
    }
    check("diffuse", &read_level(&gpu, &env.0.diffuse, 0));

    // The shortcut gives the same, exactly the half-float of L, without filtering.
    let quick = Environment::uniform(&gpu, l).unwrap();
    eprintln!("uniform shortcut {:?}", quick.creation_time());
    for mip in 0..quick.mip_count() {
        for t in read_level(&gpu, &quick.0.specular, mip) {
            assert_eq!(&t[..3], &l[..], "mip {mip}");
        }
    }
    assert!(
        read_level(&gpu, &quick.0.diffuse, 0)
            .iter()
            .all(|t| t[..3] == l[..])
    );
    assert_eq!(quick.0.rotation(), env.0.rotation());
}

#[test]
fn a_bright_patch_lights_the_cube_texel_in_its_direction() {
    // Three patches (red, green, blue) at world directions chosen to land on different faces
    // and both sides of the mirror; on every software backend present, so GL and Vulkan agree.
    let worlds: [[f64; 3]; 3] = [[0.3, 0.8, 0.2], [0.9, -0.2, 0.35], [-0.25, -0.9, -0.3]];
    let (width, height) = (256u32, 128u32);
    let mut texels = vec![[0.0f32; 3]; (width * height) as usize];
    // One bright texel each; the cube texel nearest its centre's direction must be brightest.
    let mut centres = Vec::new();
    for (channel, w) in worlds.iter().enumerate() {
        let len = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
        let (u, v) = panorama_uv_of_world(w.map(|c| c / len));
        let (px, py) = (
            (u * f64::from(width)) as u32,
            (v * f64::from(height)) as u32,
        );
        texels[(py * width + px) as usize][channel] = 1000.0;
        // The world direction of that texel's centre (inverting the mapping above).
        let (uc, vc) = (
            (f64::from(px) + 0.5) / f64::from(width),
            (f64::from(py) + 0.5) / f64::from(height),
        );
        let (theta, phi) = (PI * vc, 2.0 * PI * (uc - 0.5));
        let centre = [
            -theta.sin() * phi.sin(),
            theta.cos(),
            theta.sin() * phi.cos(),
        ];
        let (u2, v2) = panorama_uv_of_world(centre);
        assert!((u2 - uc).abs() < 1e-9 && (v2 - vc).abs() < 1e-9);
        centres.push(Vec3::new(
            centre[0] as f32,
            centre[1] as f32,
            centre[2] as f32,
        ));
    }
    let map =
        EnvironmentMap::from_texels(width, height, texels, &EnvironmentLimits::default()).unwrap();
    let contexts = backends();
    if contexts.is_empty() {
        eprintln!("skipping: no adapter");
        return;
    }
    let options = EnvironmentOptions {
        source_size: 128,
        specular_size: 128,
        diffuse_size: 16,
        ggx_samples: 256,
        lambertian_samples: 512,
        ..Default::default()
    };
    let mut mips1 = Vec::new();
    for gpu in &contexts {
        let env = Environment::with_options(gpu, &map, &options).unwrap();
        let rotation = env.0.rotation();
        let mip0 = read_level(gpu, &env.0.specular, 0);
        let diffuse = read_level(gpu, &env.0.diffuse, 0);
        for (channel, &wv) in centres.iter().enumerate() {
            // The mesh shader's lookup direction, through the environment's rotation.
            let c = rotation.transform_vector3(wv);
            assert!(c.abs_diff_eq(Vec3::new(wv.z, wv.y, -wv.x), 1e-6));
            let (face, x, y) = cube_texel([c.x, c.y, c.z].map(f64::from), 128);
            let best = index_of_max(&mip0, channel);
            let (bf, bx, by) = (
                (best / (128 * 128)) as u32,
                (best % 128) as u32,
                ((best / 128) % 128) as u32,
            );
            eprintln!(
                "{}: patch {channel} expected face {face} ({x}, {y}), brightest face {bf} ({bx}, {by})",
                gpu.summary()
            );
            assert_eq!(bf, face, "face of patch {channel}");
            assert!(
                bx.abs_diff(x) <= 1 && by.abs_diff(y) <= 1,
                "texel of patch {channel}"
            );
            // The irradiance peaks towards the patch too.
            let best = index_of_max(&diffuse, channel);
            let (df, dx, dy) = (
                (best / 256) as u32,
                (best % 16) as u32,
                ((best / 16) % 16) as u32,
            );
            let angle = texel_direction(df, dx, dy, 16)
                .angle_between(c)
                .to_degrees();
            assert!(
                angle < 10.0,
                "irradiance of patch {channel} peaks {angle} degrees away"
            );
        }
        mips1.push(read_level(gpu, &env.0.specular, 1));
    }
    // GL and Vulkan rasterize the same bake alike.
    if let [a, b] = &mips1[..] {
        let worst = a
            .iter()
            .zip(b)
            .flat_map(|(p, q)| (0..3).map(move |c| (p[c] - q[c]).abs() / (1.0 + q[c])))
            .fold(0.0, f32::max);
        eprintln!("GL vs Vulkan, specular mip 1: max relative difference {worst:.2e}");
        assert!(worst < 0.02, "{worst}");
    }
}

#[test]
fn the_default_environment_bakes_in_seconds() {
    let Some(gpu) = gpu() else { return };
    let map = EnvironmentMap::neutral_sky();
    let env = Environment::new(&gpu, &map).unwrap();
    eprintln!(
        "{}: neutral sky baked in {:.2} s (specular {}, diffuse {})",
        gpu.summary(),
        env.creation_time().as_secs_f64(),
        env.specular_size(),
        env.diffuse_size()
    );
    assert!(env.belongs_to(&gpu));
    // Finite everywhere, and the sky above lights more than the ground below.
    let diffuse = read_level(&gpu, &env.0.diffuse, 0);
    assert!(diffuse.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
    let n = env.diffuse_size();
    let face_mean = |face: u32| {
        let texels = &diffuse[(face * n * n) as usize..((face + 1) * n * n) as usize];
        texels.iter().map(|t| t[0] + t[1] + t[2]).sum::<f32>() / texels.len() as f32
    };
    // World +Y is cube +Y (the rotation is about Y).
    eprintln!(
        "irradiance/pi: up {:.3}, down {:.3}",
        face_mean(2),
        face_mean(3)
    );
    assert!(face_mean(2) > face_mean(3));
    for mip in 0..env.mip_count() {
        assert!(
            read_level(&gpu, &env.0.specular, mip)
                .iter()
                .flatten()
                .all(|v| v.is_finite() && *v >= 0.0)
        );
    }
    // The renderer's group-3 binding (its layout and bind group) accepts the views and sampler.
    let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
    let layout = crate::environment_binding::layout(gpu.device());
    let lighting = crate::Lighting {
        environment: Some(env.clone()),
        ..crate::Lighting::default()
    };
    let binding =
        crate::environment_binding::EnvironmentBinding::new(&gpu, &layout, &lighting).unwrap();
    assert_eq!(binding.specular_mips, env.mip_count());
    assert!(binding.matches(&lighting));
    assert!(pollster::block_on(scope.pop()).is_none());
}

#[test]
fn the_uploaded_brdf_table_is_the_computed_one() {
    let Some(gpu) = gpu() else { return };
    let env = Environment::uniform(&gpu, [1.0; 3]).unwrap();
    let texels = read_level(&gpu, &env.0.brdf_lut, 0);
    let size = lut::LUT_SIZE as usize;
    assert_eq!(texels.len(), size * size);
    // Rows are roughness, columns NdotV: compare a few against the reference integration.
    for (x, y) in [
        (size - 1, 0),
        (size / 2, size / 2),
        (5, size - 1),
        (200, 40),
    ] {
        let (nv, r) = (
            (x as f64 + 0.5) / size as f64,
            (y as f64 + 0.5) / size as f64,
        );
        let (a, b) = reference_lut(nv, r, 512);
        let t = texels[y * size + x];
        assert!(
            (f64::from(t[0]) - a).abs() < 1e-3 && (f64::from(t[1]) - b).abs() < 1e-3,
            "({nv}, {r}): {t:?} vs {a} {b}"
        );
        assert_eq!((t[2], t[3]), (0.0, 1.0));
    }
}

#[test]
fn sampled_cube_readback_equals_the_copy_where_copies_work() {
    let Ok(gpu) = GpuContext::new(AdapterChoice::Vulkan) else {
        eprintln!("skipping: no Vulkan adapter");
        return;
    };
    let map = EnvironmentMap::from_texels(
        16,
        8,
        (0..128).map(|i| [i as f32, (i % 7) as f32, 0.5]).collect(),
        &EnvironmentLimits::default(),
    )
    .unwrap();
    let options = EnvironmentOptions {
        source_size: 16,
        specular_size: 16,
        diffuse_size: 4,
        ggx_samples: 16,
        lambertian_samples: 16,
        ..Default::default()
    };
    let env = Environment::with_options(&gpu, &map, &options).unwrap();
    for mip in 0..env.mip_count() {
        assert_eq!(
            read_level(&gpu, &env.0.specular, mip),
            copy_level(&gpu, &env.0.specular, mip),
            "mip {mip}"
        );
    }
}

#[test]
fn the_panorama_uploads_in_slices_row_for_row() {
    let Some(gpu) = gpu() else { return };
    let (width, height) = (64u32, 32u32);
    let texels: Vec<[f32; 3]> = (0..width * height)
        .map(|i| {
            [
                (i % width) as f32,
                (i / width) as f32,
                0.25 * (i % 7) as f32,
            ]
        })
        .collect();
    let map =
        EnvironmentMap::from_texels(width, height, texels, &EnvironmentLimits::default()).unwrap();
    // Five rows a slice: seven slices, the last one partial.
    let texture = bake::upload_panorama(&gpu, &map, 5 * width * 8);
    let back = copy_level(&gpu, &texture, 0);
    for (i, (got, want)) in back.iter().zip(map.texels()).enumerate() {
        assert_eq!(&got[..3], &want[..], "texel {i}");
        assert_eq!(got[3], 1.0);
    }
    assert_eq!(back.len(), (width * height) as usize);
}
