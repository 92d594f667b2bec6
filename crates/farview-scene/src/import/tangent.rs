//! Tangents for normal mapping: those in the file cleaned up, or MikkTSpace tangents
//! (`bevy_mikktspace`, byte-identical to the reference implementation that glTF's normal maps are
//! baked against) generated for an indexed triangle list.
//!
//! glTF's V runs down the image while MikkTSpace takes V as running up, so the handedness it
//! reports for glTF UVs is negated: then the bitangent `cross(normal, tangent) * w` points up the
//! image (the normal map's +Y), as in the tangents Blender exports with the Khronos samples
//! (checked against SheenCloth and LightsPunctualLamp in `tests/import.rs`), and as three.js's
//! MikkTSpace helper does for glTF.
//!
//! MikkTSpace works per triangle corner, and two corners sharing a vertex can get different
//! tangents (across a UV seam or mirror). Rather than unwelding the whole primitive, generating
//! and welding again, a vertex keeps the tangent of its first corner, and each different tangent
//! of its other corners gets a copy of the vertex (counted against the vertex budget by the
//! caller): only vertices that need it are split, so the rest stays indexed as it was.

use std::collections::HashMap;

use bevy_mikktspace::{Geometry, StdOps, TangentSpace, generate_tangents};
use glam::{Vec3, Vec4};

/// A unit tangent perpendicular to `normal` (w = +1), for vertices MikkTSpace cannot give one
/// (no UVs, degenerate triangles): +X projected onto the tangent plane, else +Y.
pub(super) fn perpendicular(normal: [f32; 3]) -> [f32; 4] {
    let n = Vec3::from_array(normal).normalize_or(Vec3::Z);
    let t = (Vec3::X - n * n.x)
        .try_normalize()
        .or_else(|| (Vec3::Y - n * n.y).try_normalize())
        .unwrap_or(Vec3::X);
    [t.x, t.y, t.z, 1.0]
}

/// A tangent from the file (already finite) as the renderer wants it: unit xyz, w exactly ±1.
/// A zero xyz is replaced by [`perpendicular`].
pub(super) fn clean(tangent: [f32; 4], normal: [f32; 3]) -> [f32; 4] {
    let [x, y, z, w] = tangent;
    match Vec3::new(x, y, z).try_normalize() {
        Some(t) => [t.x, t.y, t.z, if w < 0.0 { -1.0 } else { 1.0 }],
        None => perpendicular(normal),
    }
}

/// The triangle list as MikkTSpace sees it, and the tangent it writes for each corner.
struct Corners<'a> {
    positions: &'a [[f32; 3]],
    normals: &'a [[f32; 3]],
    uvs: &'a [[f32; 2]],
    indices: &'a [u32],
    tangents: Vec<Option<[f32; 4]>>,
}

impl Corners<'_> {
    fn vertex(&self, face: usize, vert: usize) -> usize {
        self.indices.get(face * 3 + vert).map_or(0, |&i| i as usize)
    }
}

impl Geometry<StdOps> for Corners<'_> {
    fn num_faces(&self) -> usize {
        self.indices.len() / 3
    }

    fn num_vertices_of_face(&self, _face: usize) -> usize {
        3
    }

    fn position(&self, face: usize, vert: usize) -> [f32; 3] {
        let v = self.vertex(face, vert);
        self.positions.get(v).copied().unwrap_or_default()
    }

    fn normal(&self, face: usize, vert: usize) -> [f32; 3] {
        let v = self.vertex(face, vert);
        let n = Vec3::from_array(self.normals.get(v).copied().unwrap_or_default());
        // MikkTSpace makes tangents orthogonal to the normal it is given, which only works for
        // a unit normal; unit ones pass unchanged, bit for bit.
        if (n.length_squared() - 1.0).abs() > 1e-4 {
            n.normalize_or_zero().to_array()
        } else {
            n.to_array()
        }
    }

    fn tex_coord(&self, face: usize, vert: usize) -> [f32; 2] {
        let v = self.vertex(face, vert);
        self.uvs.get(v).copied().unwrap_or_default()
    }

    fn set_tangent(&mut self, tangent: Option<TangentSpace>, face: usize, vert: usize) {
        if let Some(slot) = self.tangents.get_mut(face * 3 + vert) {
            let gltf_handedness = |t: TangentSpace| {
                let [x, y, z, w] = t.tangent_encoded();
                [x, y, z, -w]
            };
            *slot = tangent.map(gltf_handedness).filter(|t| {
                Vec4::from_array(*t).is_finite()
                    && Vec3::new(t[0], t[1], t[2]).length_squared() > 1e-12
            });
        }
    }
}

