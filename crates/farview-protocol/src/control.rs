//! Control-stream messages: requests from the device, replies and events from the host.
//!
//! Every request carries a sequence number chosen by the device (strictly increasing); its reply
//! echoes it, and media frame headers name the last sequence number applied, so a device knows
//! when a change is visible. Field order is part of the wire format (see `docs/protocol.md`):
//! append new variants and fields at the end only.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;
use crate::look::{LookState, LookUpdate};
use crate::scene::{
    AnimationCommand, AnimationInfo, AnimationState, CutPlane, EntityBounds, EntityNode,
    EntityTransform, Light, MaterialOverride, ModelCamera, RayHit, RayQuery, SceneStats,
    StateOverride, TransformUpdate,
};

/// A message from the device on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMessage {
    /// Device-chosen, strictly increasing sequence number.
    pub seq: u64,
    /// What the device asks for.
    pub request: Request,
}

/// Requests a device can make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Must be the first message; the host answers [`Reply::Welcome`] and starts streaming.
    Hello {
        /// The protocol version the device speaks.
        version: u16,
        /// Free-form client name and version, for logs.
        client: String,
        /// The session to bind; `None` asks for an ad-hoc stream (when the host allows them).
        session: Option<SessionAuth>,
    },
    /// Load a glTF model from a path relative to the host's assets root.
    LoadModel {
        /// Relative path, `/`-separated.
        path: String,
    },
    /// Set the camera used for the next frames.
    SetCamera {
        /// The new pose and projection.
        pose: CameraPose,
    },
    /// Ask for the next frame to be an IDR (after the device's decoder lost state).
    RequestKeyframe,
    /// Liveness and clock probe.
    Ping,
    /// Read the session's lease.
    GetLease,
    /// Set the session's lease length, counted from its creation (extend or shorten; never
    /// below the time already used).
    SetLease {
        /// New lease length in milliseconds.
        max_lease_ms: u64,
    },
    /// Create an empty entity (a group node to parent others under).
    CreateEntity {
        /// Parent entity, or `None` for a root.
        parent: Option<u64>,
        /// Name (at most 256 bytes).
        name: Option<String>,
        /// Local transform.
        transform: EntityTransform,
    },
    /// Destroy an entity and its whole subtree.
    DestroyEntity {
        /// Entity id.
        entity: u64,
    },
    /// Move an entity under another parent (or to the roots).
    Reparent {
        /// The entity moved.
        entity: u64,
        /// New parent, `None` for a root.
        parent: Option<u64>,
        /// Keep its world transform (recompute the local one) instead of its local transform.
        keep_world: bool,
    },
    /// Set local transforms of many entities at once; all or nothing.
    SetTransforms {
        /// At most [`crate::MAX_TRANSFORM_BATCH`] updates.
        updates: Vec<TransformUpdate>,
    },
    /// Show or hide an entity's subtree.
    SetVisible {
        /// Entity id.
        entity: u64,
        /// Drawn or not.
        visible: bool,
    },
    /// Replace an entity's hierarchical state override.
    SetStateOverride {
        /// Entity id.
        entity: u64,
        /// The override; unset fields inherit.
        state: StateOverride,
    },
    /// Replace an entity's material override.
    SetMaterialOverride {
        /// Entity id.
        entity: u64,
        /// The override; unset fields keep the asset's value.
        material: MaterialOverride,
    },
    /// Add a light; answered with [`Reply::LightAdded`].
    AddLight {
        /// The light.
        light: Light,
    },
    /// Replace a light.
    UpdateLight {
        /// Light id, as `LightAdded` returned it.
        id: u32,
        /// The light.
        light: Light,
    },
    /// Remove a light.
    RemoveLight {
        /// Light id.
        id: u32,
    },
    /// Add a cut plane; answered with [`Reply::CutPlaneAdded`].
    AddCutPlane {
        /// The plane.
        plane: CutPlane,
    },
    /// Move a cut plane.
    UpdateCutPlane {
        /// Plane id.
        id: u32,
        /// The plane.
        plane: CutPlane,
    },
    /// Remove a cut plane.
    RemoveCutPlane {
        /// Plane id.
        id: u32,
    },
    /// List an entity's children.
    GetChildren {
        /// Entity id.
        entity: u64,
    },
    /// An entity's local and world bounds.
    GetBounds {
        /// Entity id.
        entity: u64,
    },
    /// Cast a ray into the scene.
    Raycast {
        /// The ray.
        ray: RayQuery,
    },
    /// Scene statistics.
    GetStats,
    /// Load a model whose bytes the device sent on an upload stream (see `docs/protocol.md`).
    LoadUploadedModel {
        /// The upload id the device wrote in the stream's header.
        upload: u64,
        /// Name for the model's root entity and logs.
        name: String,
    },
    /// Cancel the model load started by the request with this sequence number.
    CancelLoad {
        /// The `LoadModel`, `LoadUploadedModel` (or `SetLook`) request's sequence number.
        load_seq: u64,
    },
    /// Change the look (environment, background, exposure, tone mapping, outline) from the next
    /// frame on; answered with [`Reply::Applied`]. An environment not loaded yet is loaded and
    /// prefiltered off the render loop first (frames keep the old look meanwhile), so requests
    /// after it wait as behind a model load.
    SetLook(LookUpdate),
    /// The current look; answered with [`Reply::Look`].
    GetLook,
    /// Point the camera at an entity's subtree (or the whole scene) so it fills the view, keeping
    /// the camera's field of view; answered with [`Reply::CameraFitted`].
    FitView {
        /// The entity to frame; `None` frames every root.
        entity: Option<u64>,
        /// Where the camera looks from, relative to the framed bounds' centre (any length but
        /// zero); `None` is [`FIT_VIEW_DIRECTION`]: the front, slightly above.
        direction: Option<[f32; 3]>,
    },
    /// The models a device may load: glTF files under the host's assets root (version 4);
    /// answered with [`Reply::Models`].
    ListModels,
    /// The animations of the model whose root entity is `root` (version 5); answered with
    /// [`Reply::Animations`].
    ListAnimations {
        /// A model's root entity (`LoadedModel::root_entity`).
        root: u64,
    },
    /// Plays, pauses, seeks, re-times or stops the animation of the model rooted at `root`
    /// (version 5); answered with [`Reply::AnimationState`]. Frames with
    /// `last_command_seq >= seq` show the change.
    Animate {
        /// A model's root entity.
        root: u64,
        /// What to do.
        command: AnimationCommand,
    },
    /// Looks through camera `camera` (an index into `LoadedModel::camera_list`) of the model
    /// rooted at `root`, as it is placed now (version 5); answered with
    /// [`Reply::CameraFitted`] holding the pose in use.
    ViewCamera {
        /// A model's root entity.
        root: u64,
        /// Index into the model's cameras.
        camera: u32,
    },
}

