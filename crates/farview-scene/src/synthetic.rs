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

/// A GLB container around `json` (the glTF JSON, padded here to 4 bytes) and `bin` (the binary
/// chunk its buffer 0 refers to, padded with zeros).
pub fn glb(json: &[u8], bin: &[u8]) -> Vec<u8> {
    let pad = |n: usize| n.next_multiple_of(4);
    let (json_len, bin_len) = (pad(json.len()), pad(bin.len()));
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
    out.extend_from_slice(bin);
    out.resize(out.len() + bin_len - bin.len(), 0);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn grid_imports_with_the_expected_counts() {
        let glb = super::grid_glb(10);
        let model = crate::import_gltf(
            &glb,
            &mut |_| Err(crate::ImportError::NotFound("none".into())),
            &crate::ImportLimits::default(),
        )
        .unwrap();
        assert_eq!(model.triangle_count(), 200);
        assert_eq!(model.vertex_count(), 121);
    }
}
