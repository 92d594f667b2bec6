//! CPU-side model assets produced by import: geometry, materials, textures and the node tree.
//! A model is immutable once imported; the scene references it by [`crate::ModelId`] so the GPU
//! side can upload it once and share it between entities.

use glam::{Mat4, Quat, Vec3};

/// A local transform as translation, rotation and scale (glTF's TRS; matrices are decomposed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Translation in parent space.
    pub translation: Vec3,
    /// Rotation as a unit quaternion.
    pub rotation: Quat,
    /// Non-uniform scale.
    pub scale: Vec3,
}

impl Default for Transform {
    fn default() -> Self {
        Self::IDENTITY
    }
}

impl Transform {
    /// The identity transform.
    pub const IDENTITY: Self = Self {
        translation: Vec3::ZERO,
        rotation: Quat::IDENTITY,
        scale: Vec3::ONE,
    };

    /// The transform as a column-major matrix.
    pub fn to_matrix(&self) -> Mat4 {
        Mat4::from_scale_rotation_translation(self.scale, self.rotation, self.translation)
    }

    /// Decomposes a matrix; `None` when it holds non-finite values.
    pub fn from_matrix(m: Mat4) -> Option<Self> {
        if !m.is_finite() {
            return None;
        }
        let (scale, rotation, translation) = m.to_scale_rotation_translation();
        let t = Self {
            translation,
            rotation,
            scale,
        };
        t.is_finite().then_some(t)
    }

    /// True when every component is finite.
    pub fn is_finite(&self) -> bool {
        self.translation.is_finite() && self.rotation.is_finite() && self.scale.is_finite()
    }
}

/// An axis-aligned bounding box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aabb {
    /// Minimum corner.
    pub min: Vec3,
    /// Maximum corner.
    pub max: Vec3,
}

impl Default for Aabb {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Aabb {
    /// An empty box: `union` with anything gives that thing.
    pub const EMPTY: Self = Self {
        min: Vec3::splat(f32::INFINITY),
        max: Vec3::splat(f32::NEG_INFINITY),
    };

    /// True when the box contains no point.
    pub fn is_empty(&self) -> bool {
        self.min.x > self.max.x || self.min.y > self.max.y || self.min.z > self.max.z
    }

