// The mesh pass: glTF 2.0 metallic-roughness shading as the specification's appendix B defines
// it and the Khronos Sample Viewer implements it (so frames can be compared with its renders):
// every material texture, image-based lighting (split sum: prefiltered GGX cube, Lambertian
// irradiance cube, BRDF lookup table), the scene's punctual lights, KHR_materials_* layers
// (unlit, ior, specular, clearcoat, sheen under punctual lights, volume attenuation), per-draw
// overrides and cut planes, then exposure and tone mapping.
//
// Output: the tone-mapped colour is encoded for display with gamma 2.2, as the reference does,
// then decoded with the exact sRGB curve, because the target is sRGB and the hardware encodes
// on store: the stored bytes are the reference's bytes.
//
// Bind groups: 0 = per frame (camera, lights, cut planes, look, the frame behind transmissive
// surfaces), 1 = per draw (dynamic offset),
// 2 = per material, 3 = environment.

const MAX_LIGHTS: u32 = 8u;
const MAX_CUT_PLANES: u32 = 4u;
const PI: f32 = 3.141592653589793;

// Material texture slots (bits of Material.flags.x).
const TEX_BASE: u32 = 0u;
const TEX_MR: u32 = 1u;
const TEX_NORMAL: u32 = 2u;
const TEX_OCCLUSION: u32 = 3u;
const TEX_EMISSIVE: u32 = 4u;
const TEX_CLEARCOAT: u32 = 5u;
const TEX_CLEARCOAT_ROUGHNESS: u32 = 6u;
const TEX_CLEARCOAT_NORMAL: u32 = 7u;
const TEX_TRANSMISSION: u32 = 8u;

// Material features (bits of Material.flags.y).
const FEATURE_UNLIT: u32 = 1u;
const FEATURE_CLEARCOAT: u32 = 2u;
const FEATURE_SHEEN: u32 = 4u;
const FEATURE_TRANSMISSION: u32 = 8u;
const FEATURE_VOLUME: u32 = 16u;

struct GpuLight {
    // xyz position, w: kind (0 directional, 1 point, 2 spot).
    position_kind: vec4<f32>,
    // xyz direction the light travels (normalised), w: range (0 = none).
    direction_range: vec4<f32>,
    // rgb colour x intensity, w unused.
    color: vec4<f32>,
    // x cos(outer), y 1 / (cos(inner) - cos(outer)).
    cone: vec4<f32>,
};

struct Globals {
    view_proj: mat4x4<f32>,
    camera_pos: vec4<f32>,
    // x light count, y cut plane count, z tone mapping (0 KHR PBR neutral, 1 ACES, 2 none,
    // 3 linear output: none, without exposure or display encoding).
    counts: vec4<u32>,
    // x specular mip count, y environment intensity, z exposure, w unused.
    environment: vec4<f32>,
    // Rotation from world directions to environment cube directions (columns).
    env_rotation: mat4x4<f32>,
    // Outline colour (rgb, linear) and its alpha this frame (pulse applied).
    outline_color: vec4<f32>,
    // x outline width in pixels, y/z viewport size in pixels.
    outline: vec4<f32>,
    // The inverse of the view-projection without the camera's translation (background rays).
    sky: mat4x4<f32>,
    lights: array<GpuLight, MAX_LIGHTS>,
    // xyz normal, w distance: points with dot(n, p) > d are cut away.
    cut_planes: array<vec4<f32>, MAX_CUT_PLANES>,
};

// What a batch of instances shares (the vertex stage reads each instance's matrices from
// its vertex attributes).
struct Draw {
    // The first instance's world matrix: the fragment stage scales transmission thickness by
    // it, and transmissive meshes are never batched.
    model: mat4x4<f32>,
    // Overrides: w < 0 means "keep the material's".
    base_color: vec4<f32>,
    emissive: vec4<f32>,
    // x metallic, y roughness (< 0: keep), z see-through, w selected.
    params: vec4<f32>,
    // rgb multiplier, a mix amount (0: none).
    tint: vec4<f32>,
};

struct TexTransform {
    // Rows of the 2x3 UV transform; row0.w is the UV set (0 or 1).
    row0: vec4<f32>,
    row1: vec4<f32>,
};

struct Material {
    base_color: vec4<f32>,
    // rgb emissive (strength applied), w unused.
    emissive: vec4<f32>,
    // x metallic, y roughness, z alpha cutoff, w alpha mode (0 opaque, 1 mask, 2 blend).
    params: vec4<f32>,
    // x normal scale, y occlusion strength, z ior, w specular factor.
    params2: vec4<f32>,
    // x texture slots present (bit per TEX_*), y features (FEATURE_*).
    flags: vec4<u32>,
    // rgb specular colour factor, w unused.
    specular_color: vec4<f32>,
    // x clearcoat factor, y clearcoat roughness, z clearcoat normal scale, w transmission.
    clearcoat: vec4<f32>,
    // rgb sheen colour, w sheen roughness.
    sheen: vec4<f32>,
    // rgb attenuation colour, w attenuation distance (0: none).
    attenuation: vec4<f32>,
    // x thickness factor.
    volume: vec4<f32>,
    uv: array<TexTransform, 9>,
};