/// MikkTSpace tangents for the triangle list `indices` (each below `positions.len()`, which
/// `normals` and `uvs` match). Corners that need a tangent their vertex does not have are
/// re-pointed at new vertices: the result is the tangent of every vertex, old then new, and for
/// each new vertex the old one it copies (the caller copies its other attributes).
pub(super) fn generate(
    positions: &[[f32; 3]],
    normals: &[[f32; 3]],
    uvs: &[[f32; 2]],
    indices: &mut [u32],
) -> (Vec<[f32; 4]>, Vec<u32>) {
    let mut corners = Corners {
        positions,
        normals,
        uvs,
        indices,
        tangents: vec![None; indices.len()],
    };
    // The error type has no values: generation cannot fail.
    if generate_tangents(&mut corners).is_err() {
        corners.tangents.fill(None);
    }
    let corner_tangents = corners.tangents;
    let n = positions.len();
    let mut tangents: Vec<Option<[f32; 4]>> = vec![None; n];
    let mut copies: HashMap<(u32, [u32; 4]), u32> = HashMap::new();
    let mut sources: Vec<u32> = Vec::new();
    let mut extra: Vec<[f32; 4]> = Vec::new();
    // Corners with a tangent first; then corners MikkTSpace left without one (degenerate
    // triangles with no neighbour to borrow from) take what their vertex got.
    for (index, t) in indices.iter_mut().zip(&corner_tangents) {
        let Some(t) = *t else { continue };
        let v = *index as usize;
        let Some(slot) = tangents.get_mut(v) else {
            continue;
        };
        match slot {
            None => *slot = Some(t),
            Some(have) if have.map(f32::to_bits) == t.map(f32::to_bits) => {}
            Some(_) => {
                *index = *copies
                    .entry((*index, t.map(f32::to_bits)))
                    .or_insert_with(|| {
                        sources.push(*index);
                        extra.push(t);
                        (n + sources.len() - 1) as u32
                    });
            }
        }
    }
    let mut out: Vec<[f32; 4]> = tangents
        .iter()
        .zip(normals)
        .map(|(t, normal)| t.unwrap_or_else(|| perpendicular(*normal)))
        .collect();
    out.extend(extra);
    (out, sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perpendicular_tangents_are_unit_and_orthogonal() {
        for n in [
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0],
            [0.3, -0.5, 0.8],
            [0.0, 0.0, 0.0],
        ] {
            let t = perpendicular(n);
            let tv = Vec3::new(t[0], t[1], t[2]);
            assert!((tv.length() - 1.0).abs() < 1e-5, "{n:?}: {t:?}");
            assert!(tv.dot(Vec3::from_array(n)).abs() < 1e-5, "{n:?}: {t:?}");
            assert_eq!(t[3], 1.0);
        }
    }

    #[test]
    fn a_mirrored_uv_seam_splits_only_the_seam_vertices() {
        // Two triangles of a quad in the XY plane facing +Z, sharing the edge 1-2; the second
        // triangle's UVs run the other way along U (mirrored), so the shared vertices need two
        // tangents: +X on one side, -X on the other.
        let positions = [
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 0.0, 0.0],
            [2.0, 0.0, 0.0],
            [2.0, 1.0, 0.0],
        ];
        let normals = [[0.0, 0.0, 1.0]; 6];
        let uvs = [
            [0.0, 0.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.0, 0.0],
            [0.0, 0.0],
            [0.0, 1.0],
        ];
        let mut indices = [0, 1, 2, 1, 4, 5, 1, 5, 2];
        let (tangents, sources) = generate(&positions, &normals, &uvs, &mut indices);
        assert_eq!(tangents.len(), positions.len() + sources.len());
        for &i in &indices {
            assert!((i as usize) < tangents.len());
        }
        assert!(!sources.is_empty(), "the seam vertices are split");
        assert!(sources.iter().all(|s| *s == 1 || *s == 2), "{sources:?}");
        for t in &tangents {
            assert!(
                (Vec3::new(t[0], t[1], t[2]).length() - 1.0).abs() < 1e-4,
                "{t:?}"
            );
            assert!(t[3] == 1.0 || t[3] == -1.0);
        }
        assert!(tangents[0][0] > 0.99, "{:?}", tangents[0]);
        assert!(tangents[4][0] < -0.99, "{:?}", tangents[4]);
    }
}
