//! Reading environment textures back to the CPU.

use super::super::f16::f16_to_f32;
use super::super::gpu;
use crate::GpuContext;

/// Reads back all layers of one mip level of an Rgba16Float texture, as RGBA f32, layer by
/// layer, rows top to bottom. Cube textures are read through the sampler (the GL backend cannot
/// copy them to a buffer): each texel is sampled, nearest, at its centre's direction, which is
/// also what checks that a direction reads the texel the mapping says.
pub(super) fn read_level(gpu: &GpuContext, texture: &wgpu::Texture, mip: u32) -> Vec<[f32; 4]> {
    if texture.depth_or_array_layers() == 6 {
        let faces = sample_cube_faces(gpu, texture, mip, (texture.width() >> mip).max(1), false);
        return copy_level(gpu, &faces, 0);
    }
    copy_level(gpu, texture, mip)
}

pub(super) fn copy_level(gpu: &GpuContext, texture: &wgpu::Texture, mip: u32) -> Vec<[f32; 4]> {
    let (width, height) = (
        (texture.width() >> mip).max(1),
        (texture.height() >> mip).max(1),
    );
    let layers = texture.depth_or_array_layers();
    let row = (width * 8).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("test readback"),
        size: u64::from(row * height * layers),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture,
            mip_level: mip,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(height),
            },
        },
        wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: layers,
        },
    );
    gpu.queue().submit([encoder.finish()]);
    let (sender, receiver) = std::sync::mpsc::channel();
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |r| sender.send(r).unwrap());
    // The GL backend caps one wait at about 2 s, which a busy machine (tests in parallel on a
    // software rasterizer) can exceed: wait in slices.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match gpu.device().poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(std::time::Duration::from_secs(1)),
        }) {
            Ok(_) => break,
            Err(wgpu::PollError::Timeout) if std::time::Instant::now() < deadline => {}
            Err(e) => panic!("readback: {e}"),
        }
    }
    receiver.recv().unwrap().unwrap();
    let data = buffer.slice(..).get_mapped_range().unwrap();
    let mut out = Vec::new();
    for y in 0..height * layers {
        let start = (y * row) as usize;
        let halves: &[u16] = bytemuck::cast_slice(&data[start..start + width as usize * 8]);
        out.extend(
            halves
                .chunks_exact(4)
                .map(|h| [0, 1, 2, 3].map(|i| f16_to_f32(h[i]))),
        );
    }
    out
}

/// Samples one level of a cube at the texel centres' directions of a `grid` x `grid` face (the
/// major-axis table's inverse, as `texel_direction`) into a grid x (6 grid) 2D texture, the
/// faces stacked top to bottom. With `grid` the level's size and nearest filtering, that is
/// every texel exactly.
pub(super) fn sample_cube_faces(
    gpu: &GpuContext,
    cube: &wgpu::Texture,
    mip: u32,
    grid: u32,
    linear: bool,
) -> wgpu::Texture {
    const SHADER: &str = "
        @group(0) @binding(0) var cube: texture_cube<f32>;
        @group(0) @binding(1) var nearest: sampler;
        @group(0) @binding(2) var target_size: texture_2d<f32>;
        @vertex fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
            return vec4<f32>(f32((i & 1u) << 2u) - 1.0, f32((i & 2u) << 1u) - 1.0, 0.0, 1.0);
        }
        @fragment fn fs(@builtin(position) p: vec4<f32>) -> @location(0) vec4<f32> {
            let size = f32(textureDimensions(target_size).x);
            let face = u32(floor(p.y / size));
            let st = vec2<f32>(p.x, p.y - f32(face) * size) / size * 2.0 - 1.0;
            var d: vec3<f32>;
            switch face {
                case 0u: { d = vec3<f32>(1.0, -st.y, -st.x); }
                case 1u: { d = vec3<f32>(-1.0, -st.y, st.x); }
                case 2u: { d = vec3<f32>(st.x, 1.0, st.y); }
                case 3u: { d = vec3<f32>(st.x, -1.0, -st.y); }
                case 4u: { d = vec3<f32>(st.x, -st.y, 1.0); }
                default: { d = vec3<f32>(-st.x, -st.y, -1.0); }
            }
            return textureSampleLevel(cube, nearest, d, 0.0);
        }";
    let device = gpu.device();
    let size = grid;
    let out = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("test cube faces"),
        size: wgpu::Extent3d {
            width: size,
            height: 6 * size,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: gpu::FORMAT,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: None,
        layout: None,
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: Default::default(),
        depth_stencil: None,
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(gpu::FORMAT.into())],
        }),
        multiview_mask: None,
        cache: None,
    });
    let view = cube.create_view(&wgpu::TextureViewDescriptor {
        dimension: Some(wgpu::TextureViewDimension::Cube),
        base_mip_level: mip,
        mip_level_count: Some(1),
        ..Default::default()
    });
    let filter = if linear {
        wgpu::FilterMode::Linear
    } else {
        wgpu::FilterMode::Nearest
    };
    let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
        mag_filter: filter,
        min_filter: filter,
        ..Default::default()
    });
    // Only its size matters: the shader learns the grid from it.
    let size_probe = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("test grid size"),
        size: wgpu::Extent3d {
            width: grid,
            height: 1,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: gpu::FORMAT,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    });
    let size_view = size_probe.create_view(&Default::default());
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&view),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Sampler(&sampler),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(&size_view),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let target = out.create_view(&Default::default());
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: None,
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.draw(0..3, 0..1);
    }
    gpu.queue().submit([encoder.finish()]);
    out
}

/// Max and mean relative difference of `a` from `b` (per channel, relative to b + 0.01).
pub(super) fn difference(a: &[[f32; 4]], b: &[[f32; 4]]) -> (f32, f32) {
    let (mut max, mut sum) = (0.0f32, 0.0f32);
    for (p, q) in a.iter().zip(b) {
        for c in 0..3 {
            let d = (p[c] - q[c]).abs() / (q[c] + 0.01);
            max = max.max(d);
            sum += d;
        }
    }
    (max, sum / (3 * a.len()) as f32)
}
