// The mesh pass: base colour (texture x factor) lit by one directional light plus ambient,
// written to an sRGB target (the hardware encodes linear -> sRGB on store).
//
// Bind groups: 0 = per frame (camera, light), 1 = per draw (dynamic offset), 2 = per material.

struct Globals {
    view_proj: mat4x4<f32>,
    camera_pos: vec4<f32>,
    // Direction the light travels *towards the scene*, normalised; w unused.
    light_dir: vec4<f32>,
    // Linear RGB times intensity; w unused.
    light_color: vec4<f32>,
    ambient: vec4<f32>,
};

struct Draw {
    model: mat4x4<f32>,
    // Inverse transpose of the model matrix, for normals under non-uniform scale.
    normal: mat4x4<f32>,
};

struct Material {
    base_color: vec4<f32>,
    emissive: vec4<f32>,
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
};

struct VertexOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) uv: vec2<f32>,
};

@vertex
fn vs_main(v: VertexIn) -> VertexOut {
    var out: VertexOut;
    let world = draw.model * vec4<f32>(v.position, 1.0);
    out.clip = globals.view_proj * world;
    out.normal = (draw.normal * vec4<f32>(v.normal, 0.0)).xyz;
    out.uv = v.uv;
    return out;
}

@fragment
fn fs_main(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    let base = textureSample(base_color_tex, base_color_sampler, in.uv) * material.base_color;
    var n = normalize(in.normal);
    // Double-sided materials light their back faces as seen from the camera.
    if (!front) {
        n = -n;
    }
    let lambert = max(dot(n, -globals.light_dir.xyz), 0.0);
    let lit = base.rgb * (globals.ambient.rgb + globals.light_color.rgb * lambert) + material.emissive.rgb;
    return vec4<f32>(lit, 1.0);
}
