//! Group 3 of the mesh pipelines: the environment a renderer lights with (prefiltered specular
//! cube, diffuse irradiance cube, BRDF lookup table), rebuilt only when the lighting's
//! environment changes. Without an environment, a small uniform one of the fallback ambient
//! radiance stands in, so the shader has one path.

use std::sync::Arc;

use glam::{Mat4, Vec3};

use crate::{Environment, GpuContext, Lighting, RenderError};

/// The layout of group 3 (`shaders/mesh.wgsl`).
pub(crate) fn layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let texture = |binding, view_dimension| wgpu::BindGroupLayoutEntry {
        binding,
        // The fast shading samples the environment per vertex.
        visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: true },
            view_dimension,
            multisampled: false,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("environment"),
        entries: &[
            texture(0, wgpu::TextureViewDimension::Cube),
            texture(1, wgpu::TextureViewDimension::Cube),
            texture(2, wgpu::TextureViewDimension::D2),
            wgpu::BindGroupLayoutEntry {
                binding: 3,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                count: None,
            },
        ],
    })
}

/// The bound environment and what the globals need to know of it.
pub(crate) struct EnvironmentBinding {
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) specular_mips: u32,
    pub(crate) rotation: Mat4,
    /// Which environment this is: the lighting's (by pointer) or the fallback of a colour.
    source: Source,
}

#[derive(PartialEq)]
enum Source {
    Shared(usize),
    Fallback([u32; 3]),
}

fn source_of(lighting: &Lighting) -> Source {
    match &lighting.environment {
        Some(env) => Source::Shared(Arc::as_ptr(&env.0) as *const () as usize),
        None => Source::Fallback(lighting.fallback_ambient.to_array().map(f32::to_bits)),
    }
}

impl EnvironmentBinding {
    /// Binds the lighting's environment (or a uniform one of its fallback ambient).
    pub(crate) fn new(
        ctx: &GpuContext,
        layout: &wgpu::BindGroupLayout,
        lighting: &Lighting,
    ) -> Result<Self, RenderError> {
        let fallback;
        let env = match &lighting.environment {
            Some(env) => env,
            None => {
                let ambient = lighting.fallback_ambient.max(Vec3::ZERO);
                fallback = Environment::uniform(ctx, ambient.to_array())?;
                &fallback
            }
        };
        let gpu = &env.0;
        let bind_group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("environment"),
            layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(gpu.specular_view()),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(gpu.diffuse_view()),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(gpu.brdf_lut_view()),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: wgpu::BindingResource::Sampler(gpu.sampler()),
                },
            ],
        });
        Ok(Self {
            bind_group,
            specular_mips: gpu.specular_mip_count(),
            rotation: gpu.rotation(),
            source: source_of(lighting),
        })
    }

    /// Whether this binding still shows `lighting`'s environment.
    pub(crate) fn matches(&self, lighting: &Lighting) -> bool {
        self.source == source_of(lighting)
    }
}