@group(0) @binding(0) var<uniform> globals: Globals;
// The frame behind transmissive surfaces (linear, mip-mapped; 1x1 where the frame has none).
@group(0) @binding(1) var behind_tex: texture_2d<f32>;
@group(0) @binding(2) var behind_sampler: sampler;
@group(1) @binding(0) var<uniform> draw: Draw;
@group(2) @binding(0) var<uniform> material: Material;
@group(2) @binding(1) var base_color_tex: texture_2d<f32>;
@group(2) @binding(2) var base_color_sampler: sampler;
@group(2) @binding(3) var mr_tex: texture_2d<f32>;
@group(2) @binding(4) var mr_sampler: sampler;
@group(2) @binding(5) var normal_tex: texture_2d<f32>;
@group(2) @binding(6) var normal_sampler: sampler;
@group(2) @binding(7) var occlusion_tex: texture_2d<f32>;
@group(2) @binding(8) var occlusion_sampler: sampler;
@group(2) @binding(9) var emissive_tex: texture_2d<f32>;
@group(2) @binding(10) var emissive_sampler: sampler;
@group(2) @binding(11) var clearcoat_tex: texture_2d<f32>;
@group(2) @binding(12) var clearcoat_sampler: sampler;
@group(2) @binding(13) var clearcoat_roughness_tex: texture_2d<f32>;
@group(2) @binding(14) var clearcoat_roughness_sampler: sampler;
@group(2) @binding(15) var clearcoat_normal_tex: texture_2d<f32>;
@group(2) @binding(16) var clearcoat_normal_sampler: sampler;
@group(2) @binding(17) var transmission_tex: texture_2d<f32>;
@group(2) @binding(18) var transmission_sampler: sampler;
@group(3) @binding(0) var env_specular: texture_cube<f32>;
@group(3) @binding(1) var env_diffuse: texture_cube<f32>;
@group(3) @binding(2) var brdf_lut: texture_2d<f32>;
@group(3) @binding(3) var env_sampler: sampler;

struct VertexIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) uv: vec2<f32>,
    @location(3) color: vec4<f32>,
    @location(4) uv1: vec2<f32>,
    @location(5) tangent: vec4<f32>,
    // Per instance: the world matrix and the inverse transpose of its upper 3x3 (for normals
    // under non-uniform scale). Every draw is instanced, so a mesh repeated N times with the
    // same state is one draw.
    @location(6) model0: vec4<f32>,
    @location(7) model1: vec4<f32>,
    @location(8) model2: vec4<f32>,
    @location(9) model3: vec4<f32>,
    @location(10) normal0: vec3<f32>,
    @location(11) normal1: vec3<f32>,
    @location(12) normal2: vec3<f32>,
};

fn model_of(v: VertexIn) -> mat4x4<f32> {
    return mat4x4<f32>(v.model0, v.model1, v.model2, v.model3);
}

fn normal_of(v: VertexIn) -> mat3x3<f32> {
    return mat3x3<f32>(v.normal0, v.normal1, v.normal2);
}

struct VertexOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) uv: vec2<f32>,
    @location(2) world: vec3<f32>,
    @location(3) color: vec4<f32>,
    @location(4) uv1: vec2<f32>,
    @location(5) tangent: vec3<f32>,
    @location(6) bitangent: vec3<f32>,
};

@vertex
fn vs_main(v: VertexIn) -> VertexOut {
    var out: VertexOut;
    let model = model_of(v);
    let world = model * vec4<f32>(v.position, 1.0);
    out.clip = globals.view_proj * world;
    let n = normalize(normal_of(v) * v.normal);
    out.normal = n;
    // A zero tangent (the primitive has no normal map) stays zero; the fragment stage then
    // uses the geometric normal alone.
    let t = (model * vec4<f32>(v.tangent.xyz, 0.0)).xyz;
    out.tangent = t;
    out.bitangent = cross(n, t) * v.tangent.w;
    out.uv = v.uv;
    out.world = world.xyz;
    out.color = v.color;
    out.uv1 = v.uv1;
    return out;
}

// --- The selection outline: selected draws again, pushed out along their normals in screen
// space, where the stencil says the entity itself was not drawn.

struct OutlineOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) world: vec3<f32>,
};

@vertex
fn vs_outline(v: VertexIn) -> OutlineOut {
    var out: OutlineOut;
    let model = model_of(v);
    let world = model * vec4<f32>(v.position, 1.0);
    var clip = globals.view_proj * world;
    // Push out along the normal as seen on screen; where the normal faces the camera (flat
    // parts, whose screen normal is too short to give a direction), away from the entity's
    // origin on screen instead.
    let n = normalize(normal_of(v) * v.normal);
    let n_clip = globals.view_proj * vec4<f32>(n, 0.0);
    var dir = n_clip.xy;
    if (length(n_clip.xy) < 0.5 * length(n_clip.xyw)) {
        let origin = globals.view_proj * vec4<f32>(model[3].xyz, 1.0);
        dir = clip.xy / max(clip.w, 1e-6) - origin.xy / max(origin.w, 1e-6);
    }
    let len = length(dir);
    if (len > 1e-6) {
        let px = globals.outline.x * 2.0 / max(globals.outline.yz, vec2<f32>(1.0));
        clip = vec4<f32>(clip.xy + dir / len * px * clip.w, clip.zw);
    }
    out.clip = clip;
    out.world = world.xyz;
    return out;
}

