//! The mesh pass's uniform blocks, laid out as `shaders/mesh.wgsl` declares them: per-frame
//! globals (camera, lights, cut planes) and one block per draw (transform, overrides).

use bytemuck::{Pod, Zeroable};
use farview_scene::{DrawState, Light, LightKind, MAX_CUT_PLANES, MAX_LIGHTS, Scene};
use glam::{Mat4, Vec3};

use crate::{Camera, Lighting};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct GpuLight {
    position_kind: [f32; 4],
    direction_range: [f32; 4],
    color: [f32; 4],
    cone: [f32; 4],
}

impl GpuLight {
    fn new(l: &Light) -> Self {
        let (kind, cone) = match l.kind {
            LightKind::Directional => (0.0, [0.0; 4]),
            LightKind::Point => (1.0, [0.0; 4]),
            LightKind::Spot {
                inner_cone,
                outer_cone,
            } => {
                let (ci, co) = (inner_cone.cos(), outer_cone.cos());
                (2.0, [co, 1.0 / (ci - co).max(1e-4), 0.0, 0.0])
            }
        };
        let c = Vec3::from_array(l.color) * l.intensity;
        Self {
            position_kind: l.position.extend(kind).to_array(),
            direction_range: l
                .direction
                .normalize_or(Vec3::NEG_Y)
                .extend(l.range.unwrap_or(0.0))
                .to_array(),
            color: c.extend(0.0).to_array(),
            cone,
        }
    }
}

/// Per-frame uniforms (group 0).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Globals {
    view_proj: [[f32; 4]; 4],
    camera_pos: [f32; 4],
    ambient: [f32; 4],
    counts: [u32; 4],
    lights: [GpuLight; MAX_LIGHTS],
    cut_planes: [[f32; 4]; MAX_CUT_PLANES],
}

impl Globals {
    pub(crate) fn new(scene: &Scene, camera: &Camera, aspect: f32, lighting: &Lighting) -> Self {
        let mut globals = Self {
            view_proj: camera.view_proj(aspect).to_cols_array_2d(),
            camera_pos: camera.position.extend(1.0).to_array(),
            ambient: lighting.ambient.extend(0.0).to_array(),
            counts: [0; 4],
            lights: [GpuLight::zeroed(); MAX_LIGHTS],
            cut_planes: [[0.0; 4]; MAX_CUT_PLANES],
        };
        for (slot, (_, l)) in globals.lights.iter_mut().zip(scene.lights()) {
            *slot = GpuLight::new(l);
            globals.counts[0] += 1;
        }
        for (slot, (_, p)) in globals.cut_planes.iter_mut().zip(scene.cut_planes()) {
            *slot = p.normal.extend(p.distance).to_array();
            globals.counts[1] += 1;
        }
        globals
    }
}

/// Per-draw uniforms (group 1, dynamic offset).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct DrawUniform {
    model: [[f32; 4]; 4],
    normal: [[f32; 4]; 4],
    base_color: [f32; 4],
    emissive: [f32; 4],
    params: [f32; 4],
    tint: [f32; 4],
}

impl DrawUniform {
    pub(crate) fn new(world: &Mat4, state: &DrawState) -> Self {
        let m = &state.material;
        let e = m
            .emissive
            .map_or([0.0, 0.0, 0.0, -1.0], |e| [e[0], e[1], e[2], 0.0]);
        Self {
            model: world.to_cols_array_2d(),
            normal: normal_matrix(world).to_cols_array_2d(),
            base_color: m.base_color.unwrap_or([0.0, 0.0, 0.0, -1.0]),
            emissive: e,
            params: [
                m.metallic.unwrap_or(-1.0),
                m.roughness.unwrap_or(-1.0),
                f32::from(u8::from(state.see_through)),
                f32::from(u8::from(state.selected)),
            ],
            tint: state.tint.unwrap_or([1.0, 1.0, 1.0, 0.0]),
        }
    }
}

fn normal_matrix(world: &Mat4) -> Mat4 {
    let det = world.determinant();
    if det.abs() > f32::EPSILON && det.is_finite() {
        world.inverse().transpose()
    } else {
        *world
    }
}

/// A uniform-buffer binding of `size` bytes, shared by every pass's bind group layouts.
pub(crate) fn uniform_entry(
    binding: u32,
    visibility: wgpu::ShaderStages,
    dynamic: bool,
    size: u64,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: dynamic,
            min_binding_size: wgpu::BufferSize::new(size),
        },
        count: None,
    }
}
