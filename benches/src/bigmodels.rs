//! Generated big glTF models for issue #15 (large scenes): made by this program, never
//! downloaded, the same bytes on every run and machine (fixed seeds, no floating-point work
//! whose result depends on threads).
//!
//! - [`city_glb`]: about ten million triangles drawn by a grid of city blocks: twenty building
//!   meshes with window-studded facades, each drawn by many nodes, three hundred noisy towers
//!   drawn once each, block slabs, parks and streets with dashed centre lines.
//! - [`scan_glb`]: one primitive of twenty million triangles, a 3163 x 3163 heightfield of
//!   fractal noise that looks like a scanned rock surface, with smooth normals.
//! - [`hierarchy_glb`]: a million nodes in a tree of branching factor ten, each leaf drawing one
//!   of four shared 12-triangle boxes.
//!
//! Each returns the GLB with its [`ModelCounts`]. `farview-gen-models` writes them to files.

use std::fmt::Write as _;

use farview_scene::ImportLimits;
use glam::Vec3;

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($($t:tt)*) => {{
        let _ = write!($($t)*);
    }};
}

/// What a generated model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelCounts {
    /// Nodes in the file.
    pub nodes: u64,
    /// Meshes in the file.
    pub meshes: u64,
    /// Triangles over the meshes, each mesh counted once.
    pub source_triangles: u64,
    /// Triangles drawn: for each node with a mesh, that mesh's triangles.
    pub drawn_triangles: u64,
    /// Vertices over the meshes (the POSITION accessors' counts).
    pub vertices: u64,
    /// The largest accessor's element count.
    pub largest_accessor: u64,
}

/// Blocks per side of the default city (`city_glb`): 16 x 16 blocks of 2 x 2 lots.
pub const CITY_BLOCKS: u32 = 16;
/// Vertices per side of the default scan (`scan_glb(SCAN_SIDE)`): 20,000,000 triangles.
pub const SCAN_SIDE: u32 = 3163;
/// Nodes of the default hierarchy (`hierarchy_glb(HIERARCHY_NODES)`).
pub const HIERARCHY_NODES: u32 = 1_000_000;

/// The default city: [`CITY_BLOCKS`] blocks per side, about ten million triangles drawn.
pub fn city_glb() -> (Vec<u8>, ModelCounts) {
    city_glb_scaled(CITY_BLOCKS)
}

// ---------------------------------------------------------------------------------------------
// Shared pieces: the generator, noise, triangle lists and the GLB document builder.

/// A fixed-seed xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u32) -> u32 {
        ((self.next_u64() >> 32) % u64::from(n.max(1))) as u32
    }
}