    /// The smallest box holding the given points.
    pub fn from_points(points: impl IntoIterator<Item = Vec3>) -> Self {
        points.into_iter().fold(Self::EMPTY, |b, p| Self {
            min: b.min.min(p),
            max: b.max.max(p),
        })
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &Self) -> Self {
        Self {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// The box after transforming its eight corners.
    pub fn transformed(&self, m: &Mat4) -> Self {
        if self.is_empty() {
            return *self;
        }
        // The box of the eight transformed corners, computed from the centre and half-extent
        // (Arvo): the same box for an affine matrix, without transforming eight points (this
        // runs for every drawable every frame).
        let center = m.transform_point3(self.center());
        let half = (self.max - self.min) * 0.5;
        let extent = m.x_axis.truncate().abs() * half.x
            + m.y_axis.truncate().abs() * half.y
            + m.z_axis.truncate().abs() * half.z;
        Self {
            min: center - extent,
            max: center + extent,
        }
    }

    /// Centre point.
    pub fn center(&self) -> Vec3 {
        (self.min + self.max) * 0.5
    }

    /// Extent along each axis.
    pub fn size(&self) -> Vec3 {
        self.max - self.min
    }
}

/// One draw's worth of triangles with one material. Attributes are de-interleaved and already
/// converted to f32 (quantized and normalized inputs are expanded at import).
#[derive(Debug, Clone, Default)]
pub struct Primitive {
    /// Vertex positions.
    pub positions: Vec<[f32; 3]>,
    /// Vertex normals, same length as `positions` (generated flat when the file has none).
    pub normals: Vec<[f32; 3]>,
    /// First UV set, same length as `positions` (zeros when the file has none).
    pub uvs: Vec<[f32; 2]>,
    /// Tangents (xyz, w = handedness ±1), same length as `positions` when the material has a
    /// normal map (from the file, else generated with MikkTSpace), or empty.
    pub tangents: Vec<[f32; 4]>,
    /// Second UV set (`TEXCOORD_1`), same length as `positions`, or empty.
    pub uvs1: Vec<[f32; 2]>,
    /// Vertex colours (`COLOR_0`, linear RGBA), same length as `positions`, or empty (white).
    pub colors: Vec<[f32; 4]>,
    /// Triangle list indices into the vertex arrays (generated when the file has none).
    pub indices: Vec<u32>,
    /// Index into [`Model::materials`]; `None` uses the glTF default material.
    pub material: Option<usize>,
    /// `KHR_materials_variants` mappings: (variant index into [`Model::variants`], material
    /// index) pairs; a variant not listed draws `material`.
    pub variant_materials: Vec<(usize, usize)>,
    /// Bounds of `positions` in the mesh's space.
    pub bounds: Aabb,
    /// Skin joints (`JOINTS_0`, indices into the node's skin), same length as `positions`, or
    /// empty when the primitive is not skinned.
    pub joints: Vec<[u16; 4]>,
    /// Skin weights (`WEIGHTS_0`, summing to 1), same length as `joints`.
    pub weights: Vec<[f32; 4]>,
    /// Morph targets, in the file's order.
    pub targets: Vec<MorphTarget>,
    /// Clusters and levels of detail, for large static primitives ([`crate::lod`]); their
    /// level 0 is `indices`, reordered cluster by cluster.
    pub lod: Option<std::sync::Arc<crate::lod::PrimitiveLod>>,
}

/// One morph target of a primitive: displacements added with the target's weight. Each list is
/// empty or as long as the primitive's positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MorphTarget {
    /// Position displacements.
    pub positions: Vec<[f32; 3]>,
    /// Normal displacements.
    pub normals: Vec<[f32; 3]>,
    /// Tangent displacements (xyz).
    pub tangents: Vec<[f32; 3]>,
}

/// A perspective camera of the file, on a node (it looks down the node's -Z, +Y up).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCamera {
    /// Name from the file, if any.
    pub name: Option<String>,
    /// The node holding it (index into [`Model::nodes`]).
    pub node: usize,
    /// Vertical field of view, radians.
    pub yfov: f32,
    /// Near plane.
    pub znear: f32,
    /// Far plane; `None` for an infinite projection.
    pub zfar: Option<f32>,
    /// Aspect ratio the file asks for.
    pub aspect_ratio: Option<f32>,
}

/// A glTF skin: the joints (nodes) whose motion deforms a mesh, with their inverse bind
/// matrices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skin {
    /// Name from the file, if any.
    pub name: Option<String>,
    /// Joint nodes (indices into [`Model::nodes`]); a vertex's joint index selects one.
    pub joints: Vec<usize>,
    /// One per joint: from the mesh's bind space to the joint's space.
    pub inverse_bind: Vec<glam::Mat4>,
}

impl Primitive {
    /// Number of triangles.
    pub fn triangle_count(&self) -> usize {
        self.indices.len() / 3
    }

    /// The material drawn for `variant` (an index into [`Model::variants`]): its
    /// `KHR_materials_variants` mapping, else [`Primitive::material`].
    pub fn material_for_variant(&self, variant: Option<u32>) -> Option<usize> {
        variant
            .and_then(|v| {
                self.variant_materials
                    .iter()
                    .find(|(var, _)| *var as u64 == u64::from(v))
            })
            .map_or(self.material, |(_, m)| Some(*m))
    }
}

/// A glTF mesh: a list of primitives drawn with the same node transform.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    /// Name from the file, if any.
    pub name: Option<String>,
    /// The primitives.
    pub primitives: Vec<Primitive>,
    /// Default morph target weights (as many as the primitives' targets; zeros when absent).
    pub weights: Vec<f32>,
}

/// How a texture is addressed outside 0..1 (glTF sampler `wrapS`/`wrapT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Wrap {
    /// Tiles (glTF's default).
    #[default]
    Repeat,
    /// Clamps to the edge texel.
    ClampToEdge,
    /// Tiles, mirrored every other time.
    MirroredRepeat,
}

/// Texel filter (glTF sampler `magFilter`/`minFilter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Nearest texel.
    Nearest,
    /// Bilinear (glTF's default when the file is silent).
    #[default]
    Linear,
}