/// The direction [`Request::FitView`] frames from by default: +Z (the front in glTF), a little
/// above.
pub const FIT_VIEW_DIRECTION: [f32; 3] = [0.0, 0.25, 1.0];

/// Where a host handles a request. Every request has exactly one route, decided by an
/// exhaustive match, so a new request cannot fall through a catch-all arm unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Opens the connection; valid only as the first message.
    Hello,
    /// Answered by the connection without touching the scene, and never held back behind a
    /// model load (ping, keyframe request, lease, load cancellation).
    Connection,
    /// Starts work off the render loop (a model load, or a look change that may load an
    /// environment); scene requests that follow wait until it finishes.
    Load,
    /// Applied by the render thread in request order: camera, scene commands and queries.
    Scene,
}

impl Request {
    /// Where this request is handled.
    pub fn route(&self) -> Route {
        match self {
            Self::Hello { .. } => Route::Hello,
            Self::Ping
            | Self::RequestKeyframe
            | Self::GetLease
            | Self::SetLease { .. }
            | Self::CancelLoad { .. }
            | Self::ListModels => Route::Connection,
            Self::LoadModel { .. } | Self::LoadUploadedModel { .. } | Self::SetLook(_) => {
                Route::Load
            }
            Self::SetCamera { .. }
            | Self::CreateEntity { .. }
            | Self::DestroyEntity { .. }
            | Self::Reparent { .. }
            | Self::SetTransforms { .. }
            | Self::SetVisible { .. }
            | Self::SetStateOverride { .. }
            | Self::SetMaterialOverride { .. }
            | Self::AddLight { .. }
            | Self::UpdateLight { .. }
            | Self::RemoveLight { .. }
            | Self::AddCutPlane { .. }
            | Self::UpdateCutPlane { .. }
            | Self::RemoveCutPlane { .. }
            | Self::GetChildren { .. }
            | Self::GetBounds { .. }
            | Self::Raycast { .. }
            | Self::GetStats
            | Self::GetLook
            | Self::FitView { .. }
            | Self::ListAnimations { .. }
            | Self::Animate { .. }
            | Self::ViewCamera { .. } => Route::Scene,
        }
    }
}

