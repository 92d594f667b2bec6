//! GPU copies of an imported model: vertex/index buffers per primitive, one texture per image
//! (with mips), one bind group per material. Uploaded once per model and shared by every entity
//! drawing it.

use bytemuck::{Pod, Zeroable};
use farview_scene::{AlphaMode, Material, Model};
use wgpu::util::DeviceExt;

use crate::RenderError;
use crate::materials::{MaterialShared, Slot};
use crate::textures::{GpuTexture, upload_basis, upload_texture};

/// Interleaved vertex: position, normal, uv, vertex colour, second uv, tangent (72 bytes).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Vertex {
    position: [f32; 3],
    normal: [f32; 3],
    uv: [f32; 2],
    color: [f32; 4],
    uv1: [f32; 2],
    /// Zero when the primitive has no normal map (the shader then skips the tangent frame).
    tangent: [f32; 4],
}

impl Vertex {
    pub(crate) const ATTRIBUTES: [wgpu::VertexAttribute; 6] = wgpu::vertex_attr_array![
        0 => Float32x3, 1 => Float32x3, 2 => Float32x2, 3 => Float32x4, 4 => Float32x2,
        5 => Float32x4
    ];

    /// The interleaved vertices of `p` with the given positions, normals and tangents (its
    /// own, or posed ones of the same length).
    pub(crate) fn build<'a>(
        p: &'a farview_scene::Primitive,
        positions: &'a [[f32; 3]],
        normals: &'a [[f32; 3]],
        tangents: &'a [[f32; 4]],
    ) -> impl Iterator<Item = Vertex> + 'a {
        positions
            .iter()
            .enumerate()
            .map(move |(i, &position)| Vertex {
                position,
                normal: normals.get(i).copied().unwrap_or([0.0, 0.0, 1.0]),
                uv: p.uvs.get(i).copied().unwrap_or([0.0, 0.0]),
                color: p.colors.get(i).copied().unwrap_or([1.0; 4]),
                uv1: p.uvs1.get(i).copied().unwrap_or([0.0, 0.0]),
                tangent: tangents.get(i).copied().unwrap_or([0.0; 4]),
            })
    }

    pub(crate) fn layout() -> wgpu::VertexBufferLayout<'static> {
        wgpu::VertexBufferLayout {
            array_stride: std::mem::size_of::<Vertex>() as u64,
            step_mode: wgpu::VertexStepMode::Vertex,
            attributes: &Self::ATTRIBUTES,
        }
    }
}

pub(crate) struct GpuPrimitive {
    /// Index of the primitive in the model's mesh (empty ones are not uploaded).
    pub(crate) source: usize,
    pub(crate) vertices: wgpu::Buffer,
    pub(crate) indices: wgpu::Buffer,
    pub(crate) index_count: u32,
    /// Index into [`GpuModel::materials`]; the last entry is the glTF default material.
    pub(crate) material: usize,
    /// `KHR_materials_variants`: (variant, material index) pairs.
    pub(crate) variants: Vec<(usize, usize)>,
    /// What the GPU poses a skinned or morphed primitive from (when the renderer poses on the
    /// GPU).
    pub(crate) deform: Option<DeformSource>,
    /// Clusters and levels of detail: `indices` holds the primitive's indices followed by the
    /// coarser levels' ([`farview_scene::lod`]).
    pub(crate) lod: Option<std::sync::Arc<farview_scene::lod::PrimitiveLod>>,
}

/// A deformable primitive's skin and morph data, laid out for `shaders/deform.wgsl`: per vertex
/// its joint indices (as f32 values) and weights when skinned, then per target, per vertex, its
/// position, normal and tangent displacements (vec4 each).
pub(crate) struct DeformSource {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) vertex_count: u32,
    pub(crate) skinned: bool,
    pub(crate) targets: u32,
    /// Where the targets start, in vec4 units.
    pub(crate) targets_offset: u32,
}

