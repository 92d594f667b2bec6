//! GPU copies of an imported model: vertex/index buffers per primitive, one texture per image,
//! one bind group per material. Uploaded once per model and shared by every entity drawing it.

use bytemuck::{Pod, Zeroable};
use farview_scene::{AlphaMode, Material, Model};
use wgpu::util::DeviceExt;

use crate::RenderError;

/// Interleaved vertex: position, normal, uv, vertex colour, second uv (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Vertex {
    position: [f32; 3],
    normal: [f32; 3],
    uv: [f32; 2],
    color: [f32; 4],
    uv1: [f32; 2],
}

impl Vertex {
    pub(crate) const ATTRIBUTES: [wgpu::VertexAttribute; 5] = wgpu::vertex_attr_array![
        0 => Float32x3, 1 => Float32x3, 2 => Float32x2, 3 => Float32x4, 4 => Float32x2
    ];

    pub(crate) fn layout() -> wgpu::VertexBufferLayout<'static> {
        wgpu::VertexBufferLayout {
            array_stride: std::mem::size_of::<Vertex>() as u64,
            step_mode: wgpu::VertexStepMode::Vertex,
            attributes: &Self::ATTRIBUTES,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MaterialUniform {
    base_color: [f32; 4],
    emissive: [f32; 4],
    /// metallic, roughness, alpha cutoff, alpha mode (0 opaque, 1 mask, 2 blend).
    params: [f32; 4],
    /// Base colour UV transform rows; `uv_row0.w` is the UV set.
    uv_row0: [f32; 4],
    uv_row1: [f32; 4],
}

/// Bytes of [`MaterialUniform`], for the bind group layout.
pub(crate) const MATERIAL_UNIFORM_SIZE: u64 = std::mem::size_of::<MaterialUniform>() as u64;

pub(crate) struct GpuPrimitive {
    pub(crate) vertices: wgpu::Buffer,
    pub(crate) indices: wgpu::Buffer,
    pub(crate) index_count: u32,
    /// Index into [`GpuModel::materials`]; the last entry is the glTF default material.
    pub(crate) material: usize,
}

pub(crate) struct GpuMaterial {
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) double_sided: bool,
    /// Alpha-blended (drawn in the blended pass, far to near).
    pub(crate) blend: bool,
}

pub(crate) struct GpuModel {
    pub(crate) meshes: Vec<Vec<GpuPrimitive>>,
    pub(crate) materials: Vec<GpuMaterial>,
    pub(crate) bytes: u64,
    pub(crate) triangles: u64,
}

/// Shared objects every upload needs.
pub(crate) struct UploadContext<'a> {
    pub(crate) device: &'a wgpu::Device,
    pub(crate) queue: &'a wgpu::Queue,
    pub(crate) material_layout: &'a wgpu::BindGroupLayout,
    pub(crate) sampler: &'a wgpu::Sampler,
    pub(crate) white: &'a wgpu::TextureView,
    pub(crate) max_texture: u32,
}

