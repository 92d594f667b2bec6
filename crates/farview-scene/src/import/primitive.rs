//! One mesh primitive to a triangle list: the vertex and index budget reserved before anything
//! is read, attributes read through [`super::accessor`], strips and fans unrolled, flat normals
//! generated where the file has none, `KHR_materials_variants` mappings, and tangents for
//! primitives whose materials have a normal map (from the file, else [`super::tangent`]).
//!
//! Accessor errors come back naming the accessor only; the caller adds the mesh and primitive.

use glam::Vec3;
use gltf::accessor::{DataType, Dimensions};
use gltf::mesh::Mode;

use crate::model::{Aabb, Material, MorphTarget, Primitive};

use super::Buffer;
use super::accessor::{read_indices, read_vec};
use super::draco::{self, DracoPrimitive};
use super::error::{ImportError, ImportProblem, invalid, over};
use super::tangent;

/// Where a primitive's vertex data comes from: its accessors' buffer views, or for the accessors
/// a Draco stream stands in for, the decoded stream.
pub(super) struct Source<'a, 'b> {
    pub(super) buffers: &'a [Buffer<'b>],
    pub(super) draco: Option<&'a DracoPrimitive>,
}

impl Source<'_, '_> {
    /// An accessor as `N`-component f32 vectors.
    pub(super) fn vec<const N: usize>(
        &self,
        acc: &gltf::Accessor<'_>,
    ) -> Result<Vec<[f32; N]>, ImportError> {
        match self.draco.and_then(|d| d.read::<N>(acc)) {
            Some(r) => r.map_err(|problem| ImportError::Accessor {
                mesh: None,
                primitive: None,
                accessor: acc.index(),
                problem,
            }),
            None => read_vec::<N>(acc, self.buffers),
        }
    }

    /// The primitive's index accessor (each below `vertices`), or the Draco stream's faces.
    fn indices(
        &self,
        acc: Option<gltf::Accessor<'_>>,
        vertices: usize,
    ) -> Result<Vec<u32>, ImportError> {
        match (self.draco, acc) {
            (Some(d), _) => {
                // The stream's faces index its own points, which must be the primitive's
                // vertices (checked where POSITION is read); a mismatch is refused here too.
                match d.indices().iter().find(|&&i| i as usize >= vertices) {
                    Some(bad) => Err(ImportError::Primitive {
                        mesh: 0,
                        primitive: 0,
                        problem: invalid(format!(
                            "has a Draco face on point {bad}, past its {vertices} vertices"
                        )),
                    }),
                    None => Ok(d.indices().to_vec()),
                }
            }
            (None, Some(a)) => read_indices(&a, self.buffers, vertices),
            (None, None) => Ok((0..vertices as u32).collect()),
        }
    }
}

/// Vertices and triangle-list indices the model's primitives will hold, reserved before reading.
pub(super) struct Budget {
    vertices: u64,
    indices: u64,
    max_vertices: u64,
    max_indices: u64,
}

impl Budget {
    /// Up to `max_vertices` vertices and six times as many triangle-list indices.
    pub(super) fn new(max_vertices: u64) -> Self {
        Self {
            vertices: 0,
            indices: 0,
            max_vertices,
            max_indices: max_vertices.saturating_mul(6),
        }
    }

    fn take(&mut self, vertices: u64, indices: u64) -> Result<(), ImportProblem> {
        self.vertices = self.vertices.saturating_add(vertices);
        over("total vertices", self.vertices, self.max_vertices)?;
        self.indices = self.indices.saturating_add(indices);
        over("total triangle indices", self.indices, self.max_indices)
    }
}

/// The `KHR_materials_variants` mappings of a primitive (checked by `check_references`) as
/// (variant, material) pairs; a variant listed twice keeps its first material.
fn variant_materials(prim: &gltf::Primitive<'_>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for mapping in prim.mappings() {
        let Some(material) = mapping.material().index() else {
            continue;
        };
        for &v in mapping.variants() {
            if !out.iter().any(|(have, _)| *have == v as usize) {
                out.push((v as usize, material));
            }
        }
    }
    out
}

/// Reads a `TANGENT` accessor: VEC4 of floats (or, with `KHR_mesh_quantization`, normalized
/// bytes or shorts), every value finite.
fn read_tangents(
    acc: &gltf::Accessor<'_>,
    src: &Source<'_, '_>,
) -> Result<Vec<[f32; 4]>, ImportError> {
    let fail = |problem| ImportError::Accessor {
        mesh: None,
        primitive: None,
        accessor: acc.index(),
        problem,
    };
    let float = match acc.data_type() {
        DataType::F32 => true,
        DataType::I8 | DataType::I16 => acc.normalized(),
        _ => false,
    };
    if acc.dimensions() != Dimensions::Vec4 || !float {
        return Err(fail(invalid(format!(
            "holds {:?} {:?}{} where TANGENT needs VEC4 floats",
            acc.dimensions(),
            acc.data_type(),
            if acc.normalized() {
                " (normalized)"
            } else {
                ""
            }
        ))));
    }
    let tangents = src.vec::<4>(acc)?;
    if tangents.iter().flatten().any(|v| !v.is_finite()) {
        return Err(fail(invalid("holds non-finite tangents")));
    }
    Ok(tangents)
}

