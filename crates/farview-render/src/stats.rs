//! What the last submitted frame cost.

/// Counters for the last frame submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Draw calls.
    pub draws: u32,
    /// Triangles submitted.
    pub triangles: u64,
    /// Bytes of GPU memory this renderer holds (targets, readback ring, models, uniforms).
    pub gpu_bytes: u64,
    /// Visible entities not drawn because their model has no GPU assets in this renderer's
    /// store (not [inserted](crate::FrameRenderer::insert_model) yet). Each such model is logged once
    /// at debug level.
    pub skipped_entities: u32,
    /// Draws left out because their bounds lie wholly outside the camera's view (frustum
    /// culling; selected entities are always drawn, their outline may reach into view).
    pub culled: u32,
    /// Bytes of posed vertices (skinned and morphed meshes) uploaded for this frame.
    pub posed_bytes: u64,
}
