//! Levels of detail and clusters of large primitives, built at import with meshoptimizer.
//!
//! A primitive of at least [`LOD_MIN_TRIANGLES`] triangles is split into clusters of at most
//! [`CLUSTER_TRIANGLES`] spatially close triangles (a median split of their centroids), its
//! index list reordered cluster by cluster. Each cluster is simplified on its own, each level
//! to about a quarter of the one before, with the borders between clusters locked:
//! neighbouring clusters drawn at different levels still meet without cracks. Small
//! disconnected parts are pruned once the level's error covers them (a far building loses its
//! window frames), so a part cut by a cluster border may leave a gap no larger than that
//! error. A level keeps its error (the largest distance meshoptimizer moved the surface, in
//! the mesh's units, accumulated over the levels), so a renderer can draw the coarsest level
//! whose error projects to under a pixel budget, and can leave out clusters outside the view.
//! Levels share the primitive's vertices: only indices are added.
//!
//! Small clusters let a building's near corner be drawn at full detail and its far top
//! coarse, but their locked borders keep every cluster's coarsest level at about a quarter of
//! its triangles. So clusters are gathered, tier by tier, into groups of
//! [`GROUP_FANOUT`] neighbours, each simplified from its parts' coarsest levels with only its
//! outer border locked ([`PrimitiveLod::groups`]), and the whole primitive gets merged levels
//! with no border locked ([`PrimitiveLod::merged`]): a far part is drawn as its group, and a far
//! building as one range that all its instances share.
//!
//! Faces exported apart (every quad of a wall with its own four vertices, as flat-shaded CAD
//! exports write them) are first welded where their vertices are identical, and the
//! simplifier may merge across creases (vertices split only by their normal, which it
//! weighs), never across UV or colour seams. Every level is then sorted into six facing groups
//! (triangles whose normals lie within a cone, with bounds), so that a renderer can leave out
//! the groups that face away from its camera, each group in vertex-cache order. A primitive
//! of several clusters (drawn one drawable at a time, not in instanced batches) has each group
//! cut into meshlets of at most [`MESHLET_TRIANGLES`] neighbouring triangles, each with its
//! bounds and cone, so that the parts of a cluster outside the view or facing away are left
//! out too. A primitive drawn blended keeps its triangle order (one group, never left out).
//!
//! Skinned and morphed primitives get none: their bounds move with the pose.
//!
//! Import builds them ([`attach`]) unless told not to; [`build_levels`] builds them for a
//! model already shown, to be handed to the renderer when ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use glam::Vec3;

use crate::model::{Aabb, Model, Primitive};

/// Primitives smaller than this are drawn whole at full detail.
pub const LOD_MIN_TRIANGLES: usize = 512;
/// Most triangles in one cluster. Measured with `farview-scale-bench` on the generated city
/// (llvmpipe, 720p, 1 px): 16,384 drew 0.44 M triangles a frame at 8.1 fps, 2,048 draws
/// 0.17 M at 11.5-12 fps (a tower's near floors full, its top coarse); 1,024 was no faster,
/// and its borders left whole-city views heavier.
pub const CLUSTER_TRIANGLES: usize = 2048;
/// Each level aims at this share of the one before.
const LEVEL_RATIO: f32 = 0.25;
/// Levels below full detail, at most (a renderer's batch key may count on it).
pub const MAX_COARSE_LEVELS: usize = 5;
/// A level that keeps more than this share of the one before stops the chain (the border
/// lock or the shape leave nothing more to take).
const MIN_REDUCTION: f32 = 0.8;
/// A level with fewer triangles than this ends the chain.
const MIN_LEVEL_TRIANGLES: usize = 32;

/// One level of one cluster (or group, or of the whole primitive): a range of the indices a
/// renderer uploads, the primitive's own followed by [`PrimitiveLod::coarse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LodLevel {
    /// First index (into the primitive's indices followed by [`PrimitiveLod::coarse`]).
    pub first: u32,
    /// Indices (three per triangle).
    pub count: u32,
    /// Largest distance from the full-detail surface, in the mesh's units (0 at level 0).
    pub error: f32,
    /// The level's triangles by the way they face: each group is a run of the level's range,
    /// the groups one after another in [`FACING_AXES`] order. A renderer that culls back
    /// faces draws only the groups that may face its camera ([`FacingGroup::faces_away`]).
    pub facing: [FacingGroup; FACING_GROUPS],
}

/// Groups a level's triangles are sorted into, by the axis their face normal is nearest.
pub const FACING_GROUPS: usize = 6;

/// The axis of each facing group: the four sides in turn, then up and down, so that what a
/// camera sees of a building (two neighbouring sides and the roof) is mostly one run.
pub const FACING_AXES: [[f32; 3]; FACING_GROUPS] = [
    [1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0],
    [-1.0, 0.0, 0.0],
    [0.0, 0.0, -1.0],
    [0.0, 1.0, 0.0],
    [0.0, -1.0, 0.0],
];

/// Triangles of one level whose face normals (from their winding) lie within a cone: when
/// the camera sees all of them from behind, back-face culling would drop every one, so they
/// need not be drawn at all. On a software rasterizer that saves their vertex shading, most
/// of what a frame of a big model costs; on a GPU it saves the vertex work of a mesh's far
/// side.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FacingGroup {
    /// First index, as [`LodLevel::first`].
    pub first: u32,
    /// Indices (three per triangle); 0 for an empty group.
    pub count: u32,
    /// The cone's axis: the mean direction of the group's face normals (unit length).
    pub axis: [f32; 3],
    /// Sine of the cone's half-angle: the largest angle between a face normal and the axis.
    /// 1 or more when the cone spans a half-space or more (never culled).
    pub spread_sin: f32,
    /// Bounds of the group's triangles.
    pub bounds: Aabb,
    /// The group's meshlets: `meshlet_count` entries of [`PrimitiveLod::meshlets`] from
    /// `meshlet_first`, tiling the group's range in order.
    pub meshlet_first: u32,
    /// Meshlets of the group: 0 for an empty group, and for every group of a primitive of one
    /// cluster (a renderer draws such a group whole).
    pub meshlet_count: u32,
}

/// Most triangles in one meshlet.
pub const MESHLET_TRIANGLES: usize = 128;
/// Fewest triangles the meshlet builder aims at (a group's last meshlet may hold fewer).
const MESHLET_MIN_TRIANGLES: usize = 64;
/// Most vertices in one meshlet: enough that the triangle count, not the vertices, ends a
/// meshlet of a regular mesh.
const MESHLET_VERTICES: usize = 128;

/// A run of at most [`MESHLET_TRIANGLES`] neighbouring triangles of one facing group, with
/// their bounds and normal cone: a renderer may leave out the meshlets of a large mesh that
/// lie outside its view or face away from its camera, where a whole cluster or facing group
/// is partly seen. Built by meshoptimizer's spatial clusterizer, each in vertex-cache order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Meshlet {
    /// First index, as [`LodLevel::first`].
    pub first: u32,
    /// Indices (three per triangle).
    pub count: u32,
    /// The cone's axis, as [`FacingGroup::axis`].
    pub axis: [f32; 3],
    /// Sine of the cone's half-angle, as [`FacingGroup::spread_sin`].
    pub spread_sin: f32,
    /// Bounds of its triangles.
    pub bounds: Aabb,
}

impl Meshlet {
    /// Whether every triangle of the meshlet faces away from a camera at `eye` (in the mesh's
    /// space), as [`FacingGroup::faces_away`].
    pub fn faces_away(&self, eye: Vec3) -> bool {
        cone_faces_away(self.count, self.axis, self.spread_sin, &self.bounds, eye)
    }
}

/// The test of [`FacingGroup::faces_away`], for any run of triangles with a cone and bounds.
fn cone_faces_away(count: u32, axis: [f32; 3], spread_sin: f32, bounds: &Aabb, eye: Vec3) -> bool {
    if count == 0 {
        return true;
    }
    // NaN (a broken group) counts as spanning everything.
    if spread_sin.is_nan() || spread_sin >= 1.0 || bounds.is_empty() {
        return false;
    }
    let axis = Vec3::from_array(axis);
    let (lo, hi) = (bounds.min, bounds.max);
    let nearest = Vec3::select(axis.cmpge(Vec3::ZERO), lo, hi);
    let ahead = (nearest - eye).dot(axis);
    let farthest = (lo - eye).abs().max((hi - eye).abs()).length();
    ahead > (spread_sin + 1e-4) * farthest
}