impl GpuModel {
    pub(crate) fn upload(cx: &UploadContext<'_>, model: &Model) -> Result<Self, RenderError> {
        let mut bytes = 0u64;
        let mut views = Vec::with_capacity(model.textures.len());
        for tex in &model.textures {
            if tex.width > cx.max_texture || tex.height > cx.max_texture {
                return Err(RenderError::TextureTooLarge {
                    width: tex.width,
                    height: tex.height,
                    max: cx.max_texture,
                });
            }
            if tex.width == 0
                || tex.height == 0
                || tex.rgba8.len() != tex.width as usize * tex.height as usize * 4
            {
                return Err(RenderError::Gpu(format!(
                    "texture {:?} has inconsistent size",
                    tex.name
                )));
            }
            let size = wgpu::Extent3d {
                width: tex.width,
                height: tex.height,
                depth_or_array_layers: 1,
            };
            let texture = cx.device.create_texture(&wgpu::TextureDescriptor {
                label: tex.name.as_deref(),
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8UnormSrgb,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            cx.queue.write_texture(
                texture.as_image_copy(),
                &tex.rgba8,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(tex.width * 4),
                    rows_per_image: None,
                },
                size,
            );
            bytes += tex.rgba8.len() as u64;
            views.push(texture.create_view(&wgpu::TextureViewDescriptor::default()));
        }

        let default_material = Material::default();
        let materials = model
            .materials
            .iter()
            .chain(std::iter::once(&default_material))
            .map(|m| {
                let view = m
                    .base_color_texture
                    .and_then(|t| views.get(t))
                    .unwrap_or(cx.white);
                let uniform = MaterialUniform {
                    base_color: m.base_color_factor,
                    emissive: [
                        m.emissive_factor[0],
                        m.emissive_factor[1],
                        m.emissive_factor[2],
                        0.0,
                    ],
                    params: [
                        m.metallic_factor,
                        m.roughness_factor,
                        m.alpha_cutoff,
                        match m.alpha_mode {
                            AlphaMode::Opaque => 0.0,
                            AlphaMode::Mask => 1.0,
                            AlphaMode::Blend => 2.0,
                        },
                    ],
                    uv_row0: {
                        let r = m.base_color_uv_transform[0];
                        [r[0], r[1], r[2], m.base_color_tex_coord as f32]
                    },
                    uv_row1: {
                        let r = m.base_color_uv_transform[1];
                        [r[0], r[1], r[2], 0.0]
                    },
                };
                let buffer = cx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("material"),
                        contents: bytemuck::bytes_of(&uniform),
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                let bind_group = cx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: m.name.as_deref(),
                    layout: cx.material_layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: buffer.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: wgpu::BindingResource::TextureView(view),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: wgpu::BindingResource::Sampler(cx.sampler),
                        },
                    ],
                });
                GpuMaterial {
                    bind_group,
                    double_sided: m.double_sided,
                    blend: m.alpha_mode == AlphaMode::Blend,
                }
            })
            .collect::<Vec<_>>();
        let default_index = materials.len() - 1;

        let mut triangles = 0u64;
        let mut meshes = Vec::with_capacity(model.meshes.len());
        for mesh in &model.meshes {
            let mut prims = Vec::with_capacity(mesh.primitives.len());
            for p in &mesh.primitives {
                if p.indices.is_empty() || p.positions.is_empty() {
                    continue;
                }
                let verts: Vec<Vertex> = p
                    .positions
                    .iter()
                    .enumerate()
                    .map(|(i, &position)| Vertex {
                        position,
                        normal: p.normals.get(i).copied().unwrap_or([0.0, 0.0, 1.0]),
                        uv: p.uvs.get(i).copied().unwrap_or([0.0, 0.0]),
                        color: p.colors.get(i).copied().unwrap_or([1.0; 4]),
                        uv1: p.uvs1.get(i).copied().unwrap_or([0.0, 0.0]),
                    })
                    .collect();
                let vertices = cx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("vertices"),
                        contents: bytemuck::cast_slice(&verts),
                        usage: wgpu::BufferUsages::VERTEX,
                    });
                let indices = cx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("indices"),
                        contents: bytemuck::cast_slice(&p.indices),
                        usage: wgpu::BufferUsages::INDEX,
                    });
                bytes += (verts.len() * std::mem::size_of::<Vertex>() + p.indices.len() * 4) as u64;
                triangles += p.triangle_count() as u64;
                let material = p
                    .material
                    .filter(|&m| m < default_index)
                    .unwrap_or(default_index);
                prims.push(GpuPrimitive {
                    vertices,
                    indices,
                    index_count: p.indices.len() as u32,
                    material,
                });
            }
            meshes.push(prims);
        }
        Ok(Self {
            meshes,
            materials,
            bytes,
            triangles,
        })
    }
}
