//! The mesh pass's uniform blocks, laid out as `shaders/mesh.wgsl` declares them: per-frame
//! globals (camera, lights, cut planes) and one block per draw (transform, overrides).

use bytemuck::{Pod, Zeroable};
use farview_scene::{DrawState, Light, LightKind, MAX_CUT_PLANES, MAX_LIGHTS, Scene};
use glam::{Mat3, Mat4, Vec3};

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
        // The reference's light units: glTF intensities as given (candela, lux), no 1/pi.
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
    counts: [u32; 4],
    environment: [f32; 4],
    env_rotation: [[f32; 4]; 4],
    outline_color: [f32; 4],
    outline: [f32; 4],
    sky: [[f32; 4]; 4],
    lights: [GpuLight; MAX_LIGHTS],
    cut_planes: [[f32; 4]; MAX_CUT_PLANES],
}

/// What [`Globals`] needs besides the scene and camera.
pub(crate) struct FrameLook<'a> {
    pub(crate) lighting: &'a Lighting,
    /// Mip levels of the bound environment's specular cube.
    pub(crate) specular_mips: u32,
    /// Rotation from world to environment cube directions.
    pub(crate) env_rotation: Mat4,
    /// Target size in pixels.
    pub(crate) viewport: (u32, u32),
    /// Seconds since the renderer started (the outline pulse).
    pub(crate) time_s: f32,
}

/// `counts.z` of a pass that writes linear colour (`display` in `shaders/mesh.wgsl`); the tone
/// mappings are 0 to 2 ([`crate::ToneMapping`]).
const LINEAR_OUTPUT: u32 = 3;

impl Globals {
    /// Whether any cut plane clips this frame (the shader then discards behind it).
    pub(crate) fn cut_planes_active(&self) -> bool {
        self.counts[1] > 0
    }

    /// The same frame with linear output: no exposure, tone mapping or display encoding (the
    /// pass that draws what transmissive materials see through themselves).
    pub(crate) fn linear_output(mut self) -> Self {
        self.counts[2] = LINEAR_OUTPUT;
        self
    }

    pub(crate) fn new(scene: &Scene, camera: &Camera, look: &FrameLook<'_>) -> Self {
        let (w, h) = look.viewport;
        let aspect = w as f32 / h.max(1) as f32;
        let lighting = look.lighting;
        let view_proj = camera.view_proj(aspect);
        let rotation_only = camera.projection(aspect) * Mat4::from_quat(camera.rotation.inverse());
        let o = &lighting.outline;
        let intensity = if lighting.environment.is_some() {
            lighting.environment_intensity
        } else {
            1.0
        };
        let mut globals = Self {
            view_proj: view_proj.to_cols_array_2d(),
            camera_pos: camera.position.extend(1.0).to_array(),
            counts: [0, 0, lighting.tone_mapping.shader_mode(), 0],
            environment: [
                look.specular_mips.max(1) as f32,
                finite_or(intensity, 1.0).max(0.0),
                finite_or(lighting.exposure, 1.0).max(0.0),
                0.0,
            ],
            env_rotation: look.env_rotation.to_cols_array_2d(),
            outline_color: o.color.extend(o.alpha_at(look.time_s)).to_array(),
            outline: [o.width_px.clamp(0.0, 64.0), w as f32, h as f32, 0.0],
            sky: rotation_only.inverse().to_cols_array_2d(),
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

fn finite_or(v: f32, fallback: f32) -> f32 {
    if v.is_finite() { v } else { fallback }
}

/// Per-draw uniforms (group 1, dynamic offset).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct DrawUniform {
    model: [[f32; 4]; 4],
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

/// Per-instance vertex data (vertex buffer 1, stepped per instance): the world matrix and the
/// inverse transpose of its 3x3 part. Instances of one batch sit next to each other in the
/// frame's instance buffer, so one draw covers them all.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct InstanceData {
    model: [[f32; 4]; 4],
    normal: [[f32; 3]; 3],
}

impl InstanceData {
    const ATTRIBUTES: [wgpu::VertexAttribute; 7] = wgpu::vertex_attr_array![
        6 => Float32x4, 7 => Float32x4, 8 => Float32x4, 9 => Float32x4,
        10 => Float32x3, 11 => Float32x3, 12 => Float32x3
    ];

    pub(crate) fn new(world: &Mat4) -> Self {
        Self {
            model: world.to_cols_array_2d(),
            normal: normal_matrix(world).to_cols_array_2d(),
        }
    }

    pub(crate) fn layout() -> wgpu::VertexBufferLayout<'static> {
        wgpu::VertexBufferLayout {
            array_stride: std::mem::size_of::<Self>() as u64,
            step_mode: wgpu::VertexStepMode::Instance,
            attributes: &Self::ATTRIBUTES,
        }
    }
}

fn normal_matrix(world: &Mat4) -> Mat3 {
    let m = Mat3::from_mat4(*world);
    let det = m.determinant();
    if det.abs() > f32::EPSILON && det.is_finite() {
        m.inverse().transpose()
    } else {
        m
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