impl FacingGroup {
    /// Whether every triangle of the group faces away from a camera at `eye` (in the mesh's
    /// space: the world eye through the inverse of the world matrix; a mirroring matrix flips
    /// the winding and the front face together, so the test stands). Conservative: the
    /// nearest point of the bounds along the axis must lie in front of the eye by more than
    /// the cone's spread times the farthest corner's distance.
    pub fn faces_away(&self, eye: Vec3) -> bool {
        cone_faces_away(self.count, self.axis, self.spread_sin, &self.bounds, eye)
    }
}

/// A cluster: its bounds and its levels, finest first (level 0 is its full-detail triangles).
#[derive(Debug, Clone, PartialEq)]
pub struct LodCluster {
    /// Bounds of its full-detail triangles (coarser levels stay within them: the border is
    /// locked and simplification only moves vertices onto existing ones).
    pub bounds: Aabb,
    /// Finest first.
    pub levels: Vec<LodLevel>,
}

/// The clusters and levels of one primitive.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrimitiveLod {
    /// In the order of the primitive's (reordered) indices.
    pub clusters: Vec<LodCluster>,
    /// Indices of every coarser level, after the primitive's own: a renderer uploads
    /// `primitive.indices` followed by these as one index buffer.
    pub coarse: Vec<u32>,
    /// The meshlets of every level's facing groups (see [`FacingGroup::meshlet_first`]).
    pub meshlets: Vec<Meshlet>,
    /// For a primitive of several clusters: levels of the whole primitive, finest first, for
    /// views in which all of it may be coarse. The first is the coarsest level of every
    /// cluster together (its error the largest of theirs); the next ones are simplified from
    /// it with no border locked, so a far building or scan is not held up by the borders
    /// that let its clusters near the camera differ. Each has facing groups and no meshlets.
    /// A renderer draws one when its error projects within the budget at the primitive's
    /// nearest point, as one range that instances of the mesh can share; otherwise it draws
    /// cluster by cluster. Empty for a primitive of one cluster, or one drawn blended.
    pub merged: Vec<LodLevel>,
    /// For a primitive of more than [`GROUP_FANOUT`] clusters: groups of neighbouring
    /// clusters, tier by tier (each group of [`GROUP_FANOUT`] clusters or groups of the
    /// tier below), each with levels simplified from its parts' coarsest levels with its
    /// border locked. A renderer walks them from [`Self::top`] down: a group whose coarsest
    /// level within the budget exists draws that level, otherwise its parts are drawn. A
    /// mid-distance part of a scan is then drawn coarser than its clusters' borders allow.
    pub groups: Vec<LodGroup>,
    /// The tier under the root, a run of [`Self::groups`], in the order of their clusters.
    /// Empty when there are no groups: the clusters are walked in order.
    pub top: std::ops::Range<u32>,
    /// Bounds of the primitive's triangles.
    pub bounds: Aabb,
}

/// Neighbouring clusters drawn as one, where far enough (see [`PrimitiveLod::groups`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LodGroup {
    /// Bounds of its clusters.
    pub bounds: Aabb,
    /// The clusters it covers, a run of [`PrimitiveLod::clusters`].
    pub clusters: std::ops::Range<u32>,
    /// Its parts in [`PrimitiveLod::groups`] (empty: its parts are its clusters).
    pub children: std::ops::Range<u32>,
    /// Finest first, each coarser than all its parts' levels (facing groups, no meshlets).
    /// Empty when its parts could not be simplified together: it is drawn as its parts.
    pub levels: Vec<LodLevel>,
}

impl PrimitiveLod {
    /// The fewest triangles the primitive is ever drawn with: its coarsest merged level, or
    /// the coarsest level of every cluster when it has none.
    pub fn coarsest_triangles(&self) -> usize {
        match self.merged.last() {
            Some(l) => l.count as usize / 3,
            None => self
                .clusters
                .iter()
                .filter_map(|c| c.levels.last())
                .map(|l| l.count as usize / 3)
                .sum(),
        }
    }
}

/// Builds the clusters and levels of `p` (reordering its indices) when it is large enough and
/// not deformable; the work is spread over `threads` threads.
pub fn attach(p: &mut Primitive, threads: usize) {
    attach_with(p, threads, false);
}

/// As [`attach`]; with `keep_order` (a primitive drawn blended, whose triangles blend in the
/// file's order where the mesh overlaps itself) no level is reordered: each is one facing
/// group that is never left out.
pub fn attach_with(p: &mut Primitive, threads: usize, keep_order: bool) {
    if !wants_levels(p) {
        return;
    }
    let never = AtomicBool::new(false);
    let mut indices = std::mem::take(&mut p.indices);
    let lod = build(p, &mut indices, threads, &never, keep_order);
    p.indices = indices;
    if let Some(lod) = lod {
        p.lod = Some(Arc::new(lod));
    }
}

/// Whether `p` is drawn blended with its own material or one of its variants' (its levels keep
/// the file's triangle order: see [`attach_with`]).
pub fn draws_blended(p: &Primitive, materials: &[crate::model::Material]) -> bool {
    p.material
        .into_iter()
        .chain(p.variant_materials.iter().map(|&(_, m)| m))
        .filter_map(|m| materials.get(m))
        .any(|m| m.alpha_mode == crate::model::AlphaMode::Blend)
}

/// Whether `p` is large and static and has no levels yet.
fn wants_levels(p: &Primitive) -> bool {
    p.lod.is_none()
        && p.indices.len() / 3 >= LOD_MIN_TRIANGLES
        && p.joints.is_empty()
        && p.targets.is_empty()
}

/// Whether [`build_levels`] would build anything for `model`.
pub fn model_wants_levels(model: &Model) -> bool {
    model
        .meshes
        .iter()
        .flat_map(|m| &m.primitives)
        .any(wants_levels)
}

/// The levels of one primitive of a model, built after import: its indices reordered cluster
/// by cluster (the levels' ranges index into them, then into `lod.coarse`).
#[derive(Debug, Clone)]
pub struct PrimitiveLevels {
    /// Mesh index in the model.
    pub mesh: usize,
    /// Primitive index in that mesh.
    pub primitive: usize,
    /// The primitive's triangles, reordered: the same triangles as the model's.
    pub indices: Vec<u32>,
    /// Its clusters and levels.
    pub lod: Arc<PrimitiveLod>,
}

/// Levels of detail of a model's large primitives, built by [`build_levels`].
#[derive(Debug, Clone, Default)]
pub struct ModelLevels {
    /// One entry per primitive that got levels.
    pub primitives: Vec<PrimitiveLevels>,
}

/// Builds the levels [`attach`] would have built at import, for every large static primitive
/// of `model` that has none, without changing the model (raycasts and the scene keep its
/// index order). Spread over `threads` threads; returns what was built so far once `cancel`
/// is set.
pub fn build_levels(model: &Model, threads: usize, cancel: &AtomicBool) -> ModelLevels {
    let mut out = ModelLevels::default();
    for (mi, mesh) in model.meshes.iter().enumerate() {
        for (pi, p) in mesh.primitives.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return out;
            }
            if !wants_levels(p) {
                continue;
            }
            let mut indices = p.indices.clone();
            let keep_order = draws_blended(p, &model.materials);
            if let Some(lod) = build(p, &mut indices, threads, cancel, keep_order)
                && !cancel.load(Ordering::Relaxed)
            {
                out.primitives.push(PrimitiveLevels {
                    mesh: mi,
                    primitive: pi,
                    indices,
                    lod: Arc::new(lod),
                });
            }
        }
    }
    out
}

