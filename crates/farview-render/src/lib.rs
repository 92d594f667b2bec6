//! Farview's renderer: opens a wgpu device headless (a hardware adapter when there is one, Mesa's
//! software rasterizers otherwise), uploads scene assets, renders each frame into an offscreen
//! target and reads it back through a small ring of buffers.
//!
//! One [`GpuContext`] (instance, adapter, device, queue) serves the whole host; each stream gets a
//! [`FrameRenderer`] with its own target, uniforms, GPU copies of its models and readback ring.
//!
//! Modules by concern: `targets` (offscreen colour + depth), `mesh_pass` (pipelines, bind
//! groups, per-draw uniforms from `uniforms`, opaque then blended draws), `i420` (the compute
//! colour conversion), `models` (the GPU model store and [`ModelUploader`]; `gpu_model` uploads
//! one model), `readback` (the ring of mappable buffers and the wait on a shared device), and
//! `renderer`, which composes them into [`FrameRenderer`].

mod blit;
mod camera;
mod compare;
mod context;
mod cull;
mod environment;
mod environment_binding;
mod error;
mod gpu_model;
mod i420;
mod instances;
mod lighting;
mod lod_select;
mod materials;
mod mesh_pass;
mod models;
mod occlusion;
mod posed;
mod readback;
mod renderer;
mod shaders;
mod stats;
mod targets;
mod textures;
mod transmission;
mod uniforms;

pub use camera::Camera;
pub use compare::psnr_rgb;
pub use context::{AdapterChoice, BlockFormat, GpuContext, GpuSelector, TextureCompression};
pub use environment::{
    DEFAULT_ROTATION_DEGREES, Environment, EnvironmentLimits, EnvironmentMap, EnvironmentOptions,
    NEUTRAL_SKY_HDR, SPECULAR_MIP_COUNT,
};
pub use error::RenderError;
pub use lighting::{Lighting, Outline, ToneMapping};
pub use models::{ModelUploader, UploadedLevels, UploadedModel};
pub use readback::{ReadbackFrame, strip_padding};
pub use renderer::{FrameRenderer, RenderQuality, Shading};
pub use shaders::{I420_SHADER, MESH_SHADER};
pub use stats::RenderStats;
/// The adapter kinds wgpu reports (re-exported so callers need not depend on wgpu).
pub use wgpu::DeviceType;
