//! CPU: decoding with limits, the sample snippet, the BRDF table.

use super::*;

// --- CPU: decoding and limits ---------------------------------------------------------------

#[test]
fn the_neutral_sky_decodes_as_a_bright_sky_over_darker_ground() {
    let map = EnvironmentMap::neutral_sky();
    assert_eq!((map.width(), map.height()), (128, 64));
    let from_file = EnvironmentMap::load(
        &asset("environments/neutral_sky.hdr"),
        &EnvironmentLimits::default(),
    )
    .unwrap();
    assert_eq!(map, from_file, "the embedded copy is the asset file");
    let top = map.texel(64, 0).unwrap();
    let horizon = map.texel(64, 32).unwrap();
    let bottom = map.texel(64, 63).unwrap();
    eprintln!(
        "neutral sky: top {top:?} horizon {horizon:?} bottom {bottom:?} mean {:?}",
        map.mean()
    );
    assert!(
        map.texels()
            .iter()
            .flatten()
            .all(|v| v.is_finite() && *v >= 0.0)
    );
    assert!(top.iter().sum::<f32>() > bottom.iter().sum::<f32>());
}

#[test]
fn bad_hdr_bytes_give_the_typed_error() {
    let limits = EnvironmentLimits::default();
    let mut truncated = NEUTRAL_SKY_HDR[..NEUTRAL_SKY_HDR.len() / 2].to_vec();
    let header_end = NEUTRAL_SKY_HDR
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap();
    let mut rotated = NEUTRAL_SKY_HDR[..header_end + 2].to_vec();
    rotated.extend_from_slice(b"+X 128 -Y 64\n");
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("not an image", b"hello, world\n\n-Y 2 +X 2\n".to_vec()),
        ("a PNG", vec![0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0]),
        ("truncated pixels", std::mem::take(&mut truncated)),
        ("an unsupported orientation", rotated),
    ];
    for (what, bytes) in cases {
        match EnvironmentMap::from_hdr_bytes(&bytes, &limits) {
            Err(e @ RenderError::Environment(_)) => eprintln!("{what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // Garbage after a valid header: no panic, one typed error or a decoded image.
    let mut noisy = NEUTRAL_SKY_HDR.to_vec();
    let pixels = header_end + 2 + "-Y 64 +X 128\n".len();
    for (i, b) in noisy[pixels..].iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    match EnvironmentMap::from_hdr_bytes(&noisy, &limits) {
        Ok(map) => assert!(
            map.texels()
                .iter()
                .flatten()
                .all(|v| v.is_finite() && *v >= 0.0)
        ),
        Err(RenderError::Environment(e)) => eprintln!("noise: {e}"),
        Err(e) => panic!("noise: {e:?}"),
    }
}

#[test]
fn an_oversized_header_is_refused_before_allocation() {
    // 200000 x 100000 texels would be 240 GB of f32 RGB: decoding it would abort, not fail.
    let huge = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 200000\n\x02\x02";
    match EnvironmentMap::from_hdr_bytes(huge, &EnvironmentLimits::default()) {
        Err(RenderError::EnvironmentTooLarge { what, got, max }) => {
            assert_eq!((what, got, max), ("width in texels", 200_000, 8192));
        }
        other => panic!("{other:?}"),
    }
    let tall = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 5000 +X 16\n";
    assert!(matches!(
        EnvironmentMap::from_hdr_bytes(tall, &EnvironmentLimits::default()),
        Err(RenderError::EnvironmentTooLarge {
            what: "height in texels",
            got: 5000,
            max: 4096
        })
    ));
    // The byte limit, on bytes and on a file (checked from its size, before reading it).
    let small = EnvironmentLimits {
        max_bytes: 1000,
        ..Default::default()
    };
    let err = EnvironmentMap::from_hdr_bytes(NEUTRAL_SKY_HDR, &small).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::EnvironmentTooLarge {
                what: "file size in bytes",
                max: 1000,
                ..
            }
        ),
        "{err}"
    );
    let err = EnvironmentMap::load(&asset("environments/neutral_sky.hdr"), &small).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment map too large: file size in bytes 32872 exceeds the limit of 1000"
    );
    let err = EnvironmentMap::load(
        &asset("environments/missing.hdr"),
        &EnvironmentLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RenderError::Environment(_)), "{err}");
}

#[test]
fn texels_must_be_finite_and_non_negative() {
    let limits = EnvironmentLimits::default();
    for bad in [f32::NAN, f32::INFINITY, -1.0] {
        let mut texels = vec![[1.0f32; 3]; 8];
        texels[5][1] = bad;
        let err = EnvironmentMap::from_texels(4, 2, texels, &limits).unwrap_err();
        assert!(matches!(err, RenderError::Environment(_)), "{err}");
        assert!(err.to_string().contains("(1, 1)"), "{err}");
    }
    assert!(EnvironmentMap::from_texels(4, 2, vec![[1.0; 3]; 7], &limits).is_err());
    assert!(EnvironmentMap::from_texels(0, 2, Vec::new(), &limits).is_err());
    let map = EnvironmentMap::uniform([f32::NAN, -3.0, f32::INFINITY]);
    assert_eq!(map.texel(0, 0), Some([0.0, 0.0, f32::MAX]));
}

