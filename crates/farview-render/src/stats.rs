//! What the last submitted frame cost.

/// Counters for the last frame submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Draw calls.
    pub draws: u32,
    /// Mesh instances drawn by them, counted per primitive: more than `draws` when repeated
    /// meshes with the same state were batched into instanced draws.
    pub instances: u32,
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
    /// Clusters of large meshes left out because they lie wholly outside the view.
    pub clusters_culled: u32,
    /// Draws and clusters in view left out because what was drawn first hides them (occlusion
    /// culling; see [`crate::FrameRenderer::set_occlusion_culling`]).
    pub occluded: u32,
    /// Draws of a coarser level of detail than the full one.
    pub coarse_draws: u32,
    /// Of those, draws of a merged level: neighbouring clusters of a large mesh drawn as one
    /// at a distance (see [`farview_scene::lod::PrimitiveLod::groups`] and `merged`).
    pub merged_draws: u32,
    /// Triangles of levels of detail not drawn because every triangle of their facing group
    /// faced away from the camera (back-face culling would have dropped each one after
    /// shading its vertices). See [`farview_scene::lod::FacingGroup`].
    pub faced_away: u64,
    /// Meshlets of the clusters drawn that were left out: outside the view, every triangle
    /// facing away (counted in `faced_away` as well), or hidden (`meshlets_occluded`). See
    /// [`farview_scene::lod::Meshlet`].
    pub meshlets_culled: u32,
    /// Of those, meshlets left out because what this frame drew before hides them: meshlets
    /// of clusters drawn in the near rounds or phase 2 of occlusion culling, tested against
    /// the same depth as their cluster (a cluster half behind a wall draws its other half).
    pub meshlets_occluded: u32,
    /// Bytes uploaded for this frame's skinned and morphed meshes: their posed vertices when
    /// posed on the CPU, their joint matrices and weights when posed on the GPU.
    pub posed_bytes: u64,
    /// Vertices the GPU skinned or morphed for this frame (0 when nothing moved, or when posed
    /// on the CPU).
    pub gpu_posed_vertices: u64,
}