/// A glTF sampler, reduced to what wgpu can express. Mipmaps are generated for every texture;
/// `mipmaps` false (a `minFilter` of NEAREST or LINEAR) samples only the top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sampler {
    /// U addressing.
    pub wrap_u: Wrap,
    /// V addressing.
    pub wrap_v: Wrap,
    /// Magnification filter.
    pub mag: Filter,
    /// Minification filter within a level.
    pub min: Filter,
    /// Filter between mip levels; `None` samples level 0 only.
    pub mipmap: Option<Filter>,
}

impl Default for Sampler {
    /// The sampler for a texture without one: repeat, trilinear.
    fn default() -> Self {
        Self {
            wrap_u: Wrap::Repeat,
            wrap_v: Wrap::Repeat,
            mag: Filter::Linear,
            min: Filter::Linear,
            mipmap: Some(Filter::Linear),
        }
    }
}

/// One texture reference of a material slot: which image, how it is sampled, which UV set and
/// which `KHR_texture_transform`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextureRef {
    /// Index into [`Model::textures`].
    pub texture: usize,
    /// How it is sampled.
    pub sampler: Sampler,
    /// UV set (0 or 1).
    pub tex_coord: u32,
    /// `KHR_texture_transform` as a 2x3 affine matrix, rows `[a, b, tx]`, `[c, d, ty]`:
    /// `uv' = (a u + b v + tx, c u + d v + ty)`.
    pub transform: [[f32; 3]; 2],
}

impl TextureRef {
    /// Image `texture` with the default sampler, UV set 0, no transform.
    pub fn new(texture: usize) -> Self {
        Self {
            texture,
            sampler: Sampler::default(),
            tex_coord: 0,
            transform: UV_IDENTITY,
        }
    }
}

/// `KHR_materials_clearcoat`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Clearcoat {
    /// Layer intensity, 0..1.
    pub factor: f32,
    /// Intensity texture (R).
    pub texture: Option<TextureRef>,
    /// Layer roughness, 0..1.
    pub roughness_factor: f32,
    /// Roughness texture (G).
    pub roughness_texture: Option<TextureRef>,
    /// Layer normal map (the base normal when absent).
    pub normal_texture: Option<TextureRef>,
    /// Layer normal map scale.
    pub normal_scale: f32,
}

/// `KHR_materials_sheen`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sheen {
    /// Linear sheen colour.
    pub color_factor: [f32; 3],
    /// Colour texture (sRGB, RGB).
    pub color_texture: Option<TextureRef>,
    /// Sheen roughness, 0..1.
    pub roughness_factor: f32,
    /// Roughness texture (A).
    pub roughness_texture: Option<TextureRef>,
}

/// `KHR_materials_specular`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Specular {
    /// Strength of the specular reflection, 0..1.
    pub factor: f32,
    /// Strength texture (A).
    pub texture: Option<TextureRef>,
    /// Linear F0 colour multiplier.
    pub color_factor: [f32; 3],
    /// Colour texture (sRGB, RGB).
    pub color_texture: Option<TextureRef>,
}

impl Default for Specular {
    fn default() -> Self {
        Self {
            factor: 1.0,
            texture: None,
            color_factor: [1.0; 3],
            color_texture: None,
        }
    }
}

/// `KHR_materials_transmission`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Transmission {
    /// Fraction of light transmitted, 0..1.
    pub factor: f32,
    /// Transmission texture (R).
    pub texture: Option<TextureRef>,
}

/// `KHR_materials_volume`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Volume {
    /// Thickness in the mesh's space (0: thin-walled).
    pub thickness_factor: f32,
    /// Thickness texture (G).
    pub thickness_texture: Option<TextureRef>,
    /// Distance light travels before it is attenuated to `attenuation_color` (∞ when absent).
    pub attenuation_distance: f32,
    /// Linear colour white light turns into after `attenuation_distance`.
    pub attenuation_color: [f32; 3],
}

impl Default for Volume {
    fn default() -> Self {
        Self {
            thickness_factor: 0.0,
            thickness_texture: None,
            attenuation_distance: f32::INFINITY,
            attenuation_color: [1.0; 3],
        }
    }
}