@fragment
fn fs_outline(in: OutlineOut) -> @location(0) vec4<f32> {
    cut(in.world);
    return globals.outline_color;
}

// --- Helpers.

fn cut(world: vec3<f32>) {
    for (var i = 0u; i < min(globals.counts.y, MAX_CUT_PLANES); i++) {
        let p = globals.cut_planes[i];
        if (dot(p.xyz, world) > p.w) {
            discard;
        }
    }
}

fn has_tex(slot: u32) -> bool {
    return (material.flags.x & (1u << slot)) != 0u;
}

fn has_feature(f: u32) -> bool {
    return (material.flags.y & f) != 0u;
}

// The UV a texture slot samples: its set, then its KHR_texture_transform.
fn uv_for(slot: u32, uv0: vec2<f32>, uv1: vec2<f32>) -> vec2<f32> {
    let t = material.uv[slot];
    var uv = uv0;
    if (t.row0.w > 0.5) {
        uv = uv1;
    }
    return vec2<f32>(dot(t.row0.xy, uv) + t.row0.z, dot(t.row1.xy, uv) + t.row1.z);
}

fn slot_uv(slot: u32, in: VertexOut) -> vec2<f32> {
    return uv_for(slot, in.uv, in.uv1);
}

// The material's factors, or the draw's overrides of them (w / value < 0: keep).
fn base_factor() -> vec4<f32> {
    if (draw.base_color.w >= 0.0) {
        return draw.base_color;
    }
    return material.base_color;
}

fn metallic_factor() -> f32 {
    if (draw.params.x >= 0.0) {
        return draw.params.x;
    }
    return material.params.x;
}

fn roughness_factor() -> f32 {
    if (draw.params.y >= 0.0) {
        return draw.params.y;
    }
    return material.params.y;
}

fn emissive_factor() -> vec3<f32> {
    if (draw.emissive.w >= 0.0) {
        return draw.emissive.rgb;
    }
    return material.emissive.rgb;
}

// From a point towards a light (its direction for directional lights).
fn to_light(light: GpuLight, world: vec3<f32>) -> vec3<f32> {
    if (light.position_kind.w < 0.5) {
        return -light.direction_range.xyz;
    }
    return light.position_kind.xyz - world;
}

fn clamped_dot(a: vec3<f32>, b: vec3<f32>) -> f32 {
    return clamp(dot(a, b), 0.0, 1.0);
}

fn max3(v: vec3<f32>) -> f32 {
    return max(max(v.x, v.y), v.z);
}

fn f_schlick(f0: vec3<f32>, f90: vec3<f32>, v_h: f32) -> vec3<f32> {
    return f0 + (f90 - f0) * pow(clamp(1.0 - v_h, 0.0, 1.0), 5.0);
}

fn v_ggx(n_l: f32, n_v: f32, alpha: f32) -> f32 {
    let a2 = alpha * alpha;
    let ggx_v = n_l * sqrt(n_v * n_v * (1.0 - a2) + a2);
    let ggx_l = n_v * sqrt(n_l * n_l * (1.0 - a2) + a2);
    let ggx = ggx_v + ggx_l;
    if (ggx > 0.0) {
        return 0.5 / ggx;
    }
    return 0.0;
}

fn d_ggx(n_h: f32, alpha: f32) -> f32 {
    let a2 = alpha * alpha;
    let f = n_h * n_h * (a2 - 1.0) + 1.0;
    return a2 / (PI * f * f);
}

fn d_charlie(roughness: f32, n_h: f32) -> f32 {
    let alpha = max(roughness, 0.000001) * max(roughness, 0.000001);
    let inv_r = 1.0 / alpha;
    let sin2h = 1.0 - n_h * n_h;
    return (2.0 + inv_r) * pow(sin2h, inv_r * 0.5) / (2.0 * PI);
}

fn lambda_sheen_helper(x: f32, alpha: f32) -> f32 {
    let one_minus = (1.0 - alpha) * (1.0 - alpha);
    let a = mix(21.5473, 25.3245, one_minus);
    let b = mix(3.82987, 3.32435, one_minus);
    let c = mix(0.19823, 0.16801, one_minus);
    let d = mix(-1.97760, -1.27393, one_minus);
    let e = mix(-4.32054, -4.85967, one_minus);
    return a / (1.0 + b * pow(x, c)) + d * x + e;
}

fn lambda_sheen(cos_theta: f32, alpha: f32) -> f32 {
    if (abs(cos_theta) < 0.5) {
        return exp(lambda_sheen_helper(cos_theta, alpha));
    }
    return exp(2.0 * lambda_sheen_helper(0.5, alpha) - lambda_sheen_helper(1.0 - cos_theta, alpha));
}

fn v_sheen(n_l: f32, n_v: f32, roughness: f32) -> f32 {
    let alpha = max(roughness, 0.000001) * max(roughness, 0.000001);
    return clamp(
        1.0 / ((1.0 + lambda_sheen(n_v, alpha) + lambda_sheen(n_l, alpha)) * (4.0 * n_v * n_l)),
        0.0,
        1.0,
    );
}

// The environment, in the cube's directions.
fn env_dir(d: vec3<f32>) -> vec3<f32> {
    return (globals.env_rotation * vec4<f32>(d, 0.0)).xyz;
}

