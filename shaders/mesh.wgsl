// The mesh pass: metallic-roughness shading (GGX specular, Lambert diffuse) of the base colour
// (texture x factor) under the scene's punctual lights plus ambient, with per-draw overrides
// (material inputs, tint, selection highlight, see-through) and cut planes. Written to an sRGB
// target (the hardware encodes linear -> sRGB on store).
//
// Bind groups: 0 = per frame (camera, lights, cut planes), 1 = per draw (dynamic offset),
// 2 = per material.

const MAX_LIGHTS: u32 = 8u;
const MAX_CUT_PLANES: u32 = 4u;
const PI: f32 = 3.14159265;

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
    ambient: vec4<f32>,
    // x light count, y cut plane count.
    counts: vec4<u32>,
    lights: array<GpuLight, MAX_LIGHTS>,
    // xyz normal, w distance: points with dot(n, p) > d are cut away.
    cut_planes: array<vec4<f32>, MAX_CUT_PLANES>,
};

struct Draw {
    model: mat4x4<f32>,
    // Inverse transpose of the model matrix, for normals under non-uniform scale.
    normal: mat4x4<f32>,
    // Overrides: w < 0 means "keep the material's".
    base_color: vec4<f32>,
    emissive: vec4<f32>,
    // x metallic, y roughness (< 0: keep), z see-through, w selected.
    params: vec4<f32>,
    // rgb multiplier, a mix amount (0: none).
    tint: vec4<f32>,
};

struct Material {
    base_color: vec4<f32>,
    emissive: vec4<f32>,
    // x metallic, y roughness, z alpha cutoff, w alpha mode (0 opaque, 1 mask, 2 blend).
    params: vec4<f32>,
    // Base colour UV transform (KHR_texture_transform) rows; uv_row0.w is the UV set (0 or 1).
    uv_row0: vec4<f32>,
    uv_row1: vec4<f32>,
};

@group(0) @binding(0) var<uniform> globals: Globals;
@group(1) @binding(0) var<uniform> draw: Draw;
@group(2) @binding(0) var<uniform> material: Material;
@group(2) @binding(1) var base_color_tex: texture_2d<f32>;
@group(2) @binding(2) var base_color_sampler: sampler;

struct VertexIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) uv: vec2<f32>,
    @location(3) color: vec4<f32>,
    @location(4) uv1: vec2<f32>,
};

struct VertexOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) uv: vec2<f32>,
    @location(2) world: vec3<f32>,
    @location(3) color: vec4<f32>,
    @location(4) uv1: vec2<f32>,
};

@vertex
fn vs_main(v: VertexIn) -> VertexOut {
    var out: VertexOut;
    let world = draw.model * vec4<f32>(v.position, 1.0);
    out.clip = globals.view_proj * world;
    out.normal = (draw.normal * vec4<f32>(v.normal, 0.0)).xyz;
    out.uv = v.uv;
    out.world = world.xyz;
    out.color = v.color;
    out.uv1 = v.uv1;
    return out;
}

fn ggx(n_h: f32, alpha: f32) -> f32 {
    let a2 = alpha * alpha;
    let d = n_h * n_h * (a2 - 1.0) + 1.0;
    return a2 / (PI * d * d);
}

fn smith(n_v: f32, n_l: f32, alpha: f32) -> f32 {
    let k = alpha * 0.5;
    return (n_v / (n_v * (1.0 - k) + k)) * (n_l / (n_l * (1.0 - k) + k));
}