/// Splits `indices` into clusters (reordering them) and simplifies each; `None` when the
/// positions or indices are unusable (an index out of range, a non-finite position).
fn build(
    p: &Primitive,
    indices: &mut [u32],
    threads: usize,
    cancel: &AtomicBool,
    keep_order: bool,
) -> Option<PrimitiveLod> {
    let (positions, normals) = (&p.positions, &p.normals);
    if !indices.len().is_multiple_of(3)
        || indices.iter().any(|&i| i as usize >= positions.len())
        || positions.iter().any(|p| !p.iter().all(|v| v.is_finite()))
        || normals.len() != positions.len()
        || normals.iter().any(|n| !n.iter().all(|v| v.is_finite()))
    {
        return None;
    }
    // Shading counts as well as shape: a level that flattens fine bumps moves the surface
    // little but changes its light. Normals enter the error with a weight (a change of 0.1 in
    // a normal weighs like 0.03 units of distance), so such a level is kept for nearer views
    // than its distance error alone would allow.
    let attributes: &[f32] = bytemuck::cast_slice(normals);
    if !weld(p, indices) {
        return None;
    }
    let seams = seams(p);
    let shading = Shading {
        attributes,
        seams: &seams,
    };
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    let clusters = split(positions, indices);
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    // Level 0 of every cluster is its run of the reordered indices; coarser levels are built
    // per cluster (in parallel) and appended in cluster order.
    let adapter = meshopt::VertexDataAdapter::new(
        bytemuck_positions(positions),
        std::mem::size_of::<[f32; 3]>(),
        0,
    )
    .ok()?;
    let indices_ref: &[u32] = indices;
    // Meshlets serve a primitive of several clusters, drawn one drawable at a time.
    let how = (keep_order, clusters.len() > 1);
    let results = parallel_map(&clusters, threads, |&(start, end)| {
        if cancel.load(Ordering::Relaxed) {
            return ClusterLevels::default();
        }
        let mut level0 = indices_ref[start..end].to_vec();
        let facing0 = group_by_facing(&mut level0, positions, how);
        let levels = simplify_chain(&level0, &adapter, &shading, clusters.len() > 1)
            .into_iter()
            .map(|(mut level, error)| {
                let facing = group_by_facing(&mut level, positions, how);
                (level, error, facing)
            })
            .collect();
        ClusterLevels {
            level0,
            facing0,
            levels,
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    let base = indices.len() as u32;
    let mut coarse = Vec::new();
    let mut meshlets = Vec::new();
    // The coarsest level of every cluster, for the groups and merged levels.
    let mut tier: Vec<TierNode> = Vec::with_capacity(clusters.len());
    let mut out = Vec::with_capacity(clusters.len());
    for (&(start, end), result) in clusters.iter().zip(results) {
        let ClusterLevels {
            level0,
            facing0,
            levels,
        } = result;
        if level0.len() != end - start {
            return None;
        }
        indices[start..end].copy_from_slice(&level0);
        let run = &indices[start..end];
        let bounds =
            Aabb::from_points(run.iter().map(|&i| Vec3::from_array(positions[i as usize])));
        let mut lod_levels = vec![LodLevel {
            first: start as u32,
            count: (end - start) as u32,
            error: 0.0,
            facing: place(facing0, start as u32, &mut meshlets),
        }];
        let coarsest = levels.len();
        let mut node = TierNode {
            indices: Vec::new(),
            error: 0.0,
            bounds,
            clusters: out.len() as u32..out.len() as u32 + 1,
            group: None,
        };
        for (k, (idx, error, facing)) in levels.into_iter().enumerate() {
            let first = base + coarse.len() as u32;
            lod_levels.push(LodLevel {
                first,
                count: idx.len() as u32,
                error,
                facing: place(facing, first, &mut meshlets),
            });
            coarse.extend_from_slice(&idx);
            if k + 1 == coarsest {
                (node.indices, node.error) = (idx, error);
            }
        }
        if coarsest == 0 {
            node.indices = indices[start..end].to_vec();
        }
        tier.push(node);
        out.push(LodCluster {
            bounds,
            levels: lod_levels,
        });
    }
    let mut groups = Vec::new();
    let (mut top, mut merged) = (0..0, Vec::new());
    if out.len() > 1 && !keep_order {
        let mut place_levels = |levels: Levels| -> Vec<LodLevel> {
            levels
                .into_iter()
                .map(|(mut idx, error)| {
                    let grouped = group_by_facing(&mut idx, positions, (false, false));
                    let first = base + coarse.len() as u32;
                    coarse.extend_from_slice(&idx);
                    LodLevel {
                        first,
                        count: idx.len() as u32,
                        error,
                        facing: place(grouped, first, &mut meshlets),
                    }
                })
                .collect()
        };
        // Tier by tier, every GROUP_FANOUT neighbours (clusters, then groups) become a group
        // simplified from their coarsest levels, until few enough remain for the root.
        while tier.len() > GROUP_FANOUT {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let chunks: Vec<Vec<TierNode>> = {
                let mut nodes = tier.into_iter().peekable();
                let mut chunks: Vec<Vec<TierNode>> = Vec::new();
                while nodes.peek().is_some() {
                    chunks.push(nodes.by_ref().take(GROUP_FANOUT).collect());
                }
                // A short tail joins the chunk before it (a group of one would simplify its
                // part's coarsest level again, under the same lock, for nothing).
                if chunks.last().is_some_and(|c| c.len() < GROUP_FANOUT / 2)
                    && chunks.len() > 1
                    && let Some(tail) = chunks.pop()
                    && let Some(last) = chunks.last_mut()
                {
                    last.extend(tail);
                }
                chunks
            };
            let chains = parallel_map(&chunks, threads, |chunk| {
                let (union, error) = union_of(chunk);
                chain_from(union, error, false, (&adapter, &shading))
            });
            tier = Vec::with_capacity(chunks.len());
            for (chunk, chain) in chunks.into_iter().zip(chains) {
                let bounds = chunk.iter().fold(Aabb::EMPTY, |b, n| b.union(&n.bounds));
                let clusters = chunk.first().map_or(0, |n| n.clusters.start)
                    ..chunk.last().map_or(0, |n| n.clusters.end);
                let children = match (chunk.first(), chunk.last()) {
                    (
                        Some(TierNode { group: Some(a), .. }),
                        Some(TierNode { group: Some(b), .. }),
                    ) => *a..*b + 1,
                    _ => 0..0,
                };
                // A group that could not be simplified has no levels: it is always drawn as
                // its parts, and stands for their coarsest levels in the tier above.
                let (indices, error) = match chain.last() {
                    Some(last) => last.clone(),
                    None => union_of(&chunk),
                };
                let index = groups.len() as u32;
                groups.push(LodGroup {
                    bounds,
                    clusters: clusters.clone(),
                    children,
                    levels: place_levels(chain),
                });
                tier.push(TierNode {
                    indices,
                    error,
                    bounds,
                    clusters,
                    group: Some(index),
                });
            }
        }
        top = match (tier.first(), tier.last()) {
            (Some(TierNode { group: Some(a), .. }), Some(TierNode { group: Some(b), .. })) => {
                *a..*b + 1
            }
            _ => 0..0,
        };
        let (union, error) = union_of(&tier);
        // The root keeps the union itself as its first level when it is small (instances of
        // a building far away share one draw of it); a scan's would be millions of triangles.
        merged = place_levels(chain_from(union, error, true, (&adapter, &shading)));
    }
    let bounds = out.iter().fold(Aabb::EMPTY, |b, c| b.union(&c.bounds));
    Some(PrimitiveLod {
        clusters: out,
        coarse,
        meshlets,
        merged,
        groups,
        top,
        bounds,
    })
}

/// Weight of a normal's change in a level's error (see [`build`]). At 1 the flat-shaded
/// boxes of a CAD model (window frames standing out of a facade) could never be flattened:
/// merging their faces' normals alone cost 1.5 to 2.5 units, so they were drawn whole to
/// the horizon. At 0.3 the generated city draws a third fewer triangles for the same pixel
/// budget and still lands at 43 dB from full detail, and the bumpy scan's PSNR is unchanged
/// (37.3 dB; at 0.1 both fall under 35 dB). Measured with `farview-scale-bench`.
const NORMAL_WEIGHT: f32 = 0.3;

/// The vertex normals simplification weighs, and where it may cut across a crease.
struct Shading<'a> {
    attributes: &'a [f32],
    /// Per vertex: [`meshopt::SimplifyVertex::Protect`] where the vertex shares its position
    /// with one that differs in more than its normal (a UV, colour or tangent seam).
    seams: &'a [meshopt::SimplifyVertex],
}

/// Points every index at the first of the vertices identical to its own in every attribute
/// the renderer reads, so that faces exported apart (a wall of separate panels, a flat-shaded
/// box per face) become one surface the simplifier can collapse across. The triangles drawn
/// stay the same. `false` when an attribute list does not match the positions.
fn weld(p: &Primitive, indices: &mut [u32]) -> bool {
    let n = p.positions.len();
    let mut streams = vec![
        meshopt::VertexStream::new(p.positions.as_ptr()),
        meshopt::VertexStream::new(p.normals.as_ptr()),
    ];
    for (len, stream) in [
        (p.uvs.len(), meshopt::VertexStream::new(p.uvs.as_ptr())),
        (p.uvs1.len(), meshopt::VertexStream::new(p.uvs1.as_ptr())),
        (
            p.tangents.len(),
            meshopt::VertexStream::new(p.tangents.as_ptr()),
        ),
        (
            p.colors.len(),
            meshopt::VertexStream::new(p.colors.as_ptr()),
        ),
    ] {
        match len {
            0 => {}
            l if l == n => streams.push(stream),
            _ => return false,
        }
    }
    let welded = meshopt::generate_shadow_indices_multi(indices, n, &streams);
    indices.copy_from_slice(&welded);
    true
}

/// Marks the vertices of UV, colour and tangent seams (see [`Shading::seams`]): the
/// simplifier may merge the sides of a crease, whose normals it weighs, but not of a seam,
/// where textures would tear.
fn seams(p: &Primitive) -> Vec<meshopt::SimplifyVertex> {
    let (groups, group_of) = meshopt::generate_vertex_remap(&p.positions, None);
    let mut first = vec![u32::MAX; groups];
    let mut seam = vec![false; groups];
    let same = |a: usize, b: usize| {
        p.uvs.get(a) == p.uvs.get(b)
            && p.uvs1.get(a) == p.uvs1.get(b)
            && p.tangents.get(a) == p.tangents.get(b)
            && p.colors.get(a) == p.colors.get(b)
    };
    for (v, &g) in group_of.iter().enumerate() {
        let g = g as usize;
        let (Some(f), Some(s)) = (first.get_mut(g), seam.get_mut(g)) else {
            continue;
        };
        if *f == u32::MAX {
            *f = v as u32;
        } else if !*s && !same(*f as usize, v) {
            *s = true;
        }
    }
    group_of
        .iter()
        .map(|&g| {
            if seam.get(g as usize).copied().unwrap_or(true) {
                meshopt::SimplifyVertex::Protect
            } else {
                meshopt::SimplifyVertex::None
            }
        })
        .collect()
}

/// Coarser levels of one cluster: indices and accumulated error.
type Levels = Vec<(Vec<u32>, f32)>;

/// What a worker builds for one cluster: its level 0 (reordered) and coarser levels, each
/// with its facing groups and meshlets (as [`group_by_facing`] returns them).
#[derive(Default)]
struct ClusterLevels {
    level0: Vec<u32>,
    facing0: Grouped,
    levels: Vec<(Vec<u32>, f32, Grouped)>,
}

/// A level's facing groups and meshlets, relative to the level (see [`group_by_facing`]).
type Grouped = ([FacingGroup; FACING_GROUPS], Vec<Meshlet>);

impl FacingGroup {
    /// Placed in the primitive: its indices from `first`, its meshlets from `meshlet`.
    fn placed(self, first: u32, meshlet: u32) -> Self {
        Self {
            first: self.first + first,
            meshlet_first: self.meshlet_first + meshlet,
            ..self
        }
    }
}

/// Places a level's groups and meshlets (see [`FacingGroup::placed`]), appending the meshlets.
fn place(
    (groups, level_meshlets): Grouped,
    first: u32,
    meshlets: &mut Vec<Meshlet>,
) -> [FacingGroup; FACING_GROUPS] {
    let at = meshlets.len() as u32;
    meshlets.extend(level_meshlets.into_iter().map(|m| Meshlet {
        first: m.first + first,
        ..m
    }));
    groups.map(|g| g.placed(first, at))
}

/// Sorts the triangles of one level into its facing groups (by the nearest of
/// [`FACING_AXES`] to each face normal), with `meshlets` each group into meshlets, each in
/// vertex-cache order, and measures the cone and bounds of each group and meshlet (their
/// `first` relative to the level's start, the groups' `meshlet_first` to the returned list).
/// Without `meshlets` (a primitive of one cluster: its instances batch, and a batch draws
/// whole groups) each group is in vertex-cache order and has none. With `keep_order` the
/// level stays as it is: one group that is never left out (cut into meshlets in order). Triangles of no area (their points in a line: they cover no pixel under
/// any transform) go with the first group and widen nothing.
fn group_by_facing(
    run: &mut [u32],
    positions: &[[f32; 3]],
    (keep_order, meshlets): (bool, bool),
) -> ([FacingGroup; FACING_GROUPS], Vec<Meshlet>) {
    let at = |i: u32| Vec3::from_array(positions.get(i as usize).copied().unwrap_or_default());
    let mut groups = [FacingGroup::default(); FACING_GROUPS];
    if keep_order {
        let meshlets = if meshlets {
            meshlets_in_order(run, 0, positions, true)
        } else {
            Vec::new()
        };
        groups[0] = FacingGroup {
            first: 0,
            count: run.len() as u32,
            axis: FACING_AXES[0],
            spread_sin: 1.0,
            bounds: Aabb::from_points(run.iter().map(|&i| at(i))),
            meshlet_first: 0,
            meshlet_count: meshlets.len() as u32,
        };
        return (groups, meshlets);
    }
    let group_of = |n: Vec3| {
        FACING_AXES
            .iter()
            .enumerate()
            .map(|(g, a)| (g, n.dot(Vec3::from_array(*a))))
            .fold((0, f32::NEG_INFINITY), |best, (g, d)| {
                if d > best.1 { (g, d) } else { best }
            })
            .0
    };
    let mut by_group: [Vec<u32>; FACING_GROUPS] = Default::default();
    for t in run.chunks_exact(3) {
        by_group[group_of(face_normal(t, positions))].extend_from_slice(t);
    }
    let with_meshlets = meshlets;
    let mut meshlets = Vec::new();
    let mut at_index = 0usize;
    for (g, indices) in by_group.iter_mut().enumerate() {
        let group_meshlets = if with_meshlets {
            meshlet_order(indices, at_index as u32, positions)
        } else {
            cache_order(indices);
            Vec::new()
        };
        let (axis, spread_sin) = cone(indices, positions, Vec3::from_array(FACING_AXES[g]));
        groups[g] = FacingGroup {
            first: at_index as u32,
            count: indices.len() as u32,
            axis,
            spread_sin,
            bounds: Aabb::from_points(indices.iter().map(|&i| at(i))),
            meshlet_first: meshlets.len() as u32,
            meshlet_count: group_meshlets.len() as u32,
        };
        meshlets.extend(group_meshlets);
        if let Some(dst) = run.get_mut(at_index..at_index + indices.len()) {
            dst.copy_from_slice(indices);
        }
        at_index += indices.len();
    }
    (groups, meshlets)
}

/// The unit normal of triangle `t` from its winding; zero for a triangle of no area.
fn face_normal(t: &[u32], positions: &[[f32; 3]]) -> Vec3 {
    let at = |i: u32| {
        Vec3::from_array(positions.get(i as usize).copied().unwrap_or_default()).as_dvec3()
    };
    let [a, b, c] = [0, 1, 2].map(|k| at(t.get(k).copied().unwrap_or(0)));
    // In f64: an f32 cross product of tiny (or huge) edges underflows (overflows) to zero
    // (infinity), which would read as a triangle of no area.
    (b - a).cross(c - a).normalize_or_zero().as_vec3()
}

/// The normal cone of a run of triangles: the mean direction of their face normals (or
/// `fallback` when they cancel out or have no area) and the sine of the widest angle from it,
/// 1 when some normal is not within the half-space around it (never culled). Triangles of no
/// area widen nothing.
fn cone(run: &[u32], positions: &[[f32; 3]], fallback: Vec3) -> ([f32; 3], f32) {
    let normals = || {
        run.chunks_exact(3)
            .map(|t| face_normal(t, positions))
            .filter(|n| *n != Vec3::ZERO)
    };
    let axis = normals().sum::<Vec3>().try_normalize().unwrap_or(fallback);
    // The sine from the cross product: a cosine near 1 rounds to 1 in f32 and would call a
    // cone of a few hundredths of a degree exactly flat.
    let spread_sin = if normals().all(|n| n.dot(axis) > 0.0) {
        normals()
            .map(|n| n.cross(axis).length())
            .fold(0.0f32, f32::max)
    } else {
        1.0
    };
    (axis.to_array(), spread_sin)
}

/// Reorders one facing group's triangles into meshlets of neighbouring triangles
/// (meshoptimizer's spatial clusterizer, which sorts and splits by centroids: no input makes
/// it slow), each in vertex-cache order; returns them with `first` counted from `at`.
fn meshlet_order(run: &mut [u32], at: u32, positions: &[[f32; 3]]) -> Vec<Meshlet> {
    let triangles = run.len() / 3;
    if triangles <= MESHLET_TRIANGLES {
        cache_order(run);
        return meshlets_in_order(run, at, positions, false);
    }
    let (vertices, local) = local_numbering(run);
    let local_positions: Vec<[f32; 3]> = vertices
        .iter()
        .map(|&v| positions.get(v as usize).copied().unwrap_or_default())
        .collect();
    let built = meshopt::VertexDataAdapter::new(
        bytemuck_positions(&local_positions),
        std::mem::size_of::<[f32; 3]>(),
        0,
    )
    .map(|adapter| {
        meshopt::build_meshlets_spatial(
            &local,
            &adapter,
            MESHLET_VERTICES,
            MESHLET_MIN_TRIANGLES,
            MESHLET_TRIANGLES,
            0.5,
        )
    });
    let mut ordered = Vec::with_capacity(run.len());
    let mut meshlets = Vec::new();
    let mut mapped = true;
    if let Ok(built) = &built {
        for m in built.iter() {
            let tris: Vec<u32> = m.triangles.iter().map(|&t| u32::from(t)).collect();
            let start = ordered.len();
            // At most MESHLET_VERTICES vertices: the optimizer's work is bounded.
            for t in meshopt::optimize_vertex_cache(&tris, m.vertices.len()) {
                match m
                    .vertices
                    .get(t as usize)
                    .and_then(|&v| vertices.get(v as usize))
                {
                    Some(&v) => ordered.push(v),
                    None => mapped = false,
                }
            }
            let indices = &ordered[start..];
            meshlets.push(meshlet_of(indices, at + start as u32, positions, false));
        }
    }
    // The clusterizer places every triangle once; should it not, or should an index not map
    // back, the group keeps its triangles in cache order, cut in runs.
    if !mapped
        || ordered.len() != run.len()
        || meshlets
            .iter()
            .any(|m| m.count as usize > MESHLET_TRIANGLES * 3)
    {
        cache_order(run);
        return meshlets_in_order(run, at, positions, false);
    }
    run.copy_from_slice(&ordered);
    meshlets
}

/// `run` cut into meshlets of [`MESHLET_TRIANGLES`] in its order; with `never_culled` their
/// cones span everything.
fn meshlets_in_order(
    run: &[u32],
    at: u32,
    positions: &[[f32; 3]],
    never_culled: bool,
) -> Vec<Meshlet> {
    run.chunks(MESHLET_TRIANGLES * 3)
        .enumerate()
        .map(|(k, chunk)| {
            let first = at + (k * MESHLET_TRIANGLES * 3) as u32;
            meshlet_of(chunk, first, positions, never_culled)
        })
        .collect()
}

fn meshlet_of(indices: &[u32], first: u32, positions: &[[f32; 3]], never_culled: bool) -> Meshlet {
    let at = |i: u32| Vec3::from_array(positions.get(i as usize).copied().unwrap_or_default());
    let (axis, spread_sin) = if never_culled {
        (FACING_AXES[0], 1.0)
    } else {
        cone(indices, positions, Vec3::from_array(FACING_AXES[0]))
    };
    Meshlet {
        first,
        count: indices.len() as u32,
        axis,
        spread_sin,
        bounds: Aabb::from_points(indices.iter().map(|&i| at(i))),
    }
}

/// Neighbouring clusters (or groups of the tier below) a group is made of; a short tail of a
/// tier joins the group before it, which then holds up to half as many again.
pub const GROUP_FANOUT: usize = 8;
/// Largest union of coarsest levels the root keeps as its first merged level.
const MAX_ROOT_UNION_TRIANGLES: usize = 64 * 1024;

/// A cluster or group while the tiers above it are built: its coarsest level and that
/// level's error.
struct TierNode {
    indices: Vec<u32>,
    error: f32,
    bounds: Aabb,
    clusters: std::ops::Range<u32>,
    /// Its index in [`PrimitiveLod::groups`] (`None`: a cluster).
    group: Option<u32>,
}

/// The coarsest levels of `nodes` together, and the largest of their errors.
fn union_of(nodes: &[TierNode]) -> (Vec<u32>, f32) {
    let union = nodes
        .iter()
        .flat_map(|n| n.indices.iter().copied())
        .collect();
    let error = nodes.iter().map(|n| n.error).fold(0.0, f32::max);
    (union, error)
}

/// The levels of a group (`root`: of the whole primitive) simplified from `union`, the
/// coarsest levels of its parts, whose error is `error`: a group's border with its
/// neighbours stays locked, as its clusters' did, so that neighbours drawn finer meet it
/// without cracks; the root has no neighbours and may move its border. The root starts with
/// the union itself when it is small (see [`MAX_ROOT_UNION_TRIANGLES`]).
fn chain_from(
    union: Vec<u32>,
    error: f32,
    root: bool,
    (adapter, shading): (&meshopt::VertexDataAdapter<'_>, &Shading<'_>),
) -> Levels {
    if union.is_empty() {
        return Vec::new();
    }
    let chain = simplify_chain(&union, adapter, shading, !root);
    let mut out = Vec::with_capacity(chain.len() + 1);
    if root && union.len() / 3 <= MAX_ROOT_UNION_TRIANGLES {
        out.push((union, error));
    }
    out.extend(chain.into_iter().map(|(idx, step)| (idx, error + step)));
    out
}

/// `f` of each item, on up to `threads` threads, in order.
fn parallel_map<T: Sync, R: Send + Default>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<R>> = items.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(item), Some(slot)) = (items.get(i), results.get(i)) else {
                        break;
                    };
                    let r = f(item);
                    if let Ok(mut slot) = slot.lock() {
                        *slot = r;
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_default())
        .collect()
}