fn ibl_diffuse(n: vec3<f32>) -> vec3<f32> {
    return textureSampleLevel(env_diffuse, env_sampler, env_dir(n), 0.0).rgb * globals.environment.y;
}

fn ibl_specular(n: vec3<f32>, v: vec3<f32>, roughness: f32) -> vec3<f32> {
    let lod = roughness * (globals.environment.x - 1.0);
    let r = normalize(reflect(-v, n));
    return textureSampleLevel(env_specular, env_sampler, env_dir(r), lod).rgb * globals.environment.y;
}

// Split-sum Fresnel with the multiple-scattering energy compensation (Fdez-Agüera).
fn ibl_ggx_fresnel(n_v: f32, roughness: f32, f0: vec3<f32>, specular_weight: f32) -> vec3<f32> {
    let p = clamp(vec2<f32>(n_v, roughness), vec2<f32>(0.0), vec2<f32>(1.0));
    let f_ab = textureSampleLevel(brdf_lut, env_sampler, p, 0.0).rg;
    let fr = max(vec3<f32>(1.0 - roughness), f0) - f0;
    let k_s = f0 + fr * pow(1.0 - n_v, 5.0);
    let fss_ess = specular_weight * (k_s * f_ab.x + f_ab.y);
    let ems = 1.0 - (f_ab.x + f_ab.y);
    let f_avg = specular_weight * (f0 + (1.0 - f0) / 21.0);
    let fms_ems = ems * fss_ess * f_avg / (1.0 - f_avg * ems);
    return fss_ess + fms_ems;
}

fn ibl_brdf(n_v: f32, roughness: f32) -> vec2<f32> {
    let p = clamp(vec2<f32>(n_v, roughness), vec2<f32>(0.0), vec2<f32>(1.0));
    return textureSampleLevel(brdf_lut, env_sampler, p, 0.0).rg;
}

fn light_intensity(light: GpuLight, point_to_light: vec3<f32>) -> vec3<f32> {
    var attenuation = 1.0;
    let kind = light.position_kind.w;
    if (kind > 0.5) {
        let dist = length(point_to_light);
        let range = light.direction_range.w;
        if (range <= 0.0) {
            attenuation = 1.0 / max(dist * dist, 1e-8);
        } else {
            attenuation = max(min(1.0 - pow(dist / range, 4.0), 1.0), 0.0) / max(dist * dist, 1e-8);
        }
    }
    if (kind > 1.5) {
        let cd = dot(light.direction_range.xyz, -normalize(point_to_light));
        let s = clamp((cd - light.cone.x) * light.cone.y, 0.0, 1.0);
        attenuation *= s * s;
    }
    return light.color.rgb * attenuation;
}

fn tone_map_neutral(c_in: vec3<f32>) -> vec3<f32> {
    let start = 0.8 - 0.04;
    let desaturation = 0.15;
    let x = min(c_in.r, min(c_in.g, c_in.b));
    var offset = 0.04;
    if (x < 0.08) {
        offset = x - 6.25 * x * x;
    }
    var c = c_in - offset;
    let peak = max3(c);
    if (peak < start) {
        return c;
    }
    let d = 1.0 - start;
    let new_peak = 1.0 - d * d / (peak + d - start);
    c *= new_peak / peak;
    let g = 1.0 - 1.0 / (desaturation * (peak - new_peak) + 1.0);
    return mix(c, vec3<f32>(new_peak), g);
}

// ACES filmic (Stephen Hill's fit of the RRT + ODT).
fn tone_map_aces(c_in: vec3<f32>) -> vec3<f32> {
    let input_mat = mat3x3<f32>(
        vec3<f32>(0.59719, 0.07600, 0.02840),
        vec3<f32>(0.35458, 0.90834, 0.13383),
        vec3<f32>(0.04823, 0.01566, 0.83777),
    );
    let output_mat = mat3x3<f32>(
        vec3<f32>(1.60475, -0.10208, -0.00327),
        vec3<f32>(-0.53108, 1.10813, -0.07276),
        vec3<f32>(-0.07367, -0.00605, 1.07602),
    );
    var c = input_mat * c_in;
    let a = c * (c + 0.0245786) - 0.000090537;
    let b = c * (0.983729 * c + 0.4329510) + 0.238081;
    c = output_mat * (a / b);
    return clamp(c, vec3<f32>(0.0), vec3<f32>(1.0));
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let lo = c / 12.92;
    let hi = pow((c + 0.055) / 1.055, vec3<f32>(2.4));
    return select(hi, lo, c <= vec3<f32>(0.04045));
}

// Exposure, tone mapping, gamma 2.2 for display (the reference's encoding), then back to
// linear by the exact sRGB curve for the sRGB target.
fn display(c_in: vec3<f32>) -> vec3<f32> {
    let mode = globals.counts.z;
    if (mode == 3u) {
        // Linear output, for the frame transmissive materials see through (as the reference's
        // LINEAR_OUTPUT): exposure and tone mapping apply once, to the glass's own pixel.
        return max(c_in, vec3<f32>(0.0));
    }
    var c = max(c_in, vec3<f32>(0.0)) * globals.environment.z;
    if (mode == 0u) {
        c = tone_map_neutral(c);
    } else if (mode == 1u) {
        c = tone_map_aces(c);
    }
    c = clamp(c, vec3<f32>(0.0), vec3<f32>(1.0));
    return srgb_to_linear(pow(c, vec3<f32>(1.0 / 2.2)));
}