@fragment
fn fs_main(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    for (var i = 0u; i < min(globals.counts.y, MAX_CUT_PLANES); i++) {
        let p = globals.cut_planes[i];
        if (dot(p.xyz, in.world) > p.w) {
            discard;
        }
    }
    var factor = material.base_color;
    if (draw.base_color.w >= 0.0) {
        factor = draw.base_color;
    }
    var uv = in.uv;
    if (material.uv_row0.w > 0.5) {
        uv = in.uv1;
    }
    uv = vec2<f32>(
        dot(material.uv_row0.xy, uv) + material.uv_row0.z,
        dot(material.uv_row1.xy, uv) + material.uv_row1.z,
    );
    let base = textureSample(base_color_tex, base_color_sampler, uv) * factor * in.color;
    let alpha_mode = material.params.w;
    if (alpha_mode > 0.5 && alpha_mode < 1.5 && base.a < material.params.z) {
        discard;
    }
    var metallic = material.params.x;
    if (draw.params.x >= 0.0) {
        metallic = draw.params.x;
    }
    var roughness = material.params.y;
    if (draw.params.y >= 0.0) {
        roughness = draw.params.y;
    }
    var emissive = material.emissive.rgb;
    if (draw.emissive.w >= 0.0) {
        emissive = draw.emissive.rgb;
    }

    var n = normalize(in.normal);
    // Double-sided materials light their back faces as seen from the camera.
    if (!front) {
        n = -n;
    }
    let v = normalize(globals.camera_pos.xyz - in.world);
    let n_v = max(dot(n, v), 1e-4);
    let alpha = max(roughness * roughness, 0.002);
    let diffuse_color = base.rgb * (1.0 - metallic);
    let f0 = mix(vec3<f32>(0.04), base.rgb, metallic);

    var lit = base.rgb * globals.ambient.rgb;
    for (var i = 0u; i < min(globals.counts.x, MAX_LIGHTS); i++) {
        let light = globals.lights[i];
        let kind = light.position_kind.w;
        var l: vec3<f32>;
        var attenuation = 1.0;
        if (kind < 0.5) {
            l = -light.direction_range.xyz;
        } else {
            let to_light = light.position_kind.xyz - in.world;
            let dist2 = max(dot(to_light, to_light), 1e-4);
            l = to_light * inverseSqrt(dist2);
            attenuation = 1.0 / dist2;
            let range = light.direction_range.w;
            if (range > 0.0) {
                let r = sqrt(dist2) / range;
                attenuation *= clamp(1.0 - r * r * r * r, 0.0, 1.0);
            }
            if (kind > 1.5) {
                let cd = dot(light.direction_range.xyz, -l);
                let s = clamp((cd - light.cone.x) * light.cone.y, 0.0, 1.0);
                attenuation *= s * s;
            }
        }
        let n_l = max(dot(n, l), 0.0);
        if (n_l <= 0.0 || attenuation <= 0.0) {
            continue;
        }
        let h = normalize(l + v);
        let n_h = max(dot(n, h), 0.0);
        let v_h = max(dot(v, h), 0.0);
        let fresnel = f0 + (vec3<f32>(1.0) - f0) * pow(1.0 - v_h, 5.0);
        let specular = fresnel * ggx(n_h, alpha) * smith(n_v, n_l, alpha) / (4.0 * n_v * n_l + 1e-4);
        let diffuse = (vec3<f32>(1.0) - fresnel) * diffuse_color;
        // Lambert without the 1/pi: an intensity of 1 on a white surface facing the light is 1.
        lit += (diffuse + specular * PI * n_l) * light.color.rgb * attenuation * n_l;
    }
    lit += emissive;
    if (draw.tint.a > 0.0) {
        lit = mix(lit, lit * draw.tint.rgb, draw.tint.a);
    }
    if (draw.params.w > 0.5) {
        // Selection: a cool highlight that grows towards the silhouette.
        let rim = pow(1.0 - n_v, 2.0);
        lit = mix(lit, vec3<f32>(0.2, 0.55, 1.0), 0.35 + 0.5 * rim);
    }
    var a = 1.0;
    if (alpha_mode > 1.5) {
        a = base.a;
    }
    if (draw.params.z > 0.5) {
        a *= 0.35;
    }
    return vec4<f32>(lit, a);
}
