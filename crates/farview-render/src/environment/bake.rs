//! The prefilter passes: an equirectangular panorama -> the source cube and its mips -> the GGX
//! specular levels and the Lambertian cube (see the [module docs](super) for what each computes).

use std::time::Instant;

use super::f16::f32_to_f16;
use super::gpu::{
    FORMAT, GpuEnvironment, TEXEL_BYTES, Targets, cube_sampler, cube_view, face_view, finish,
    rotation_y, texture_desc, upload_lut,
};
use super::{EnvironmentMap, EnvironmentOptions, SPECULAR_MIP_COUNT, samples};
use crate::shaders::{IBL_FILTER_SHADER, IBL_PANORAMA_SHADER};
use crate::{GpuContext, RenderError};

/// Upload the panorama in slices of about this many bytes (bounds the staging copies).
const UPLOAD_SLICE_BYTES: u32 = 16 << 20;

/// Prefilters `map` on the GPU and waits until the work is done, so the cost is paid here and
/// not by the first frame.
pub(super) fn bake(
    gpu: &GpuContext,
    map: &EnvironmentMap,
    options: &EnvironmentOptions,
) -> Result<GpuEnvironment, RenderError> {
    let start = Instant::now();
    let device = gpu.device();
    let max = gpu.limits().max_texture_dimension_2d;
    check_options(options, max)?;
    if map.width() > max || map.height() > max {
        return Err(RenderError::TextureTooLarge {
            width: map.width(),
            height: map.height(),
            max,
        });
    }
    let scopes = [
        device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        device.push_error_scope(wgpu::ErrorFilter::Validation),
    ];
    let panorama = upload_panorama(gpu, map, UPLOAD_SLICE_BYTES);
    let source = device.create_texture(&texture_desc(
        "environment source cube",
        options.source_size,
        6,
        options.source_size.ilog2() + 1,
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::RENDER_ATTACHMENT,
    ));
    let targets = Targets::new(device, options.specular_size, options.diffuse_size);
    let (samples, ranges) = sample_tables(options);
    let sample_buffer = wgpu::util::DeviceExt::create_buffer_init(
        device,
        &wgpu::util::BufferInitDescriptor {
            label: Some("environment samples"),
            contents: bytemuck::cast_slice(&samples),
            usage: wgpu::BufferUsages::STORAGE,
        },
    );
    let align = gpu.limits().min_uniform_buffer_offset_alignment as usize;
    let plan = Plan::new(options, &source, &targets, &ranges, align);
    let sampler = cube_sampler(device);
    let resources = Resources {
        panorama: panorama.create_view(&Default::default()),
        panorama_sampler: device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("environment panorama"),
            address_mode_u: wgpu::AddressMode::MirrorRepeat,
            address_mode_v: wgpu::AddressMode::MirrorRepeat,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        }),
        source: cube_view(&source, 0, source.mip_level_count()),
        sampler: &sampler,
        samples: sample_buffer,
    };
    let commands = plan.encode(device, &Pipelines::new(device), &resources);
    upload_lut(gpu, &targets.brdf_lut);
    let submission = gpu.queue().submit([commands]);
    finish(gpu, scopes, submission, start)?;
    Ok(targets.into_environment(
        device,
        sampler,
        rotation_y(options.rotation_degrees),
        start.elapsed(),
    ))
}

fn is_pow2_in(v: u32, lo: u32, hi: u32) -> bool {
    v.is_power_of_two() && (lo..=hi).contains(&v)
}

fn check_options(o: &EnvironmentOptions, max_dimension: u32) -> Result<(), RenderError> {
    let source_max = max_dimension.min(4096);
    let problem = if !is_pow2_in(o.source_size, 16, source_max) {
        format!(
            "source_size {} is not a power of two in 16..={source_max}",
            o.source_size
        )
    } else if !is_pow2_in(o.specular_size, 16, o.source_size) {
        format!(
            "specular_size {} is not a power of two in 16..={} (source_size)",
            o.specular_size, o.source_size
        )
    } else if !is_pow2_in(o.diffuse_size, 1, o.source_size) {
        format!(
            "diffuse_size {} is not a power of two in 1..={} (source_size)",
            o.diffuse_size, o.source_size
        )
    } else if !(1..=65536).contains(&o.ggx_samples) || !(1..=65536).contains(&o.lambertian_samples)
    {
        format!(
            "sample counts {} (GGX) and {} (Lambertian) must be in 1..=65536",
            o.ggx_samples, o.lambertian_samples
        )
    } else if !o.rotation_degrees.is_finite() {
        format!("rotation_degrees {} is not finite", o.rotation_degrees)
    } else {
        return Ok(());
    };
    Err(RenderError::Environment(format!(
        "invalid environment options: {problem}"
    )))
}