// Four entry points share `shade`: `layers` and `clip` are constants in each, so the compiler
// drops the clearcoat, sheen and transmission code from the standard ones and every `discard`
// from the unclipped ones. (Software rasterizers run every instruction of a shader under a mask,
// branches or not: code a material does not need costs as much as code it does. And a shader
// that may discard loses early depth testing, so hidden fragments get shaded too.)
@fragment
fn fs_standard(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    return shade(in, front, false).color;
}

@fragment
fn fs_standard_clip(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    let s = shade(in, front, false);
    clip_fragment(in.world, s.coverage);
    return s.color;
}

@fragment
fn fs_layered(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    return shade(in, front, true).color;
}

@fragment
fn fs_layered_clip(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    let s = shade(in, front, true);
    clip_fragment(in.world, s.coverage);
    return s.color;
}

// A shaded fragment: its output colour and the alpha the alpha test compares.
struct Shaded {
    color: vec4<f32>,
    coverage: f32,
};

// Alpha test (`MASK`) and cut planes: the only places a mesh fragment is discarded, called by
// the `_clip` entry points alone (Mesa decides on early depth testing from whether `discard`
// appears in the shader at all, reachable or not).
fn clip_fragment(world: vec3<f32>, alpha: f32) {
    cut(world);
    let alpha_mode = material.params.w;
    if (alpha_mode > 0.5 && alpha_mode < 1.5 && alpha < material.params.z) {
        discard;
    }
}

