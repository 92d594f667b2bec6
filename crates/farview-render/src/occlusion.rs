//! Occlusion culling in two phases, as GPU-driven renderers do it, with the test on the CPU:
//!
//! 1. Draw what was visible last frame ([`Seen`]).
//! 2. Reduce that depth to the farthest value per 8 x 8 tile (`shaders/depth_reduce.wgsl`),
//!    read it back, and build a pyramid of farthest depths ([`DepthPyramid`]).
//! 3. Test every draw and cluster in view against it: a box whose nearest point is behind
//!    everything already drawn over its whole screen rectangle is hidden. Draw the ones that are
//!    not hidden and were not drawn in phase 1; they and the visible phase-1 ones are what is
//!    seen next frame.
//!
//! The pyramid holds only depth this frame drew, so nothing visible is ever left out: a box is
//! called hidden only behind real surfaces of this frame. A camera that jumps costs a frame
//! drawn almost entirely in phase 2, never a missing object. The price is a wait in the middle
//! of the frame for the reduced depth (a few kilobytes).
//!
//! After such a frame, what phase 2 found "not hidden" is nearly everything in view (it was
//! tested against little depth), and the next frame's phase 1 would draw all of it again: a
//! camera passing through a wall into a view across a city paid two frames of the whole city
//! instead of one. So a frame whose phase 2 drew more than its phase 1 also reduces its final
//! depth ([`Slot::End`]); the next frame reads it without waiting (the frame has long been
//! finished by then) and its phase 1 draws only what is seen last frame *and* not hidden
//! behind last frame's final depth ([`Seen::first`]). Phase 2 still tests everything phase 1
//! leaves out, so this changes which phase draws a box, never whether it is drawn.
//!
//! The frame that passes through the wall has little depth to test against. When phase 2 would
//! draw many more draws than phase 1 did, the nearest of them go first, in rounds of their own
//! (`Phase::Near` in the mesh pass): the nearest 1 in 32, then 1 in 16, up to the nearest half,
//! each tested against the depth reduced after the rounds before it, and the rest against the
//! depth after the last. That is up to five more waits in that frame; on the generated city
//! such frames draw about a third fewer triangles than with one round of the nearest quarter.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use farview_scene::{Aabb, EntityId, IdHash};
use glam::{Mat4, Vec4};

use crate::GpuContext;
use crate::shaders::DEPTH_REDUCE_SHADER;
use crate::targets::FrameTargets;

/// Pixels per side of one tile of the pyramid's finest level.
pub(crate) const TILE: u32 = 8;
/// The reduced depth's format: one float per tile, as its bits (see the shader).
const PYRAMID_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::R32Uint;
/// How far behind the drawn depth (in normalized depth) a box must lie to be hidden: above the
/// difference between the CPU's projection and the GPU's rasterized, 24-bit depth.
const DEPTH_SLACK: f32 = 1e-6;
/// Most values per side of the rectangle a box is tested against (the level is chosen so that
/// the box's screen rectangle spans at most this many): finer tests hide more, at up to this
/// squared reads for a hidden box (a visible one stops at the first tile that shows it). On the
/// generated city at 720p: spans of 2, 4, 8 and 16 drew 0.16, 0.10, 0.09 and 0.09 M triangles a
/// frame, at 9.5, 11.9, 12.4 and 14.2 fps (medians of three).
const TEST_SPAN: u32 = 16;
/// How long phase 2 waits for the reduced depth before drawing everything it would have tested.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// What was visible last frame: drawn in phase 1 this frame.
#[derive(Default)]
pub(crate) struct Seen {
    /// Entities drawn whole (every primitive but those of several clusters).
    pub(crate) entities: HashSet<EntityId, IdHash>,
    /// Clusters of clustered primitives: (entity, primitive, cluster).
    pub(crate) clusters: HashSet<(EntityId, u32, u32), IdHash>,
    /// Last frame's final depth and the view it was drawn from, when that frame reduced it.
    pub(crate) last: Option<LastDepth>,
}

/// A frame's final depth, reduced, and its camera's view-projection.
pub(crate) struct LastDepth {
    pub(crate) pyramid: DepthPyramid,
    pub(crate) view_proj: Mat4,
}

impl Seen {
    /// Whether a box with world `bounds`, `seen` last frame (in [`Self::entities`] or
    /// [`Self::clusters`]), is drawn in phase 1: unless last frame's final depth hides it.
    /// Both phases ask this with the same arguments, so a box is drawn in exactly one.
    pub(crate) fn first(&self, seen: bool, bounds: Option<&Aabb>) -> bool {
        seen && match (&self.last, bounds) {
            (Some(last), Some(b)) => last.pyramid.may_see(&last.view_proj, b),
            _ => true,
        }
    }
}

