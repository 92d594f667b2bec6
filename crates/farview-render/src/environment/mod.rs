//! Image-based lighting from an equirectangular HDR environment, prefiltered the way the Khronos
//! glTF Sample Viewer 1.1.0 (the reference renderer) does it, so that the same world direction
//! and roughness read the same light in both renderers.
//!
//! [`EnvironmentMap`] is the CPU side (a Radiance `.hdr` decoded with bounded input, or a
//! constant). [`Environment`] is the GPU side, shared by every renderer of a [`GpuContext`]:
//! building one runs the prefilters once (seconds on a software rasterizer), so a host makes one
//! per environment and hands clones to its renderers.
//!
//! # What is built
//!
//! 1. **Source cube** (`source_size`, 256 like the Sample Viewer's `textureSize`, Rgba16Float,
//!    full mip chain): the panorama resampled per face texel (`shaders/ibl_panorama.wgsl`,
//!    bilinear, mirrored repeat, as the Sample Viewer's `panorama_to_cubemap.frag`), then each
//!    level the 2x2 box average of the one above (as `glGenerateMipmap`).
//! 2. **Specular cube** ([`SPECULAR_MIP_COUNT`] = 5 levels, `specular_size` down to
//!    `specular_size / 16`): level `k` is the GGX prefilter for perceptual roughness
//!    `k / (5 - 1)` = 0, 0.25, 0.5, 0.75, 1 — the Sample Viewer's `mipmapLevels =
//!    log2(256) + 1 - 4 = 5` and `roughness = level / (mipmapLevels - 1)`. Level 0 (roughness 0,
//!    where the Sample Viewer's filter reads the source texel itself) is copied from the source
//!    level of the same size. Levels 1..4 importance-sample the source with `ggx_samples` (1024)
//!    GGX half vectors per texel, V = N, weighted by N.L, each read at the Sample Viewer's
//!    filtered-importance-sampling lod `0.5 * log2(6 * source_size^2 / (samples * pdf))`,
//!    `pdf = D_GGX / 4` (`shaders/ibl_filter.wgsl`, tables from `samples.rs`).
//! 3. **Diffuse cube** (`diffuse_size`, one level): the Lambertian prefilter,
//!    `lambertian_samples` (2048) cosine-weighted directions averaged, same lod rule with
//!    `pdf = cos / pi`. It holds irradiance / pi: radiance L everywhere gives L.
//! 4. **BRDF LUT** (256 x 256, Rgba16Float): the split-sum scale (r) and bias (g) of GGX with
//!    height-correlated Smith visibility, 512 samples, computed once per process on the CPU
//!    (`lut.rs`), u = NdotV, v = perceptual roughness.
//!
//! Sheen (the Charlie prefilter and its LUT) is left out: the reference renders have no sheen
//! (the viewer package lacks its `lut_sheen_E.png`).
//!
//! # Direction mapping
//!
//! Cube faces are array layers 0..5 = +X, -X, +Y, -Y, +Z, -Z; a cube texel is addressed as in
//! GL and Vulkan (which agree in memory terms: the face's (s, t) from the major-axis table, t = 0
//! the first row in memory). The Sample Viewer's `uvToXYZ(face, uv)` is that table's inverse
//! with y negated, and `panorama_to_cubemap` stores at texel `(s, t)` of `face` the panorama at
//! `dirToUV(normalize(uvToXYZ(face, 2 (s, t) - 1)))`, `dirToUV(d) = (0.5 + atan2(d.z, d.x) /
//! (2 pi), 1 - acos(d.y) / pi)`, v = 0 being the panorama's first row, which is the top row of
//! a `-Y h +X w` Radiance file. So **sampling the cube with direction `c` reads the panorama at
//! direction `(c.x, -c.y, c.z)`**: `u = 0.5 + atan2(c.z, c.x) / (2 pi)`, `v = acos(c.y) / pi`
//! from the top row. The prefiltered cubes keep that convention (the Sample Viewer's filter
//! flips y back: its normal for a texel is the texel's own sampling direction).
//!
//! The mesh shader then samples with `c = u_EnvRotation * w` for a world direction `w`, where
//! `u_EnvRotation` is `rotateY(environmentRotation)` with the Sample Viewer's default of 90
//! degrees ([`DEFAULT_ROTATION_DEGREES`]; `GpuEnvironment::rotation`): `c = (w.z, w.y, -w.x)`.
//! End to end, **world direction `w` reads panorama `u = 0.5 + atan2(-w.x, w.z) / (2 pi)`,
//! `v = acos(w.y) / pi` (from the top row)**: +Y the top row, -Y the bottom row, +Z (towards
//! the default camera, which looks down -Z) the centre column u = 0.5, +X u = 0.25, -X
//! u = 0.75, -Z the left/right edge.
//!
//! # Sampling, for the mesh shader
//!
//! `shaders/ibl_sample.wgsl` holds these as WGSL (validated by naga); this is the Sample
//! Viewer's `ibl.glsl` and the IBL part of its `pbr.frag`. Bind group 3: binding 0 specular
//! `texture_cube<f32>`, 1 diffuse `texture_cube<f32>`, 2 BRDF LUT `texture_2d<f32>`, 3 a
//! filtering sampler (linear, linear between mips, clamp to edge) used for all three. With
//! `n` the shading normal, `v = normalize(camera - position)`, `R` = `u_EnvRotation` (3x3),
//! `mips` = [`Environment::mip_count`] (5), `I` = environment intensity (1.0 in the reference
//! renders; 0 switches IBL off), `r` = perceptual roughness and `metallic` clamped to [0, 1]:
//!
//! ```text
//! NdotV        = clamp(dot(n, v), 0, 1)
//! diffuse(n)   = textureSampleLevel(diffuse_cube, s, R * n, 0).rgb * I           // getDiffuseLight
//! lod          = r * (mips - 1)
//! refl         = normalize(reflect(-v, n))
//! specular     = textureSampleLevel(specular_cube, s, R * refl, lod).rgb * I      // getIBLRadianceGGX
//! (A, B)       = textureSampleLevel(lut, s, clamp(vec2(NdotV, r), 0, 1), 0).rg
//! fresnel(F0, w) =                                                                // getIBLGGXFresnel
//!     Fr      = max(vec3(1 - r), F0) - F0
//!     k_S     = F0 + Fr * (1 - NdotV)^5
//!     FssEss  = w * (k_S * A + B)
//!     Ems     = 1 - (A + B)
//!     F_avg   = w * (F0 + (1 - F0) / 21)
//!     FmsEms  = Ems * FssEss * F_avg / (1 - F_avg * Ems)                          // multiple scattering
//!     return FssEss + FmsEms
//! f_diffuse    = diffuse(n) * base_color
//! metal        = fresnel(base_color, 1) * specular
//! dielectric   = mix(f_diffuse, specular, fresnel(f0_dielectric, specular_weight)) // f0 = 0.04, w = 1
//! ibl          = mix(dielectric, metal, metallic)
//! ibl         *= 1 + occlusion_strength * (ao - 1)                               // IBL only
//! ```
//!
//! Punctual lights are added after the occlusion, and the sum goes to exposure and tone mapping.

