// Environment baking, steps 2 and 3: the source cube's mip chain (`fs_downsample`) and the
// importance-sampled prefilters (`fs_filter`: GGX specular per mip, Lambertian irradiance), one
// draw per face and mip.
//
// `fs_filter` is the Khronos glTF Sample Viewer 1.1.0's `ibl_filtering.frag` (`filterColor`)
// with the per-sample work hoisted to the CPU: for a distribution and roughness, sample `i` of N
// has the same local direction, weight and source lod for every output texel, so
// crates/farview-render/src/environment/samples.rs computes the table once (Hammersley point,
// GGX or cosine-weighted direction, for GGX `L = reflect(-N, H)` and its `N.L`, and the lod
// `0.5 * log2(6 * width^2 / (N * pdf))`) and drops the GGX samples with `N.L <= 0`, which the
// Sample Viewer skips. Per texel this shader builds the same tangent frame as the Sample
// Viewer's `generateTBN`, rotates each sample into it and accumulates
// `sum(w * textureLod(source, L, lod)) / sum(w)`, with `w = N.L` for GGX and 1 for Lambertian.

struct Params {
    // Cube face, 0..5 = +X, -X, +Y, -Y, +Z, -Z.
    face: u32,
    // Output face size in texels (this mip of the render target).
    size: f32,
    // First entry of this pass's table in `samples`, and the entry count (fs_filter only).
    sample_offset: u32,
    sample_count: u32,
    // 1: weight each sample by its N.L (GGX); 0: plain average (Lambertian).
    weighted: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// The largest finite f16: the cubes are Rgba16Float.
const F16_MAX: f32 = 65504.0;

@group(0) @binding(0) var<uniform> params: Params;
// fs_filter: the whole source cube with its mip chain; fs_downsample: a view of the level above
// the one being written.
@group(0) @binding(1) var source: texture_cube<f32>;
// Linear, linear between mips, clamp to edge (the Sample Viewer's cube sampler).
@group(0) @binding(2) var source_sampler: sampler;
// fs_filter only: xyz = sample direction in the tangent frame, w = source lod.
@group(0) @binding(3) var<storage, read> samples: array<vec4<f32>>;

// One triangle covering the viewport.
@vertex
fn vs_fullscreen(@builtin(vertex_index) index: u32) -> @builtin(position) vec4<f32> {
    let x = f32((index & 1u) << 2u);
    let y = f32((index & 2u) << 1u);
    return vec4<f32>(x - 1.0, y - 1.0, 0.0, 1.0);
}

// The Sample Viewer's `uvToXYZ`.
fn uv_to_xyz(face: u32, uv: vec2<f32>) -> vec3<f32> {
    switch face {
        case 0u: { return vec3<f32>(1.0, uv.y, -uv.x); }
        case 1u: { return vec3<f32>(-1.0, uv.y, uv.x); }
        case 2u: { return vec3<f32>(uv.x, -1.0, uv.y); }
        case 3u: { return vec3<f32>(uv.x, 1.0, -uv.y); }
        case 4u: { return vec3<f32>(uv.x, uv.y, 1.0); }
        default: { return vec3<f32>(-uv.x, uv.y, -1.0); }
    }
}

// The cube sampling direction of this fragment's texel: `uv_to_xyz` with y negated, as the
// Sample Viewer's filter does (`direction.y = -direction.y`).
fn texel_direction(position: vec4<f32>) -> vec3<f32> {
    let tc = position.xy / params.size;
    let scan = uv_to_xyz(params.face, tc * 2.0 - 1.0);
    return vec3<f32>(scan.x, -scan.y, scan.z);
}

// The Sample Viewer's `generateTBN`: columns tangent, bitangent, normal.
fn generate_tbn(normal: vec3<f32>) -> mat3x3<f32> {
    var bitangent = vec3<f32>(0.0, 1.0, 0.0);
    let n_dot_up = dot(normal, vec3<f32>(0.0, 1.0, 0.0));
    let epsilon = 0.0000001;
    if 1.0 - abs(n_dot_up) <= epsilon {
        if n_dot_up > 0.0 {
            bitangent = vec3<f32>(0.0, 0.0, 1.0);
        } else {
            bitangent = vec3<f32>(0.0, 0.0, -1.0);
        }
    }
    let tangent = normalize(cross(bitangent, normal));
    bitangent = cross(normal, tangent);
    return mat3x3<f32>(tangent, bitangent, normal);
}

// One texel of the next mip level: the bilinear sample at its centre, which is the shared corner
// of the four texels above it, is their average (a 2x2 box filter, like glGenerateMipmap).
@fragment
fn fs_downsample(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let color = textureSampleLevel(source, source_sampler, texel_direction(position), 0.0).rgb;
    return vec4<f32>(color, 1.0);
}

@fragment
fn fs_filter(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let n = normalize(texel_direction(position));
    let tbn = generate_tbn(n);
    var color = vec3<f32>(0.0);
    var weight = 0.0;
    for (var i = 0u; i < params.sample_count; i++) {
        let s = samples[params.sample_offset + i];
        let w = select(1.0, s.z, params.weighted != 0u);
        color += textureSampleLevel(source, source_sampler, tbn * s.xyz, s.w).rgb * w;
        weight += w;
    }
    if weight > 0.0 {
        color /= weight;
    }
    return vec4<f32>(min(color, vec3<f32>(F16_MAX)), 1.0);
}