/// A hash of a lattice point to [0, 1).
fn lattice(x: i32, y: i32, seed: u32) -> f32 {
    let mut h = u64::from(x as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(y as u32).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ u64::from(seed).wrapping_mul(0x1656_67b1_9e37_79f9);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Value noise in [0, 1): lattice values blended with a smoothstep.
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = lattice(ix, iy, seed);
    let b = lattice(ix + 1, iy, seed);
    let c = lattice(ix, iy + 1, seed);
    let d = lattice(ix + 1, iy + 1, seed);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    top + (bottom - top) * sy
}

/// Fractal value noise in about [-1, 1]: `octaves` octaves, each twice the frequency and half
/// the amplitude of the one before, shifted so their lattices do not line up.
fn fbm(x: f32, y: f32, octaves: u32, seed: u32) -> f32 {
    let (mut sum, mut amp, mut freq, mut norm) = (0.0, 1.0, 1.0, 0.0);
    for o in 0..octaves {
        let shift = o as f32 * 17.31;
        sum += amp * (value_noise(x * freq + shift, y * freq - shift, seed + o) * 2.0 - 1.0);
        norm += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / norm
}

/// The six faces of an axis-aligned box: outward normal, then the quad's edge directions `u`
/// and `v` with `u x v = n` (so the quad winds counter-clockwise seen from outside).
const FACES: [(Vec3, Vec3, Vec3); 6] = [
    (Vec3::X, Vec3::NEG_Z, Vec3::Y),
    (Vec3::NEG_X, Vec3::Z, Vec3::Y),
    (Vec3::Y, Vec3::Z, Vec3::X),
    (Vec3::NEG_Y, Vec3::X, Vec3::Z),
    (Vec3::Z, Vec3::X, Vec3::Y),
    (Vec3::NEG_Z, Vec3::NEG_X, Vec3::Y),
];
/// The face opposite each of [`FACES`].
const OPPOSITE: [usize; 6] = [1, 0, 3, 2, 5, 4];

/// An indexed triangle list with unit normals.
#[derive(Default)]
struct Prim {
    pos: Vec<[f32; 3]>,
    nrm: Vec<[f32; 3]>,
    idx: Vec<u32>,
}

impl Prim {
    fn triangles(&self) -> u64 {
        self.idx.len() as u64 / 3
    }

    /// A flat quad centred on `c` spanning edges `u` and `v`, facing `u x v`.
    fn quad(&mut self, c: Vec3, u: Vec3, v: Vec3) {
        let n = u.cross(v).normalize_or(Vec3::Y).to_array();
        let p0 = c - (u + v) * 0.5;
        let base = self.pos.len() as u32;
        for p in [p0, p0 + u, p0 + u + v, p0 + v] {
            self.pos.push(p.to_array());
            self.nrm.push(n);
        }
        self.idx
            .extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
    }

    /// An axis-aligned box from `lo` to `hi`, flat-shaded, without face `skip` (an index into
    /// [`FACES`]).
    fn aabox(&mut self, lo: Vec3, hi: Vec3, skip: Option<usize>) {
        let c = (lo + hi) * 0.5;
        let e = hi - lo;
        for (f, &(n, u, v)) in FACES.iter().enumerate() {
            if Some(f) == skip {
                continue;
            }
            self.quad(
                c + n * (e.dot(n.abs()) * 0.5),
                u * e.dot(u.abs()),
                v * e.dot(v.abs()),
            );
        }
    }
}

/// A mesh: primitives with their material.
struct MeshData {
    name: String,
    prims: Vec<(Prim, usize)>,
}

impl MeshData {
    fn triangles(&self) -> u64 {
        self.prims.iter().map(|(p, _)| p.triangles()).sum()
    }
}

/// A node of a generated document.
struct Node {
    name: Option<String>,
    mesh: Option<usize>,
    translation: Vec3,
    yaw: f32,
    scale: f32,
    children: Vec<usize>,
}

impl Node {
    fn at(translation: Vec3) -> Self {
        Self {
            name: None,
            mesh: None,
            translation,
            yaw: 0.0,
            scale: 1.0,
            children: Vec::new(),
        }
    }
}

/// Builds the binary chunk and the JSON arrays of accessors, buffer views and meshes.
#[derive(Default)]
struct Doc {
    bin: Vec<u8>,
    accessors: String,
    accessor_count: usize,
    views: String,
    view_count: usize,
    meshes: String,
    mesh_triangles: Vec<u64>,
    vertices: u64,
    largest_accessor: u64,
}

impl Doc {
    /// Appends one buffer view holding `data` (padded to 4 bytes) and an accessor on it
    /// (`fields` after `bufferView`); returns the accessor's index.
    fn accessor(&mut self, data: &[u8], target: u32, count: usize, fields: &str) -> usize {
        if self.view_count > 0 {
            self.views.push(',');
        }
        w!(
            self.views,
            r#"{{"buffer":0,"byteOffset":{},"byteLength":{},"target":{target}}}"#,
            self.bin.len(),
            data.len()
        );
        self.bin.extend_from_slice(data);
        self.bin.resize(self.bin.len().next_multiple_of(4), 0);
        if self.accessor_count > 0 {
            self.accessors.push(',');
        }
        w!(
            self.accessors,
            r#"{{"bufferView":{},"count":{count},{fields}}}"#,
            self.view_count
        );
        self.view_count += 1;
        self.accessor_count += 1;
        self.largest_accessor = self.largest_accessor.max(count as u64);
        self.accessor_count - 1
    }

    /// Appends a mesh's primitives; returns the mesh index.
    fn add_mesh(&mut self, mesh: &MeshData) -> usize {
        let mut prims = String::new();
        for (k, (p, material)) in mesh.prims.iter().enumerate() {
            let mut lo = [f32::MAX; 3];
            let mut hi = [f32::MIN; 3];
            let mut bytes = Vec::with_capacity(p.pos.len() * 12);
            for v in &p.pos {
                for i in 0..3 {
                    lo[i] = lo[i].min(v[i]);
                    hi[i] = hi[i].max(v[i]);
                    bytes.extend_from_slice(&v[i].to_le_bytes());
                }
            }
            let count = p.pos.len();
            let position = self.accessor(
                &bytes,
                34962,
                count,
                &format!(
                    r#""componentType":5126,"type":"VEC3","min":[{},{},{}],"max":[{},{},{}]"#,
                    lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]
                ),
            );
            bytes.clear();
            for v in p.nrm.iter().flatten() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            let normal = self.accessor(
                &bytes,
                34962,
                count,
                r#""componentType":5126,"type":"VEC3""#,
            );
            bytes.clear();
            for i in &p.idx {
                bytes.extend_from_slice(&i.to_le_bytes());
            }
            let indices = self.accessor(
                &bytes,
                34963,
                p.idx.len(),
                r#""componentType":5125,"type":"SCALAR""#,
            );
            if k > 0 {
                prims.push(',');
            }
            w!(
                prims,
                r#"{{"attributes":{{"POSITION":{position},"NORMAL":{normal}}},"indices":{indices},"material":{material}}}"#
            );
            self.vertices += count as u64;
        }
        if !self.mesh_triangles.is_empty() {
            self.meshes.push(',');
        }
        w!(
            self.meshes,
            r#"{{"name":"{}","primitives":[{prims}]}}"#,
            mesh.name
        );
        self.mesh_triangles.push(mesh.triangles());
        self.mesh_triangles.len() - 1
    }

    /// The GLB: these meshes, `materials` (JSON objects) and `nodes` (node 0 is the scene's
    /// root), with the counts.
    fn finish(
        self,
        generator: &str,
        materials: &[String],
        nodes: &[Node],
    ) -> (Vec<u8>, ModelCounts) {
        let mut json = String::with_capacity(
            self.accessors.len() + self.views.len() + self.meshes.len() + nodes.len() * 120 + 4096,
        );
        w!(
            json,
            r#"{{"asset":{{"version":"2.0","generator":"{generator}"}},"scene":0,"scenes":[{{"nodes":[0]}}],"nodes":["#
        );
        let mut drawn = 0u64;
        for (i, n) in nodes.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            let t = n.translation;
            w!(json, r#"{{"translation":[{},{},{}]"#, t.x, t.y, t.z);
            if let Some(name) = &n.name {
                w!(json, r#","name":"{name}""#);
            }
            if let Some(m) = n.mesh {
                w!(json, r#","mesh":{m}"#);
                drawn += self.mesh_triangles.get(m).copied().unwrap_or(0);
            }
            if n.yaw != 0.0 {
                let (s, c) = (n.yaw * 0.5).sin_cos();
                w!(json, r#","rotation":[0,{s},0,{c}]"#);
            }
            if n.scale != 1.0 {
                w!(json, r#","scale":[{0},{0},{0}]"#, n.scale);
            }
            push_children(&mut json, n.children.iter().copied());
            json.push('}');
        }
        w!(
            json,
            r#"],"meshes":[{}],"materials":[{}],"accessors":[{}],"bufferViews":[{}],"buffers":[{{"byteLength":{}}}]}}"#,
            self.meshes,
            materials.join(","),
            self.accessors,
            self.views,
            self.bin.len()
        );
        let counts = ModelCounts {
            nodes: nodes.len() as u64,
            meshes: self.mesh_triangles.len() as u64,
            source_triangles: self.mesh_triangles.iter().sum(),
            drawn_triangles: drawn,
            vertices: self.vertices,
            largest_accessor: self.largest_accessor,
        };
        (
            farview_scene::synthetic::glb(json.as_bytes(), &self.bin),
            counts,
        )
    }
}

/// Writes `,"children":[..]` when there are any.
fn push_children(json: &mut String, children: impl Iterator<Item = usize>) {
    let mut first = true;
    for c in children {
        json.push_str(if first { r#","children":["# } else { "," });
        first = false;
        w!(json, "{c}");
    }
    if !first {
        json.push(']');
    }
}

/// A material of one colour (no textures).
fn material(name: &str, rgb: [f32; 3], metallic: f32, roughness: f32) -> String {
    format!(
        r#"{{"name":"{name}","pbrMetallicRoughness":{{"baseColorFactor":[{},{},{},1],"metallicFactor":{metallic},"roughnessFactor":{roughness}}}}}"#,
        rgb[0], rgb[1], rgb[2]
    )
}

// ---------------------------------------------------------------------------------------------
// The city.

const MAT_ASPHALT: usize = 0;
const MAT_SIDEWALK: usize = 1;
const MAT_PAINT: usize = 2;
const MAT_GRASS: usize = 3;
const MAT_WINDOW: usize = 4;
/// Facade materials follow the window glass.
const MAT_FACADES: usize = 5;
const FACADES: [(&str, [f32; 3]); 6] = [
    ("concrete", [0.55, 0.54, 0.50]),
    ("brick", [0.50, 0.22, 0.15]),
    ("sandstone", [0.76, 0.66, 0.48]),
    ("white render", [0.85, 0.84, 0.80]),
    ("dark steel", [0.18, 0.19, 0.21]),
    ("blue glass", [0.20, 0.32, 0.45]),
];

/// Side of a block, width of a street, and their sum.
const BLOCK: f32 = 60.0;
const STREET: f32 = 14.0;
const PITCH: f32 = BLOCK + STREET;
/// Height of a block's slab (the sidewalk) above the street.
const SLAB: f32 = 0.2;

/// A city of `blocks` x `blocks` blocks (at least 1), each of 2 x 2 lots: 30 % of the lots (at
/// most 300) hold a tower of its own mesh, 6 % are parks, and the rest are drawn from up to
/// twenty shared building meshes (with a turn about Y and a scale each). `city_glb_scaled(16)`
/// (the default) draws about ten million triangles.
pub fn city_glb_scaled(blocks: u32) -> (Vec<u8>, ModelCounts) {
    let blocks = blocks.max(1);
    let mut rng = Rng::new(0x6369_7479_2315_0001);
    let mut doc = Doc::default();
    let mut materials = vec![
        material("asphalt", [0.07, 0.07, 0.08], 0.0, 0.95),
        material("sidewalk", [0.52, 0.51, 0.48], 0.0, 0.9),
        material("road paint", [0.90, 0.88, 0.80], 0.0, 0.7),
        material("grass", [0.18, 0.38, 0.12], 0.0, 1.0),
        material("window glass", [0.08, 0.12, 0.16], 0.3, 0.15),
    ];
    for (name, rgb) in FACADES {
        materials.push(material(name, rgb, 0.0, 0.8));
    }

    // Lots: a shuffled order decides which are towers, parks and shared buildings.
    let lots = 4 * blocks * blocks;
    let mut order: Vec<u32> = (0..lots).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        order.swap(i, j);
    }
    let towers = (lots * 3 / 10).min(300);
    let parks = lots * 6 / 100;
    let shared = lots - towers - parks;
    let prototypes = shared.clamp(1, 20);
    #[derive(Clone, Copy)]
    enum Lot {
        Tower(u32),
        Park,
        Shared(u32),
    }
    let mut kind = vec![Lot::Park; lots as usize];
    for (rank, &lot) in order.iter().enumerate() {
        let rank = rank as u32;
        kind[lot as usize] = if rank < towers {
            Lot::Tower(rank)
        } else if rank < towers + parks {
            Lot::Park
        } else {
            Lot::Shared((rank - towers - parks) % prototypes)
        };
    }

    // Shared meshes first: streets, the block slab, the park, then the building prototypes.
    let half = blocks as f32 * PITCH * 0.5 + STREET * 0.5;
    let streets = doc.add_mesh(&streets_mesh(blocks, half));
    let mut slab = Prim::default();
    slab.aabox(
        Vec3::new(-BLOCK * 0.5, 0.0, -BLOCK * 0.5),
        Vec3::new(BLOCK * 0.5, SLAB, BLOCK * 0.5),
        Some(3),
    );
    let slab = doc.add_mesh(&MeshData {
        name: "block slab".into(),
        prims: vec![(slab, MAT_SIDEWALK)],
    });
    let park = (parks > 0).then(|| {
        let mut p = Prim::default();
        p.quad(Vec3::new(0.0, 0.03, 0.0), Vec3::Z * 27.0, Vec3::X * 27.0);
        doc.add_mesh(&MeshData {
            name: "park".into(),
            prims: vec![(p, MAT_GRASS)],
        })
    });
    let mut proto_mesh = Vec::with_capacity(prototypes as usize);
    for k in 0..prototypes {
        let mesh = prototype_building(&mut rng, k);
        proto_mesh.push(doc.add_mesh(&mesh));
    }

    // Nodes: the city root, the streets, one node per block (drawing its slab) holding the
    // block's lots.
    let mut nodes = vec![Node::at(Vec3::ZERO)];
    nodes[0].name = Some("city".into());
    let mut street_node = Node::at(Vec3::ZERO);
    street_node.name = Some("streets".into());
    street_node.mesh = Some(streets);
    nodes.push(street_node);
    nodes[0].children.push(1);
    for bz in 0..blocks {
        for bx in 0..blocks {
            let centre = Vec3::new(
                (bx as f32 - (blocks - 1) as f32 * 0.5) * PITCH,
                0.0,
                (bz as f32 - (blocks - 1) as f32 * 0.5) * PITCH,
            );
            let block = nodes.len();
            let mut node = Node::at(centre);
            node.name = Some(format!("block {bx},{bz}"));
            node.mesh = Some(slab);
            nodes.push(node);
            nodes[0].children.push(block);
            for l in 0..4u32 {
                let lot = ((bz * blocks + bx) * 4 + l) as usize;
                let at = Vec3::new(
                    if l % 2 == 0 { -15.0 } else { 15.0 },
                    SLAB,
                    if l / 2 == 0 { -15.0 } else { 15.0 },
                );
                let mut child = Node::at(at);
                match kind[lot] {
                    Lot::Park => child.mesh = park,
                    Lot::Tower(t) => {
                        let mesh = tower(&mut rng, t);
                        child.mesh = Some(doc.add_mesh(&mesh));
                        child.yaw = rng.range(0.0, std::f32::consts::TAU);
                    }
                    Lot::Shared(p) => {
                        child.mesh = proto_mesh.get(p as usize).copied();
                        child.yaw = rng.below(4) as f32 * std::f32::consts::FRAC_PI_2
                            + rng.range(-0.12, 0.12);
                        child.scale = rng.range(0.85, 1.15);
                    }
                }
                let index = nodes.len();
                nodes.push(child);
                nodes[block].children.push(index);
            }
        }
    }
    doc.finish("farview-gen-models city", &materials, &nodes)
}

/// The streets: one asphalt quad under the whole city and dashed centre lines along every
/// street, both ways.
fn streets_mesh(blocks: u32, half: f32) -> MeshData {
    let mut ground = Prim::default();
    ground.quad(Vec3::ZERO, Vec3::Z * (2.0 * half), Vec3::X * (2.0 * half));
    let mut paint = Prim::default();
    let dashes = (2.0 * half / 6.0) as u32;
    for k in 0..=blocks {
        let line = (k as f32 - blocks as f32 * 0.5) * PITCH;
        for d in 0..dashes {
            let along = -half + 3.0 + d as f32 * 6.0;
            paint.quad(Vec3::new(along, 0.02, line), Vec3::Z * 0.25, Vec3::X * 3.0);
            paint.quad(Vec3::new(line, 0.02, along), Vec3::Z * 3.0, Vec3::X * 0.25);
        }
    }
    MeshData {
        name: "streets".into(),
        prims: vec![(ground, MAT_ASPHALT), (paint, MAT_PAINT)],
    }
}

/// A shared building: one to three stacked boxes, each set back from the one below, their
/// facades a grid of wall panels each with a window box standing out of it (12 triangles a
/// cell), roofs with a few plant boxes. Between 2,000 and 20,000 triangles.
fn prototype_building(rng: &mut Rng, k: u32) -> MeshData {
    let width = rng.range(14.0, 22.0);
    let depth = rng.range(14.0, 22.0);
    let tiers = 1 + rng.below(3);
    let facade = MAT_FACADES + rng.below(5) as usize;
    let column = rng.range(2.6, 3.6);
    let storey = rng.range(3.2, 4.0);
    let plant_seed = rng.next_u64();
    // Floors are fitted to a triangle count drawn uniformly from 2,500..19,500.
    let target = rng.range(2_500.0, 19_500.0);
    let build = |floors| {
        building_of(
            width, depth, tiers, floors, column, storey, facade, plant_seed, k,
        )
    };
    let mut floors = 20;
    let mut mesh = build(floors);
    for _ in 0..6 {
        let t = mesh.triangles() as f32;
        if (t - target).abs() < 0.05 * target {
            break;
        }
        floors = ((floors as f32 * target / t).round() as u32).max(1);
        mesh = build(floors);
    }
    mesh
}

#[allow(clippy::too_many_arguments)]
fn building_of(
    width: f32,
    depth: f32,
    tiers: u32,
    floors: u32,
    column: f32,
    storey: f32,
    facade: usize,
    plant_seed: u64,
    k: u32,
) -> MeshData {
    let mut walls = Prim::default();
    let mut windows = Prim::default();
    let mut y0 = 0.0;
    let (mut w, mut d) = (width, depth);
    let mut left = floors.max(tiers);
    for tier in 0..tiers {
        let tier_floors = if tier + 1 == tiers {
            left
        } else {
            (left * 55 / 100).max(1)
        };
        left -= tier_floors;
        let h = tier_floors as f32 * storey;
        let lo = Vec3::new(-w * 0.5, y0, -d * 0.5);
        let hi = Vec3::new(w * 0.5, y0 + h, d * 0.5);
        facade_cells(&mut walls, &mut windows, lo, hi, tier_floors, column);
        // The roof.
        walls.quad(Vec3::new(0.0, y0 + h, 0.0), Vec3::Z * d, Vec3::X * w);
        y0 += h;
        w *= 0.75;
        d *= 0.75;
    }
    // Plant boxes on the top roof.
    let mut rng = Rng::new(plant_seed);
    for _ in 0..1 + rng.below(4) {
        let c = Vec3::new(
            rng.range(-0.3, 0.3) * w / 0.75,
            y0,
            rng.range(-0.3, 0.3) * d / 0.75,
        );
        let s = Vec3::new(
            rng.range(1.0, 3.0),
            rng.range(1.0, 2.5),
            rng.range(1.0, 3.0),
        );
        walls.aabox(
            c - Vec3::new(s.x, 0.0, s.z) * 0.5,
            c + Vec3::new(s.x * 0.5, s.y, s.z * 0.5),
            Some(3),
        );
    }
    MeshData {
        name: format!("building {k}"),
        prims: vec![(walls, facade), (windows, MAT_WINDOW)],
    }
}

/// The four side faces of the box `lo`..`hi` as `floors` rows of cells about `column` wide:
/// a wall panel per cell and a window box standing 0.25 out of it.
fn facade_cells(
    walls: &mut Prim,
    windows: &mut Prim,
    lo: Vec3,
    hi: Vec3,
    floors: u32,
    column: f32,
) {
    let c = (lo + hi) * 0.5;
    let e = hi - lo;
    for f in [0usize, 1, 4, 5] {
        let (n, u, _) = FACES[f];
        let width = e.dot(u.abs());
        let cols = ((width / column).round() as u32).max(1);
        let (cw, ch) = (width / cols as f32, e.y / floors.max(1) as f32);
        let face = c + n * (e.dot(n.abs()) * 0.5);
        for row in 0..floors {
            for col in 0..cols {
                let cell = face
                    + u * ((col as f32 + 0.5) * cw - width * 0.5)
                    + Vec3::Y * ((row as f32 + 0.5) * ch - e.y * 0.5);
                walls.quad(cell, u * cw, Vec3::Y * ch);
                let centre = cell + n * 0.125 + Vec3::Y * (0.08 * ch);
                let half = u.abs() * (0.275 * cw) + Vec3::Y * (0.25 * ch) + n.abs() * 0.125;
                windows.aabox(centre - half, centre + half, Some(OPPOSITE[f]));
            }
        }
    }
}

/// A tower drawn once: a twisted, tapering superellipse prism with floor ribs and a noisy
/// surface (smooth normals), capped flat. Between 5,000 and 15,000 triangles.
fn tower(rng: &mut Rng, t: u32) -> MeshData {
    let target = rng.range(5_000.0, 14_800.0) as u32;
    let sides = 48 + 8 * rng.below(7);
    let rings = (target - sides).div_ceil(2 * sides).max(2);
    let height = rng.range(50.0, 180.0);
    let r0 = rng.range(7.0, 11.0);
    let p = rng.range(2.0, 6.0);
    let taper = rng.range(0.0, 0.35);
    let twist = rng.range(-0.8, 0.8);
    let amp = rng.range(0.1, 0.35);
    let rib = rng.range(3.2, 4.5);
    let seed = 1000 + 2 * t;
    let facade = MAT_FACADES + 2 + rng.below(4) as usize;
    let s = sides as usize;
    let mut side = Prim::default();
    for k in 0..=rings {
        let y = height * k as f32 / rings as f32;
        let f = y / height;
        let ribs = 0.18 * (std::f32::consts::TAU * y / rib).cos().max(0.0).powi(8);
        for j in 0..sides {
            let a = std::f32::consts::TAU * j as f32 / sides as f32;
            let (sa, ca) = a.sin_cos();
            let shape = r0 / (ca.abs().powf(p) + sa.abs().powf(p)).powf(1.0 / p);
            let noise = amp
                * (value_noise(ca * r0 * 0.4, y * 0.35, seed)
                    + value_noise(sa * r0 * 0.4 + 17.0, y * 0.35, seed + 1)
                    - 1.0);
            let r = shape * (1.0 - taper * f) + noise + ribs;
            let (st, ct) = (a + twist * f).sin_cos();
            side.pos.push([r * ct, y, r * st]);
        }
    }
    for k in 0..rings as usize {
        for j in 0..s {
            let a = (k * s + j) as u32;
            let b = (k * s + (j + 1) % s) as u32;
            let c = ((k + 1) * s + j) as u32;
            let d = ((k + 1) * s + (j + 1) % s) as u32;
            side.idx.extend_from_slice(&[a, c, b, b, c, d]);
        }
    }
    side.nrm = smooth_normals(&side.pos, &side.idx);
    // The cap: the top ring again, facing up, fanned from its centre.
    let top = rings as usize * s;
    let base = side.pos.len() as u32;
    side.pos.push([0.0, height, 0.0]);
    side.pos.extend_from_within(top..top + s);
    side.nrm.resize(side.pos.len(), [0.0, 1.0, 0.0]);
    for j in 0..sides {
        side.idx
            .extend_from_slice(&[base, base + 1 + (j + 1) % sides, base + 1 + j]);
    }
    MeshData {
        name: format!("tower {t}"),
        prims: vec![(side, facade)],
    }
}

/// Area-weighted vertex normals, unit length (straight up where the faces cancel).
fn smooth_normals(pos: &[[f32; 3]], idx: &[u32]) -> Vec<[f32; 3]> {
    let mut acc = vec![Vec3::ZERO; pos.len()];
    for t in idx.chunks_exact(3) {
        let [a, b, c] = [t[0], t[1], t[2]].map(|i| Vec3::from(pos[i as usize]));
        let n = (b - a).cross(c - a);
        for &i in t {
            acc[i as usize] += n;
        }
    }
    acc.into_iter()
        .map(|n| n.normalize_or(Vec3::Y).to_array())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scan.

/// Half the scan's extent in X and Z, and its height range.
const SCAN_HALF: f32 = 100.0;
const SCAN_HEIGHT: f32 = 20.0;

/// The scan's height before scaling: domain-warped fractal noise with ridges, like weathered
/// rock.
fn scan_raw(x: f32, z: f32) -> f32 {
    let wx = x + 12.0 * fbm(x * 0.02 + 5.2, z * 0.02 + 1.3, 4, 11);
    let wz = z + 12.0 * fbm(x * 0.02 - 3.1, z * 0.02 + 7.7, 4, 12);
    let base = fbm(wx / 55.0, wz / 55.0, 10, 1);
    let ridge = 1.0 - fbm(wx / 30.0, wz / 30.0, 9, 2).abs();
    base * 0.6 + ridge * ridge * 0.5
}

/// A scan-like surface: one mesh, one primitive, a `side` x `side` grid of vertices (clamped
/// to 2..=8192) over 200 x 200 units with fractal-noise heights from 0 to about 20 units, a
/// little per-vertex scanner noise, smooth normals from the heightfield and u32 indices.
/// `scan_glb(3163)` has 10,004,569 vertices and 19,996,488 triangles.
///
/// The GLB is written straight into one buffer of its exact size (no second copy of the
/// binary chunk): 24 bytes a vertex and 24 a grid cell.
pub fn scan_glb(side: u32) -> (Vec<u8>, ModelCounts) {
    let n = side.clamp(2, 8192) as usize;
    let step = 2.0 * SCAN_HALF / (n - 1) as f32;
    let coord = |i: usize| -SCAN_HALF + 2.0 * SCAN_HALF * i as f32 / (n - 1) as f32;

    // Heights, rows spread over the cores (each value depends only on its position).
    let mut h = vec![0f32; n * n];
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(16);
    let rows_per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (chunk, rows) in h.chunks_mut(rows_per * n).enumerate() {
            scope.spawn(move || {
                for (k, v) in rows.iter_mut().enumerate() {
                    let (j, i) = (chunk * rows_per + k / n, k % n);
                    *v = scan_raw(coord(i), coord(j));
                }
            });
        }
    });
    let (lo, hi) = h
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = SCAN_HEIGHT / (hi - lo).max(1e-6);
    for (k, v) in h.iter_mut().enumerate() {
        let grain = (lattice((k % n) as i32, (k / n) as i32, 99) - 0.5) * 0.008;
        *v = (*v - lo) * scale + grain;
    }
    let (ylo, yhi) = h
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));

    let verts = n * n;
    let cells = (n - 1) * (n - 1);
    let (pl, il) = (verts * 12, cells * 24);
    let bin_len = 2 * pl + il;
    let json = format!(
        r#"{{"asset":{{"version":"2.0","generator":"farview-gen-models scan"}},"scene":0,"scenes":[{{"nodes":[0]}}],"nodes":[{{"name":"scan","mesh":0}}],"meshes":[{{"name":"scan","primitives":[{{"attributes":{{"POSITION":0,"NORMAL":1}},"indices":2,"material":0}}]}}],"materials":[{}],"accessors":[{{"bufferView":0,"componentType":5126,"count":{verts},"type":"VEC3","min":[{x0},{ylo},{x0}],"max":[{x1},{yhi},{x1}]}},{{"bufferView":1,"componentType":5126,"count":{verts},"type":"VEC3"}},{{"bufferView":2,"componentType":5125,"count":{count},"type":"SCALAR"}}],"bufferViews":[{{"buffer":0,"byteOffset":0,"byteLength":{pl},"target":34962}},{{"buffer":0,"byteOffset":{pl},"byteLength":{pl},"target":34962}},{{"buffer":0,"byteOffset":{o2},"byteLength":{il},"target":34963}}],"buffers":[{{"byteLength":{bin_len}}}]}}"#,
        material("rock", [0.50, 0.45, 0.39], 0.0, 0.9),
        x0 = coord(0),
        x1 = coord(n - 1),
        count = cells * 6,
        o2 = 2 * pl,
    );
    let mut out = farview_scene::synthetic::glb_start(json.as_bytes(), bin_len);
    for j in 0..n {
        let z = coord(j);
        for i in 0..n {
            for v in [coord(i), h[j * n + i], z] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    for j in 0..n {
        let (j0, j1) = (j.saturating_sub(1), (j + 1).min(n - 1));
        for i in 0..n {
            let (i0, i1) = (i.saturating_sub(1), (i + 1).min(n - 1));
            let dx = (h[j * n + i1] - h[j * n + i0]) / ((i1 - i0) as f32 * step);
            let dz = (h[j1 * n + i] - h[j0 * n + i]) / ((j1 - j0) as f32 * step);
            for v in Vec3::new(-dx, 1.0, -dz).normalize().to_array() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    drop(h);
    let n32 = n as u32;
    for j in 0..n32 - 1 {
        for i in 0..n32 - 1 {
            let v = j * n32 + i;
            for k in [v, v + n32, v + 1, v + 1, v + n32, v + n32 + 1] {
                out.extend_from_slice(&k.to_le_bytes());
            }
        }
    }
    let counts = ModelCounts {
        nodes: 1,
        meshes: 1,
        source_triangles: cells as u64 * 2,
        drawn_triangles: cells as u64 * 2,
        vertices: verts as u64,
        largest_accessor: (cells as u64 * 6).max(verts as u64),
    };
    (out, counts)
}

// ---------------------------------------------------------------------------------------------
// The hierarchy.

/// Children per interior node of the hierarchy.
const BRANCHING: usize = 10;

/// A hierarchy of `nodes` nodes (at least 1) in breadth-first order: node `i`'s children are
/// `10i+1 ..= 10i+10` (those below `nodes`), so a million nodes are seven levels deep. Each
/// node sits a little way from its parent (25 units at the first level, 0.45 times as far at
/// each level below, in one of ten directions spread over a sphere, jittered), so the whole
/// spans about 100 units; each leaf draws one of four 12-triangle boxes.
///
/// The JSON (about 55 bytes a node) is written into one string sized up front.
pub fn hierarchy_glb(nodes: u32) -> (Vec<u8>, ModelCounts) {
    let n = nodes.max(1) as usize;
    let mut rng = Rng::new(0x6869_6572_2315_0003);
    let mut doc = Doc::default();
    let boxes: [(&str, Vec3, [f32; 3]); 4] = [
        ("cube", Vec3::splat(0.3), [0.80, 0.30, 0.20]),
        ("post", Vec3::new(0.2, 0.45, 0.2), [0.20, 0.55, 0.80]),
        ("tile", Vec3::new(0.4, 0.12, 0.4), [0.85, 0.75, 0.25]),
        ("bar", Vec3::new(0.45, 0.15, 0.15), [0.30, 0.70, 0.35]),
    ];
    let mut materials = Vec::new();
    for (k, (name, size, rgb)) in boxes.iter().enumerate() {
        let mut p = Prim::default();
        p.aabox(-*size * 0.5, *size * 0.5, None);
        doc.add_mesh(&MeshData {
            name: (*name).into(),
            prims: vec![(p, k)],
        });
        materials.push(material(name, *rgb, 0.0, 0.6));
    }
    // Ten directions spread over the sphere (a Fibonacci lattice).
    let golden = std::f32::consts::PI * (3.0 - 5f32.sqrt());
    let dirs: Vec<Vec3> = (0..BRANCHING)
        .map(|j| {
            let y = 1.0 - 2.0 * (j as f32 + 0.5) / BRANCHING as f32;
            let r = (1.0 - y * y).sqrt();
            let a = golden * j as f32;
            Vec3::new(r * a.cos(), y, r * a.sin())
        })
        .collect();

    let interior = n.saturating_sub(2) / BRANCHING + usize::from(n > 1);
    let mut json = String::with_capacity(n * 56 + interior * 60 + 8192);
    w!(
        json,
        r#"{{"asset":{{"version":"2.0","generator":"farview-gen-models hierarchy"}},"scene":0,"scenes":[{{"nodes":[0]}}],"nodes":["#
    );
    let mut drawn = 0u64;
    let (mut level, mut level_end, mut level_size) = (0u32, 1usize, 1usize);
    for i in 0..n {
        if i == level_end {
            level += 1;
            level_size *= BRANCHING;
            level_end += level_size;
        }
        if i > 0 {
            json.push(',');
        }
        json.push('{');
        let first_child = BRANCHING * i + 1;
        if i > 0 {
            let reach = 25.0 * 0.45f32.powi(level as i32 - 1);
            let d = dirs[(i - 1) % BRANCHING];
            let jitter = Vec3::new(
                rng.range(-0.15, 0.15),
                rng.range(-0.15, 0.15),
                rng.range(-0.15, 0.15),
            );
            let t = (d + jitter) * reach;
            w!(json, r#""translation":[{:.4},{:.4},{:.4}]"#, t.x, t.y, t.z);
        } else {
            json.push_str(r#""name":"root""#);
        }
        if first_child < n {
            let last = (first_child + BRANCHING).min(n);
            json.push_str(r#","children":["#);
            for c in first_child..last {
                if c > first_child {
                    json.push(',');
                }
                w!(json, "{c}");
            }
            json.push(']');
        } else {
            let m = rng.below(4);
            w!(json, r#","mesh":{m}"#);
            drawn += 12;
        }
        json.push('}');
    }
    w!(
        json,
        r#"],"meshes":[{}],"materials":[{}],"accessors":[{}],"bufferViews":[{}],"buffers":[{{"byteLength":{}}}]}}"#,
        doc.meshes,
        materials.join(","),
        doc.accessors,
        doc.views,
        doc.bin.len()
    );
    let counts = ModelCounts {
        nodes: n as u64,
        meshes: doc.mesh_triangles.len() as u64,
        source_triangles: doc.mesh_triangles.iter().sum(),
        drawn_triangles: drawn,
        vertices: doc.vertices,
        largest_accessor: doc.largest_accessor,
    };
    (
        farview_scene::synthetic::glb(json.as_bytes(), &doc.bin),
        counts,
    )
}

// ---------------------------------------------------------------------------------------------
// Import limits.

/// One import limit a model needs more of than a given [`ImportLimits`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitShortfall {
    /// The limit: an [`ImportLimits`] field, or `Scene::default() entities`.
    pub limit: &'static str,
    /// What the limits given allow.
    pub allowed: u64,
    /// What the model needs.
    pub needed: u64,
}

/// Entities a `Scene::default()` holds (`Scene::new(1_000_000)`): a model needs one per node
/// and one for its root.
pub const DEFAULT_SCENE_ENTITIES: u64 = 1_000_000;

/// The limits a GLB of `file_bytes` bytes with these counts needs, as the importer checks them:
/// the file size (its binary chunk, copied once, is within twice that), the largest accessor,
/// the nodes, the vertices over all meshes and the triangle-list indices over all meshes (at
/// most six per allowed vertex); and the entities of a scene (the root and a node each).
/// Returns those that `limits` (and a `Scene::default()`) refuse.
pub fn shortfalls(
    counts: &ModelCounts,
    file_bytes: u64,
    limits: &ImportLimits,
) -> Vec<LimitShortfall> {
    let needed = [
        ("max_file_bytes", limits.max_file_bytes, file_bytes),
        (
            "max_accessor_count",
            limits.max_accessor_count,
            counts.largest_accessor,
        ),
        ("max_nodes", limits.max_nodes as u64, counts.nodes),
        (
            "max_total_vertices",
            limits.max_total_vertices,
            counts.vertices,
        ),
        (
            "max_total_vertices (indices: 6 per vertex allowed)",
            limits.max_total_vertices,
            (counts.source_triangles * 3).div_ceil(6),
        ),
        (
            "Scene::default() entities",
            DEFAULT_SCENE_ENTITIES,
            counts.nodes + 1,
        ),
    ];
    needed
        .into_iter()
        .filter(|(_, allowed, needed)| needed > allowed)
        .map(|(limit, allowed, needed)| LimitShortfall {
            limit,
            allowed,
            needed,
        })
        .collect()
}

/// `limits` raised just enough for a GLB of `file_bytes` bytes with these counts.
pub fn limits_for(counts: &ModelCounts, file_bytes: u64, limits: &ImportLimits) -> ImportLimits {
    ImportLimits {
        max_file_bytes: limits.max_file_bytes.max(file_bytes),
        max_accessor_count: limits.max_accessor_count.max(counts.largest_accessor),
        max_nodes: limits.max_nodes.max(counts.nodes as usize),
        max_total_vertices: limits
            .max_total_vertices
            .max(counts.vertices)
            .max((counts.source_triangles * 3).div_ceil(6)),
        ..limits.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Imports `glb` with the default limits and checks it against `counts`.
    fn check(name: &str, glb: &[u8], counts: &ModelCounts) {
        let model = farview_scene::synthetic::import(glb, &ImportLimits::default()).unwrap();
        assert_eq!(model.nodes.len() as u64, counts.nodes, "{name}: nodes");
        assert_eq!(model.meshes.len() as u64, counts.meshes, "{name}: meshes");
        assert_eq!(
            model.triangle_count() as u64,
            counts.source_triangles,
            "{name}: source triangles"
        );
        assert_eq!(
            model.vertex_count() as u64,
            counts.vertices,
            "{name}: vertices"
        );
        for p in model.meshes.iter().flat_map(|m| &m.primitives) {
            assert_eq!(
                p.normals.len(),
                p.positions.len(),
                "{name}: a normal per vertex"
            );
            for n in &p.normals {
                let l = Vec3::from(*n).length();
                assert!((l - 1.0).abs() < 1e-4, "{name}: normal {n:?} of length {l}");
            }
        }
        let mut scene = farview_scene::Scene::default();
        let info = scene.add_model(name, model).unwrap();
        assert_eq!(
            info.triangles, counts.drawn_triangles,
            "{name}: drawn triangles"
        );
        assert!(shortfalls(counts, glb.len() as u64, &ImportLimits::default()).is_empty());
    }

    #[test]
    fn small_big_models_import_with_their_counts() {
        let (scan, counts) = scan_glb(64);
        assert_eq!(counts.source_triangles, 63 * 63 * 2);
        check("scan", &scan, &counts);
        assert_eq!(scan_glb(64).0, scan, "the same scan every time");
        let model = farview_scene::synthetic::import(&scan, &ImportLimits::default()).unwrap();
        let size = model.meshes[0].primitives[0].bounds.size();
        assert!(
            size.x > 199.0 && size.z > 199.0 && size.y > 15.0 && size.y < 21.0,
            "{size:?}"
        );

        let (hierarchy, counts) = hierarchy_glb(1000);
        assert_eq!(counts.nodes, 1000);
        // Nodes 0..=99 have children (10i+1 < 1000), the other 900 are leaves.
        assert_eq!(counts.drawn_triangles, 900 * 12);
        check("hierarchy", &hierarchy, &counts);
        assert_eq!(
            hierarchy_glb(1000).0,
            hierarchy,
            "the same hierarchy every time"
        );

        let (city, counts) = city_glb_scaled(2);
        // Root, streets, 4 blocks, 16 lots.
        assert_eq!(counts.nodes, 22);
        assert!(counts.drawn_triangles > counts.source_triangles);
        check("city", &city, &counts);
        assert_eq!(city_glb_scaled(2).0, city, "the same city every time");
    }

    #[test]
    fn shortfalls_name_the_limits() {
        let counts = ModelCounts {
            nodes: 1_000_000,
            meshes: 1,
            source_triangles: 20_000_000,
            drawn_triangles: 20_000_000,
            vertices: 10_000_000,
            largest_accessor: 60_000_000,
        };
        // The defaults take a 20-million-triangle mesh and a million nodes; only the scene's
        // entity cap (a million, the model's root included) is one short.
        let s = shortfalls(&counts, 500 << 20, &ImportLimits::default());
        let names: Vec<_> = s.iter().map(|s| s.limit).collect();
        assert_eq!(names, ["Scene::default() entities"]);
        let tight = ImportLimits {
            max_file_bytes: 256 << 20,
            max_accessor_count: 16_000_000,
            max_nodes: 100_000,
            ..ImportLimits::default()
        };
        let s = shortfalls(&counts, 500 << 20, &tight);
        let names: Vec<_> = s.iter().map(|s| s.limit).collect();
        assert_eq!(
            names,
            [
                "max_file_bytes",
                "max_accessor_count",
                "max_nodes",
                "Scene::default() entities"
            ]
        );
        let raised = limits_for(&counts, 500 << 20, &tight);
        let s = shortfalls(&counts, 500 << 20, &raised);
        assert_eq!(s.len(), 1, "only the scene's entities remain: {s:?}");
    }
}