/// The sample tables of all prefilter passes in one list: GGX for specular levels 1..5
/// (roughness `level / 4`), then Lambertian; with each pass's (offset, count) in it.
fn sample_tables(options: &EnvironmentOptions) -> (Vec<samples::Sample>, Vec<(u32, u32)>) {
    let mut table: Vec<samples::Sample> = Vec::new();
    let mut ranges = Vec::new();
    let mut add = |s: Vec<samples::Sample>| {
        ranges.push((table.len() as u32, s.len() as u32));
        table.extend(s);
    };
    for mip in 1..SPECULAR_MIP_COUNT {
        let roughness = f64::from(mip) / f64::from(SPECULAR_MIP_COUNT - 1);
        add(samples::ggx(
            roughness,
            options.ggx_samples,
            options.source_size,
        ));
    }
    add(samples::lambertian(
        options.lambertian_samples,
        options.source_size,
    ));
    (table, ranges)
}

/// The per-draw parameters of `shaders/ibl_panorama.wgsl` and `shaders/ibl_filter.wgsl` (the
/// panorama shader reads the first two fields).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PassParams {
    face: u32,
    size: f32,
    sample_offset: u32,
    sample_count: u32,
    weighted: u32,
    _pad: [u32; 3],
}

/// Uniform blocks of every pass in one buffer, each at an aligned offset.
struct ParamBlocks {
    bytes: Vec<u8>,
    align: usize,
}

impl ParamBlocks {
    fn push(&mut self, params: PassParams) -> u64 {
        let offset = self.bytes.len().next_multiple_of(self.align);
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(bytemuck::bytes_of(&params));
        offset as u64
    }
}

/// One draw of the bake: which pipeline (with its source view for a copy or downsample), the
/// parameter block, and the target face and level.
struct Draw {
    kind: DrawKind,
    params: u64,
    target: wgpu::TextureView,
}

enum DrawKind {
    /// Panorama -> source cube level 0.
    Panorama,
    /// Sample this one-level view at each target texel's centre direction: the 2x2 average of
    /// the level above, or an exact copy of a level of the same size.
    Downsample(wgpu::TextureView),
    /// Prefilter from the whole source cube.
    Filter,
}

/// Every draw of the bake, in order, and their parameter blocks.
struct Plan {
    blocks: ParamBlocks,
    draws: Vec<Draw>,
}

/// What the draws read besides their parameters.
struct Resources<'a> {
    panorama: wgpu::TextureView,
    panorama_sampler: wgpu::Sampler,
    /// The whole source cube (every level).
    source: wgpu::TextureView,
    sampler: &'a wgpu::Sampler,
    samples: wgpu::Buffer,
}

impl Plan {
    fn new(
        options: &EnvironmentOptions,
        source: &wgpu::Texture,
        targets: &Targets,
        ranges: &[(u32, u32)],
        align: usize,
    ) -> Self {
        let mut plan = Self {
            blocks: ParamBlocks {
                bytes: Vec::new(),
                align: align.max(std::mem::size_of::<PassParams>()),
            },
            draws: Vec::new(),
        };
        let none = (0, 0);
        plan.faces(|| DrawKind::Panorama, source, 0, none, false);
        for mip in 1..source.mip_level_count() {
            plan.faces(
                || DrawKind::Downsample(cube_view(source, mip - 1, 1)),
                source,
                mip,
                none,
                false,
            );
        }
        // Specular level 0 (roughness 0, where the Sample Viewer's filter reads the source texel
        // in the texel's own direction) is the source level of the same size, read at each
        // texel's centre: an exact copy. (A draw, not copy_texture_to_texture, which wgpu's GL
        // backend does not implement for cube maps.)
        let same_size = (options.source_size / options.specular_size).ilog2();
        plan.faces(
            || DrawKind::Downsample(cube_view(source, same_size, 1)),
            &targets.specular,
            0,
            none,
            false,
        );
        for (mip, &range) in (1..SPECULAR_MIP_COUNT).zip(ranges) {
            plan.faces(|| DrawKind::Filter, &targets.specular, mip, range, true);
        }
        let lambertian = ranges[ranges.len() - 1];
        plan.faces(|| DrawKind::Filter, &targets.diffuse, 0, lambertian, false);
        plan
    }

    /// One draw per face of level `mip` of `target`.
    fn faces(
        &mut self,
        kind: impl Fn() -> DrawKind,
        target: &wgpu::Texture,
        mip: u32,
        (sample_offset, sample_count): (u32, u32),
        weighted: bool,
    ) {
        for face in 0..6 {
            let params = self.blocks.push(PassParams {
                face,
                size: (target.width() >> mip).max(1) as f32,
                sample_offset,
                sample_count,
                weighted: u32::from(weighted),
                _pad: [0; 3],
            });
            self.draws.push(Draw {
                kind: kind(),
                params,
                target: face_view(target, face, mip),
            });
        }
    }