/// Which of [`DepthReduce`]'s two targets a reduction goes to: the one phase 2 waits for in
/// the middle of a frame, or the frame's final depth, read by the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Mid = 0,
    End = 1,
}

/// Farthest depths over the frame, finest level first: level 0 holds one value per 8 x 8 pixel
/// tile, each next level the farthest of 2 x 2 of the one before.
pub(crate) struct DepthPyramid {
    width: u32,
    height: u32,
    levels: Vec<Level>,
}

struct Level {
    width: u32,
    height: u32,
    far: Vec<f32>,
}

impl Level {
    fn at(&self, x: u32, y: u32) -> f32 {
        self.far
            .get((y * self.width + x) as usize)
            .copied()
            .unwrap_or(1.0)
    }
}

impl DepthPyramid {
    /// The pyramid over a `width` x `height` frame from its tiles' farthest depths (rows of
    /// `tiles_x` values, `tiles_x` = width / 8 rounded up).
    pub(crate) fn from_tiles(width: u32, height: u32, tiles: Vec<f32>) -> Self {
        let mut level = Level {
            width: width.div_ceil(TILE).max(1),
            height: height.div_ceil(TILE).max(1),
            far: tiles,
        };
        level.far.resize((level.width * level.height) as usize, 1.0);
        let mut levels = Vec::new();
        loop {
            let (w, h) = (level.width, level.height);
            let done = w == 1 && h == 1;
            let next = (!done).then(|| {
                let (nw, nh) = (w.div_ceil(2), h.div_ceil(2));
                let mut far = Vec::with_capacity((nw * nh) as usize);
                for y in 0..nh {
                    for x in 0..nw {
                        let (x0, y0) = (2 * x, 2 * y);
                        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                        far.push(
                            level
                                .at(x0, y0)
                                .max(level.at(x1, y0))
                                .max(level.at(x0, y1))
                                .max(level.at(x1, y1)),
                        );
                    }
                }
                Level {
                    width: nw,
                    height: nh,
                    far,
                }
            });
            levels.push(level);
            match next {
                Some(n) => level = n,
                None => break,
            }
        }
        Self {
            width,
            height,
            levels,
        }
    }

    /// Whether something inside `bounds` (world space) may be visible: `false` only when the
    /// box's nearest depth is behind the farthest depth drawn anywhere over its screen
    /// rectangle. A box reaching behind the camera is always visible, and so are empty bounds
    /// (nothing to measure: a model built in code may leave them so), as frustum culling has it.
    pub(crate) fn may_see(&self, view_proj: &Mat4, bounds: &Aabb) -> bool {
        if bounds.is_empty() {
            return true;
        }
        let (c, e) = (bounds.center(), bounds.size() * 0.5);
        let mut min = glam::Vec3::splat(f32::INFINITY);
        let mut max = glam::Vec3::splat(f32::NEG_INFINITY);
        for i in 0..8 {
            let s = glam::Vec3::new(
                if i & 1 == 0 { -1.0 } else { 1.0 },
                if i & 2 == 0 { -1.0 } else { 1.0 },
                if i & 4 == 0 { -1.0 } else { 1.0 },
            );
            let clip: Vec4 = *view_proj * (c + s * e).extend(1.0);
            // Behind or at the eye: its projection is unbounded.
            if clip.w <= 1e-6 {
                return true;
            }
            let ndc = clip.truncate() / clip.w;
            min = min.min(ndc);
            max = max.max(ndc);
        }
        if !(min.is_finite() && max.is_finite()) || min.z <= 0.0 {
            return true;
        }
        if max.x < -1.0 || min.x > 1.0 || max.y < -1.0 || min.y > 1.0 || min.z > 1.0 {
            // Outside the view (frustum culling's business, and not hidden by anything drawn).
            return true;
        }
        // Pixel rows count down from the top; NDC y counts up.
        let (w, h) = (self.width as f32, self.height as f32);
        let px = |x: f32| ((x * 0.5 + 0.5) * w).clamp(0.0, w - 1.0) as u32;
        let py = |y: f32| ((0.5 - y * 0.5) * h).clamp(0.0, h - 1.0) as u32;
        let (x0, x1) = (px(min.x) / TILE, px(max.x) / TILE);
        let (y0, y1) = (py(max.y) / TILE, py(min.y) / TILE);
        // The finest level at which the rectangle spans at most TEST_SPAN x TEST_SPAN values:
        // hidden only if every one of them is nearer than the box. (Reading 2 x 2 of a coarser
        // level instead, most of a building's box fell on tiles that also held sky or a
        // street, and the generated city drew 0.16 M triangles a frame instead of 0.09 M.)
        let mut l = 0;
        while l + 1 < self.levels.len()
            && ((x1 >> l) - (x0 >> l) >= TEST_SPAN || (y1 >> l) - (y0 >> l) >= TEST_SPAN)
        {
            l += 1;
        }
        let Some(level) = self.levels.get(l) else {
            return true;
        };
        for y in (y0 >> l)..=(y1 >> l) {
            for x in (x0 >> l)..=(x1 >> l) {
                if min.z <= level.at(x, y) + DEPTH_SLACK {
                    return true;
                }
            }
        }
        false
    }
}

