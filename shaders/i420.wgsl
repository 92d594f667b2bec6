// RGBA (the rendered frame; textureLoad decodes its sRGB bytes to linear, and rgb() encodes them
// back to the stored bytes, exactly after rounding) to I420, BT.709 limited range, with exactly the CPU path's 16.16 fixed-point arithmetic
// (crates/farview-encode/src/color.rs), so both agree bit for bit:
//
//   Y  = (11966 R + 40254 G + 4064 B + (16 << 16) + 2^15) >> 16
//   Cb = (-6596 Rs - 22188 Gs + 28784 Bs + (128 << 18) + 2^17) >> 18   (Rs = sum of a 2x2 block)
//   Cr = (28784 Rs - 26145 Gs - 2639 Bs + (128 << 18) + 2^17) >> 18
//
// Output: one tightly packed buffer, Y plane then U then V, four samples per u32 (little end
// first). Needs width % 8 == 0 and height % 2 == 0 (the renderer falls back to the CPU otherwise).

struct Dims {
    width: u32,
    height: u32,
    _pad0: u32,
    _pad1: u32,
};

@group(0) @binding(0) var src: texture_2d<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> dims: Dims;

fn srgb(l: vec3<f32>) -> vec3<f32> {
    let lo = l * 12.92;
    let hi = 1.055 * pow(max(l, vec3<f32>(0.0031308)), vec3<f32>(1.0 / 2.4)) - 0.055;
    return select(hi, lo, l <= vec3<f32>(0.0031308));
}

fn rgb(x: u32, y: u32) -> vec3<i32> {
    let c = textureLoad(src, vec2<i32>(i32(x), i32(y)), 0);
    return vec3<i32>(round(clamp(srgb(c.rgb), vec3<f32>(0.0), vec3<f32>(1.0)) * 255.0));
}

fn luma(c: vec3<i32>) -> u32 {
    return u32((11966 * c.r + 40254 * c.g + 4064 * c.b + (16 << 16u) + 32768) >> 16u);
}

@compute @workgroup_size(64)
fn luma_main(@builtin(global_invocation_id) id: vec3<u32>) {
    let words_per_row = dims.width / 4u;
    let i = id.x;
    if (i >= words_per_row * dims.height) {
        return;
    }
    let row = i / words_per_row;
    let x0 = (i % words_per_row) * 4u;
    var w = 0u;
    for (var k = 0u; k < 4u; k++) {
        w |= luma(rgb(x0 + k, row)) << (8u * k);
    }
    dst[i] = w;
}

@compute @workgroup_size(64)
fn chroma_main(@builtin(global_invocation_id) id: vec3<u32>) {
    let cw = dims.width / 2u;
    let ch = dims.height / 2u;
    let words_per_row = cw / 4u;
    let i = id.x;
    if (i >= words_per_row * ch) {
        return;
    }
    let row = i / words_per_row;
    let cx0 = (i % words_per_row) * 4u;
    var wu = 0u;
    var wv = 0u;
    for (var k = 0u; k < 4u; k++) {
        let x = (cx0 + k) * 2u;
        let y = row * 2u;
        let s = rgb(x, y) + rgb(x + 1u, y) + rgb(x, y + 1u) + rgb(x + 1u, y + 1u);
        let u = clamp((-6596 * s.r - 22188 * s.g + 28784 * s.b + (128 << 18u) + (32768 << 2u)) >> 18u, 0, 255);
        let v = clamp((28784 * s.r - 26145 * s.g - 2639 * s.b + (128 << 18u) + (32768 << 2u)) >> 18u, 0, 255);
        wu |= u32(u) << (8u * k);
        wv |= u32(v) << (8u * k);
    }
    let y_words = dims.width * dims.height / 4u;
    let c_words = words_per_row * ch;
    dst[y_words + i] = wu;
    dst[y_words + c_words + i] = wv;
}