/// The coarser levels of one cluster, each with its accumulated error.
fn simplify_chain(
    level0: &[u32],
    adapter: &meshopt::VertexDataAdapter<'_>,
    shading: &Shading<'_>,
    lock_border: bool,
) -> Levels {
    // Small disconnected parts (window frames, bolts, leaves) go once they are under the
    // error: without that, every one of them keeps its own open border and nothing far away
    // gets lighter. Borders are locked only between clusters.
    let mut options = meshopt::SimplifyOptions::Sparse
        | meshopt::SimplifyOptions::ErrorAbsolute
        | meshopt::SimplifyOptions::Prune
        | meshopt::SimplifyOptions::Permissive;
    if lock_border {
        options |= meshopt::SimplifyOptions::LockBorder;
    }
    let mut levels: Levels = Vec::new();
    let mut error = 0.0f32;
    for _ in 0..MAX_COARSE_LEVELS {
        let prev: &[u32] = levels.last().map_or(level0, |(l, _)| l.as_slice());
        let prev_triangles = prev.len() / 3;
        if prev_triangles < MIN_LEVEL_TRIANGLES * 4 {
            break;
        }
        let target = ((prev_triangles as f32 * LEVEL_RATIO) as usize).max(MIN_LEVEL_TRIANGLES) * 3;
        let mut step = 0.0f32;
        let simplified = meshopt::simplify_with_attributes_and_locks(
            prev,
            adapter,
            shading.attributes,
            &[NORMAL_WEIGHT; 3],
            std::mem::size_of::<[f32; 3]>(),
            shading.seams,
            target,
            f32::MAX,
            options,
            Some(&mut step),
        );
        if simplified.is_empty()
            || simplified.len() as f32 > prev.len() as f32 * MIN_REDUCTION
            || !step.is_finite()
        {
            break;
        }
        // Each level is simplified from the one before: its distance from full detail is at
        // most the sum of the steps.
        error += step;
        levels.push((simplified, error));
    }
    levels
}