/// Most morph targets a primitive may have (real files use a handful; each costs a copy of
/// the vertex data).
const MAX_TARGETS: usize = 64;

/// Per-vertex joint indices and weights.
type SkinAttributes = (Vec<[u16; 4]>, Vec<[f32; 4]>);

/// `JOINTS_0` and `WEIGHTS_0` when both are present: joint indices as integers (checked against
/// the skin when drawn), weights normalized to sum to 1. Empty lists when the primitive is not
/// skinned.
fn read_skin(
    prim: &gltf::Primitive<'_>,
    src: &Source<'_, '_>,
    n: usize,
) -> Result<SkinAttributes, ImportError> {
    let (Some(j), Some(w)) = (
        prim.get(&gltf::Semantic::Joints(0)),
        prim.get(&gltf::Semantic::Weights(0)),
    ) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let fail = |acc: &gltf::Accessor<'_>, why: &str| ImportError::Accessor {
        mesh: None,
        primitive: None,
        accessor: acc.index(),
        problem: invalid(why),
    };
    if !matches!(j.data_type(), DataType::U8 | DataType::U16) || j.normalized() {
        return Err(fail(
            &j,
            "holds JOINTS_0 that are not unsigned byte or short integers",
        ));
    }
    let joints: Vec<[u16; 4]> = src
        .vec::<4>(&j)?
        .into_iter()
        .map(|v| v.map(|x| x as u16))
        .collect();
    let weights: Vec<[f32; 4]> = src
        .vec::<4>(&w)?
        .into_iter()
        .map(|v| {
            let v = v.map(|x| if x.is_finite() { x.max(0.0) } else { 0.0 });
            let sum: f32 = v.iter().sum();
            if sum > 0.0 {
                v.map(|x| x / sum)
            } else {
                [1.0, 0.0, 0.0, 0.0]
            }
        })
        .collect();
    if joints.len() != n || weights.len() != n {
        return Err(fail(
            &j,
            "has JOINTS_0/WEIGHTS_0 counts that disagree with POSITION",
        ));
    }
    Ok((joints, weights))
}

/// The primitive's morph targets, their memory charged to the vertex budget first.
fn read_targets(
    prim: &gltf::Primitive<'_>,
    src: &Source<'_, '_>,
    n: usize,
    budget: &mut Budget,
) -> Result<Vec<MorphTarget>, ImportError> {
    let count = prim.morph_targets().len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let problem = |p| ImportError::Primitive {
        mesh: 0,
        primitive: 0,
        problem: p,
    };
    over("morph targets", count as u64, MAX_TARGETS as u64).map_err(problem)?;
    budget
        .take((n as u64).saturating_mul(count as u64), 0)
        .map_err(problem)?;
    let mut targets = Vec::with_capacity(count);
    for t in prim.morph_targets() {
        let read = |a: Option<gltf::Accessor<'_>>| -> Result<Vec<[f32; 3]>, ImportError> {
            let Some(a) = a else { return Ok(Vec::new()) };
            let v = src.vec::<3>(&a)?;
            if v.len() != n || v.iter().flatten().any(|x| !x.is_finite()) {
                return Err(problem(invalid(format!(
                    "has a morph target accessor {} with {} values (non-finite or not {n})",
                    a.index(),
                    v.len()
                ))));
            }
            Ok(v)
        };
        targets.push(MorphTarget {
            positions: read(t.positions())?,
            normals: read(t.normals())?,
            tangents: read(t.tangents())?,
        });
    }
    Ok(targets)
}

/// An attribute expanded to one value per index (empty stays empty).
fn gather<T: Copy>(attribute: &[T], indices: &[u32]) -> Vec<T> {
    if attribute.is_empty() {
        return Vec::new();
    }
    indices
        .iter()
        .filter_map(|&i| attribute.get(i as usize).copied())
        .collect()
}

/// Appends a copy of vertex `s`'s value to an attribute (nothing for an absent one).
fn copy_vertex<T: Copy>(attribute: &mut Vec<T>, s: usize) {
    if let Some(v) = attribute.get(s).copied() {
        attribute.push(v);
    }
}

