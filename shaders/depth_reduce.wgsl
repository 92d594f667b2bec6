// The frame's depth, reduced to the farthest value of each 8 x 8 pixel tile (over every sample,
// with MSAA): the finest level of the depth pyramid occlusion culling tests boxes against
// (`crates/farview-render/src/occlusion.rs`). The farthest, so a box is called hidden only where
// every pixel of the tile is nearer than it. Written as the float's bits into an R32Uint target:
// 32-bit float targets are not renderable everywhere (OpenGL ES without an extension), 32-bit
// integer ones are, and non-negative floats order as their bits do.

const TILE: i32 = 8;

// Single-sampled depth is bound as an unfilterable float texture, not a depth one: the GLSL
// backend cannot load texels from depth textures. Multisampled depth (read on backends other
// than GL only) is a depth texture.
@group(0) @binding(0) var depth: texture_2d<f32>;
@group(0) @binding(1) var depth_ms: texture_depth_multisampled_2d;

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let xy = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(xy * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs_main(@builtin(position) at: vec4<f32>) -> @location(0) vec4<u32> {
    let size = vec2<i32>(textureDimensions(depth));
    let origin = vec2<i32>(at.xy) * TILE;
    var far = 0.0;
    for (var y = 0; y < TILE; y++) {
        for (var x = 0; x < TILE; x++) {
            let p = origin + vec2<i32>(x, y);
            if (p.x < size.x && p.y < size.y) {
                far = max(far, textureLoad(depth, p, 0).r);
            }
        }
    }
    return vec4<u32>(bitcast<u32>(far), 0u, 0u, 1u);
}

@fragment
fn fs_multi(@builtin(position) at: vec4<f32>) -> @location(0) vec4<u32> {
    let size = vec2<i32>(textureDimensions(depth_ms));
    let samples = i32(textureNumSamples(depth_ms));
    let origin = vec2<i32>(at.xy) * TILE;
    var far = 0.0;
    for (var y = 0; y < TILE; y++) {
        for (var x = 0; x < TILE; x++) {
            let p = origin + vec2<i32>(x, y);
            if (p.x < size.x && p.y < size.y) {
                for (var s = 0; s < samples; s++) {
                    far = max(far, textureLoad(depth_ms, p, s));
                }
            }
        }
    }
    return vec4<u32>(bitcast<u32>(far), 0u, 0u, 1u);
}