/// Bound on the sum of squared vertex valences per triangle for [`cache_order`].
const MAX_CACHE_WORK_PER_TRIANGLE: u64 = 256;

/// Reorders the triangles of one level of one cluster so that a vertex shaded for one
/// triangle is still cached for the next ones (meshoptimizer's vertex cache order): a
/// software rasterizer shades vertices on one thread, and a shared vertex shaded once instead
/// of up to six times is most of what a frame of small triangles costs there. The indices
/// are renumbered locally first, so the optimizer's tables are the size of the run, not of
/// the primitive.
fn cache_order(run: &mut [u32]) {
    if run.is_empty() {
        return;
    }
    let (vertices, local) = local_numbering(run);
    // The optimizer's work grows with the square of each vertex's valence (every step
    // rescores the triangles around the vertices in its cache): a hostile file (a million
    // triangles on three vertices) would take hours. A regular mesh costs about 18 per
    // triangle, a fan cap or a pole a little more; a run past the bound keeps its order.
    let mut valence = vec![0u64; vertices.len()];
    for &l in &local {
        if let Some(v) = valence.get_mut(l as usize) {
            *v += 1;
        }
    }
    let work: u64 = valence.iter().map(|v| v * v).sum();
    if work > MAX_CACHE_WORK_PER_TRIANGLE * (run.len() as u64 / 3) {
        return;
    }
    let ordered = meshopt::optimize_vertex_cache(&local, vertices.len());
    for (out, l) in run.iter_mut().zip(ordered) {
        if let Some(&v) = vertices.get(l as usize) {
            *out = v;
        }
    }
}

