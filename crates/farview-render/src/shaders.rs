//! The WGSL sources (checked in under `shaders/`), and the test that parses and validates every
//! WGSL file there with naga, as wgpu would at pipeline creation, without a device.

/// The WGSL source of the mesh pass (`shaders/mesh.wgsl`).
pub const MESH_SHADER: &str = include_str!("../../../shaders/mesh.wgsl");

/// The WGSL source of the RGBA → I420 colour conversion pass (`shaders/i420.wgsl`).
pub const I420_SHADER: &str = include_str!("../../../shaders/i420.wgsl");

/// The environment bake's equirectangular panorama -> cube pass (`shaders/ibl_panorama.wgsl`).
pub(crate) const IBL_PANORAMA_SHADER: &str = include_str!("../../../shaders/ibl_panorama.wgsl");

/// The environment bake's mip and prefilter passes (`shaders/ibl_filter.wgsl`).
pub(crate) const IBL_FILTER_SHADER: &str = include_str!("../../../shaders/ibl_filter.wgsl");

/// Skinning and morphing on the GPU (`shaders/deform.wgsl`).
pub(crate) const DEFORM_SHADER: &str = include_str!("../../../shaders/deform.wgsl");

/// Occlusion culling's reduction of the frame's depth to tiles (`shaders/depth_reduce.wgsl`).
pub(crate) const DEPTH_REDUCE_SHADER: &str = include_str!("../../../shaders/depth_reduce.wgsl");

/// The texture-over-target pass of mips and upscaling (`shaders/blit.wgsl`).
pub(crate) const BLIT_SHADER: &str = include_str!("../../../shaders/blit.wgsl");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::PathBuf;

    use naga::valid::{Capabilities, ValidationFlags, Validator};

    /// Parses and validates one WGSL source; the error is naga's report, with the file name.
    fn validate(name: &str, source: &str) -> Result<naga::Module, String> {
        let module = naga::front::wgsl::parse_str(source)
            .map_err(|e| e.emit_to_string_with_path(source, name))?;
        Validator::new(ValidationFlags::all(), Capabilities::default())
            .validate(&module)
            .map_err(|e| e.emit_to_string_with_path(source, name))?;
        Ok(module)
    }

    fn shader_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shaders")
    }

    fn entry_points(module: &naga::Module) -> Vec<&str> {
        module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect()
    }

    #[test]
    fn every_wgsl_file_in_shaders_validates() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(shader_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
            .collect();
        files.sort();
        assert!(files.len() >= 2, "shaders/ holds {files:?}");
        let mut failures = Vec::new();
        for path in &files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let source = std::fs::read_to_string(path).unwrap();
            match validate(&name, &source) {
                Ok(module) => eprintln!("{name}: ok, entry points {:?}", entry_points(&module)),
                Err(report) => failures.push(report),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn embedded_shaders_validate_with_the_entry_points_the_passes_use() {
        let cases: [(&str, &str, &[&str]); 4] = [
            (
                "mesh.wgsl",
                super::MESH_SHADER,
                &[
                    "vs_main",
                    "fs_standard",
                    "fs_layered",
                    "vs_fast",
                    "fs_fast",
                    "vs_sky",
                    "fs_sky",
                    "vs_outline",
                    "fs_outline",
                ],
            ),
            (
                "i420.wgsl",
                super::I420_SHADER,
                &["luma_main", "chroma_main"],
            ),
            (
                "ibl_panorama.wgsl",
                super::IBL_PANORAMA_SHADER,
                &["vs_fullscreen", "fs_panorama"],
            ),
            (
                "ibl_filter.wgsl",
                super::IBL_FILTER_SHADER,
                &["vs_fullscreen", "fs_downsample", "fs_filter"],
            ),
        ];
        for (name, source, wanted) in cases {
            let module = validate(name, source).unwrap_or_else(|e| panic!("{e}"));
            let have = entry_points(&module);
            for w in wanted {
                assert!(have.contains(w), "{name} lacks entry point {w}: {have:?}");
            }
        }
    }

    #[test]
    fn validation_rejects_type_errors() {
        // A vec3 assigned to an f32 in the real conversion shader.
        let broken = super::I420_SHADER.replace("let lo = l * 12.92;", "let lo: f32 = l * 12.92;");
        assert_ne!(broken, super::I420_SHADER, "the edit no longer applies");
        let err = validate("i420.wgsl", &broken).unwrap_err();
        assert!(err.contains("i420.wgsl"), "{err}");
        // A well-formed parse that only the validator catches: returning the wrong type.
        let err = validate("bad.wgsl", "fn f() -> f32 { return 1u; }").unwrap_err();
        eprintln!("{err}");
        // A call with the wrong argument type.
        assert!(
            validate(
                "bad.wgsl",
                "fn g(x: f32) -> f32 { return x; }\nfn h() -> f32 { return g(vec2<f32>(1.0)); }"
            )
            .is_err()
        );
    }
}
