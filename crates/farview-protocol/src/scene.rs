//! Wire types of the scene API: entities, overrides, lights, cut planes and queries. They mirror
//! `farview-scene`'s types but stay plain data (arrays, not math types), so the protocol crate
//! needs nothing but serde and a client in another language can be written from the spec.

use serde::{Deserialize, Serialize};

/// Most transform updates in one [`crate::Request::SetTransforms`].
pub const MAX_TRANSFORM_BATCH: usize = 16_384;
/// Most hits a raycast returns.
pub const MAX_RAY_HITS: usize = 256;
/// Most children listed by [`crate::Request::GetChildren`] (the reply says when there are more).
pub const MAX_CHILDREN_LISTED: usize = 4096;

/// A local transform: translation, rotation quaternion (x, y, z, w), scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntityTransform {
    /// Translation (metres, parent space).
    pub position: [f32; 3],
    /// Rotation (unit quaternion x, y, z, w).
    pub rotation: [f32; 4],
    /// Scale per axis.
    pub scale: [f32; 3],
}

impl EntityTransform {
    /// No translation, rotation or scaling.
    pub const IDENTITY: Self = Self {
        position: [0.0; 3],
        rotation: [0.0, 0.0, 0.0, 1.0],
        scale: [1.0; 3],
    };

    /// A pure translation.
    pub fn at(position: [f32; 3]) -> Self {
        Self {
            position,
            ..Self::IDENTITY
        }
    }
}

/// One entry of a transform batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransformUpdate {
    /// Entity id.
    pub entity: u64,
    /// Its new local transform.
    pub transform: EntityTransform,
}

/// Hierarchical state override; `None` fields inherit from the parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StateOverride {
    /// Not drawn and not hit by raycasts.
    pub hidden: Option<bool>,
    /// Drawn semi-transparent.
    pub see_through: Option<bool>,
    /// Drawn highlighted.
    pub selected: Option<bool>,
    /// Linear RGB multiplier and mix amount, each in [0, 1].
    pub tint: Option<[f32; 4]>,
    /// `KHR_materials_variants` variant to draw: an index into the model's
    /// [`LoadedModel::variants`](crate::LoadedModel::variants). Primitives without a mapping for
    /// it (and models with fewer variants) draw their default material.
    pub variant: Option<u32>,
}

/// Material inputs replaced for an entity's subtree; `None` keeps the asset's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MaterialOverride {
    /// Linear RGBA base colour factor, each in [0, 1].
    pub base_color: Option<[f32; 4]>,
    /// Metallic factor in [0, 1].
    pub metallic: Option<f32>,
    /// Roughness factor in [0, 1].
    pub roughness: Option<f32>,
    /// Emissive linear RGB, ≥ 0.
    pub emissive: Option<[f32; 3]>,
}

/// Kind of light (as `KHR_lights_punctual`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LightKind {
    /// Parallel rays along `direction`.
    Directional,
    /// From `position` in every direction.
    Point,
    /// A cone from `position` along `direction`; half-angles in radians.
    Spot {
        /// Full intensity inside this half-angle.
        inner_cone: f32,
        /// Zero outside this half-angle (≤ π/2).
        outer_cone: f32,
    },
}

/// A light.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Light {
    /// Kind.
    pub kind: LightKind,
    /// Linear RGB in [0, 1].
    pub color: [f32; 3],
    /// Intensity ≥ 0 (a surface facing the light receives `color * intensity`; point and spot
    /// lights fall off with the inverse square of the distance).
    pub intensity: f32,
    /// World position (point, spot).
    pub position: [f32; 3],
    /// Direction the light travels (directional, spot).
    pub direction: [f32; 3],
    /// Distance at which point and spot lights reach zero; `None` for none.
    pub range: Option<f32>,
}

/// A cut plane: points with `dot(normal, p) > distance` are not drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CutPlane {
    /// Normal pointing into the cut-away half-space (normalised by the host).
    pub normal: [f32; 3],
    /// Offset along the normal.
    pub distance: f32,
}

/// A ray query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RayQuery {
    /// World origin.
    pub origin: [f32; 3],
    /// Direction (normalised by the host; must be non-zero).
    pub direction: [f32; 3],
    /// Hits beyond this distance are ignored (> 0).
    pub max_distance: f32,
    /// Every hit (nearest first, at most [`MAX_RAY_HITS`]) instead of only the closest.
    pub all: bool,
}

/// A raycast hit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RayHit {
    /// Entity whose mesh was hit.
    pub entity: u64,
    /// World position.
    pub position: [f32; 3],
    /// World normal facing the ray.
    pub normal: [f32; 3],
    /// Distance from the origin.
    pub distance: f32,
}

/// One entity in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityNode {
    /// Entity id.
    pub entity: u64,
    /// Parent id (`None` for a root).
    pub parent: Option<u64>,
    /// Name.
    pub name: Option<String>,
    /// Whether it draws a mesh.
    pub has_mesh: bool,
}

/// An entity's bounds; `None` when its subtree has no geometry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntityBounds {
    /// In the entity's own space: (min, max).
    pub local: Option<([f32; 3], [f32; 3])>,
    /// In world space: (min, max).
    pub world: Option<([f32; 3], [f32; 3])>,
}

/// Scene statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneStats {
    /// Live entities.
    pub entities: u64,
    /// Triangles drawn by visible entities.
    pub triangles: u64,
    /// Models whose assets are loaded.
    pub models: u64,
    /// Lights.
    pub lights: u64,
    /// Cut planes.
    pub cut_planes: u64,
    /// GPU memory the session's renderer holds, bytes.
    pub gpu_bytes: u64,
}

/// One animation of a loaded model (version 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnimationInfo {
    /// Name from the file, or `animation N`.
    pub name: String,
    /// Length in seconds.
    pub duration_s: f32,
}

/// What to do with a model instance's animation (version 5). One animation plays per instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum AnimationCommand {
    /// Starts animation `index` (of [`crate::Reply::Animations`]) at `start_s` seconds.
    Play {
        /// Which animation.
        index: u32,
        /// Rate: 1 is real time, negative plays backwards.
        speed: f32,
        /// Wrap at the ends; otherwise it stops at the end it plays towards.
        looping: bool,
        /// Start time, seconds (clamped to the animation).
        start_s: f32,
    },
    /// Stops time; the pose stays.
    Pause,
    /// Lets time run again.
    Resume,
    /// Jumps to a time, seconds (clamped to the animation).
    Seek {
        /// The time.
        time_s: f32,
    },
    /// Changes the rate.
    SetSpeed {
        /// Rate: 1 is real time, negative plays backwards.
        speed: f32,
    },
    /// Stops the animation; the model returns to its rest pose.
    Stop,
}

/// Where a model instance's animation is (version 5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnimationState {
    /// The animation set, if any.
    pub index: Option<u32>,
    /// Its time, seconds.
    pub time_s: f32,
    /// Its rate.
    pub speed: f32,
    /// Whether time runs.
    pub playing: bool,
    /// Whether it wraps at the ends.
    pub looping: bool,
}

/// A camera defined in a glTF file, as placed in the scene (version 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCamera {
    /// Name from the file.
    pub name: Option<String>,
    /// The entity of the node holding it (it looks down that node's -Z).
    pub entity: u64,
    /// Vertical field of view, radians (only perspective cameras are listed).
    pub yfov: f32,
    /// Near plane.
    pub znear: f32,
    /// Far plane (`None`: infinite in the file; the host picks one from the scene's bounds).
    pub zfar: Option<f32>,
    /// Aspect ratio the file asks for, if any (the stream keeps its own).
    pub aspect_ratio: Option<f32>,
}