/// A glTF 2.0 metallic-roughness material with the `KHR_materials_*` extensions the renderer
/// draws. Texture slots say which channels they read, as the specification does.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    /// Name from the file, if any.
    pub name: Option<String>,
    /// Linear base colour factor (RGBA).
    pub base_color_factor: [f32; 4],
    /// Base colour texture (sRGB, RGBA).
    pub base_color_texture: Option<TextureRef>,
    /// Metallic factor.
    pub metallic_factor: f32,
    /// Roughness factor.
    pub roughness_factor: f32,
    /// Metallic (B) and roughness (G) texture, linear.
    pub metallic_roughness_texture: Option<TextureRef>,
    /// Tangent-space normal map, linear.
    pub normal_texture: Option<TextureRef>,
    /// Normal map `scale`.
    pub normal_scale: f32,
    /// Ambient occlusion (R), linear.
    pub occlusion_texture: Option<TextureRef>,
    /// Occlusion `strength`, 0..1.
    pub occlusion_strength: f32,
    /// Emissive factor (linear RGB), already multiplied by `KHR_materials_emissive_strength`.
    pub emissive_factor: [f32; 3],
    /// Emissive texture (sRGB, RGB).
    pub emissive_texture: Option<TextureRef>,
    /// When true, back faces are drawn too.
    pub double_sided: bool,
    /// How alpha is used.
    pub alpha_mode: AlphaMode,
    /// `MASK` threshold.
    pub alpha_cutoff: f32,
    /// `KHR_materials_unlit`: base colour only, no lighting.
    pub unlit: bool,
    /// `KHR_materials_ior` (1.5 by default).
    pub ior: f32,
    /// `KHR_materials_specular`.
    pub specular: Option<Specular>,
    /// `KHR_materials_clearcoat`.
    pub clearcoat: Option<Clearcoat>,
    /// `KHR_materials_sheen`.
    pub sheen: Option<Sheen>,
    /// `KHR_materials_transmission`.
    pub transmission: Option<Transmission>,
    /// `KHR_materials_volume`.
    pub volume: Option<Volume>,
}

/// glTF alpha modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AlphaMode {
    /// Alpha ignored.
    #[default]
    Opaque,
    /// Fragments with alpha below the cutoff are discarded.
    Mask,
    /// Blended over what is behind (drawn after opaque geometry, far to near).
    Blend,
}

/// The identity UV transform.
pub const UV_IDENTITY: [[f32; 3]; 2] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];

impl Material {
    /// The normal maps a primitive drawn with this material samples (base, then clearcoat):
    /// when there is one, the primitive carries tangents.
    pub fn normal_maps(&self) -> impl Iterator<Item = &TextureRef> {
        self.normal_texture
            .iter()
            .chain(self.clearcoat.iter().flat_map(|c| c.normal_texture.iter()))
    }
}

impl Default for Material {
    fn default() -> Self {
        Self {
            name: None,
            base_color_factor: [1.0; 4],
            base_color_texture: None,
            metallic_factor: 1.0,
            roughness_factor: 1.0,
            metallic_roughness_texture: None,
            normal_texture: None,
            normal_scale: 1.0,
            occlusion_texture: None,
            occlusion_strength: 1.0,
            emissive_factor: [0.0; 3],
            emissive_texture: None,
            double_sided: false,
            alpha_mode: AlphaMode::Opaque,
            alpha_cutoff: 0.5,
            unlit: false,
            ior: 1.5,
            specular: None,
            clearcoat: None,
            sheen: None,
            transmission: None,
            volume: None,
        }
    }
}

