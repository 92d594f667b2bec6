//! The scene a Farview session renders: entities with a parent/child hierarchy and local
//! transforms, the CPU-side model assets they draw, and glTF import into those assets.
//!
//! Nothing here touches a GPU or a socket: import takes bytes plus a resolver for external URIs
//! (like rend3's `load_gltf`), so it is testable on its own and hostile files are rejected before
//! anything is allocated for them.

pub mod animation;
mod import;
pub mod lod;
mod model;
mod raycast;
mod scene;
mod state;
pub mod synthetic;

pub use import::{
    ImportError, ImportErrorKind, ImportLimits, ImportProblem, import_file, import_file_with,
    import_gltf, import_gltf_with,
};
pub use model::{
    Aabb, AlphaMode, Clearcoat, Filter, Material, Mesh, Model, ModelCamera, ModelExtras, ModelNode,
    MorphTarget, Primitive, Sampler, Sheen, Skin, Specular, Texture, TextureRef, Transform,
    Transmission, UV_IDENTITY, Volume, Wrap,
};
pub use raycast::{Bvh, Ray};
pub use scene::{
    AnimationCommand, AnimationInfo, AnimationState, CutPlaneId, DeformBounds, DeformInputs,
    Deformed, DeformedPrimitive, Drawable, DrawablesKey, Entity, EntityId, HierarchyEntry, Hit,
    IdHash, IdHasher, LightId, MAX_ANIMATION_SPEED, MAX_CUT_PLANES, MAX_LIGHTS, ModelId, ModelInfo,
    Scene, SceneError, SceneStats, ViewFit,
};
pub use state::{CutPlane, DrawState, Light, LightKind, MaterialOverride, StateOverride};