/// The vertices `run` uses (sorted) and `run` renumbered into them, so that meshoptimizer's
/// tables are the size of the run, not of the primitive. Sorted rather than hashed: the
/// indices come from a file, and a sort has no bad inputs.
fn local_numbering(run: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut vertices = run.to_vec();
    vertices.sort_unstable();
    vertices.dedup();
    let local = run
        .iter()
        .map(|i| vertices.binary_search(i).unwrap_or(0) as u32)
        .collect();
    (vertices, local)
}

/// Reorders `indices` so that each cluster's triangles are one run; returns the runs (index
/// ranges). A median split of the triangles' centroids along the longest axis, until a part
/// holds at most [`CLUSTER_TRIANGLES`].
fn split(positions: &[[f32; 3]], indices: &mut [u32]) -> Vec<(usize, usize)> {
    let triangles = indices.len() / 3;
    if triangles <= CLUSTER_TRIANGLES {
        return vec![(0, triangles * 3)];
    }
    let centroid = |t: &[u32]| {
        (Vec3::from_array(positions[t[0] as usize])
            + Vec3::from_array(positions[t[1] as usize])
            + Vec3::from_array(positions[t[2] as usize]))
            / 3.0
    };
    let mut order: Vec<(Vec3, u32)> = indices
        .chunks_exact(3)
        .enumerate()
        .map(|(i, t)| (centroid(t), i as u32))
        .collect();
    let mut runs = Vec::new();
    let mut stack = vec![(0usize, order.len())];
    while let Some((lo, hi)) = stack.pop() {
        if hi - lo <= CLUSTER_TRIANGLES {
            runs.push((lo, hi));
            continue;
        }
        let part = &mut order[lo..hi];
        let b = Aabb::from_points(part.iter().map(|(c, _)| *c));
        let size = b.max - b.min;
        let axis = if size.x >= size.y && size.x >= size.z {
            0
        } else if size.y >= size.z {
            1
        } else {
            2
        };
        let mid = part.len() / 2;
        part.select_nth_unstable_by(mid, |a, b| a.0[axis].total_cmp(&b.0[axis]));
        // Left part first out of the stack: runs come out in a spatially coherent order.
        stack.push((lo + mid, hi));
        stack.push((lo, lo + mid));
    }
    let old: Vec<u32> = indices.to_vec();
    let mut ranges = Vec::with_capacity(runs.len());
    let mut at = 0;
    for (lo, hi) in runs {
        let start = at;
        for &(_, t) in &order[lo..hi] {
            let t = t as usize * 3;
            indices[at..at + 3].copy_from_slice(&old[t..t + 3]);
            at += 3;
        }
        ranges.push((start, at));
    }
    ranges
}