fn shade(in: VertexOut, front: bool, layers: bool) -> Shaded {
    // Base colour.
    var base = base_factor() * in.color;
    if (has_tex(TEX_BASE)) {
        base *= textureSample(base_color_tex, base_color_sampler, slot_uv(TEX_BASE, in));
    }

    // Normals: the vertex frame, flipped for back faces, then the normal map.
    var ng = normalize(in.normal);
    var t = in.tangent;
    var b = in.bitangent;
    if (!front) {
        ng = -ng;
        t = -t;
        b = -b;
    }
    let has_frame = dot(t, t) > 1e-12;
    if (has_frame) {
        t = normalize(t);
        b = normalize(b);
    }
    var n = ng;
    if (has_tex(TEX_NORMAL) && has_frame) {
        var nt = textureSample(normal_tex, normal_sampler, slot_uv(TEX_NORMAL, in)).rgb * 2.0 - 1.0;
        nt *= vec3<f32>(material.params2.x, material.params2.x, 1.0);
        n = normalize(mat3x3<f32>(t, b, ng) * normalize(nt));
    }

    // Material inputs.
    var metallic = metallic_factor();
    var roughness = roughness_factor();
    if (has_tex(TEX_MR)) {
        let mr = textureSample(mr_tex, mr_sampler, slot_uv(TEX_MR, in));
        roughness *= mr.g;
        metallic *= mr.b;
    }
    roughness = clamp(roughness, 0.0, 1.0);
    metallic = clamp(metallic, 0.0, 1.0);
    let alpha = roughness * roughness;
    let ior = material.params2.z;
    let specular_weight = material.params2.w;
    let f0_ior = pow((ior - 1.0) / (ior + 1.0), 2.0);
    let f0_dielectric = min(vec3<f32>(f0_ior) * material.specular_color.rgb, vec3<f32>(1.0));
    let f90_dielectric = vec3<f32>(specular_weight);

    var emissive = emissive_factor();
    if (has_tex(TEX_EMISSIVE)) {
        emissive *= textureSample(emissive_tex, emissive_sampler, slot_uv(TEX_EMISSIVE, in)).rgb;
    }

    // Layers.
    var clearcoat_factor = 0.0;
    var clearcoat_roughness = 0.0;
    var clearcoat_n = ng;
    if (layers && has_feature(FEATURE_CLEARCOAT)) {
        clearcoat_factor = material.clearcoat.x;
        clearcoat_roughness = material.clearcoat.y;
        if (has_tex(TEX_CLEARCOAT)) {
            clearcoat_factor *= textureSample(clearcoat_tex, clearcoat_sampler, slot_uv(TEX_CLEARCOAT, in)).r;
        }
        if (has_tex(TEX_CLEARCOAT_ROUGHNESS)) {
            clearcoat_roughness *= textureSample(
                clearcoat_roughness_tex, clearcoat_roughness_sampler, slot_uv(TEX_CLEARCOAT_ROUGHNESS, in)
            ).g;
        }
        clearcoat_roughness = clamp(clearcoat_roughness, 0.0, 1.0);
        if (has_tex(TEX_CLEARCOAT_NORMAL) && has_frame) {
            var cn = textureSample(
                clearcoat_normal_tex, clearcoat_normal_sampler, slot_uv(TEX_CLEARCOAT_NORMAL, in)
            ).rgb * 2.0 - 1.0;
            cn *= vec3<f32>(material.clearcoat.z, material.clearcoat.z, 1.0);
            clearcoat_n = normalize(mat3x3<f32>(t, b, ng) * normalize(cn));
        }
    }
    var transmission = 0.0;
    if (layers && has_feature(FEATURE_TRANSMISSION)) {
        transmission = material.clearcoat.w;
        if (has_tex(TEX_TRANSMISSION)) {
            transmission *= textureSample(transmission_tex, transmission_sampler, slot_uv(TEX_TRANSMISSION, in)).r;
        }
    }
    let sheen_color = material.sheen.rgb;
    let sheen_roughness = material.sheen.w;

    let v = normalize(globals.camera_pos.xyz - in.world);
    let n_v = clamped_dot(n, v);
    let clearcoat_fresnel = f_schlick(vec3<f32>(f0_ior), vec3<f32>(1.0), clamped_dot(clearcoat_n, v));

    // Image-based lighting.
    var f_diffuse = ibl_diffuse(n) * base.rgb;
    // Where light through the surface enters: the refracted view ray, the volume's thickness
    // long (in world units), leaves the back of the volume (the surface itself without volume).
    var transmission_ray = vec3<f32>(0.0);
    if (transmission > 0.0) {
        var thickness = 0.0;
        if (has_feature(FEATURE_VOLUME)) {
            thickness = material.volume.x;
        }
        let scale = vec3<f32>(length(draw.model[0].xyz), length(draw.model[1].xyz), length(draw.model[2].xyz));
        transmission_ray = normalize(refract(-v, n, 1.0 / ior)) * thickness * scale;
        // The frame behind the surface where that ray leaves the volume, blurred by roughness
        // (the reference's screen-space transmission); its mip level is scaled so the blur
        // covers the same share of the frame as in the reference's 1024-texel buffer.
        let exit = globals.view_proj * vec4<f32>(in.world + transmission_ray, 1.0);
        let uv = exit.xy / exit.w * vec2<f32>(0.5, -0.5) + 0.5;
        let size = vec2<f32>(textureDimensions(behind_tex));
        let blur = roughness * clamp(ior * 2.0 - 2.0, 0.0, 1.0);
        let lod = max(log2(size.x) - 10.0 * (1.0 - blur), 0.0);
        var through = textureSampleLevel(behind_tex, behind_sampler, uv, lod).rgb;
        if (has_feature(FEATURE_VOLUME) && material.attenuation.w > 0.0) {
            through *= pow(material.attenuation.rgb, vec3<f32>(length(transmission_ray) / material.attenuation.w));
        }
        let brdf = ibl_brdf(n_v, roughness);
        let specular_color = f0_dielectric * brdf.x + f90_dielectric * brdf.y;
        let transmitted = (1.0 - specular_color) * through * base.rgb;
        f_diffuse = mix(f_diffuse, transmitted, transmission);
    }
    let f_specular = ibl_specular(n, v, roughness);
    let metal_ibl = ibl_ggx_fresnel(n_v, roughness, base.rgb, 1.0) * f_specular;
    let dielectric_ibl = mix(
        f_diffuse,
        f_specular,
        ibl_ggx_fresnel(n_v, roughness, f0_dielectric, specular_weight),
    );
    var color = mix(dielectric_ibl, metal_ibl, metallic);
    if (layers && has_feature(FEATURE_CLEARCOAT)) {
        let coat = ibl_specular(clearcoat_n, v, clearcoat_roughness);
        color = mix(color, coat, clearcoat_factor * clearcoat_fresnel);
    }
    if (has_tex(TEX_OCCLUSION)) {
        let ao = textureSample(occlusion_tex, occlusion_sampler, slot_uv(TEX_OCCLUSION, in)).r;
        color *= 1.0 + material.params2.y * (ao - 1.0);
    }

    // Punctual lights.
    for (var i = 0u; i < min(globals.counts.x, MAX_LIGHTS); i++) {
        let light = globals.lights[i];
        let point_to_light = to_light(light, in.world);
        let l = normalize(point_to_light);
        let h = normalize(l + v);
        let n_l = clamped_dot(n, l);
        let n_h = clamped_dot(n, h);
        let v_h = clamped_dot(v, h);
        let intensity = light_intensity(light, point_to_light);
        let dielectric_fresnel = f_schlick(f0_dielectric * specular_weight, f90_dielectric, v_h);
        let metal_fresnel = f_schlick(base.rgb, vec3<f32>(1.0), v_h);
        var l_diffuse = intensity * n_l * base.rgb / PI;
        if (transmission > 0.0) {
            // Light arriving from behind, seen through a rough interface, entering where the
            // refracted view ray leaves the volume.
            let l_t = normalize(point_to_light - transmission_ray);
            let l_mirror = normalize(l_t + 2.0 * n * dot(-l_t, n));
            let h_t = normalize(l_mirror + v);
            let a_t = alpha * clamp(ior * 2.0 - 2.0, 0.0, 1.0);
            let d = d_ggx(clamped_dot(n, h_t), a_t);
            let f = f_schlick(f0_dielectric, f90_dielectric, clamped_dot(v, h_t));
            let vis = v_ggx(clamped_dot(n, l_mirror), n_v, a_t);
            var through = intensity * (1.0 - f) * base.rgb * d * vis;
            if (has_feature(FEATURE_VOLUME) && material.attenuation.w > 0.0) {
                through *= pow(material.attenuation.rgb, vec3<f32>(length(transmission_ray) / material.attenuation.w));
            }
            l_diffuse = mix(l_diffuse, through, transmission);
        }
        let l_specular = intensity * n_l * v_ggx(n_l, n_v, alpha) * d_ggx(n_h, alpha);
        let l_metal = metal_fresnel * l_specular;
        let l_dielectric = mix(l_diffuse, l_specular, dielectric_fresnel);
        var l_color = mix(l_dielectric, l_metal, metallic);
        if (layers && has_feature(FEATURE_SHEEN) && n_l > 0.0 && n_v > 0.0) {
            let sheen = intensity * n_l * sheen_color * d_charlie(sheen_roughness, n_h)
                * v_sheen(n_l, n_v, sheen_roughness);
            // No albedo scaling: the reference ships no sheen E lookup table.
            l_color = sheen + l_color;
        }
        if (layers && has_feature(FEATURE_CLEARCOAT)) {
            let c_l = clamped_dot(clearcoat_n, l);
            let c_v = clamped_dot(clearcoat_n, v);
            let c_h = clamped_dot(clearcoat_n, h);
            let ca = clearcoat_roughness * clearcoat_roughness;
            let coat = intensity * c_l * v_ggx(c_l, c_v, ca) * d_ggx(c_h, ca);
            l_color = mix(l_color, coat, clearcoat_factor * clearcoat_fresnel);
        }
        color += l_color;
    }

    if (has_feature(FEATURE_UNLIT)) {
        color = base.rgb;
    } else {
        color = emissive * (1.0 - clearcoat_factor * clearcoat_fresnel) + color;
    }
    if (draw.tint.a > 0.0) {
        color = mix(color, color * draw.tint.rgb, draw.tint.a);
    }
    var a = 1.0;
    if (material.params.w > 1.5) {
        a = base.a;
    }
    if (draw.params.z > 0.5) {
        a *= 0.35;
    }
    return Shaded(vec4<f32>(display(color), a), base.a);
}