    /// Records every draw, each its own render pass.
    fn encode(
        &self,
        device: &wgpu::Device,
        pipelines: &Pipelines,
        resources: &Resources<'_>,
    ) -> wgpu::CommandBuffer {
        let params = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("environment pass parameters"),
                contents: &self.blocks.bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let params_at = |offset: u64| wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &params,
                offset,
                size: wgpu::BufferSize::new(std::mem::size_of::<PassParams>() as u64),
            }),
        };
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("environment bake"),
        });
        for draw in &self.draws {
            let (pipeline, layout, view, sampler) = match &draw.kind {
                DrawKind::Panorama => (
                    &pipelines.panorama,
                    &pipelines.panorama_layout,
                    &resources.panorama,
                    &resources.panorama_sampler,
                ),
                DrawKind::Downsample(view) => (
                    &pipelines.downsample,
                    &pipelines.filter_layout,
                    view,
                    resources.sampler,
                ),
                DrawKind::Filter => (
                    &pipelines.filter,
                    &pipelines.filter_layout,
                    &resources.source,
                    resources.sampler,
                ),
            };
            let mut entries = vec![
                params_at(draw.params),
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(view),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::Sampler(sampler),
                },
            ];
            if !matches!(draw.kind, DrawKind::Panorama) {
                entries.push(wgpu::BindGroupEntry {
                    binding: 3,
                    resource: resources.samples.as_entire_binding(),
                });
            }
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("environment bake"),
                layout,
                entries: &entries,
            });
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("environment bake"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &draw.target,
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
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
        encoder.finish()
    }
}

/// The bake's pipelines and layouts.
struct Pipelines {
    panorama_layout: wgpu::BindGroupLayout,
    filter_layout: wgpu::BindGroupLayout,
    panorama: wgpu::RenderPipeline,
    downsample: wgpu::RenderPipeline,
    filter: wgpu::RenderPipeline,
}

impl Pipelines {
    fn new(device: &wgpu::Device) -> Self {
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty,
            count: None,
        };
        let uniform = wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<PassParams>() as u64),
        };
        let texture = |view_dimension| wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: true },
            view_dimension,
            multisampled: false,
        };
        let sampler = wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering);
        let panorama_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("environment panorama"),
            entries: &[
                entry(0, uniform),
                entry(1, texture(wgpu::TextureViewDimension::D2)),
                entry(2, sampler),
            ],
        });
        let filter_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("environment filter"),
            entries: &[
                entry(0, uniform),
                entry(1, texture(wgpu::TextureViewDimension::Cube)),
                entry(2, sampler),
                entry(
                    3,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(16),
                    },
                ),
            ],
        });
        let pipeline = |label, source: &str, layout: &wgpu::BindGroupLayout, fragment| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(&layout),
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some("vs_fullscreen"),
                    compilation_options: Default::default(),
                    buffers: &[],
                },
                primitive: Default::default(),
                depth_stencil: None,
                multisample: Default::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &module,
                    entry_point: Some(fragment),
                    compilation_options: Default::default(),
                    targets: &[Some(wgpu::ColorTargetState {
                        format: FORMAT,
                        blend: None,
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        Self {
            panorama: pipeline(
                "environment panorama",
                IBL_PANORAMA_SHADER,
                &panorama_layout,
                "fs_panorama",
            ),
            downsample: pipeline(
                "environment downsample",
                IBL_FILTER_SHADER,
                &filter_layout,
                "fs_downsample",
            ),
            filter: pipeline(
                "environment filter",
                IBL_FILTER_SHADER,
                &filter_layout,
                "fs_filter",
            ),
            panorama_layout,
            filter_layout,
        }
    }
}

/// The panorama as an Rgba16Float texture, rows top (up) to bottom, uploaded in slices.
pub(super) fn upload_panorama(
    gpu: &GpuContext,
    map: &EnvironmentMap,
    slice_bytes: u32,
) -> wgpu::Texture {
    let (width, height) = (map.width(), map.height());
    let texture = gpu.device().create_texture(&wgpu::TextureDescriptor {
        label: Some("environment panorama"),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: FORMAT,
        usage: wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_DST
            | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let row_bytes = width * TEXEL_BYTES;
    let rows_per_slice = (slice_bytes / row_bytes).max(1);
    let mut slice: Vec<u16> = Vec::new();
    let mut y = 0;
    while y < height {
        let rows = rows_per_slice.min(height - y);
        let first = y as usize * width as usize;
        let texels = &map.texels()[first..first + rows as usize * width as usize];
        slice.clear();
        slice.extend(
            texels
                .iter()
                .flat_map(|t| [f32_to_f16(t[0]), f32_to_f16(t[1]), f32_to_f16(t[2]), 0x3c00]),
        );
        gpu.queue().write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            bytemuck::cast_slice(&slice),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row_bytes),
                rows_per_image: None,
            },
            wgpu::Extent3d {
                width,
                height: rows,
                depth_or_array_layers: 1,
            },
        );
        y += rows;
    }
    texture
}
