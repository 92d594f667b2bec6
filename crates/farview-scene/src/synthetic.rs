//! Generated models for benches and tests: sizes the sample corpus lacks (a Sponza-sized
//! million-triangle mesh) without shipping megabytes of binary assets.

/// A GLB holding one mesh: a `quads` x `quads` grid of unit quads (2 triangles each) in the
/// z = 0 plane, centred on the origin, with normals and UVs, indexed with u32.
/// `grid_glb(708)` has about one million triangles.
pub fn grid_glb(quads: u32) -> Vec<u8> {
    let n = quads.max(1);
    let side = n + 1;
    let half = n as f32 * 0.5;
    let mut pos = Vec::with_capacity((side * side) as usize * 12);
    let mut nrm = Vec::with_capacity((side * side) as usize * 12);
    let mut uv = Vec::with_capacity((side * side) as usize * 8);
    for y in 0..side {
        for x in 0..side {
            for v in [x as f32 - half, y as f32 - half, 0.0] {
                pos.extend_from_slice(&v.to_le_bytes());
            }
            for v in [0.0f32, 0.0, 1.0] {
                nrm.extend_from_slice(&v.to_le_bytes());
            }
            for v in [x as f32 / n as f32, y as f32 / n as f32] {
                uv.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let mut idx = Vec::with_capacity((n * n) as usize * 24);
    for y in 0..n {
        for x in 0..n {
            let i = y * side + x;
            for v in [i, i + 1, i + side, i + 1, i + side + 1, i + side] {
                idx.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let verts = side * side;
    let (pl, nl, ul, il) = (pos.len(), nrm.len(), uv.len(), idx.len());
    let json = format!(
        r#"{{"asset":{{"version":"2.0","generator":"farview synthetic grid"}},"scene":0,"scenes":[{{"nodes":[0]}}],"nodes":[{{"name":"grid","mesh":0}}],"meshes":[{{"primitives":[{{"attributes":{{"POSITION":0,"NORMAL":1,"TEXCOORD_0":2}},"indices":3}}]}}],"accessors":[{{"bufferView":0,"componentType":5126,"count":{verts},"type":"VEC3","min":[{min},{min},0],"max":[{max},{max},0]}},{{"bufferView":1,"componentType":5126,"count":{verts},"type":"VEC3"}},{{"bufferView":2,"componentType":5126,"count":{verts},"type":"VEC2"}},{{"bufferView":3,"componentType":5125,"count":{count},"type":"SCALAR"}}],"bufferViews":[{{"buffer":0,"byteOffset":0,"byteLength":{pl}}},{{"buffer":0,"byteOffset":{o1},"byteLength":{nl}}},{{"buffer":0,"byteOffset":{o2},"byteLength":{ul}}},{{"buffer":0,"byteOffset":{o3},"byteLength":{il}}}],"buffers":[{{"byteLength":{total}}}]}}"#,
        min = -half,
        max = half,
        count = n * n * 6,
        o1 = pl,
        o2 = pl + nl,
        o3 = pl + nl + ul,
        total = pl + nl + ul + il,
    );
    let mut bin = pos;
    bin.extend_from_slice(&nrm);
    bin.extend_from_slice(&uv);
    bin.extend_from_slice(&idx);
    glb(json.as_bytes(), &bin)
}

/// A GLB of a forest: `trees` faceted trees (a six-sided trunk and a ten-sided cone crown in one
/// of six greens, heights and turns varied by a fixed-seed generator) on a jittered grid two
/// units apart, standing on a dark ground plane. Hard content for an encoder: a thousand trees
/// fill a view with small high-contrast facets that all move when the camera does.
pub fn forest_glb(trees: u32) -> Vec<u8> {
    let trees = trees.max(1);
    let mut bin = Vec::new();
    let mut views = Vec::new();
    let mut accessors = Vec::new();
    // Appends a flat-shaded, non-shared-vertex triangle list: positions, normals, u16 indices.
    let mut add_mesh = |tris: &[[[f32; 3]; 3]]| -> (usize, usize, usize) {
        let mut lo = [f32::MAX; 3];
        let mut hi = [f32::MIN; 3];
        let (mut pos, mut nrm, mut idx) = (Vec::new(), Vec::new(), Vec::new());
        for (t, tri) in tris.iter().enumerate() {
            let [a, b, c] = tri.map(glam::Vec3::from);
            let n = (b - a).cross(c - a).normalize_or_zero();
            for (k, v) in [a, b, c].iter().enumerate() {
                for i in 0..3 {
                    lo[i] = lo[i].min(v[i]);
                    hi[i] = hi[i].max(v[i]);
                    pos.extend_from_slice(&v[i].to_le_bytes());
                    nrm.extend_from_slice(&n[i].to_le_bytes());
                }
                idx.extend_from_slice(&((t * 3 + k) as u16).to_le_bytes());
            }
        }
        let count = tris.len() * 3;
        let first = accessors.len();
        for (data, acc) in [
            (
                pos,
                format!(
                    r#""componentType":5126,"count":{count},"type":"VEC3","min":[{},{},{}],"max":[{},{},{}]"#,
                    lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]
                ),
            ),
            (
                nrm,
                format!(r#""componentType":5126,"count":{count},"type":"VEC3""#),
            ),
            (
                idx,
                format!(r#""componentType":5123,"count":{count},"type":"SCALAR""#),
            ),
        ] {
            views.push(format!(
                r#"{{"buffer":0,"byteOffset":{},"byteLength":{}}}"#,
                bin.len(),
                data.len()
            ));
            accessors.push(format!(r#"{{"bufferView":{},{acc}}}"#, views.len() - 1));
            bin.extend_from_slice(&data);
            bin.resize(bin.len().next_multiple_of(4), 0);
        }
        (first, first + 1, first + 2)
    };
    let ring = |sides: usize, r: f32, y: f32| -> Vec<[f32; 3]> {
        (0..sides)
            .map(|i| {
                let a = i as f32 / sides as f32 * std::f32::consts::TAU;
                [r * a.cos(), y, r * a.sin()]
            })
            .collect()
    };
    let trunk_ring = (ring(6, 0.08, 0.0), ring(6, 0.08, 0.6));
    let mut trunk = Vec::new();
    for i in 0..6 {
        let j = (i + 1) % 6;
        let (b0, b1, t0, t1) = (
            trunk_ring.0[i],
            trunk_ring.0[j],
            trunk_ring.1[i],
            trunk_ring.1[j],
        );
        trunk.push([b0, t0, b1]);
        trunk.push([b1, t0, t1]);
    }
    let base = ring(10, 0.55, 0.5);
    let mut crown = Vec::new();
    for i in 0..10 {
        let j = (i + 1) % 10;
        crown.push([base[i], [0.0, 2.0, 0.0], base[j]]);
        crown.push([base[j], [0.0, 0.5, 0.0], base[i]]);
    }
    let half = (trees as f32).sqrt().ceil() + 1.0;
    let ground = [
        [
            [-half * 2.0, 0.0, -half * 2.0],
            [-half * 2.0, 0.0, half * 2.0],
            [half * 2.0, 0.0, half * 2.0],
        ],
        [
            [-half * 2.0, 0.0, -half * 2.0],
            [half * 2.0, 0.0, half * 2.0],
            [half * 2.0, 0.0, -half * 2.0],
        ],
    ];
    let t = add_mesh(&trunk);
    let c = add_mesh(&crown);
    let g = add_mesh(&ground);
    let prim = |a: (usize, usize, usize), m: usize| {
        format!(
            r#"{{"attributes":{{"POSITION":{},"NORMAL":{}}},"indices":{},"material":{m}}}"#,
            a.0, a.1, a.2
        )
    };
    // Materials: 0 trunk, 1 ground, 2..8 crowns.
    let mut materials = vec![
        r#"{"pbrMetallicRoughness":{"baseColorFactor":[0.30,0.18,0.08,1],"metallicFactor":0,"roughnessFactor":0.9}}"#.to_string(),
        r#"{"pbrMetallicRoughness":{"baseColorFactor":[0.10,0.14,0.06,1],"metallicFactor":0,"roughnessFactor":1}}"#.to_string(),
    ];
    let mut meshes = vec![format!(r#"{{"primitives":[{}]}}"#, prim(g, 1))];
    for k in 0..6 {
        let f = k as f32 / 5.0;
        materials.push(format!(
            r#"{{"pbrMetallicRoughness":{{"baseColorFactor":[{:.3},{:.3},{:.3},1],"metallicFactor":0,"roughnessFactor":0.8}}}}"#,
            0.05 + 0.15 * f,
            0.25 + 0.3 * (1.0 - f),
            0.05 + 0.08 * f
        ));
        meshes.push(format!(
            r#"{{"primitives":[{},{}]}}"#,
            prim(t, 0),
            prim(c, 2 + k)
        ));
    }
    // A fixed-seed generator: the same forest on every run and machine.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let per_row = (trees as f32).sqrt().ceil() as u32;
    let mut nodes = vec![r#"{"name":"ground","mesh":0}"#.to_string()];
    for i in 0..trees {
        let (gx, gz) = ((i % per_row) as f32, (i / per_row) as f32);
        let x = (gx - per_row as f32 * 0.5) * 2.0 + (next() - 0.5) * 1.2;
        let z = (gz - per_row as f32 * 0.5) * 2.0 + (next() - 0.5) * 1.2;
        let s = 0.7 + next() * 0.8;
        let yaw = next() * std::f32::consts::PI;
        let mesh = 1 + (next() * 6.0) as usize % 6;
        nodes.push(format!(
            r#"{{"mesh":{mesh},"translation":[{x:.3},0,{z:.3}],"rotation":[0,{:.5},0,{:.5}],"scale":[{s:.3},{s:.3},{s:.3}]}}"#,
            (yaw * 0.5).sin(),
            (yaw * 0.5).cos()
        ));
    }
    let roots: Vec<String> = (0..nodes.len()).map(|i| i.to_string()).collect();
    let json = format!(
        r#"{{"asset":{{"version":"2.0","generator":"farview synthetic forest"}},"scene":0,"scenes":[{{"nodes":[{}]}}],"nodes":[{}],"meshes":[{}],"materials":[{}],"accessors":[{}],"bufferViews":[{}],"buffers":[{{"byteLength":{}}}]}}"#,
        roots.join(","),
        nodes.join(","),
        meshes.join(","),
        materials.join(","),
        accessors.join(","),
        views.join(","),
        bin.len()
    );
    glb(json.as_bytes(), &bin)
}

/// Imports a generated GLB: it carries its buffer and references no file, so any URI in it
/// is refused.
pub fn import(
    glb: &[u8],
    limits: &crate::ImportLimits,
) -> Result<crate::Model, crate::ImportError> {
    crate::import_gltf(
        glb,
        &mut |uri| {
            Err(crate::ImportError::NotFound(format!(
                "a generated model has no file {uri}"
            )))
        },
        limits,
    )
}

/// A GLB container around `json` (the glTF JSON, padded here to 4 bytes) and `bin` (the binary
/// chunk its buffer 0 refers to, padded with zeros).
pub fn glb(json: &[u8], bin: &[u8]) -> Vec<u8> {
    let bin_len = bin.len().next_multiple_of(4);
    let mut out = glb_start(json, bin_len);
    out.extend_from_slice(bin);
    out.resize(out.len() + bin_len - bin.len(), 0);
    out
}

/// A GLB's header, JSON chunk (padded with spaces) and binary chunk header, in a buffer with
/// room for exactly `bin_len` (a multiple of 4) more bytes: the binary chunk, which a caller
/// writing a very large model appends itself instead of holding a second copy.
pub fn glb_start(json: &[u8], bin_len: usize) -> Vec<u8> {
    let json_len = json.len().next_multiple_of(4);
    let total = 12 + 8 + json_len + 8 + bin_len;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(json_len as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(json);
    out.resize(out.len() + json_len - json.len(), b' ');
    out.extend_from_slice(&(bin_len as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn forest_imports_with_a_tree_per_node() {
        let glb = super::forest_glb(1000);
        let model = super::import(&glb, &crate::ImportLimits::default()).unwrap();
        let mut scene = crate::Scene::default();
        let info = scene.add_model("forest", model).unwrap();
        // Ground (2) + 1000 trees x (12 trunk + 20 crown triangles).
        assert_eq!(info.triangles, 2 + 1000 * 32);
        // Trees reach about 2 x 1.5 units up; the ground spans the grid.
        assert!(info.bounds.size().y > 2.0 && info.bounds.size().x > 60.0);
        assert_eq!(super::forest_glb(1000), glb, "the same forest every time");
        // Loaded: the seven source meshes once (a triangle budget counts these); drawn: a
        // tree per node.
        let source = scene.model(info.model).unwrap().triangle_count() as u64;
        assert_eq!(source, 2 + 6 * 32);
        assert_eq!(scene.loaded_triangles(), source);
        assert_eq!(scene.stats().triangles, info.triangles);
        // A second load of the same model counts again.
        scene.instantiate("forest", info.model).unwrap();
        assert_eq!(scene.loaded_triangles(), 2 * source);
    }

    #[test]
    fn grid_imports_with_the_expected_counts() {
        let glb = super::grid_glb(10);
        let model = super::import(&glb, &crate::ImportLimits::default()).unwrap();
        assert_eq!(model.triangle_count(), 200);
        assert_eq!(model.vertex_count(), 121);
    }
}