/// The GPU half: reduces a frame's depth to tiles and reads them back.
pub(crate) struct DepthReduce {
    single: ReducePipeline,
    /// Made on the first multisampled frame (never on GL, whose shaders cannot load texels
    /// from depth textures).
    multi: Option<ReducePipeline>,
    /// Per [`Slot`].
    targets: [Option<ReduceTarget>; 2],
}

/// The reduction's pipeline for one kind of depth buffer.
struct ReducePipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
}

impl ReducePipeline {
    fn new(device: &wgpu::Device, multisampled: bool) -> Self {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("depth_reduce.wgsl"),
            source: wgpu::ShaderSource::Wgsl(DEPTH_REDUCE_SHADER.into()),
        });
        let (binding, sample_type, entry) = if multisampled {
            (1, wgpu::TextureSampleType::Depth, "fs_multi")
        } else {
            (
                0,
                wgpu::TextureSampleType::Float { filterable: false },
                "fs_main",
            )
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("depth reduce"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type,
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled,
                },
                count: None,
            }],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("depth reduce"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("depth reduce"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: PYRAMID_FORMAT,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        Self { pipeline, layout }
    }
}

/// The reduced depth of one frame size, and the buffer it is copied into.
struct ReduceTarget {
    width: u32,
    height: u32,
    view: wgpu::TextureView,
    texture: wgpu::Texture,
    buffer: wgpu::Buffer,
    padded_row: u32,
}