mod bake;
mod f16;
mod gpu;
mod lut;
mod map;
mod samples;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use gpu::GpuEnvironment;
pub use map::{EnvironmentLimits, EnvironmentMap, NEUTRAL_SKY_HDR};

use crate::{GpuContext, RenderError};

/// Levels of the specular cube: roughness 0, 0.25, 0.5, 0.75, 1 (the Sample Viewer's
/// `u_MipCount` for its 256 cube).
pub const SPECULAR_MIP_COUNT: u32 = 5;

/// The Sample Viewer's default `environmentRotation`: 90 degrees about +Y ("the front face of
/// the environment is +Z").
pub const DEFAULT_ROTATION_DEGREES: f32 = 90.0;

/// Sizes and sample counts of the prefilters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnvironmentOptions {
    /// Face size of the cube the panorama is resampled into and filtered from (a power of two,
    /// 16 to 4096). The lod rule makes results nearly independent of it; 256 is the Sample
    /// Viewer's.
    pub source_size: u32,
    /// Face size of the specular cube's level 0 (a power of two from 16 to `source_size`).
    pub specular_size: u32,
    /// Face size of the diffuse cube (a power of two up to `source_size`).
    pub diffuse_size: u32,
    /// GGX samples per texel of specular levels 1..4 (the Sample Viewer's 1024).
    pub ggx_samples: u32,
    /// Cosine-weighted samples per diffuse texel (the Sample Viewer's 2048).
    pub lambertian_samples: u32,
    /// Rotation about +Y from world to environment, in degrees (the Sample Viewer's
    /// `environmentRotation`).
    pub rotation_degrees: f32,
}