#[test]
fn the_sample_snippet_matches_the_environment() {
    let source = include_str!("../../../../../shaders/ibl_sample.wgsl");
    let module = naga::front::wgsl::parse_str(source).unwrap();
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap();
    for f in [
        "ibl_diffuse_light",
        "ibl_radiance_ggx",
        "ibl_ggx_fresnel",
        "ibl_color",
        "ibl_default",
    ] {
        assert!(
            module
                .functions
                .iter()
                .any(|(_, x)| x.name.as_deref() == Some(f)),
            "no {f}"
        );
    }
    assert!(source.contains(&format!(
        "const IBL_MIP_COUNT: f32 = {SPECULAR_MIP_COUNT}.0;"
    )));
    // The snippet's rotation constant is the Sample Viewer's default, as the environment's.
    let r = gpu::rotation_y(DEFAULT_ROTATION_DEGREES);
    assert_eq!(
        r.transform_vector3(Vec3::new(1.0, 2.0, 3.0)),
        Vec3::new(3.0, 2.0, -1.0)
    );
    assert!(source.contains(
        "mat3x3<f32>(\n    vec3<f32>(0.0, 0.0, -1.0),\n    vec3<f32>(0.0, 1.0, 0.0),\n    vec3<f32>(1.0, 0.0, 0.0),\n)"
    ));
    let glam_ry = glam::Mat4::from_rotation_y(90f32.to_radians());
    assert!(
        glam_ry.abs_diff_eq(r, 1e-6),
        "rotateY and from_rotation_y agree"
    );
}

#[test]
fn the_brdf_table_matches_the_reference_and_bilinear_filtering_loses_little() {
    let size = lut::LUT_SIZE;
    let table = lut::compute(size, lut::LUT_SAMPLES);
    let at = |x: u32, y: u32| table[(y * size + x) as usize];
    for (x, y) in [
        (0, 0),
        (size - 1, 0),
        (size / 2, size / 2),
        (10, size - 1),
        (size - 1, size - 1),
        (77, 200),
    ] {
        let (nv, r) = (
            (f64::from(x) + 0.5) / f64::from(size),
            (f64::from(y) + 0.5) / f64::from(size),
        );
        let (a, b) = reference_lut(nv, r, 512);
        let [ta, tb] = at(x, y);
        assert!(
            (f64::from(ta) - a).abs() < 1e-5 && (f64::from(tb) - b).abs() < 1e-5,
            "({nv}, {r}): {ta} {tb} vs {a} {b}"
        );
    }
    // Known split-sum behaviour: a smooth mirror reflects everything at any angle; single
    // scattering loses energy as roughness grows (head-on: about 0.92 at roughness 0.5, 0.31 at
    // 1), and on smooth surfaces the bias (Fresnel) takes over towards grazing angles.
    let e = |x: u32, y: u32| at(x, y)[0] + at(x, y)[1];
    assert!(
        e(size - 1, 0) > 0.99 && e(size - 1, 0) <= 1.001,
        "{:?}",
        at(size - 1, 0)
    );
    assert!(e(10, 0) > 0.99, "{:?}", at(10, 0));
    let (half, last) = (size / 2, size - 1);
    assert!(
        e(last, half) < 0.95 && e(last, half) > 0.85,
        "{:?}",
        at(last, half)
    );
    assert!(
        e(last, last) < 0.35 && e(last, last) > 0.27,
        "{:?}",
        at(last, last)
    );
    assert!(
        at(3, 0)[1] > 0.8 && at(last, 0)[1] < 0.01,
        "{:?} {:?}",
        at(3, 0),
        at(last, 0)
    );
    eprintln!(
        "LUT: (1, 0) = {:?}, (0.5, 0.5) = {:?}, (1, 1) = {:?}",
        at(last, 0),
        at(half, half),
        at(last, last)
    );
    // Bilinear filtering of the table (as the sampler does) against direct evaluation, over
    // the interior (texel centres from 0.5 / size to 1 - 0.5 / size): what 256 rather than the
    // Sample Viewer's 1024 texels costs.
    let bilinear = |u: f64, v: f64| {
        let fx = u * f64::from(size) - 0.5;
        let fy = v * f64::from(size) - 0.5;
        let (x0, y0) = (fx.floor() as u32, fy.floor() as u32);
        let (tx, ty) = (fx - fx.floor(), fy - fy.floor());
        let mut out = [0.0f64; 2];
        for (dx, dy, w) in [
            (0, 0, (1.0 - tx) * (1.0 - ty)),
            (1, 0, tx * (1.0 - ty)),
            (0, 1, (1.0 - tx) * ty),
            (1, 1, tx * ty),
        ] {
            let t = at((x0 + dx).min(size - 1), (y0 + dy).min(size - 1));
            out[0] += w * f64::from(t[0]);
            out[1] += w * f64::from(t[1]);
        }
        out
    };
    let mut worst = 0.0f64;
    for i in 0..60u32 {
        let u = 0.01 + 0.98 * f64::from((i * 37) % 60) / 59.0;
        let v = 0.01 + 0.98 * f64::from((i * 11) % 60) / 59.0;
        let (a, b) = reference_lut(u, v, 512);
        let got = bilinear(u, v);
        worst = worst.max((got[0] - a).abs()).max((got[1] - b).abs());
    }
    eprintln!("LUT 256 bilinear vs direct: max |error| {worst:.2e}");
    assert!(worst < 2e-3, "{worst}");
}