// --- The fast shading (RenderQuality::FAST): image-based and punctual light evaluated per
// vertex with the material's factors, the fragment stage only samples base colour,
// metallic-roughness and emissive textures and mixes. About the cost of plain texturing on a
// software rasterizer; no normal maps, occlusion or layers.

struct FastOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) uv: vec2<f32>,
    @location(1) uv1: vec2<f32>,
    @location(2) world: vec3<f32>,
    @location(3) color: vec4<f32>,
    // Diffuse irradiance (over pi) at the vertex.
    @location(4) diffuse: vec3<f32>,
    // Prefiltered specular radiance at the vertex.
    @location(5) specular: vec3<f32>,
    // x, y: the BRDF lookup table's scale and bias; z: dielectric Fresnel.
    @location(6) brdf: vec3<f32>,
};

@vertex
fn vs_fast(v: VertexIn) -> FastOut {
    return fast_vertex(v);
}

fn fast_vertex(v: VertexIn) -> FastOut {
    var out: FastOut;
    let world = model_of(v) * vec4<f32>(v.position, 1.0);
    out.clip = globals.view_proj * world;
    out.world = world.xyz;
    out.uv = v.uv;
    out.uv1 = v.uv1;
    out.color = v.color;
    let n = normalize(normal_of(v) * v.normal);
    let view = normalize(globals.camera_pos.xyz - world.xyz);
    let roughness = clamp(roughness_factor(), 0.0, 1.0);
    let n_v = clamped_dot(n, view);
    var diffuse = textureSampleLevel(env_diffuse, env_sampler, env_dir(n), 0.0).rgb * globals.environment.y;
    let r = normalize(reflect(-view, n));
    // The nearest prefiltered level, not a blend of two: a software rasterizer then fetches
    // one level instead of two (the roughness is the material's, so every vertex of a draw
    // rounds alike and no seam appears between them).
    let lod = round(roughness * (globals.environment.x - 1.0));
    var specular = textureSampleLevel(env_specular, env_sampler, env_dir(r), lod).rgb * globals.environment.y;
    let p = clamp(vec2<f32>(n_v, roughness), vec2<f32>(0.0), vec2<f32>(1.0));
    let f_ab = textureSampleLevel(brdf_lut, env_sampler, p, 0.0).rg;
    let alpha = roughness * roughness;
    for (var i = 0u; i < min(globals.counts.x, MAX_LIGHTS); i++) {
        let light = globals.lights[i];
        let point_to_light = to_light(light, world.xyz);
        let l = normalize(point_to_light);
        let h = normalize(l + view);
        let n_l = clamped_dot(n, l);
        let intensity = light_intensity(light, point_to_light);
        diffuse += intensity * n_l / PI;
        specular += intensity * n_l * v_ggx(n_l, n_v, alpha) * d_ggx(clamped_dot(n, h), alpha)
            / max(f_ab.x + f_ab.y, 0.05);
    }
    out.diffuse = diffuse;
    out.specular = specular;
    let f0 = pow((material.params2.z - 1.0) / (material.params2.z + 1.0), 2.0);
    out.brdf = vec3<f32>(f_ab, f0 * f_ab.x + f_ab.y);
    return out;
}

fn fast_uv(slot: u32, in: FastOut) -> vec2<f32> {
    return uv_for(slot, in.uv, in.uv1);
}

