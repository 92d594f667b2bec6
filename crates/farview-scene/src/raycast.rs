//! Ray queries against triangle meshes: a bounding volume hierarchy per primitive, built once on
//! the first query and shared by every entity that draws the mesh.

use glam::Vec3;

use crate::model::{Aabb, Primitive};

/// A ray in world space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ray {
    /// Start point.
    pub origin: Vec3,
    /// Direction; normalised by [`Ray::new`].
    pub direction: Vec3,
    /// Hits further than this are ignored.
    pub max_distance: f32,
}

impl Ray {
    /// A ray with a normalised direction; `None` when the inputs are not finite, the direction is
    /// zero or the distance is not positive.
    pub fn new(origin: Vec3, direction: Vec3, max_distance: f32) -> Option<Self> {
        let direction = direction.try_normalize()?;
        (origin.is_finite() && max_distance > 0.0 && !max_distance.is_nan()).then_some(Self {
            origin,
            direction,
            max_distance,
        })
    }
}

/// Nearest hit of a ray against a triangle set in the set's own space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TriangleHit {
    /// Ray parameter (distance in world units when the caller passes a world-scaled direction).
    pub t: f32,
    /// Triangle index.
    pub triangle: usize,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    bounds: Aabb,
    /// Leaf: first triangle in `order`; inner: index of the left child (right is left + 1).
    start: u32,
    /// Leaf: triangle count; inner: 0.
    count: u32,
}

/// A binary BVH over one primitive's triangles (median split on the longest axis).
#[derive(Debug, Clone, Default)]
pub struct Bvh {
    nodes: Vec<Node>,
    order: Vec<u32>,
}

const LEAF: usize = 4;

impl Bvh {
    /// Builds the hierarchy; O(n log n).
    pub fn build(p: &Primitive) -> Self {
        let tris = p.triangle_count();
        let tri = |i: usize| triangle(p, i);
        let mut centroids = Vec::with_capacity(tris);
        let mut boxes = Vec::with_capacity(tris);
        for i in 0..tris {
            let (a, b, c) = tri(i).unwrap_or((Vec3::ZERO, Vec3::ZERO, Vec3::ZERO));
            centroids.push((a + b + c) / 3.0);
            boxes.push(Aabb::from_points([a, b, c]));
        }
        let mut order: Vec<u32> = (0..tris as u32).collect();
        let mut nodes = Vec::with_capacity(tris / LEAF * 2 + 1);
        nodes.push(Node {
            bounds: Aabb::EMPTY,
            start: 0,
            count: tris as u32,
        });
        // Work list of (node, first, count): iterative, so deep trees cannot overflow the stack.
        let mut work = vec![(0usize, 0usize, tris)];
        while let Some((node, first, count)) = work.pop() {
            let slice = &mut order[first..first + count];
            let bounds = slice
                .iter()
                .fold(Aabb::EMPTY, |b, &t| b.union(&boxes[t as usize]));
            nodes[node].bounds = bounds;
            if count <= LEAF {
                nodes[node].start = first as u32;
                nodes[node].count = count as u32;
                continue;
            }
            let cb = Aabb::from_points(slice.iter().map(|&t| centroids[t as usize]));
            let size = cb.size();
            let axis = if size.x >= size.y && size.x >= size.z {
                0
            } else if size.y >= size.z {
                1
            } else {
                2
            };
            let mid = count / 2;
            slice.select_nth_unstable_by(mid, |&a, &b| {
                centroids[a as usize][axis].total_cmp(&centroids[b as usize][axis])
            });
            let left = nodes.len();
            nodes.push(Node {
                bounds: Aabb::EMPTY,
                start: 0,
                count: 0,
            });
            nodes.push(Node {
                bounds: Aabb::EMPTY,
                start: 0,
                count: 0,
            });
            nodes[node].start = left as u32;
            nodes[node].count = 0;
            work.push((left, first, mid));
            work.push((left + 1, first + mid, count - mid));
        }
        Self { nodes, order }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>() + self.order.len() * 4
    }

    /// Every hit with `t` in (0, `max_t`], nearest first when `closest` (then only one).
    pub(crate) fn intersect(
        &self,
        p: &Primitive,
        origin: Vec3,
        dir: Vec3,
        max_t: f32,
        closest: bool,
        out: &mut Vec<TriangleHit>,
    ) {
        let Some(root) = self.nodes.first() else {
            return;
        };
        let inv = dir.recip();
        let mut best = max_t;
        let mut stack = Vec::with_capacity(64);
        if slab(&root.bounds, origin, inv, best).is_some() {
            stack.push(0usize);
        }
        while let Some(n) = stack.pop() {
            let node = self.nodes[n];
            if closest && slab(&node.bounds, origin, inv, best).is_none() {
                continue;
            }
            if node.count > 0 {
                let start = node.start as usize;
                for &t in &self.order[start..start + node.count as usize] {
                    let Some((a, b, c)) = triangle(p, t as usize) else {
                        continue;
                    };
                    if let Some(hit) = moller_trumbore(origin, dir, a, b, c)
                        && hit <= best
                    {
                        if closest {
                            best = hit;
                            out.clear();
                        }
                        out.push(TriangleHit {
                            t: hit,
                            triangle: t as usize,
                        });
                    }
                }
                continue;
            }
            let (l, r) = (node.start as usize, node.start as usize + 1);
            let dl = slab(&self.nodes[l].bounds, origin, inv, best);
            let dr = slab(&self.nodes[r].bounds, origin, inv, best);
            // Visit the nearer child first (pushed last).
            match (dl, dr) {
                (Some(a), Some(b)) if a <= b => stack.extend([r, l]),
                (Some(_), Some(_)) => stack.extend([l, r]),
                (Some(_), None) => stack.push(l),
                (None, Some(_)) => stack.push(r),
                (None, None) => {}
            }
        }
    }
}

