// Skinning and morphing on the GPU: one invocation per vertex reads the bind-pose vertex (the
// 18-float interleaved layout of the mesh pass), adds its morph target displacements weighted
// by the entity's weights, blends its joints' matrices, and writes the posed vertex that the
// mesh pass then draws. The same arithmetic as the scene's CPU path (farview-scene
// `animate.rs`), so either gives the same picture.

struct Params {
    vertex_count: u32,
    // Targets with a weight (the smaller of the primitive's and the entity's counts).
    target_count: u32,
    joint_count: u32,
    // 1 when the vertex carries joints and the entity has a skin.
    skinned: u32,
    // Where the targets start in `source`, in vec4 units (after the skin data when skinned).
    targets_offset: u32,
    // Where the weights start in `pose`, in vec4 units (after the joint matrices).
    weights_offset: u32,
    // Invocations per row of the dispatch grid (a large mesh needs more than one row).
    row: u32,
    _pad: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
// Bind-pose vertices: position 0..3, normal 3..6, uv 6..8, colour 8..12, uv1 12..14,
// tangent 14..18.
@group(0) @binding(1) var<storage, read> bind_pose: array<f32>;
// Per vertex: joint indices (as f32 values) and weights, when skinned; then per target, per
// vertex: position, normal and tangent displacements.
@group(0) @binding(2) var<storage, read> source: array<vec4<f32>>;
// The joint matrices (four columns each), then the morph weights, four to a vec4.
@group(0) @binding(3) var<storage, read> pose: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> posed: array<f32>;

const STRIDE: u32 = 18u;

fn joint(j: u32) -> mat4x4<f32> {
    // A joint index past the skin's joints is the identity, as on the CPU.
    if (j >= params.joint_count) {
        return mat4x4<f32>(
            vec4<f32>(1.0, 0.0, 0.0, 0.0),
            vec4<f32>(0.0, 1.0, 0.0, 0.0),
            vec4<f32>(0.0, 0.0, 1.0, 0.0),
            vec4<f32>(0.0, 0.0, 0.0, 1.0),
        );
    }
    let b = j * 4u;
    return mat4x4<f32>(pose[b], pose[b + 1u], pose[b + 2u], pose[b + 3u]);
}

@compute @workgroup_size(64)
fn cs_deform(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.y * params.row + id.x;
    if (i >= params.vertex_count) {
        return;
    }
    let b = i * STRIDE;
    var p = vec3<f32>(bind_pose[b], bind_pose[b + 1u], bind_pose[b + 2u]);
    var n = vec3<f32>(bind_pose[b + 3u], bind_pose[b + 4u], bind_pose[b + 5u]);
    var t = vec3<f32>(bind_pose[b + 14u], bind_pose[b + 15u], bind_pose[b + 16u]);
    let handedness = bind_pose[b + 17u];
    for (var k = 0u; k < params.target_count; k++) {
        let w = pose[params.weights_offset + k / 4u][k % 4u];
        if (w == 0.0) {
            continue;
        }
        let d = params.targets_offset + (k * params.vertex_count + i) * 3u;
        p += w * source[d].xyz;
        n += w * source[d + 1u].xyz;
        t += w * source[d + 2u].xyz;
    }
    if (params.skinned != 0u) {
        let joints = vec4<u32>(source[i * 2u]);
        let weights = source[i * 2u + 1u];
        var m = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        for (var c = 0u; c < 4u; c++) {
            if (weights[c] > 0.0) {
                m += joint(joints[c]) * weights[c];
            }
        }
        p = (m * vec4<f32>(p, 1.0)).xyz;
        // Normals through the cofactor matrix (the inverse transpose up to scale), so they
        // stay perpendicular under non-uniform joint scale.
        let x = m[0].xyz;
        let y = m[1].xyz;
        let z = m[2].xyz;
        let det_sign = select(-1.0, 1.0, dot(x, cross(y, z)) >= 0.0);
        let cof = mat3x3<f32>(cross(y, z), cross(z, x), cross(x, y));
        n = cof * n * det_sign;
        t = (m * vec4<f32>(t, 0.0)).xyz;
    }
    if (dot(n, n) > 0.0) {
        n = normalize(n);
    } else {
        n = vec3<f32>(0.0, 0.0, 1.0);
    }
    if (dot(t, t) > 0.0) {
        t = normalize(t);
    }
    posed[b] = p.x;
    posed[b + 1u] = p.y;
    posed[b + 2u] = p.z;
    posed[b + 3u] = n.x;
    posed[b + 4u] = n.y;
    posed[b + 5u] = n.z;
    for (var c = 6u; c < 14u; c++) {
        posed[b + c] = bind_pose[b + c];
    }
    posed[b + 14u] = t.x;
    posed[b + 15u] = t.y;
    posed[b + 16u] = t.z;
    posed[b + 17u] = handedness;
}