@fragment
fn fs_fast(in: FastOut) -> @location(0) vec4<f32> {
    return shade_fast(in).color;
}

@fragment
fn fs_fast_clip(in: FastOut) -> @location(0) vec4<f32> {
    let s = shade_fast(in);
    clip_fragment(in.world, s.coverage);
    return s.color;
}

fn shade_fast(in: FastOut) -> Shaded {
    let base = textureSample(base_color_tex, base_color_sampler, fast_uv(TEX_BASE, in));
    let metallic = textureSample(mr_tex, mr_sampler, fast_uv(TEX_MR, in)).b;
    let emissive = textureSample(emissive_tex, emissive_sampler, fast_uv(TEX_EMISSIVE, in)).rgb;
    let lit = fast_color(in, in.color * base, metallic, emissive);
    return Shaded(vec4<f32>(display(lit.rgb), lit.a), lit_coverage(in.color * base));
}

// The fast shading's colour before display encoding (rgb) and its alpha, from the lighting at
// a vertex (or interpolated to a fragment) and the base colour, metallic and emissive
// textures' values there (white where a slot is empty). `color` is the vertex colour times
// the base colour texture.
fn fast_color(in: FastOut, color: vec4<f32>, metallic_tex: f32, emissive_tex: vec3<f32>) -> vec4<f32> {
    let base = base_factor() * color;
    let metallic = metallic_factor() * metallic_tex;
    let emissive = emissive_factor() * emissive_tex;
    let fresnel = in.brdf.z;
    let dielectric = in.diffuse * base.rgb * (1.0 - fresnel) + in.specular * fresnel;
    let metal = in.specular * (base.rgb * in.brdf.x + in.brdf.y);
    var c = mix(dielectric, metal, clamp(metallic, 0.0, 1.0)) + emissive;
    if (has_feature(FEATURE_UNLIT)) {
        c = base.rgb;
    }
    if (draw.tint.a > 0.0) {
        c = mix(c, c * draw.tint.rgb, draw.tint.a);
    }
    var a = 1.0;
    if (material.params.w > 1.5) {
        a = base.a;
    }
    if (draw.params.z > 0.5) {
        a *= 0.35;
    }
    return vec4<f32>(c, a);
}

// Alpha-mask coverage: the base colour's alpha.
fn lit_coverage(color: vec4<f32>) -> f32 {
    return (base_factor() * color).a;
}

// --- The fast shading of untextured materials (no base colour, metallic-roughness or
// emissive texture): the colour is lit and encoded for display at the vertices, and the
// fragment stage only writes it. A software rasterizer sets up and interpolates every varying
// of every triangle, and runs the fragment stage for every 2 x 2 quad a triangle touches:
// with small triangles, one varying instead of seven and no per-fragment tone mapping make a
// frame of a big untextured (CAD, scan) model much cheaper. The picture differs from
// `vs_fast` with `fs_fast` only where colour varies across a triangle (specular highlights,
// vertex colours): the display-encoded colour is interpolated instead of the light.

struct FastPlainOut {
    @builtin(position) clip: vec4<f32>,
    // Display-encoded colour and alpha.
    @location(0) color: vec4<f32>,
};

struct FastPlainClipOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) color: vec4<f32>,
    @location(1) world: vec3<f32>,
    // Alpha-mask coverage.
    @location(2) coverage: f32,
};

fn fast_plain_color(lit: FastOut) -> vec4<f32> {
    let c = fast_color(lit, lit.color, 1.0, vec3<f32>(1.0));
    return vec4<f32>(display(c.rgb), c.a);
}

@vertex
fn vs_fast_plain(v: VertexIn) -> FastPlainOut {
    let lit = fast_vertex(v);
    var out: FastPlainOut;
    out.clip = lit.clip;
    out.color = fast_plain_color(lit);
    return out;
}

@vertex
fn vs_fast_plain_clip(v: VertexIn) -> FastPlainClipOut {
    let lit = fast_vertex(v);
    var out: FastPlainClipOut;
    out.clip = lit.clip;
    out.color = fast_plain_color(lit);
    out.world = lit.world;
    out.coverage = lit_coverage(lit.color);
    return out;
}

@fragment
fn fs_fast_plain(in: FastPlainOut) -> @location(0) vec4<f32> {
    return in.color;
}

@fragment
fn fs_fast_plain_clip(in: FastPlainClipOut) -> @location(0) vec4<f32> {
    clip_fragment(in.world, in.coverage);
    return in.color;
}

// --- The environment as the background: a full-screen triangle at the far plane.

struct SkyOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) ndc: vec2<f32>,
};

@vertex
fn vs_sky(@builtin(vertex_index) i: u32) -> SkyOut {
    let xy = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u)) * 2.0 - 1.0;
    var out: SkyOut;
    out.clip = vec4<f32>(xy, 1.0, 1.0);
    out.ndc = xy;
    return out;
}

@fragment
fn fs_sky(in: SkyOut) -> @location(0) vec4<f32> {
    let p = globals.sky * vec4<f32>(in.ndc, 1.0, 1.0);
    let d = normalize(p.xyz / p.w);
    let c = textureSampleLevel(env_specular, env_sampler, env_dir(d), 0.0).rgb * globals.environment.y;
    return vec4<f32>(display(c), 1.0);
}