impl Default for EnvironmentOptions {
    /// The Sample Viewer's source size, sample counts and rotation; specular 256 and diffuse 64
    /// (the Sample Viewer renders both at 256; irradiance is smooth enough for 64).
    fn default() -> Self {
        Self {
            source_size: 256,
            specular_size: 256,
            diffuse_size: 64,
            ggx_samples: 1024,
            lambertian_samples: 2048,
            rotation_degrees: DEFAULT_ROTATION_DEGREES,
        }
    }
}

impl EnvironmentOptions {
    /// Quicker cubes for software rasterizers: specular 128 and diffuse 32, the rest as the
    /// default. About 0.8 s instead of 2.8 s for the neutral sky on llvmpipe (2 cores), within
    /// 0.4% of the default's radiance for that smooth sky; mirror-like reflections of a detailed
    /// environment are softer than the Sample Viewer's (its cube is 256).
    pub fn fast() -> Self {
        Self {
            specular_size: 128,
            diffuse_size: 32,
            ..Self::default()
        }
    }
}

/// A prefiltered environment on the GPU: specular and diffuse cubes and the BRDF lookup table,
/// made as the Khronos glTF Sample Viewer 1.1.0 makes them (what is built, the direction mapping
/// and the sampling formulas are in the docs of `crates/farview-render/src/environment/mod.rs`;
/// the sampling as WGSL in `shaders/ibl_sample.wgsl`).
///
/// Cheap to clone (shared); belongs to the [`GpuContext`] it was made on.
#[derive(Clone)]
pub struct Environment(pub(crate) Arc<GpuEnvironment>);

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Environment {
    /// Prefilters `map` with the default [`EnvironmentOptions`]; blocks until the GPU is done.
    pub fn new(gpu: &GpuContext, map: &EnvironmentMap) -> Result<Self, RenderError> {
        Self::with_options(gpu, map, &EnvironmentOptions::default())
    }

    /// Prefilters `map`; blocks until the GPU is done.
    pub fn with_options(
        gpu: &GpuContext,
        map: &EnvironmentMap,
        options: &EnvironmentOptions,
    ) -> Result<Self, RenderError> {
        let env = bake::bake(gpu, map, options)?;
        tracing::info!(
            width = map.width(),
            height = map.height(),
            specular = options.specular_size,
            diffuse = options.diffuse_size,
            elapsed = ?env.creation_time(),
            "environment prefiltered"
        );
        Ok(Self(Arc::new(env)))
    }

    /// The default environment: the neutral sky shipped in `assets/environments/` (embedded),
    /// the one the reference renders use.
    pub fn load_default(gpu: &GpuContext) -> Result<Self, RenderError> {
        Self::new(gpu, &EnvironmentMap::neutral_sky())
    }

    /// A constant environment of radiance `rgb` (linear; negative or NaN components become 0),
    /// made without filtering (cheap): every texel is `rgb`, as filtering would give.
    pub fn uniform(gpu: &GpuContext, rgb: [f32; 3]) -> Result<Self, RenderError> {
        Ok(Self(Arc::new(GpuEnvironment::uniform(gpu, rgb)?)))
    }

    /// The specular cube's mip levels ([`SPECULAR_MIP_COUNT`]): sample at
    /// `lod = roughness * (mip_count - 1)`.
    pub fn mip_count(&self) -> u32 {
        self.0.specular_mip_count()
    }

    /// Face size of the specular cube's level 0.
    pub fn specular_size(&self) -> u32 {
        self.0.specular.width()
    }

    /// Face size of the diffuse cube.
    pub fn diffuse_size(&self) -> u32 {
        self.0.diffuse.width()
    }

    /// How long making it took, GPU work included.
    pub fn creation_time(&self) -> Duration {
        self.0.creation_time()
    }

    /// Whether it was made on `gpu`'s device (only there can it be bound).
    pub fn belongs_to(&self, gpu: &GpuContext) -> bool {
        self.0.is_on(gpu.device())
    }
}
