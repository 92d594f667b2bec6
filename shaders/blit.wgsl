// One texture drawn over a whole target with a bilinear sampler. Used for the transmission
// frame's mips: each fragment samples the centre of a 2x2 block of the level above, which is the
// block's box average (sRGB views decode before filtering and encode on store, so the average is
// taken in linear light, as a GPU's mipmap generation does).

@group(0) @binding(0) var src: texture_2d<f32>;
@group(0) @binding(1) var src_sampler: sampler;

struct Out {
    @builtin(position) clip: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> Out {
    let xy = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    var out: Out;
    out.clip = vec4<f32>(xy * 2.0 - 1.0, 0.0, 1.0);
    out.uv = vec2<f32>(xy.x, 1.0 - xy.y);
    return out;
}

@fragment
fn fs_main(in: Out) -> @location(0) vec4<f32> {
    return textureSampleLevel(src, src_sampler, in.uv, 0.0);
}
