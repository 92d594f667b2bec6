//! The GPU side of an environment: its textures, views and sampler, the helpers the bake shares,
//! and the uniform shortcut.

use std::time::{Duration, Instant};

use glam::Mat4;

use super::f16::F16_MAX;
use super::{SPECULAR_MIP_COUNT, lut};
use crate::{GpuContext, RenderError};

/// Every environment texture's format: filterable and renderable everywhere.
pub(crate) const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba16Float;
/// Bytes per Rgba16Float texel.
pub(super) const TEXEL_BYTES: u32 = 8;
/// Give up waiting for GPU work after this long (a bake takes seconds on a software rasterizer).
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The prefiltered environment on the GPU, shared by every renderer on its device through
/// [`Environment`](super::Environment).
pub(crate) struct GpuEnvironment {
    device: wgpu::Device,
    pub(crate) specular: wgpu::Texture,
    specular_view: wgpu::TextureView,
    pub(crate) diffuse: wgpu::Texture,
    diffuse_view: wgpu::TextureView,
    pub(crate) brdf_lut: wgpu::Texture,
    brdf_lut_view: wgpu::TextureView,
    sampler: wgpu::Sampler,
    rotation: Mat4,
    creation_time: Duration,
}

impl std::fmt::Debug for GpuEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEnvironment")
            .field("specular_size", &self.specular.width())
            .field("diffuse_size", &self.diffuse.width())
            .field("brdf_lut_size", &self.brdf_lut.width())
            .field("creation_time", &self.creation_time)
            .finish_non_exhaustive()
    }
}

impl GpuEnvironment {
    /// A constant environment of radiance `rgb` without any filtering: every texel of every
    /// cube is `rgb` (clamped to the half-float range), which is what filtering a constant
    /// gives. Small cubes (specular 16 with its 5 mips, diffuse 1): cheap enough to make per
    /// renderer. The rotation is the Sample Viewer's default.
    pub(crate) fn uniform(gpu: &GpuContext, rgb: [f32; 3]) -> Result<Self, RenderError> {
        let start = Instant::now();
        let device = gpu.device();
        let scopes = [
            device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            device.push_error_scope(wgpu::ErrorFilter::Validation),
        ];
        let targets = Targets::new(device, 16, 1);
        let c = rgb.map(|v| {
            f64::from(if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, F16_MAX)
            })
        });
        let color = wgpu::Color {
            r: c[0],
            g: c[1],
            b: c[2],
            a: 1.0,
        };
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("uniform environment"),
        });
        let levels = (0..SPECULAR_MIP_COUNT)
            .map(|mip| (&targets.specular, mip))
            .chain([(&targets.diffuse, 0)]);
        for (texture, mip) in levels {
            for face in 0..6 {
                let view = face_view(texture, face, mip);
                encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                    label: Some("uniform environment"),
                    color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                        view: &view,
                        depth_slice: None,
                        resolve_target: None,
                        ops: wgpu::Operations {
                            load: wgpu::LoadOp::Clear(color),
                            store: wgpu::StoreOp::Store,
                        },
                    })],
                    depth_stencil_attachment: None,
                    timestamp_writes: None,
                    occlusion_query_set: None,
                    multiview_mask: None,
                });
            }
        }
        upload_lut(gpu, &targets.brdf_lut);
        let submission = gpu.queue().submit([encoder.finish()]);
        finish(gpu, scopes, submission, start)?;
        let rotation = rotation_y(super::DEFAULT_ROTATION_DEGREES);
        Ok(targets.into_environment(device, cube_sampler(device), rotation, start.elapsed()))
    }

    /// The GGX-prefiltered specular cube (all [`Self::specular_mip_count`] levels).
    pub(crate) fn specular_view(&self) -> &wgpu::TextureView {
        &self.specular_view
    }

    /// The Lambertian irradiance cube.
    pub(crate) fn diffuse_view(&self) -> &wgpu::TextureView {
        &self.diffuse_view
    }

    /// The BRDF lookup table (r scale, g bias; u = NdotV, v = roughness).
    pub(crate) fn brdf_lut_view(&self) -> &wgpu::TextureView {
        &self.brdf_lut_view
    }

    /// Linear, linear between mips, clamp to edge: for all three textures.
    pub(crate) fn sampler(&self) -> &wgpu::Sampler {
        &self.sampler
    }

    /// The specular cube's mip levels (the Sample Viewer's `u_MipCount`).
    pub(crate) fn specular_mip_count(&self) -> u32 {
        self.specular.mip_level_count()
    }

    /// The rotation from world directions to cube directions (`u_EnvRotation`).
    pub(crate) fn rotation(&self) -> Mat4 {
        self.rotation
    }

    /// How long creating this environment took, GPU work included.
    pub(crate) fn creation_time(&self) -> Duration {
        self.creation_time
    }

    /// Whether this environment lives on `device`.
    pub(crate) fn is_on(&self, device: &wgpu::Device) -> bool {
        self.device == *device
    }
}

/// The three textures an environment keeps.
pub(super) struct Targets {
    pub(super) specular: wgpu::Texture,
    pub(super) diffuse: wgpu::Texture,
    pub(super) brdf_lut: wgpu::Texture,
}

impl Targets {
    pub(super) fn new(device: &wgpu::Device, specular_size: u32, diffuse_size: u32) -> Self {
        let usage = wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::RENDER_ATTACHMENT
            | wgpu::TextureUsages::COPY_DST
            | wgpu::TextureUsages::COPY_SRC;
        Self {
            specular: device.create_texture(&texture_desc(
                "environment specular",
                specular_size,
                6,
                SPECULAR_MIP_COUNT,
                usage,
            )),
            diffuse: device.create_texture(&texture_desc(
                "environment diffuse",
                diffuse_size,
                6,
                1,
                usage,
            )),
            brdf_lut: device.create_texture(&texture_desc(
                "environment BRDF LUT",
                lut::LUT_SIZE,
                1,
                1,
                wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::COPY_DST
                    | wgpu::TextureUsages::COPY_SRC,
            )),
        }
    }