/// A decoded image as tightly packed RGBA8 rows, stored as in the file: the material slot that
/// samples it says whether the bytes are sRGB (colour slots) or linear (data slots).
#[derive(Clone, PartialEq)]
pub struct Texture {
    /// Name from the file, if any.
    pub name: Option<String>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba8: Vec<u8>,
    /// The KTX2 container (`KHR_texture_basisu`) `rgba8` was transcoded from, checked at
    /// import: a renderer whose adapter samples a block-compressed format (BC7, ASTC, ETC2)
    /// transcodes this to it instead of uploading `rgba8` (a quarter of the GPU memory, and
    /// the file's own mipmaps).
    pub basis: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for Texture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Texture")
            .field("name", &self.name)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// A node of the imported hierarchy.
#[derive(Debug, Clone, Default)]
pub struct ModelNode {
    /// Name from the file, if any.
    pub name: Option<String>,
    /// Local transform.
    pub local: Transform,
    /// Index into [`Model::meshes`].
    pub mesh: Option<usize>,
    /// Indices into [`Model::nodes`]; the hierarchy is a forest (import rejects cycles).
    pub children: Vec<usize>,
    /// Index into [`Model::skins`] when the node's mesh is skinned.
    pub skin: Option<usize>,
    /// Morph weights of this node's mesh instance, overriding the mesh's defaults.
    pub weights: Option<Vec<f32>>,
}

/// An imported model: immutable CPU assets plus the node tree of its default scene.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Meshes.
    pub meshes: Vec<Mesh>,
    /// Materials.
    pub materials: Vec<Material>,
    /// Decoded textures.
    pub textures: Vec<Texture>,
    /// Nodes; `roots` index into this.
    pub nodes: Vec<ModelNode>,
    /// Root nodes of the default scene.
    pub roots: Vec<usize>,
    /// `KHR_materials_variants` names, in index order (empty without the extension).
    pub variants: Vec<String>,
    /// Skins.
    pub skins: Vec<Skin>,
    /// Keyframe animations.
    pub animations: Vec<crate::animation::Animation>,
    /// Perspective cameras, in node order.
    pub cameras: Vec<ModelCamera>,
    /// Extensions the file uses that the host ignores (reported to the client).
    pub ignored_extensions: Vec<String>,
    /// What the file holds beyond drawable geometry.
    pub extras: ModelExtras,
}

/// A summary of what a file holds beyond drawable geometry (counts and names, for the load
/// result), and what import had to leave out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelExtras {
    /// Animation names (index order; unnamed ones as `animation N`).
    pub animations: Vec<String>,
    /// Skins.
    pub skins: u32,
    /// Morph targets over all primitives.
    pub morph_targets: u32,
    /// Cameras.
    pub cameras: u32,
    /// `KHR_lights_punctual` lights with the node that holds them (light space: the node's
    /// origin, shining down its -Z).
    pub lights: Vec<(usize, crate::Light)>,
    /// Parts not drawn, for the load result (e.g. line or point primitives).
    pub warnings: Vec<String>,
}

impl Model {
    /// Triangles over all meshes (each mesh counted once, however many nodes draw it).
    pub fn triangle_count(&self) -> usize {
        self.meshes
            .iter()
            .flat_map(|m| &m.primitives)
            .map(Primitive::triangle_count)
            .sum()
    }

    /// Vertices over all meshes.
    pub fn vertex_count(&self) -> usize {
        self.meshes
            .iter()
            .flat_map(|m| &m.primitives)
            .map(|p| p.positions.len())
            .sum()
    }
}

#[cfg(test)]
mod aabb_tests {
    use super::Aabb;
    use glam::{Mat4, Quat, Vec3};

    /// The centre-and-extent transform gives the box of the eight transformed corners.
    #[test]
    fn transformed_boxes_hold_their_transformed_corners_exactly() {
        let b = Aabb {
            min: Vec3::new(-1.0, 0.5, -3.0),
            max: Vec3::new(2.0, 4.0, 1.5),
        };
        for (i, scale) in [
            Vec3::ONE,
            Vec3::new(2.0, 0.5, 3.0),
            Vec3::new(-1.0, 1.0, 2.0),
        ]
        .into_iter()
        .enumerate()
        {
            let m = Mat4::from_scale_rotation_translation(
                scale,
                Quat::from_euler(glam::EulerRot::XYZ, 0.3 * i as f32, 1.1, -0.7),
                Vec3::new(5.0, -2.0, 0.25),
            );
            let corners = Aabb::from_points((0..8).map(|k| {
                m.transform_point3(Vec3::new(
                    if k & 1 == 0 { b.min.x } else { b.max.x },
                    if k & 2 == 0 { b.min.y } else { b.max.y },
                    if k & 4 == 0 { b.min.z } else { b.max.z },
                ))
            }));
            let t = b.transformed(&m);
            assert!(
                (t.min - corners.min).abs().max_element() < 1e-5
                    && (t.max - corners.max).abs().max_element() < 1e-5,
                "{t:?} vs {corners:?}"
            );
        }
        assert!(Aabb::EMPTY.transformed(&Mat4::IDENTITY).is_empty());
    }
}