/// The corners of triangle `i`, `None` if its indices are out of range.
pub(crate) fn triangle(p: &Primitive, i: usize) -> Option<(Vec3, Vec3, Vec3)> {
    let idx = p.indices.get(i * 3..i * 3 + 3)?;
    let v = |k: u32| p.positions.get(k as usize).map(|v| Vec3::from_array(*v));
    Some((v(idx[0])?, v(idx[1])?, v(idx[2])?))
}

/// Entry distance of a ray into a box, if it enters before `max_t`. `inv` is the reciprocal
/// direction; an axis the ray does not move along (infinite `inv`) needs the origin inside the
/// box's extent on it, which also keeps 0 * inf from turning into NaN.
pub(crate) fn slab(b: &Aabb, origin: Vec3, inv: Vec3, max_t: f32) -> Option<f32> {
    if b.is_empty() {
        return None;
    }
    let (mut tmin, mut tmax) = (0.0f32, max_t);
    for axis in 0..3 {
        let (o, i, lo, hi) = (origin[axis], inv[axis], b.min[axis], b.max[axis]);
        if i.is_infinite() {
            if o < lo || o > hi {
                return None;
            }
            continue;
        }
        let (t1, t2) = ((lo - o) * i, (hi - o) * i);
        tmin = tmin.max(t1.min(t2));
        tmax = tmax.min(t1.max(t2));
    }
    (tmin <= tmax).then_some(tmin)
}

/// Ray/triangle intersection, both faces; the ray parameter of the hit.
pub(crate) fn moller_trumbore(o: Vec3, d: Vec3, a: Vec3, b: Vec3, c: Vec3) -> Option<f32> {
    let e1 = b - a;
    let e2 = c - a;
    let p = d.cross(e2);
    let det = e1.dot(p);
    if det.abs() < 1e-12 {
        return None;
    }
    let inv = 1.0 / det;
    let s = o - a;
    let u = s.dot(p) * inv;
    if !(0.0..=1.0).contains(&u) {
        return None;
    }
    let q = s.cross(e1);
    let v = d.dot(q) * inv;
    if v < 0.0 || u + v > 1.0 {
        return None;
    }
    let t = e2.dot(q) * inv;
    (t > 1e-7).then_some(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Primitive {
        // An n x n grid of quads in the z = 0 plane, 1 unit each.
        let mut positions = Vec::new();
        let mut indices = Vec::new();
        for y in 0..=n {
            for x in 0..=n {
                positions.push([x as f32, y as f32, 0.0]);
            }
        }
        let w = (n + 1) as u32;
        for y in 0..n as u32 {
            for x in 0..n as u32 {
                let i = y * w + x;
                indices.extend([i, i + 1, i + w, i + 1, i + w + 1, i + w]);
            }
        }
        let bounds = Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p)));
        Primitive {
            normals: vec![[0.0, 0.0, 1.0]; positions.len()],
            uvs: vec![[0.0; 2]; positions.len()],
            uvs1: Vec::new(),
            colors: Vec::new(),
            positions,
            indices,
            material: None,
            bounds,
            ..Primitive::default()
        }
    }

    #[test]
    fn bvh_agrees_with_brute_force() {
        let p = grid(40);
        let bvh = Bvh::build(&p);
        for k in 0..200 {
            let f = k as f32;
            let origin = Vec3::new((f * 0.37) % 40.0, (f * 0.61) % 40.0, 5.0);
            let dir = Vec3::new((f * 0.13).sin() * 0.2, (f * 0.7).cos() * 0.2, -1.0);
            let mut hits = Vec::new();
            bvh.intersect(&p, origin, dir, f32::INFINITY, true, &mut hits);
            let brute = (0..p.triangle_count())
                .filter_map(|i| {
                    let (a, b, c) = triangle(&p, i).unwrap();
                    moller_trumbore(origin, dir, a, b, c)
                })
                .fold(None, |m: Option<f32>, t| Some(m.map_or(t, |m| m.min(t))));
            assert_eq!(hits.first().map(|h| h.t), brute, "ray {k}");
        }
    }

    #[test]
    fn misses_and_max_distance() {
        let p = grid(4);
        let bvh = Bvh::build(&p);
        let mut hits = Vec::new();
        bvh.intersect(
            &p,
            Vec3::new(2.0, 2.0, 5.0),
            Vec3::Z,
            100.0,
            true,
            &mut hits,
        );
        assert!(hits.is_empty(), "pointing away");
        bvh.intersect(&p, Vec3::new(2.2, 2.3, 5.0), -Vec3::Z, 4.0, true, &mut hits);
        assert!(hits.is_empty(), "beyond max distance");
        bvh.intersect(&p, Vec3::new(2.2, 2.3, 5.0), -Vec3::Z, 6.0, true, &mut hits);
        assert_eq!(hits.len(), 1);
        assert!((hits[0].t - 5.0).abs() < 1e-5);
    }
}
