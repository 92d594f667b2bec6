// Image-based lighting for the mesh shader: the environment bind group (group 3: the views and
// sampler of `GpuEnvironment` in crates/farview-render/src/environment) and the Khronos
// glTF Sample Viewer 1.1.0's IBL functions (`ibl.glsl`: getDiffuseLight, getIBLRadianceGGX,
// getIBLGGXFresnel) with its IBL composition from `pbr.frag` for the metallic-roughness model.
// Paste (or prepend) into the mesh shader. All vectors are world space (glTF's: +Y up).
//
// What the mesh shader supplies:
//   n: the shading normal (normalized, after normal mapping and double-sided flipping),
//   v: normalize(camera_position - world_position),
//   perceptual_roughness, metallic: clamped to [0, 1] (the Sample Viewer clamps both),
//   base_color: linear RGB (base colour factor * texture * vertex colour),
//   f0_dielectric: vec3(0.04) for ior 1.5 (KHR_materials_ior/specular change it),
//   specular_weight: 1.0 (KHR_materials_specular changes it),
//   ibl: rotation, mip count and intensity (the Sample Viewer's u_EnvIntensity = iblIntensity
//     (1.0) * scale (1.0 with float textures); 0.0 switches IBL off).
// Then, as the Sample Viewer does, ambient occlusion scales the IBL result only (not punctual
// lights): color = ibl * (1.0 + occlusion_strength * (ao - 1.0)).

@group(3) @binding(0) var ibl_specular: texture_cube<f32>;
@group(3) @binding(1) var ibl_diffuse: texture_cube<f32>;
@group(3) @binding(2) var ibl_brdf_lut: texture_2d<f32>;
// Linear, linear between mips, clamp to edge.
@group(3) @binding(3) var ibl_sampler: sampler;

// The environment's parameters: u_EnvRotation (3x3, world -> cube directions), u_MipCount and
// u_EnvIntensity. The renderer passes them in its uniforms (GpuEnvironment::rotation,
// ::specular_mip_count, Lighting::environment_intensity); `ibl_default()` has the values of the
// reference renders.
struct Ibl {
    rotation: mat3x3<f32>,
    mip_count: f32,
    intensity: f32,
}

// The specular cube's levels; level k is prefiltered for roughness k / (count - 1).
const IBL_MIP_COUNT: f32 = 5.0;

// The Sample Viewer's default environmentRotation, 90 degrees about +Y (gl-matrix rotateY,
// column-major), mapping a world direction w to the cube direction (w.z, w.y, -w.x). The cube
// itself holds the panorama at the y-mirrored direction, so world direction w reads panorama
// u = 0.5 + atan2(-w.x, w.z) / (2 pi), v = acos(w.y) / pi (v from the top row): +Y the top
// row, +Z (towards the default camera) the centre column, +X u = 0.25.
const IBL_ENV_ROTATION: mat3x3<f32> = mat3x3<f32>(
    vec3<f32>(0.0, 0.0, -1.0),
    vec3<f32>(0.0, 1.0, 0.0),
    vec3<f32>(1.0, 0.0, 0.0),
);

fn ibl_default() -> Ibl {
    return Ibl(IBL_ENV_ROTATION, IBL_MIP_COUNT, 1.0);
}

fn ibl_clamped_dot(a: vec3<f32>, b: vec3<f32>) -> f32 {
    return clamp(dot(a, b), 0.0, 1.0);
}

// getDiffuseLight(n): the Lambertian cube holds irradiance / pi (a white Lambertian surface under
// uniform radiance L reflects L).
fn ibl_diffuse_light(ibl: Ibl, n: vec3<f32>) -> vec3<f32> {
    return textureSampleLevel(ibl_diffuse, ibl_sampler, ibl.rotation * n, 0.0).rgb * ibl.intensity;
}

// getIBLRadianceGGX(n, v, roughness): lod = roughness * (u_MipCount - 1).
fn ibl_radiance_ggx(ibl: Ibl, n: vec3<f32>, v: vec3<f32>, perceptual_roughness: f32) -> vec3<f32> {
    let lod = perceptual_roughness * (ibl.mip_count - 1.0);
    let reflection = normalize(reflect(-v, n));
    let sample = textureSampleLevel(ibl_specular, ibl_sampler, ibl.rotation * reflection, lod);
    return sample.rgb * ibl.intensity;
}

// getIBLGGXFresnel: split-sum single scattering with the roughness-dependent Fresnel term
// (Fdez-Aguera 2019) plus the multiple-scattering energy compensation.
fn ibl_ggx_fresnel(
    n: vec3<f32>,
    v: vec3<f32>,
    perceptual_roughness: f32,
    f0: vec3<f32>,
    specular_weight: f32,
) -> vec3<f32> {
    let n_dot_v = ibl_clamped_dot(n, v);
    let lut_point = clamp(vec2<f32>(n_dot_v, perceptual_roughness), vec2<f32>(0.0), vec2<f32>(1.0));
    let f_ab = textureSampleLevel(ibl_brdf_lut, ibl_sampler, lut_point, 0.0).rg;
    let fr = max(vec3<f32>(1.0 - perceptual_roughness), f0) - f0;
    let k_s = f0 + fr * pow(1.0 - n_dot_v, 5.0);
    let fss_ess = specular_weight * (k_s * f_ab.x + f_ab.y);
    let e_ms = 1.0 - (f_ab.x + f_ab.y);
    let f_avg = specular_weight * (f0 + (1.0 - f0) / 21.0);
    let fms_ems = e_ms * fss_ess * f_avg / (1.0 - f_avg * e_ms);
    return fss_ess + fms_ems;
}

// The IBL colour of the Sample Viewer's pbr.frag main() for a metallic-roughness material
// without clearcoat, sheen, transmission, iridescence, anisotropy or diffuse transmission,
// before occlusion.
fn ibl_color(
    ibl: Ibl,
    n: vec3<f32>,
    v: vec3<f32>,
    base_color: vec3<f32>,
    metallic: f32,
    perceptual_roughness: f32,
    f0_dielectric: vec3<f32>,
    specular_weight: f32,
) -> vec3<f32> {
    let f_diffuse = ibl_diffuse_light(ibl, n) * base_color;
    let f_specular = ibl_radiance_ggx(ibl, n, v, perceptual_roughness);
    let f_metal_fresnel = ibl_ggx_fresnel(n, v, perceptual_roughness, base_color, 1.0);
    let f_metal_brdf = f_metal_fresnel * f_specular;
    let f_dielectric_fresnel = ibl_ggx_fresnel(n, v, perceptual_roughness, f0_dielectric, specular_weight);
    let f_dielectric_brdf = mix(f_diffuse, f_specular, f_dielectric_fresnel);
    return mix(f_dielectric_brdf, f_metal_brdf, metallic);
}