/// How a device proves it may bind a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAuth {
    /// Session UUID (hyphenated).
    pub id: String,
    /// The connection token from the session API.
    pub token: String,
    /// The resume secret from an earlier `Welcome`, to reconnect after a drop.
    pub resume_secret: Option<String>,
}

/// Camera pose and projection. Rotation is a unit quaternion (x, y, z, w); the camera looks down
/// its local -Z with +Y up, as in glTF.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraPose {
    /// Position in world space (metres).
    pub position: [f32; 3],
    /// Orientation quaternion (x, y, z, w).
    pub rotation: [f32; 4],
    /// Vertical field of view in radians, in (0, π).
    pub fov_y: f32,
    /// Near plane distance, > 0.
    pub near: f32,
    /// Far plane distance, > near.
    pub far: f32,
}

impl CameraPose {
    /// Checks the values a renderer needs to be sane; returns a message for the device if not.
    pub fn validate(&self) -> Result<(), String> {
        let all =
            self.position
                .iter()
                .chain(&self.rotation)
                .chain([&self.fov_y, &self.near, &self.far]);
        if !all.into_iter().all(|v| v.is_finite()) {
            return Err("camera pose has non-finite values".into());
        }
        let len2: f32 = self.rotation.iter().map(|v| v * v).sum();
        if !(0.5..=1.5).contains(&len2) {
            return Err(format!(
                "camera rotation must be a unit quaternion (squared length {len2})"
            ));
        }
        if !(self.fov_y > 0.0 && self.fov_y < std::f32::consts::PI) {
            return Err(format!(
                "fov_y must be in (0, pi) radians, got {}",
                self.fov_y
            ));
        }
        if !(self.near > 0.0 && self.far > self.near) {
            return Err(format!(
                "need 0 < near < far, got near {} far {}",
                self.near, self.far
            ));
        }
        Ok(())
    }
}

/// A message from the host on the control stream.
// Control messages are built once per request, not per frame: the size of the largest reply
// (a model load's) costs nothing that boxing it would save, and would change the public type.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to the request with sequence number `seq`.
    Reply {
        /// The request's sequence number.
        seq: u64,
        /// The outcome.
        result: Result<Reply, WireError>,
    },
    /// Something the host tells the device unprompted.
    Event(Event),
}

/// Successful replies, one per request kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to `Hello`.
    Welcome(StreamInfo),
    /// Answer to `LoadModel`.
    ModelLoaded(LoadedModel),
    /// Answer to `SetCamera`: frames with `last_command_seq >= seq` use the new pose.
    CameraSet,
    /// Answer to `RequestKeyframe`.
    KeyframeScheduled,
    /// Answer to `Ping`, with the host's wall clock in microseconds since the Unix epoch.
    Pong {
        /// Host wall clock.
        host_time_us: u64,
    },
    /// Answer to `GetLease` and `SetLease`.
    Lease(LeaseInfo),
    /// Answer to `CreateEntity`.
    EntityCreated {
        /// The new entity's id.
        entity: u64,
    },
    /// Answer to `DestroyEntity`.
    Destroyed {
        /// Entities removed (the subtree's size).
        entities: u64,
    },
    /// Answer to commands that return nothing else: `Reparent`, `SetTransforms`, `SetVisible`,
    /// `SetStateOverride`, `SetMaterialOverride`, `UpdateLight`, `RemoveLight`,
    /// `UpdateCutPlane`, `RemoveCutPlane`, `SetLook`. Frames with `last_command_seq >= seq` show
    /// it.
    Applied,
    /// Answer to `AddLight`.
    LightAdded {
        /// The light's id.
        id: u32,
    },
    /// Answer to `AddCutPlane`.
    CutPlaneAdded {
        /// The plane's id.
        id: u32,
    },
    /// Answer to `GetChildren`.
    Children {
        /// The children, in order.
        children: Vec<EntityNode>,
        /// True when there were more than [`crate::MAX_CHILDREN_LISTED`].
        truncated: bool,
    },
    /// Answer to `GetBounds`.
    Bounds(EntityBounds),
    /// Answer to `Raycast`: hits, nearest first.
    Hits(Vec<RayHit>),
    /// Answer to `GetStats`.
    Stats(SceneStats),
    /// Answer to `CancelLoad`: the load was stopped (its own request gets an error reply).
    LoadCancelled,
    /// Answer to `GetLook`.
    Look(LookState),
    /// Answer to `FitView`: the camera pose now in use (frames with `last_command_seq >= seq`
    /// use it).
    CameraFitted(CameraPose),
    /// Answer to `ListModels`: paths to give `LoadModel`, sorted.
    Models {
        /// At most [`crate::MAX_MODELS_LISTED`].
        models: Vec<ModelFile>,
        /// True when there were more.
        truncated: bool,
    },
    /// Answer to `ListAnimations`.
    Animations(Vec<AnimationInfo>),
    /// Answer to `Animate`: the state after the command.
    AnimationState(AnimationState),
}