/// The primitive as a triangle list, or `None` for points and lines (not drawn). `materials`
/// are the model's, to see whether the primitive's (or one of its variants') has a normal map.
pub(super) fn import_primitive(
    doc: &gltf::Document,
    mesh: &gltf::Mesh<'_>,
    prim: &gltf::Primitive<'_>,
    buffers: &[Buffer<'_>],
    materials: &[Material],
    budget: &mut Budget,
) -> Result<Option<Primitive>, ImportError> {
    let fail = |problem| ImportError::Primitive {
        mesh: mesh.index(),
        primitive: prim.index(),
        problem,
    };
    let mode = prim.mode();
    if !matches!(
        mode,
        Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan
    ) {
        tracing::warn!(
            mesh = mesh.index(),
            primitive = prim.index(),
            ?mode,
            "points and lines are not rendered; primitive skipped"
        );
        return Ok(None);
    }
    let pos_acc = prim
        .get(&gltf::Semantic::Positions)
        .ok_or_else(|| fail(invalid("has no POSITION")))?;
    // Reserve what this primitive will hold before reading anything: accessors are shared, so
    // per-accessor limits alone do not bound the model.
    let raw_count = prim.indices().map_or(pos_acc.count(), |a| a.count()) as u64;
    let out_indices = match mode {
        Mode::Triangles => raw_count / 3 * 3,
        _ => raw_count.saturating_sub(2).saturating_mul(3),
    };
    let out_vertices = if prim.get(&gltf::Semantic::Normals).is_some() {
        pos_acc.count() as u64
    } else {
        out_indices.max(pos_acc.count() as u64)
    };
    budget.take(out_vertices, out_indices).map_err(fail)?;
    let json_prim = doc
        .as_json()
        .meshes
        .get(mesh.index())
        .and_then(|m| m.primitives.get(prim.index()))
        .ok_or_else(|| fail(invalid("does not exist")))?;
    let decoded = draco::decode(doc, prim, json_prim, buffers).map_err(fail)?;
    if let Some(d) = &decoded {
        // What the stream decoded beyond what the accessors declared (reserved above).
        let extra_vertices = (d.points() as u64).saturating_sub(pos_acc.count() as u64);
        let extra_indices = (d.indices().len() as u64).saturating_sub(out_indices);
        budget.take(extra_vertices, extra_indices).map_err(fail)?;
    }
    let src = Source {
        buffers,
        draco: decoded.as_ref(),
    };
    let positions: Vec<[f32; 3]> = src.vec::<3>(&pos_acc)?;
    if positions.iter().flatten().any(|v| !v.is_finite()) {
        return Err(ImportError::Accessor {
            mesh: None,
            primitive: None,
            accessor: pos_acc.index(),
            problem: invalid("holds non-finite positions"),
        });
    }
    let n = positions.len();
    let mut normals = match prim.get(&gltf::Semantic::Normals) {
        Some(a) => Some(src.vec::<3>(&a)?),
        None => None,
    };
    let has_uvs = prim.get(&gltf::Semantic::TexCoords(0)).is_some();
    let mut uvs = match prim.get(&gltf::Semantic::TexCoords(0)) {
        Some(a) => src.vec::<2>(&a)?,
        None => vec![[0.0; 2]; n],
    };
    let mut uvs1 = match prim.get(&gltf::Semantic::TexCoords(1)) {
        Some(a) => src.vec::<2>(&a)?,
        None => Vec::new(),
    };
    let mut colors: Vec<[f32; 4]> = match prim.get(&gltf::Semantic::Colors(0)) {
        Some(a) if a.dimensions() == Dimensions::Vec3 => src
            .vec::<3>(&a)?
            .into_iter()
            .map(|[r, g, b]| [r, g, b, 1.0])
            .collect(),
        Some(a) => src.vec::<4>(&a)?,
        None => Vec::new(),
    };
    let (mut joints, mut weights) = read_skin(prim, &src, n)?;
    let mut targets = read_targets(prim, &src, n, budget).map_err(|e| match e {
        ImportError::Primitive { problem, .. } => fail(problem),
        other => other,
    })?;
    let variant_materials = variant_materials(prim);
    // The normal map whose UV set tangents follow: the material's, else a variant's.
    let normal_map = prim
        .material()
        .index()
        .into_iter()
        .chain(variant_materials.iter().map(|(_, m)| *m))
        .filter_map(|m| materials.get(m))
        .flat_map(Material::normal_maps)
        .next()
        .copied();
    // Without normals the file's tangents are ignored (as the specification says): flat normals
    // get generated tangents.
    let mut tangents = match prim.get(&gltf::Semantic::Tangents) {
        Some(a) if normal_map.is_some() && normals.is_some() => read_tangents(&a, &src)?,
        _ => Vec::new(),
    };
    if normals.as_ref().is_some_and(|v| v.len() != n)
        || uvs.len() != n
        || (!uvs1.is_empty() && uvs1.len() != n)
        || (!colors.is_empty() && colors.len() != n)
        || (!tangents.is_empty() && tangents.len() != n)
    {
        return Err(fail(invalid(
            "has attributes that disagree on vertex count",
        )));
    }
    let raw = src.indices(prim.indices(), n)?;
    let mut indices = match mode {
        Mode::TriangleStrip => (2..raw.len())
            .flat_map(|i| {
                if i % 2 == 0 {
                    [raw[i - 2], raw[i - 1], raw[i]]
                } else {
                    [raw[i - 1], raw[i - 2], raw[i]]
                }
            })
            .collect(),
        Mode::TriangleFan => (2..raw.len())
            .flat_map(|i| [raw[0], raw[i - 1], raw[i]])
            .collect(),
        _ => {
            let mut v = raw;
            v.truncate(v.len() / 3 * 3);
            v
        }
    };
    let mut positions = positions;
    if normals.is_none() {
        // Flat normals: each triangle gets its own three vertices with the face normal. Every
        // index was checked against the vertex count above.
        let (mut p2, mut n2, mut u2) = (
            Vec::with_capacity(indices.len()),
            Vec::with_capacity(indices.len()),
            Vec::with_capacity(indices.len()),
        );
        let mut u2b = Vec::with_capacity(if uvs1.is_empty() { 0 } else { indices.len() });
        let mut c2 = Vec::with_capacity(if colors.is_empty() { 0 } else { indices.len() });
        for tri in indices.chunks_exact(3) {
            let [a, b, c] =
                [tri[0], tri[1], tri[2]].map(|i| Vec3::from_array(positions[i as usize]));
            let normal = (b - a).cross(c - a).normalize_or(Vec3::Z).to_array();
            for &i in tri {
                p2.push(positions[i as usize]);
                n2.push(normal);
                u2.push(uvs[i as usize]);
                if let Some(u) = uvs1.get(i as usize) {
                    u2b.push(*u);
                }
                if let Some(c) = colors.get(i as usize) {
                    c2.push(*c);
                }
            }
        }
        // Each target grows with the vertices: charge what the expansion adds.
        let added = (indices.len() as u64).saturating_sub(n as u64);
        budget
            .take(added.saturating_mul(targets.len() as u64), 0)
            .map_err(fail)?;
        joints = gather(&joints, &indices);
        weights = gather(&weights, &indices);
        for t in &mut targets {
            t.positions = gather(&t.positions, &indices);
            t.normals = gather(&t.normals, &indices);
            t.tangents = gather(&t.tangents, &indices);
        }
        indices = (0..p2.len() as u32).collect();
        positions = p2;
        uvs = u2;
        uvs1 = u2b;
        colors = c2;
        normals = Some(n2);
    }
    let mut normals = normals.unwrap_or_default();
    if let Some(map) = normal_map {
        if tangents.is_empty() {
            let set = match map.tex_coord {
                0 if has_uvs => Some(&uvs),
                1 if !uvs1.is_empty() => Some(&uvs1),
                _ => None,
            };
            match set {
                Some(set) => {
                    let (generated, sources) =
                        tangent::generate(&positions, &normals, set, &mut indices);
                    let per_vertex = 1 + targets.len() as u64;
                    budget
                        .take((sources.len() as u64).saturating_mul(per_vertex), 0)
                        .map_err(fail)?;
                    for &s in &sources {
                        let s = s as usize;
                        copy_vertex(&mut positions, s);
                        copy_vertex(&mut normals, s);
                        copy_vertex(&mut uvs, s);
                        copy_vertex(&mut uvs1, s);
                        copy_vertex(&mut colors, s);
                        copy_vertex(&mut joints, s);
                        copy_vertex(&mut weights, s);
                        for t in &mut targets {
                            copy_vertex(&mut t.positions, s);
                            copy_vertex(&mut t.normals, s);
                            copy_vertex(&mut t.tangents, s);
                        }
                    }
                    tangents = generated;
                }
                None => tangents = normals.iter().map(|n| tangent::perpendicular(*n)).collect(),
            }
        } else {
            for (t, n) in tangents.iter_mut().zip(&normals) {
                *t = tangent::clean(*t, *n);
            }
        }
    }
    let bounds = Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p)));
    for c in &mut colors {
        *c = c.map(|v| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                1.0
            }
        });
    }
    let primitive = Primitive {
        positions,
        normals,
        uvs,
        uvs1,
        colors,
        tangents,
        indices,
        material: prim.material().index(),
        variant_materials,
        bounds,
        joints,
        weights,
        targets,
        lod: None,
    };
    Ok(Some(primitive))
}