impl DeformSource {
    /// The source of `p`, or `None` when it has neither joints nor targets, or its data would
    /// not fit one storage binding of `max_binding` bytes (it is then posed on the CPU).
    fn new(device: &wgpu::Device, p: &farview_scene::Primitive, max_binding: u64) -> Option<Self> {
        let n = p.positions.len();
        let skinned = !p.joints.is_empty() && p.joints.len() == n && p.weights.len() == n;
        if !skinned && p.targets.is_empty() {
            return None;
        }
        let vec4s = if skinned { 2 * n } else { 0 } + 3 * n * p.targets.len();
        let bytes = (vec4s.max(1) * 16) as u64;
        if bytes > max_binding || n as u64 * std::mem::size_of::<Vertex>() as u64 > max_binding {
            tracing::warn!(
                vertices = n,
                targets = p.targets.len(),
                bytes,
                max_binding,
                "a skinned or morphed primitive too large for one storage binding: posed on the CPU \
                 only, drawn at rest where the scene does not pose on the CPU"
            );
            return None;
        }
        let mut data: Vec<[f32; 4]> = Vec::with_capacity(vec4s.max(1));
        if skinned {
            for (j, w) in p.joints.iter().zip(&p.weights) {
                // Joint indices as f32 values (exact below 2^24), not bit patterns: a bit
                // pattern read as f32 may be a subnormal that a driver flushes to zero.
                data.push(j.map(f32::from));
                data.push(*w);
            }
        }
        let targets_offset = data.len() as u32;
        // The CPU path morphs only the attributes the primitive has; a missing one gets no
        // displacement here either.
        let (has_normals, has_tangents) = (!p.normals.is_empty(), !p.tangents.is_empty());
        for t in &p.targets {
            for i in 0..n {
                let d = |v: &Vec<[f32; 3]>, has: bool| {
                    v.get(i)
                        .filter(|_| has)
                        .map_or([0.0; 4], |d| [d[0], d[1], d[2], 0.0])
                };
                data.push(d(&t.positions, true));
                data.push(d(&t.normals, has_normals));
                data.push(d(&t.tangents, has_tangents));
            }
        }
        if data.is_empty() {
            data.push([0.0; 4]);
        }
        let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("deform source"),
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        });
        Some(Self {
            buffer,
            vertex_count: n as u32,
            skinned,
            targets: p.targets.len() as u32,
            targets_offset,
        })
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.buffer.size()
    }
}

impl GpuPrimitive {
    /// The material drawn for `variant` (the default one when the variant does not map this
    /// primitive).
    pub(crate) fn material_for(&self, variant: Option<u32>) -> usize {
        variant
            .and_then(|v| self.variants.iter().find(|(k, _)| *k == v as usize))
            .map_or(self.material, |(_, m)| *m)
    }
}

pub(crate) struct GpuMaterial {
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) double_sided: bool,
    /// Alpha-blended (drawn in the blended pass, far to near).
    pub(crate) blend: bool,
    /// Alpha-tested (`MASK`): its shader may discard fragments.
    pub(crate) mask: bool,
    /// Has clearcoat, sheen or transmission: drawn with the layered shader.
    pub(crate) layered: bool,
    /// Has transmission: sees the frame behind it, and is left out of that frame.
    pub(crate) transmissive: bool,
    /// Has a base colour, metallic-roughness or emissive texture, the ones the fast shading
    /// samples; without, it lights the whole colour at the vertices.
    pub(crate) fast_textured: bool,
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
    pub(crate) materials: &'a MaterialShared,
    pub(crate) max_texture: u32,
    /// Largest storage binding, when the renderer poses skinned and morphed meshes on the GPU
    /// (`None`: it does not, and uploads no deform sources).
    pub(crate) gpu_posing: Option<u64>,
    /// The format KTX2 textures are transcoded to (`None`: their RGBA8 is uploaded).
    pub(crate) block_format: Option<crate::BlockFormat>,
}