fn bytemuck_positions(p: &[[f32; 3]]) -> &[u8] {
    bytemuck::cast_slice(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Levels built after import are the ones import builds, without touching the model; a
    /// cancelled build returns nothing half made.
    #[test]
    fn levels_built_later_match_import_and_stop_when_cancelled() {
        let model = Model {
            meshes: vec![crate::model::Mesh {
                primitives: vec![terrain(3), terrain(150), terrain(120)],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(model_wants_levels(&model));
        let never = AtomicBool::new(false);
        let levels = build_levels(&model, 2, &never);
        // The 3 x 3 one is too small for levels.
        let built: Vec<usize> = levels.primitives.iter().map(|p| p.primitive).collect();
        assert_eq!(built, vec![1, 2]);
        for l in &levels.primitives {
            let mut at_import = model.meshes[0].primitives[l.primitive].clone();
            attach(&mut at_import, 2);
            assert_eq!(l.indices, at_import.indices);
            assert_eq!(Some(&l.lod), at_import.lod.as_ref());
            assert!(model.meshes[0].primitives[l.primitive].lod.is_none());
        }
        let cancelled = AtomicBool::new(true);
        assert!(build_levels(&model, 2, &cancelled).primitives.is_empty());
    }

    /// A bumpy heightfield of `n` x `n` vertices.
    fn terrain(n: usize) -> Primitive {
        let mut positions = Vec::with_capacity(n * n);
        for z in 0..n {
            for x in 0..n {
                let (fx, fz) = (x as f32 / n as f32 * 20.0, z as f32 / n as f32 * 20.0);
                let y = (fx * 0.7).sin() * (fz * 0.9).cos() + 0.2 * (fx * 3.1 + fz * 2.3).sin();
                positions.push([fx, y, fz]);
            }
        }
        let mut indices = Vec::new();
        for z in 0..n - 1 {
            for x in 0..n - 1 {
                let i = (z * n + x) as u32;
                let n = n as u32;
                indices.extend_from_slice(&[i, i + n, i + 1, i + 1, i + n, i + n + 1]);
            }
        }
        Primitive {
            normals: vec![[0.0, 1.0, 0.0]; positions.len()],
            uvs: vec![[0.0; 2]; positions.len()],
            bounds: Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p))),
            positions,
            indices,
            ..Primitive::default()
        }
    }

    /// A primitive of several clusters has meshlets of neighbouring triangles with bounds that
    /// hold them; one of a single cluster (its instances batch, whole groups at a time) has
    /// none.
    #[test]
    fn meshlets_are_small_patches_of_clustered_primitives() {
        let mut p = terrain(200);
        attach(&mut p, 2);
        let lod = p.lod.clone().expect("levels");
        assert!(lod.clusters.len() > 1);
        let all: Vec<u32> = p.indices.iter().chain(&lod.coarse).copied().collect();
        let level0: Vec<&Meshlet> = lod
            .clusters
            .iter()
            .flat_map(|c| &c.levels[0].facing)
            .flat_map(|g| &lod.meshlets[g.meshlet_first as usize..][..g.meshlet_count as usize])
            .collect();
        let triangles: usize = level0.iter().map(|m| m.count as usize / 3).sum();
        assert_eq!(triangles, p.indices.len() / 3);
        // Mostly full: a group's last meshlet may be short.
        assert!(triangles / level0.len() >= 64, "{} meshlets", level0.len());
        let mut widths = Vec::new();
        for m in &level0 {
            for &i in &all[m.first as usize..(m.first + m.count) as usize] {
                let v = Vec3::from_array(p.positions[i as usize]);
                assert!(v.cmpge(m.bounds.min).all() && v.cmple(m.bounds.max).all());
            }
            let size = m.bounds.size();
            widths.push(size.x.max(size.z));
        }
        // A square patch of 128 triangles of this grid (0.1 units a cell) is 0.8 units wide.
        // The spatial clusterizer's are 1.2; runs of 128 cut from a group in vertex-cache
        // order (strips) are 1.6 (deterministic: the same input gives the same meshlets).
        widths.sort_by(f32::total_cmp);
        let median = widths[widths.len() / 2];
        assert!(median < 1.4, "median meshlet width {median}");

        let mut small = terrain(30);
        attach(&mut small, 2);
        let lod = small.lod.expect("levels");
        assert_eq!(lod.clusters.len(), 1);
        assert!(lod.meshlets.is_empty());
    }

    #[test]
    fn clusters_cover_every_triangle_once_and_levels_shrink_within_their_bounds() {
        let mut p = terrain(300);
        let mut before: Vec<[u32; 3]> = p
            .indices
            .chunks_exact(3)
            .map(|t| [t[0], t[1], t[2]])
            .collect();
        attach(&mut p, 2);
        let lod = p.lod.clone().expect("a large primitive gets levels");
        assert!(lod.clusters.len() >= 8, "{} clusters", lod.clusters.len());
        // Level 0 is the original triangles, reordered.
        let mut after: Vec<[u32; 3]> = p
            .indices
            .chunks_exact(3)
            .map(|t| [t[0], t[1], t[2]])
            .collect();
        before.sort_unstable();
        after.sort_unstable();
        assert_eq!(before, after);
        let all: Vec<u32> = p.indices.iter().chain(&lod.coarse).copied().collect();
        let mut covered = 0;
        for c in &lod.clusters {
            assert!(c.levels.len() >= 2, "{:?}", c.levels);
            assert_eq!(c.levels[0].first as usize, covered);
            covered += c.levels[0].count as usize;
            assert!(c.levels[0].count as usize <= CLUSTER_TRIANGLES * 3);
            for w in c.levels.windows(2) {
                assert!(w[1].count < w[0].count && w[1].error >= w[0].error, "{w:?}");
            }
            for l in &c.levels {
                let run = &all[l.first as usize..(l.first + l.count) as usize];
                let b = Aabb::from_points(
                    run.iter()
                        .map(|&i| Vec3::from_array(p.positions[i as usize])),
                );
                assert!(
                    b.min.cmpge(c.bounds.min - 1e-5).all()
                        && b.max.cmple(c.bounds.max + 1e-5).all()
                );
            }
        }
        assert_eq!(covered, p.indices.len());
        // Groups: each tier covers every cluster once, in order; a group's levels are coarser
        // than its parts' coarsest, and lie within its bounds.
        assert!(!lod.top.is_empty());
        let coarsest_error = |range: &std::ops::Range<u32>| {
            lod.clusters[range.start as usize..range.end as usize]
                .iter()
                .map(|c| c.levels.last().unwrap().error)
                .fold(0.0f32, f32::max)
        };
        let mut tier: Vec<u32> = lod.top.clone().collect();
        while !tier.is_empty() {
            let mut next = 0;
            for &g in &tier {
                let group = &lod.groups[g as usize];
                assert_eq!(group.clusters.start, next, "tier {tier:?}");
                next = group.clusters.end;
                for l in &group.levels {
                    assert!(l.error >= coarsest_error(&group.clusters));
                    let run = &all[l.first as usize..(l.first + l.count) as usize];
                    for &i in run {
                        let v = Vec3::from_array(p.positions[i as usize]);
                        assert!(v.cmpge(group.bounds.min - 1e-5).all());
                        assert!(v.cmple(group.bounds.max + 1e-5).all());
                    }
                }
                let parts = group.children.clone();
                if !parts.is_empty() {
                    let first = &lod.groups[parts.start as usize];
                    let last = &lod.groups[parts.end as usize - 1];
                    assert_eq!(first.clusters.start, group.clusters.start);
                    assert_eq!(last.clusters.end, group.clusters.end);
                }
            }
            assert_eq!(next as usize, lod.clusters.len());
            tier = tier
                .iter()
                .flat_map(|&g| lod.groups[g as usize].children.clone())
                .collect();
        }
        // The merged levels of the whole: coarser and coarser, from the worst cluster's error.
        assert!(lod.merged.len() >= 2, "{:?}", lod.merged);
        assert!(lod.merged[0].error >= coarsest_error(&(0..lod.clusters.len() as u32)));
        for w in lod.merged.windows(2) {
            assert!(w[1].count < w[0].count && w[1].error >= w[0].error, "{w:?}");
        }
        assert!(
            lod.coarsest_triangles() * 100 < p.indices.len() / 3,
            "coarsest {} of {}",
            lod.coarsest_triangles(),
            p.indices.len() / 3
        );
    }

    /// How long building takes (release: `cargo test --release -p farview-scene --lib
    /// lod_build_speed -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn lod_build_speed() {
        let mut p = terrain(1500);
        let t = std::time::Instant::now();
        attach(
            &mut p,
            std::thread::available_parallelism().map_or(1, usize::from),
        );
        let lod = p.lod.unwrap();
        eprintln!(
            "{} triangles, {} clusters, coarsest {} triangles, {:.0} ms",
            p.indices.len() / 3,
            lod.clusters.len(),
            lod.coarsest_triangles(),
            t.elapsed().as_secs_f64() * 1000.0
        );
    }

    /// A flat wall exported as separate quads (four vertices each, as flat-shaded CAD
    /// exports write them): welded, it simplifies like one surface, to a few triangles with
    /// no error; unwelded, every corner shared by four quads would be locked and the wall would
    /// get no levels at all.
    #[test]
    fn faces_exported_apart_simplify_as_one_surface() {
        let mut p = Primitive::default();
        // 1,800 triangles: one cluster.
        for z in 0..30 {
            for x in 0..30 {
                let base = p.positions.len() as u32;
                for (dx, dz) in [(0, 0), (1, 0), (1, 1), (0, 1)] {
                    p.positions.push([(x + dx) as f32, 0.0, (z + dz) as f32]);
                }
                p.indices
                    .extend_from_slice(&[base, base + 2, base + 1, base, base + 3, base + 2]);
            }
        }
        p.normals = vec![[0.0, 1.0, 0.0]; p.positions.len()];
        p.uvs = vec![[0.0; 2]; p.positions.len()];
        let drawn: Vec<[f32; 3]> = p.indices.iter().map(|&i| p.positions[i as usize]).collect();
        attach(&mut p, 1);
        let lod = p.lod.clone().expect("levels");
        let [cluster] = lod.clusters.as_slice() else {
            panic!("one cluster: {}", lod.clusters.len());
        };
        let coarsest = cluster.levels.last().expect("a level");
        assert!(
            coarsest.count / 3 <= 200 && coarsest.error < 0.01,
            "{:?}",
            cluster.levels
        );
        // Level 0 draws the same triangles, through identical vertices.
        let welded: Vec<[f32; 3]> = p.indices.iter().map(|&i| p.positions[i as usize]).collect();
        let mut a: Vec<_> = drawn.chunks(3).map(|t| format!("{t:?}")).collect();
        let mut b: Vec<_> = welded.chunks(3).map(|t| format!("{t:?}")).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    /// Vertices split only by their normal (a crease) may be merged by the simplifier, which
    /// weighs normals; vertices split by UV or colour (a seam) are protected, so textures do
    /// not tear (meshoptimizer keeps protected discontinuities as seams).
    #[test]
    fn creases_may_be_simplified_across_but_uv_and_colour_seams_are_protected() {
        let at = |x: f32| [x, 0.0, 0.0];
        let p = Primitive {
            positions: vec![
                at(0.0),
                at(0.0),
                at(1.0),
                at(1.0),
                at(2.0),
                at(2.0),
                at(3.0),
            ],
            normals: vec![
                [0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 1.0, 0.0],
            ],
            uvs: vec![
                [0.0; 2],
                [0.0; 2],
                [0.0; 2],
                [0.5, 0.0],
                [0.0; 2],
                [0.0; 2],
                [0.0; 2],
            ],
            colors: vec![
                [1.0; 4],
                [1.0; 4],
                [1.0; 4],
                [1.0; 4],
                [1.0; 4],
                [1.0, 0.0, 0.0, 1.0],
                [1.0; 4],
            ],
            ..Primitive::default()
        };
        let none = meshopt::SimplifyVertex::None;
        let protect = meshopt::SimplifyVertex::Protect;
        assert_eq!(
            seams(&p),
            vec![none, none, protect, protect, protect, protect, none]
        );
    }

    /// Every level is ordered for the vertex cache: triangles handed in shuffled come out
    /// with each vertex shaded about once per one or two triangles on a 16-entry cache (each
    /// facing group is ordered on its own, so vertices on a group's edge are shaded twice).
    #[test]
    fn levels_are_ordered_for_the_vertex_cache() {
        let mut p = terrain(150);
        let mut triangles: Vec<[u32; 3]> = p
            .indices
            .chunks_exact(3)
            .map(|t| [t[0], t[1], t[2]])
            .collect();
        // A fixed shuffle (an LCG), so the input order is as bad as it gets.
        let mut state = 0x2545_f491_u64;
        for i in (1..triangles.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            triangles.swap(i, (state >> 33) as usize % (i + 1));
        }
        p.indices = triangles.concat();
        let vertex_count = p.positions.len();
        let acmr =
            |indices: &[u32]| meshopt::analyze_vertex_cache(indices, vertex_count, 16, 0, 0).acmr;
        let before = acmr(&p.indices);
        attach(&mut p, 1);
        let lod = p.lod.clone().expect("levels");
        let all: Vec<u32> = p.indices.iter().chain(&lod.coarse).copied().collect();
        for c in &lod.clusters {
            for l in &c.levels {
                let run = &all[l.first as usize..(l.first + l.count) as usize];
                let after = acmr(run);
                assert!(
                    after < 1.25 && after < before / 2.0,
                    "{} triangles: {after:.2} vertices per triangle, {before:.2} before",
                    run.len() / 3
                );
            }
        }
    }

    /// A facing group is left out only when every one of its triangles faces away from the
    /// eye (the test back-face culling would make per triangle), from eyes all around, near and
    /// far, inside and outside the mesh; and from outside, groups do get left out.
    #[test]
    fn facing_groups_and_meshlets_left_out_hold_only_triangles_facing_away() {
        // A bumpy sphere: every direction of face normal, and no two alike; large enough for
        // several clusters, so that its groups have meshlets.
        let (rings, sides) = (120usize, 150usize);
        let mut positions = Vec::new();
        for r in 0..=rings {
            let theta = std::f32::consts::PI * r as f32 / rings as f32;
            for s in 0..sides {
                let phi = std::f32::consts::TAU * s as f32 / sides as f32;
                // The bumps fade towards the poles, so that each pole is one point.
                let radius = 2.0 + 0.1 * (5.0 * phi).sin() * (7.0 * theta).cos() * theta.sin();
                positions.push([
                    radius * theta.sin() * phi.cos(),
                    radius * theta.cos(),
                    radius * theta.sin() * phi.sin(),
                ]);
            }
        }
        let mut indices = Vec::new();
        for r in 0..rings {
            for s in 0..sides {
                let a = (r * sides + s) as u32;
                let b = (r * sides + (s + 1) % sides) as u32;
                let (c, d) = (a + sides as u32, b + sides as u32);
                indices.extend_from_slice(&[a, b, c, b, d, c]);
            }
        }
        let mut p = Primitive {
            normals: vec![[0.0, 1.0, 0.0]; positions.len()],
            uvs: vec![[0.0; 2]; positions.len()],
            positions,
            indices,
            ..Primitive::default()
        };
        attach(&mut p, 2);
        let lod = p.lod.clone().expect("levels");
        assert!(lod.clusters.len() > 1);
        let all: Vec<u32> = p.indices.iter().chain(&lod.coarse).copied().collect();
        let at = |i: u32| Vec3::from_array(p.positions[i as usize]);
        let faces_away_from = |eye: Vec3, first: u32, count: u32| {
            for t in all[first as usize..(first + count) as usize].chunks(3) {
                // In f64, as the build measures normals: a sliver near a pole would read as
                // facing by rounding in f32.
                let (a, b, c) = (
                    at(t[0]).as_dvec3(),
                    at(t[1]).as_dvec3(),
                    at(t[2]).as_dvec3(),
                );
                let normal = (b - a).cross(c - a);
                // A triangle of no area covers no pixel from anywhere.
                let facing = normal.dot(eye.as_dvec3() - a);
                assert!(
                    facing < 0.0 || normal == glam::DVec3::ZERO,
                    "eye {eye}: {t:?} faces it ({facing})"
                );
            }
        };
        // The meshlets of each group tile it, in order, each of at most 128 triangles.
        for c in &lod.clusters {
            for l in &c.levels {
                for g in &l.facing {
                    let own = &lod.meshlets[g.meshlet_first as usize..][..g.meshlet_count as usize];
                    assert_eq!(own.is_empty(), g.count == 0);
                    let mut next = g.first;
                    for m in own {
                        assert_eq!(m.first, next);
                        assert!(m.count > 0 && m.count % 3 == 0);
                        assert!(m.count as usize <= MESHLET_TRIANGLES * 3);
                        next += m.count;
                    }
                    assert_eq!(next, g.first + g.count);
                }
            }
        }
        let mut meshlets_left_out = 0;
        let mut state = 0x9e37_79b9_u64;
        let mut unit = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let (mut left_out, mut outside_groups) = (0, 0);
        for k in 0..300 {
            let dir = Vec3::new(unit() - 0.5, unit() - 0.5, unit() - 0.5).normalize_or(Vec3::X);
            let distance = [0.5, 1.9, 2.2, 3.0, 10.0, 1000.0][k % 6];
            let eye = dir * distance;
            for c in &lod.clusters {
                for l in &c.levels {
                    // The groups tile the level.
                    let mut next = l.first;
                    for g in &l.facing {
                        assert_eq!(g.first, next);
                        next += g.count;
                    }
                    assert_eq!(next, l.first + l.count);
                    for g in &l.facing {
                        if distance > 3.0 && g.count > 0 {
                            outside_groups += 1;
                        }
                        if g.count == 0 {
                            continue;
                        }
                        if !g.faces_away(eye) {
                            // Meshlets of a group drawn may still be left out.
                            let own = &lod.meshlets[g.meshlet_first as usize..]
                                [..g.meshlet_count as usize];
                            for m in own.iter().filter(|m| m.faces_away(eye)) {
                                meshlets_left_out += 1;
                                faces_away_from(eye, m.first, m.count);
                            }
                            continue;
                        }
                        left_out += usize::from(distance > 3.0);
                        faces_away_from(eye, g.first, g.count);
                    }
                }
            }
        }
        assert!(left_out > 0, "none of {outside_groups} groups left out");
        assert!(meshlets_left_out > 0);
        // From far along each axis, the group facing the other way is left out at full detail
        // and at nearly every coarser level (a simplified level may hold a triangle turned
        // past the half-space, which keeps its group in), and the group facing the eye never
        // is.
        let (mut coarse_groups, mut coarse_kept) = (0, 0);
        for (g, axis) in FACING_AXES.iter().enumerate() {
            let eye = Vec3::from_array(*axis) * -1000.0;
            let towards = FACING_AXES
                .iter()
                .position(|a| Vec3::from_array(*a) == -Vec3::from_array(*axis))
                .expect("axes come in opposite pairs");
            for c in &lod.clusters {
                for (k, l) in c.levels.iter().enumerate() {
                    if l.facing[g].count > 0 {
                        if k == 0 {
                            assert!(l.facing[g].faces_away(eye), "group {g} from {eye}");
                        } else {
                            coarse_groups += 1;
                            coarse_kept += usize::from(!l.facing[g].faces_away(eye));
                        }
                    }
                    assert!(l.facing[towards].count == 0 || !l.facing[towards].faces_away(eye));
                }
            }
        }
        assert!(
            coarse_kept * 20 < coarse_groups,
            "{coarse_kept} of {coarse_groups}"
        );
    }

    /// A primitive drawn blended keeps the file's triangle order at full detail (its
    /// triangles blend in that order where it overlaps itself), and no level of it is ever
    /// left out as facing away.
    #[test]
    fn blended_primitives_keep_their_order_and_one_facing_group() {
        use crate::model::{AlphaMode, Material};
        let mut p = terrain(30);
        p.material = Some(1);
        let materials = [
            Material::default(),
            Material {
                alpha_mode: AlphaMode::Blend,
                ..Material::default()
            },
        ];
        assert!(draws_blended(&p, &materials));
        assert!(!draws_blended(&p, &materials[..1]));
        let mut variant = p.clone();
        variant.material = Some(0);
        variant.variant_materials = vec![(0, 1)];
        assert!(draws_blended(&variant, &materials));
        let original = p.indices.clone();
        attach_with(&mut p, 1, true);
        assert_eq!(p.indices, original);
        let lod = p.lod.clone().expect("levels");
        for l in lod.clusters.iter().flat_map(|c| &c.levels) {
            assert_eq!((l.facing[0].first, l.facing[0].count), (l.first, l.count));
            assert!(!l.facing[0].faces_away(Vec3::new(0.0, -1000.0, 0.0)));
        }
    }

    #[test]
    fn small_skinned_and_broken_primitives_get_none() {
        let mut small = terrain(16);
        attach(&mut small, 1);
        assert!(small.lod.is_none());
        let mut skinned = terrain(100);
        skinned.joints = vec![[0; 4]; skinned.positions.len()];
        skinned.weights = vec![[1.0, 0.0, 0.0, 0.0]; skinned.positions.len()];
        attach(&mut skinned, 1);
        assert!(skinned.lod.is_none());
        let mut broken = terrain(100);
        broken.positions[7] = [f32::NAN, 0.0, 0.0];
        attach(&mut broken, 1);
        assert!(broken.lod.is_none());
    }
}
