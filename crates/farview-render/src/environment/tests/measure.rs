//! Measurements run by hand (ignored): bake times and the effect of smaller cubes.

use super::readback::{copy_level, difference, sample_cube_faces};
use super::*;

/// Measurement, run by hand: `cargo test -p farview-render bake_times -- --ignored --nocapture`.
#[test]
#[ignore]
fn bake_times() {
    let t = std::time::Instant::now();
    let _ = lut::rgba16f();
    eprintln!("LUT {:?}", t.elapsed());
    let map = EnvironmentMap::neutral_sky();
    for gpu in backends() {
        for (name, o) in [
            ("default", EnvironmentOptions::default()),
            ("default again", EnvironmentOptions::default()),
            (
                "ggx 1 lambert 1",
                EnvironmentOptions {
                    ggx_samples: 1,
                    lambertian_samples: 1,
                    ..Default::default()
                },
            ),
            (
                "lambert 1",
                EnvironmentOptions {
                    lambertian_samples: 1,
                    ..Default::default()
                },
            ),
            (
                "ggx 1",
                EnvironmentOptions {
                    ggx_samples: 1,
                    ..Default::default()
                },
            ),
            (
                "spec 128",
                EnvironmentOptions {
                    specular_size: 128,
                    ..Default::default()
                },
            ),
            (
                "diffuse 32",
                EnvironmentOptions {
                    diffuse_size: 32,
                    ..Default::default()
                },
            ),
            ("fast (128/32)", EnvironmentOptions::fast()),
        ] {
            let env = Environment::with_options(&gpu, &map, &o).unwrap();
            eprintln!(
                "{} {name}: {:.2} s",
                gpu.summary(),
                env.creation_time().as_secs_f64()
            );
        }
    }
}

/// Measurement, run by hand (about 25 s on llvmpipe): how far smaller cubes are from the Sample
/// Viewer's 256 x 256 ones, sampled at the same directions.
#[test]
#[ignore]
fn size_difference() {
    let gpu = gpu().unwrap();
    let map = EnvironmentMap::neutral_sky();
    let full = Environment::with_options(
        &gpu,
        &map,
        &EnvironmentOptions {
            diffuse_size: 256,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "SV sizes (256/256): {:.2} s",
        full.creation_time().as_secs_f64()
    );
    for (name, o) in [
        ("256/64", EnvironmentOptions::default()),
        ("128/32", EnvironmentOptions::fast()),
        (
            "64/16",
            EnvironmentOptions {
                specular_size: 64,
                diffuse_size: 16,
                ..Default::default()
            },
        ),
    ] {
        let env = Environment::with_options(&gpu, &map, &o).unwrap();
        for mip in 0..5 {
            let grid = (env.specular_size() >> mip).max(1);
            let ours = copy_level(
                &gpu,
                &sample_cube_faces(&gpu, &env.0.specular, mip, grid, false),
                0,
            );
            let sv = copy_level(
                &gpu,
                &sample_cube_faces(&gpu, &full.0.specular, mip, grid, true),
                0,
            );
            let (max, mean) = difference(&ours, &sv);
            eprintln!("{name} specular mip {mip} vs 256: max {max:.4} mean {mean:.5}");
        }
        let grid = env.diffuse_size();
        let ours = copy_level(
            &gpu,
            &sample_cube_faces(&gpu, &env.0.diffuse, 0, grid, false),
            0,
        );
        let sv = copy_level(
            &gpu,
            &sample_cube_faces(&gpu, &full.0.diffuse, 0, grid, true),
            0,
        );
        let (max, mean) = difference(&ours, &sv);
        eprintln!(
            "{name} diffuse vs 256: max {max:.4} mean {mean:.5} ({:.2} s)",
            env.creation_time().as_secs_f64()
        );
    }
}