impl GpuModel {
    pub(crate) fn upload(cx: &UploadContext<'_>, model: &Model) -> Result<Self, RenderError> {
        // How each image is sampled: colour slots read sRGB, data slots linear.
        let mut uses = vec![(false, false); model.textures.len()];
        for m in &model.materials {
            for slot in Slot::ALL {
                if let Some(r) = slot.of(m)
                    && let Some((color, data)) = uses.get_mut(r.texture)
                {
                    *color |= slot.is_color();
                    *data |= !slot.is_color();
                }
            }
        }
        let mut bytes = 0u64;
        let mut textures = Vec::with_capacity(model.textures.len());
        for (tex, (color, data)) in model.textures.iter().zip(uses) {
            let mut t = GpuTexture::default();
            let upload = |srgb: bool| {
                if let Some(view) = cx
                    .block_format
                    .and_then(|f| upload_basis(cx.device, cx.queue, tex, srgb, f, cx.max_texture))
                {
                    return Ok(view);
                }
                upload_texture(cx.device, cx.queue, tex, srgb, cx.max_texture)
            };
            if color {
                let (view, b) = upload(true)?;
                t.srgb = Some(view);
                t.bytes += b;
            }
            if data {
                let (view, b) = upload(false)?;
                t.linear = Some(view);
                t.bytes += b;
            }
            bytes += t.bytes;
            textures.push(t);
        }

        let default_material = Material::default();
        let materials = model
            .materials
            .iter()
            .chain(std::iter::once(&default_material))
            .map(|m| {
                let (bind_group, present) = cx.materials.bind_group(cx.device, m, &textures)?;
                Ok(GpuMaterial {
                    bind_group,
                    fast_textured: present.fast_textured(),
                    double_sided: m.double_sided,
                    blend: m.alpha_mode == AlphaMode::Blend,
                    mask: m.alpha_mode == AlphaMode::Mask,
                    layered: m.clearcoat.is_some() || m.sheen.is_some() || m.transmission.is_some(),
                    transmissive: m.transmission.is_some(),
                })
            })
            .collect::<Result<Vec<_>, RenderError>>()?;
        let default_index = materials.len() - 1;

        let mut triangles = 0u64;
        let mut meshes = Vec::with_capacity(model.meshes.len());
        for mesh in &model.meshes {
            let mut prims = Vec::with_capacity(mesh.primitives.len());
            for (source, p) in mesh.primitives.iter().enumerate() {
                if p.indices.is_empty() || p.positions.is_empty() {
                    continue;
                }
                let deform = cx
                    .gpu_posing
                    .and_then(|max| DeformSource::new(cx.device, p, max));
                // A deformable primitive's bind pose is also the deform pass's input.
                let usage = if deform.is_some() {
                    wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::STORAGE
                } else {
                    wgpu::BufferUsages::VERTEX
                };
                let vertices = vertex_buffer(cx.device, cx.queue, p, usage)?;
                bytes += deform.as_ref().map_or(0, DeformSource::bytes);
                // Full detail first, then the coarser levels, in one buffer.
                let coarse = p.lod.as_ref().map_or(&[][..], |l| l.coarse.as_slice());
                let indices = index_buffer(cx.device, cx.queue, &p.indices, coarse)?;
                bytes += vertices.size() + ((p.indices.len() + coarse.len()) * 4) as u64;
                triangles += p.triangle_count() as u64;
                let material = p
                    .material
                    .filter(|&m| m < default_index)
                    .unwrap_or(default_index);
                let variants = p
                    .variant_materials
                    .iter()
                    .filter(|(_, m)| *m < default_index)
                    .copied()
                    .collect();
                prims.push(GpuPrimitive {
                    source,
                    vertices,
                    indices,
                    index_count: p.indices.len() as u32,
                    material,
                    variants,
                    deform,
                    lod: p.lod.clone(),
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

/// Buffers larger than this are written through one reused staging buffer of this size (see
/// [`write_in_chunks`]); smaller ones as wgpu stages them.
const STAGING_CHUNK: u64 = 8 << 20;

/// The interleaved vertices of `p`, written straight into staging memory as they are built
/// (a 20-million-triangle scan has 720 MB of them: building them in a vector first cost a
/// second pass over that memory and its page faults).
fn vertex_buffer(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    p: &farview_scene::Primitive,
    usage: wgpu::BufferUsages,
) -> Result<wgpu::Buffer, RenderError> {
    const STRIDE: usize = std::mem::size_of::<Vertex>();
    let size = (p.positions.len() * STRIDE) as u64;
    let mut vertices = Vertex::build(p, &p.positions, &p.normals, &p.tangents);
    let mut fill = |view: wgpu::WriteOnly<'_, [u8]>| {
        let (slots, _) = view.into_chunks::<STRIDE>();
        for (slot, v) in slots.into_iter().zip(&mut vertices) {
            slot.write(bytemuck::cast::<Vertex, [u8; STRIDE]>(v));
        }
    };
    if size > STAGING_CHUNK {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("vertices"),
            size,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        write_in_chunks(device, queue, &buffer, STRIDE as u64, |_, view| fill(view))?;
        return Ok(buffer);
    }
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("vertices"),
        size,
        usage,
        mapped_at_creation: true,
    });
    {
        let mut view = buffer
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| RenderError::Gpu(format!("mapping a new vertex buffer: {e}")))?;
        fill(view.slice(..));
    }
    buffer.unmap();
    Ok(buffer)
}

/// An index buffer holding a primitive's full-detail indices, then its coarser levels' (the
/// layout [`farview_scene::lod::PrimitiveLod`] ranges index into).
pub(crate) fn index_buffer(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    indices: &[u32],
    coarse: &[u32],
) -> Result<wgpu::Buffer, RenderError> {
    let size = ((indices.len() + coarse.len()) * 4) as u64;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("indices"),
        size,
        usage: wgpu::BufferUsages::INDEX | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let (full, coarse) = (
        bytemuck::cast_slice::<u32, u8>(indices),
        bytemuck::cast_slice::<u32, u8>(coarse),
    );
    if size > STAGING_CHUNK {
        write_in_chunks(device, queue, &buffer, 4, |at, mut view| {
            let (a, b) = joined(full, coarse, at as usize, view.len());
            view.slice(..a.len()).copy_from_slice(a);
            view.slice(a.len()..a.len() + b.len()).copy_from_slice(b);
        })?;
        return Ok(buffer);
    }
    queue.write_buffer(&buffer, 0, full);
    if !coarse.is_empty() {
        queue.write_buffer(&buffer, full.len() as u64, coarse);
    }
    Ok(buffer)
}

/// The bytes at `at..at + n` of `a` followed by `b`: the part from each.
fn joined<'a>(a: &'a [u8], b: &'a [u8], at: usize, n: usize) -> (&'a [u8], &'a [u8]) {
    let end = at.saturating_add(n);
    let from_a = a.get(at.min(a.len())..end.min(a.len())).unwrap_or(&[]);
    let (b_start, b_end) = (at.saturating_sub(a.len()), end.saturating_sub(a.len()));
    let from_b = b
        .get(b_start.min(b.len())..b_end.min(b.len()))
        .unwrap_or(&[]);
    (from_a, from_b)
}

/// Writes all of `target` (made with `COPY_DST`) in chunks of about [`STAGING_CHUNK`] bytes (a
/// whole number of `unit`s) through one staging buffer, mapped again for each chunk once the
/// copy of the one before is done. `fill(offset, view)` writes the chunk at `offset`; chunks
/// come in order.
///
/// Why: wgpu stages a write (or a buffer mapped at creation) through a staging buffer as
/// large as the write. Uploading a 720 MB vertex buffer then touched 720 MB of fresh memory
/// more, and on a VM each fresh gigabyte costs about half a second of page faults and clearing,
/// about as much again as the copy itself. One chunk is touched once and reused.
fn write_in_chunks(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    target: &wgpu::Buffer,
    unit: u64,
    mut fill: impl FnMut(u64, wgpu::WriteOnly<'_, [u8]>),
) -> Result<(), RenderError> {
    // Copies move multiples of 4 bytes, and a chunk holds whole units.
    let len = target.size();
    let aligned = |n: u64| n > 0 && n.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
    if !aligned(unit) || !aligned(len) {
        return Err(RenderError::Gpu(format!(
            "a buffer of {len} bytes cannot be written in chunks of {unit}-byte units"
        )));
    }
    let step = (STAGING_CHUNK / unit).max(1) * unit;
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("upload staging"),
        size: step.min(len),
        usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: true,
    });
    let mut at = 0;
    while at < len {
        let size = step.min(len - at);
        {
            let mut view = staging
                .slice(..size)
                .get_mapped_range_mut()
                .map_err(|e| RenderError::Gpu(format!("mapping the upload staging: {e}")))?;
            fill(at, view.slice(..));
        }
        staging.unmap();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("upload chunk"),
        });
        encoder.copy_buffer_to_buffer(&staging, 0, target, at, size);
        let submission = queue.submit([encoder.finish()]);
        at += size;
        if at < len {
            let (tx, rx) = std::sync::mpsc::channel();
            staging.slice(..).map_async(wgpu::MapMode::Write, move |r| {
                let _ = tx.send(r);
            });
            device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(submission),
                    timeout: Some(UPLOAD_CHUNK_TIMEOUT),
                })
                .map_err(|e| RenderError::Gpu(format!("waiting for an upload chunk: {e}")))?;
            match rx.recv_timeout(UPLOAD_CHUNK_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(RenderError::Gpu(format!(
                        "mapping the upload staging again: {e}"
                    )));
                }
                Err(_) => {
                    return Err(RenderError::Gpu(
                        "the upload staging was not mapped again in time".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// How long an upload waits for the GPU to copy one chunk before it gives up.
const UPLOAD_CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::joined;

    /// Every window over two slices joined is the same window of their concatenation.
    #[test]
    fn joined_windows_match_the_concatenation() {
        let (a, b): (Vec<u8>, Vec<u8>) = ((0..10).collect(), (10..17).collect());
        let all: Vec<u8> = a.iter().chain(&b).copied().collect();
        for at in 0..=all.len() {
            for n in 0..=all.len() - at {
                let (x, y) = joined(&a, &b, at, n);
                let got: Vec<u8> = x.iter().chain(y).copied().collect();
                assert_eq!(got, &all[at..at + n], "at {at}, n {n}");
            }
        }
        // Past the end: nothing, never a panic.
        assert_eq!(joined(&a, &b, 20, 5), (&[][..], &[][..]));
        assert_eq!(joined(&a, &b, usize::MAX, 5), (&[][..], &[][..]));
        assert_eq!(joined(&a, &[], 8, 4), (&a[8..], &[][..]));
    }
}