impl DepthReduce {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            single: ReducePipeline::new(device, false),
            multi: None,
            targets: [None, None],
        }
    }

    /// GPU memory of the reduced depth and its readback buffer.
    pub(crate) fn bytes(&self) -> u64 {
        self.targets.iter().flatten().fold(0, |sum, t| {
            sum + u64::from(t.width) * u64::from(t.height) * 4
                + u64::from(t.padded_row) * u64::from(t.height)
        })
    }

    /// Records the reduction of `targets`' depth (stored by the pass before) and its copy into
    /// `slot`'s readback buffer.
    pub(crate) fn encode(
        &mut self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        targets: &FrameTargets,
        slot: Slot,
    ) {
        let (width, height) = (
            targets.width.div_ceil(TILE).max(1),
            targets.height.div_ceil(TILE).max(1),
        );
        let fits = self.targets[slot as usize]
            .as_ref()
            .is_some_and(|t| t.width == width && t.height == height);
        if !fits {
            self.targets[slot as usize] = Some(self.make_target(device, width, height));
        }
        let Some(t) = &self.targets[slot as usize] else {
            return;
        };
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("depth reduce"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &t.view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: f64::from(1.0f32.to_bits()),
                            g: 0.0,
                            b: 0.0,
                            a: 0.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            let multisampled = targets.samples > 1;
            let reduce = if multisampled {
                &*self
                    .multi
                    .get_or_insert_with(|| ReducePipeline::new(device, true))
            } else {
                &self.single
            };
            pass.set_pipeline(&reduce.pipeline);
            // Made each frame (it is cheap), so it always reads the targets' current depth.
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("depth reduce"),
                layout: &reduce.layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: u32::from(multisampled),
                    resource: wgpu::BindingResource::TextureView(&targets.depth_sample_view),
                }],
            });
            pass.set_bind_group(0, &bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
        encoder.copy_texture_to_buffer(
            t.texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &t.buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(t.padded_row),
                    rows_per_image: Some(height),
                },
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
    }

    fn make_target(&self, device: &wgpu::Device, width: u32, height: u32) -> ReduceTarget {
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("reduced depth"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: PYRAMID_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let padded_row = (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("reduced depth readback"),
            size: u64::from(padded_row) * u64::from(height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        ReduceTarget {
            width,
            height,
            view: texture.create_view(&Default::default()),
            texture,
            buffer,
            padded_row,
        }
    }

    /// Waits for the submission holding [`Self::encode`]'s copy and builds the pyramid of a
    /// `width` x `height` frame from it. `None` when the copy did not finish in time or the
    /// device failed: phase 2 then draws everything it would have tested (and the buffer, maybe
    /// still mapping, is dropped for a new one).
    pub(crate) fn read(
        &mut self,
        ctx: &GpuContext,
        submission: wgpu::SubmissionIndex,
        width: u32,
        height: u32,
    ) -> Option<DepthPyramid> {
        let pyramid = self.try_read(ctx, Slot::Mid, Some(submission), width, height);
        if pyramid.is_none() {
            self.targets[Slot::Mid as usize] = None;
        }
        pyramid
    }

    /// The pyramid of the [`Slot::End`] reduction recorded in an earlier frame of `width` x
    /// `height`, if its copy has finished; never waits for the device (`None` then, and the
    /// target is made anew next time).
    pub(crate) fn read_end_now(
        &mut self,
        ctx: &GpuContext,
        width: u32,
        height: u32,
    ) -> Option<DepthPyramid> {
        let pyramid = self.try_read(ctx, Slot::End, None, width, height);
        if pyramid.is_none() {
            self.targets[Slot::End as usize] = None;
        }
        pyramid
    }

    /// Maps `slot`'s buffer and builds the pyramid from it: waiting up to [`READ_TIMEOUT`] for
    /// `submission`, or, without one, only taking what the device has already finished.
    fn try_read(
        &self,
        ctx: &GpuContext,
        slot: Slot,
        submission: Option<wgpu::SubmissionIndex>,
        width: u32,
        height: u32,
    ) -> Option<DepthPyramid> {
        const PENDING: u8 = 0;
        const MAPPED: u8 = 1;
        const FAILED: u8 = 2;
        let t = self.targets[slot as usize].as_ref()?;
        let state = Arc::new(AtomicU8::new(PENDING));
        let done = Arc::clone(&state);
        t.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            done.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release);
        });
        let Some(submission) = submission else {
            if ctx.device().poll(wgpu::PollType::Poll).is_err()
                || state.load(Ordering::Acquire) != MAPPED
            {
                return None;
            }
            return Some(Self::pyramid_of(t, width, height));
        };
        let start = Instant::now();
        while state.load(Ordering::Acquire) == PENDING {
            let left = READ_TIMEOUT.checked_sub(start.elapsed())?;
            match ctx.device().poll(wgpu::PollType::Wait {
                submission_index: Some(submission.clone()),
                timeout: Some(left.min(Duration::from_millis(50))),
            }) {
                Ok(_) | Err(wgpu::PollError::Timeout) => {
                    // Another thread's poll may hold our callback: let it run.
                    if state.load(Ordering::Acquire) == PENDING {
                        std::thread::yield_now();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reduced depth not read; nothing occlusion-culled");
                    return None;
                }
            }
            if ctx.lost().is_some() {
                return None;
            }
        }
        if state.load(Ordering::Acquire) != MAPPED {
            return None;
        }
        Some(Self::pyramid_of(t, width, height))
    }

    /// The pyramid from `t`'s mapped buffer, which it unmaps.
    fn pyramid_of(t: &ReduceTarget, width: u32, height: u32) -> DepthPyramid {
        let mut tiles = Vec::with_capacity((t.width * t.height) as usize);
        if let Ok(bytes) = t.buffer.slice(..).get_mapped_range() {
            for row in bytes.chunks(t.padded_row as usize).take(t.height as usize) {
                let row = row.get(..(t.width * 4) as usize).unwrap_or(&[]);
                tiles.extend(
                    row.chunks_exact(4)
                        .map(|b| f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                );
            }
        }
        t.buffer.unmap();
        DepthPyramid::from_tiles(width, height, tiles)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use glam::Vec3;

    use super::*;
    use crate::Camera;

    fn camera() -> Mat4 {
        Camera::looking_at(Vec3::new(0.0, 0.0, 10.0), Vec3::ZERO, 1.0, 0.1, 100.0)
            .view_proj(640.0 / 360.0)
    }

    /// Depth of a point on the view axis at world z, as the GPU would store it.
    fn depth_at(z: f32) -> f32 {
        let clip = camera() * Vec4::new(0.0, 0.0, z, 1.0);
        clip.z / clip.w
    }

    /// A 640 x 360 frame with a wall at world z = 0 over tiles [x0, x1) x [y0, y1), far
    /// elsewhere.
    fn pyramid_with_wall(x0: u32, x1: u32, y0: u32, y1: u32) -> DepthPyramid {
        let (tw, th) = (640 / TILE, 360u32.div_ceil(TILE));
        let wall = depth_at(0.0);
        let tiles = (0..th)
            .flat_map(|y| {
                (0..tw).map(move |x| {
                    if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                        wall
                    } else {
                        1.0
                    }
                })
            })
            .collect();
        DepthPyramid::from_tiles(640, 360, tiles)
    }

    fn cube(center: Vec3, half: f32) -> Aabb {
        Aabb {
            min: center - Vec3::splat(half),
            max: center + Vec3::splat(half),
        }
    }

    #[test]
    fn a_box_behind_a_wall_is_hidden_and_one_in_front_or_beside_it_is_not() {
        let vp = camera();
        // The wall covers the whole frame.
        let full = pyramid_with_wall(0, 80, 0, 45);
        assert!(!full.may_see(&vp, &cube(Vec3::new(0.0, 0.0, -5.0), 1.0)));
        assert!(!full.may_see(&vp, &cube(Vec3::new(3.0, -1.0, -20.0), 2.0)));
        assert!(
            full.may_see(&vp, &cube(Vec3::new(0.0, 0.0, 3.0), 1.0)),
            "in front"
        );
        assert!(
            full.may_see(&vp, &cube(Vec3::new(0.0, 0.0, -0.5), 1.0)),
            "reaching through the wall"
        );
        assert!(
            full.may_see(&vp, &cube(Vec3::new(0.0, 0.0, 9.0), 2.0)),
            "reaching behind the eye"
        );
        assert!(
            full.may_see(&vp, &Aabb::EMPTY),
            "empty bounds measure nothing"
        );
        // The wall covers the left half only: a box behind it on the right is visible, as is
        // one straddling its edge.
        let left = pyramid_with_wall(0, 40, 0, 45);
        assert!(!left.may_see(&vp, &cube(Vec3::new(-6.0, 0.0, -5.0), 1.0)));
        assert!(left.may_see(&vp, &cube(Vec3::new(6.0, 0.0, -5.0), 1.0)));
        assert!(left.may_see(&vp, &cube(Vec3::new(0.0, 0.0, -5.0), 1.0)));
    }

    /// A wall smaller than the view, a box behind it whose rectangle lies within the wall's:
    /// hidden, though the coarse tiles a 2 x 2 read would take (32 x 32 tiles each here) reach
    /// past the wall's edges into the far background. Just past an edge, visible.
    #[test]
    fn a_box_behind_a_wall_smaller_than_the_view_is_hidden_when_its_rectangle_is_within_it() {
        let vp = camera();
        let wall = pyramid_with_wall(10, 70, 5, 40);
        assert!(!wall.may_see(&vp, &cube(Vec3::new(0.0, 0.0, -5.0), 4.0)));
        assert!(!wall.may_see(&vp, &cube(Vec3::new(-2.0, 1.0, -5.0), 2.0)));
        // Reaching past the wall's right edge (pixel 560: x = 10.2 at the box's near face).
        assert!(wall.may_see(&vp, &cube(Vec3::new(11.0, 0.0, -5.0), 1.0)));
        assert!(!wall.may_see(&vp, &cube(Vec3::new(8.0, 0.0, -5.0), 1.0)));
    }

    #[test]
    fn one_far_tile_under_a_box_keeps_it_visible_at_every_level() {
        let vp = camera();
        // A wall over the whole frame but one tile, under the box's projection; however
        // coarse the level the test reads, the hole's far depth reaches it.
        let (tw, th) = (640 / TILE, 360u32.div_ceil(TILE));
        let wall = depth_at(0.0);
        for size in [0.2f32, 1.0, 3.0] {
            let b = cube(Vec3::new(0.0, 0.0, -5.0), size);
            let tiles: Vec<f32> = (0..th)
                .flat_map(|y| {
                    (0..tw).map(move |x| {
                        if (x, y) == (tw / 2, th / 2) {
                            1.0
                        } else {
                            wall
                        }
                    })
                })
                .collect();
            let p = DepthPyramid::from_tiles(640, 360, tiles);
            assert!(p.may_see(&vp, &b), "half size {size}");
            let solid = pyramid_with_wall(0, tw, 0, th);
            assert!(!solid.may_see(&vp, &b), "half size {size}");
        }
    }

    #[test]
    fn levels_hold_the_farthest_of_what_they_cover() {
        let tiles = vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
        let p = DepthPyramid::from_tiles(3 * TILE, 3 * TILE, tiles);
        assert_eq!(p.levels.len(), 3);
        assert_eq!(p.levels[1].far, vec![0.5, 0.6, 0.8, 0.9]);
        assert_eq!(p.levels[2].far, vec![0.9]);
    }
}