/// A model file a host offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Path under the assets root, `/`-separated: what `LoadModel` takes.
    pub path: String,
    /// Size of the file in bytes (a `.gltf`'s buffers and images are separate files).
    pub bytes: u64,
}

/// A session's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Lease length from creation, ms.
    pub max_lease_ms: u64,
    /// Time used, ms.
    pub elapsed_ms: u64,
    /// Time left, ms.
    pub remaining_ms: u64,
}

/// What the stream will look like, sent in [`Reply::Welcome`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Protocol version of the host.
    pub version: u16,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Target frame rate.
    pub fps: f32,
    /// Codec of the media streams; `"h264"` (Annex-B, constrained baseline, BT.709 limited range).
    pub codec: String,
    /// Host software name and version.
    pub host: String,
    /// The GPU adapter the host renders with.
    pub adapter: String,
    /// The session bound, if any.
    pub session_id: Option<String>,
    /// Secret to present (in `SessionAuth`) when reconnecting after a drop. Sent on the first
    /// bind only; keep it.
    pub resume_secret: Option<String>,
    /// The lease at bind time.
    pub lease: Option<LeaseInfo>,
}

/// What a model load produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    /// Entity id of the model's root.
    pub root_entity: u64,
    /// World-space bounds, minimum corner.
    pub bounds_min: [f32; 3],
    /// World-space bounds, maximum corner.
    pub bounds_max: [f32; 3],
    /// Triangles drawn by the model.
    pub triangles: u64,
    /// Vertices of its meshes.
    pub vertices: u64,
    /// Textures it holds.
    pub textures: u32,
    /// Entities created for it.
    pub entities: u32,
    /// Extensions in the file the host ignored.
    pub ignored_extensions: Vec<String>,
    /// Time the host spent importing and uploading it, in microseconds.
    pub load_time_us: u64,
    /// Every entity created for it, parents before children (the root first).
    pub hierarchy: Vec<EntityNode>,
    /// True when the model's assets were already loaded in this session and are shared.
    pub shared_assets: bool,
    /// Animation names, in the order `Animate` indexes them (version 5: they play).
    pub animations: Vec<String>,
    /// Skins.
    pub skins: u32,
    /// Morph targets over all primitives.
    pub morph_targets: u32,
    /// Cameras defined in the file.
    pub cameras: u32,
    /// `KHR_lights_punctual` lights in the file (added to the scene while there is room).
    pub lights: u32,
    /// Warnings for parts not drawn (e.g. line or point primitives).
    pub warnings: Vec<String>,
    /// `KHR_materials_variants` names, in index order (the index is what
    /// [`StateOverride::variant`] selects); empty without the extension.
    pub variants: Vec<String>,
    /// The file's perspective cameras, in the order `ViewCamera` indexes them (version 5).
    pub camera_list: Vec<ModelCamera>,
}

/// Events the host sends without a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The host is about to close the connection, and why.
    Closing(WireError),
    /// Progress of a model load.
    LoadProgress {
        /// The load request's sequence number.
        seq: u64,
        /// 0 to 100.
        percent: u8,
    },
}

/// A typed error with a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl WireError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