    pub(super) fn into_environment(
        self,
        device: &wgpu::Device,
        sampler: wgpu::Sampler,
        rotation: Mat4,
        creation_time: Duration,
    ) -> GpuEnvironment {
        GpuEnvironment {
            device: device.clone(),
            specular_view: cube_view(&self.specular, 0, SPECULAR_MIP_COUNT),
            diffuse_view: cube_view(&self.diffuse, 0, 1),
            brdf_lut_view: self.brdf_lut.create_view(&Default::default()),
            specular: self.specular,
            diffuse: self.diffuse,
            brdf_lut: self.brdf_lut,
            sampler,
            rotation,
            creation_time,
        }
    }
}

pub(super) fn texture_desc<'a>(
    label: &'a str,
    size: u32,
    layers: u32,
    mips: u32,
    usage: wgpu::TextureUsages,
) -> wgpu::TextureDescriptor<'a> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: size,
            height: size,
            depth_or_array_layers: layers,
        },
        mip_level_count: mips,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: FORMAT,
        usage,
        view_formats: &[],
    }
}

/// A render-target view of one face (layer) and mip of a cube texture.
pub(super) fn face_view(texture: &wgpu::Texture, face: u32, mip: u32) -> wgpu::TextureView {
    texture.create_view(&wgpu::TextureViewDescriptor {
        label: Some("environment face"),
        dimension: Some(wgpu::TextureViewDimension::D2),
        base_mip_level: mip,
        mip_level_count: Some(1),
        base_array_layer: face,
        array_layer_count: Some(1),
        ..Default::default()
    })
}

/// A cube view of `mips` levels from `base`.
pub(super) fn cube_view(texture: &wgpu::Texture, base: u32, mips: u32) -> wgpu::TextureView {
    texture.create_view(&wgpu::TextureViewDescriptor {
        label: Some("environment cube"),
        dimension: Some(wgpu::TextureViewDimension::Cube),
        base_mip_level: base,
        mip_level_count: Some(mips),
        ..Default::default()
    })
}

/// The Sample Viewer's cube and LUT sampler: linear, linear between mips, clamp to edge.
pub(super) fn cube_sampler(device: &wgpu::Device) -> wgpu::Sampler {
    device.create_sampler(&wgpu::SamplerDescriptor {
        label: Some("environment"),
        address_mode_u: wgpu::AddressMode::ClampToEdge,
        address_mode_v: wgpu::AddressMode::ClampToEdge,
        address_mode_w: wgpu::AddressMode::ClampToEdge,
        mag_filter: wgpu::FilterMode::Linear,
        min_filter: wgpu::FilterMode::Linear,
        mipmap_filter: wgpu::MipmapFilterMode::Linear,
        ..Default::default()
    })
}

/// The rotation from world to cube directions for `degrees` about +Y (gl-matrix's `rotateY`,
/// which is glam's `from_rotation_y`), exact for multiples of 90 degrees.
pub(crate) fn rotation_y(degrees: f32) -> Mat4 {
    let quarter = degrees / 90.0;
    if quarter.fract() == 0.0 && quarter.is_finite() {
        let (s, c) = match (quarter as i64).rem_euclid(4) {
            0 => (0.0, 1.0),
            1 => (1.0, 0.0),
            2 => (0.0, -1.0),
            _ => (-1.0, 0.0),
        };
        return Mat4::from_cols_array(&[
            c, 0.0, -s, 0.0, //
            0.0, 1.0, 0.0, 0.0, //
            s, 0.0, c, 0.0, //
            0.0, 0.0, 0.0, 1.0,
        ]);
    }
    Mat4::from_rotation_y(degrees.to_radians())
}

pub(super) fn upload_lut(gpu: &GpuContext, texture: &wgpu::Texture) {
    gpu.queue().write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(lut::rgba16f()),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(lut::LUT_SIZE * TEXEL_BYTES),
            rows_per_image: None,
        },
        texture.size(),
    );
}

/// Pops the error scopes and waits for `submission`, in slices (the GL backend caps one wait at
/// about 2 s), up to [`WAIT_TIMEOUT`].
pub(super) fn finish(
    gpu: &GpuContext,
    scopes: [wgpu::ErrorScopeGuard; 2],
    submission: wgpu::SubmissionIndex,
    start: Instant,
) -> Result<(), RenderError> {
    let [oom, validation] = scopes;
    let validation = validation.pop();
    let oom = oom.pop();
    let errors = [pollster::block_on(validation), pollster::block_on(oom)];
    if let Some(error) = errors.into_iter().flatten().next() {
        return Err(RenderError::Gpu(format!("environment: {error}")));
    }
    loop {
        if let Some(why) = gpu.lost() {
            return Err(RenderError::DeviceLost(why));
        }
        match gpu.device().poll(wgpu::PollType::Wait {
            submission_index: Some(submission.clone()),
            timeout: Some(Duration::from_secs(1)),
        }) {
            Ok(_) => return Ok(()),
            Err(wgpu::PollError::Timeout) if start.elapsed() < WAIT_TIMEOUT => {}
            Err(e) => {
                return Err(RenderError::Gpu(format!(
                    "environment: waiting for the GPU: {e}"
                )));
            }
        }
    }
}
