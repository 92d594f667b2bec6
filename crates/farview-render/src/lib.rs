//! Farview's renderer: opens a wgpu device headless (a hardware adapter when there is one, Mesa's
//! software rasterizers otherwise), uploads scene assets, renders each frame into an offscreen
//! target and reads it back through a small ring of buffers.
//!
//! One [`GpuContext`] (instance, adapter, device, queue) serves the whole host; each stream gets a
//! [`FrameRenderer`] with its own target, uniforms, GPU copies of its models and readback ring.

mod camera;
mod context;
mod error;
mod gpu_model;
mod renderer;

pub use camera::Camera;
pub use context::{AdapterChoice, GpuContext};
pub use error::RenderError;
pub use renderer::{
    FrameRenderer, Lighting, ModelUploader, ReadbackFrame, RenderStats, UploadedModel,
    strip_padding,
};
/// The adapter kinds wgpu reports (re-exported so callers need not depend on wgpu).
pub use wgpu::DeviceType;

/// The WGSL source of the mesh pass (checked in under `shaders/`).
pub const MESH_SHADER: &str = include_str!("../../../shaders/mesh.wgsl");

/// The WGSL source of the RGBA → I420 colour conversion pass.
pub const I420_SHADER: &str = include_str!("../../../shaders/i420.wgsl");
