// Environment baking, step 1: the equirectangular panorama -> a cube map (one draw per face).
//
// The direction mapping is the Khronos glTF Sample Viewer 1.1.0's `panorama_to_cubemap.frag`:
// the output texel with texture coordinate `tc` (texel centre / face size; row 0 is the first
// row in memory, which is also what GL's `texCoord.y = 0` addresses) on face `f` stores the
// panorama at `dir_to_uv(normalize(uv_to_xyz(f, tc * 2 - 1)))`. Because `uv_to_xyz` is the cube
// sampling convention with y negated, sampling the finished cube with direction `d` returns the
// panorama at direction `(d.x, -d.y, d.z)`, whose row `v = 1 - acos(-d.y) / pi` counts from the
// first (top) row of the file: `d` up reads the top row. See
// crates/farview-render/src/environment/mod.rs for the whole chain.

struct Params {
    // Cube face, 0..5 = +X, -X, +Y, -Y, +Z, -Z (wgpu's array layer = GL's face order).
    face: u32,
    // Output face size in texels (the render target's size).
    size: f32,
    _pad0: u32,
    _pad1: u32,
}

const PI: f32 = 3.1415926535897932384626433832795;
// The largest finite f16: the cube is Rgba16Float, brighter texels are clamped, not infinite.
const F16_MAX: f32 = 65504.0;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var panorama: texture_2d<f32>;
// Linear, mirrored repeat, no mipmaps: the Sample Viewer's panorama texture parameters.
@group(0) @binding(2) var panorama_sampler: sampler;

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

// The Sample Viewer's `dirToUV` (acos clamped against |y| rounding above 1).
fn dir_to_uv(dir: vec3<f32>) -> vec2<f32> {
    return vec2<f32>(
        0.5 + 0.5 * atan2(dir.z, dir.x) / PI,
        1.0 - acos(clamp(dir.y, -1.0, 1.0)) / PI,
    );
}

@fragment
fn fs_panorama(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let tc = position.xy / params.size;
    let direction = normalize(uv_to_xyz(params.face, tc * 2.0 - 1.0));
    let color = textureSampleLevel(panorama, panorama_sampler, dir_to_uv(direction), 0.0).rgb;
    return vec4<f32>(min(color, vec3<f32>(F16_MAX)), 1.0);
}
