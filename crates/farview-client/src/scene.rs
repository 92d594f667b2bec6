//! The scene API of a connection: entities, overrides, lights, cut planes, queries, model
//! loads (from the host's assets or uploaded bytes), the look (environment, background, tone
//! mapping) and framing, as typed async methods and an [`Entity`] handle.
//!
//! ```no_run
//! # async fn demo(conn: farview_client::Connection) -> Result<(), farview_client::ClientError> {
//! use farview_client::{EntityTransform, StateOverride};
//!
//! let model = conn.load_model("Fox/Fox.glb").await?;
//! let fox = conn.entity(model.root_entity);
//! fox.set_transform(EntityTransform::at([0.0, 0.0, -2.0])).await?;
//! fox.set_state(StateOverride { tint: Some([1.0, 0.0, 0.0, 1.0]), ..Default::default() })
//!     .await?;
//! let group = conn.create_entity(None, Some("group"), EntityTransform::IDENTITY).await?;
//! fox.reparent(Some(group.id()), true).await?;
//! let hits = conn.raycast([0.0, 1.0, 5.0], [0.0, 0.0, -1.0], 100.0, false).await?;
//! # let _ = hits;
//! # Ok(()) }
//! ```

use std::sync::atomic::Ordering;

use farview_protocol::{
    AnimationCommand, AnimationInfo, AnimationState, CameraPose, CutPlane, EntityBounds,
    EntityNode, EntityTransform, Light, LoadedModel, LookState, LookUpdate, MaterialOverride,
    RayHit, RayQuery, Reply, Request, SceneStats, StateOverride, TransformUpdate, UPLOAD_MAGIC,
};

use crate::connection::PendingReply;
use crate::{ClientError, Connection};

fn unexpected(want: &str, got: Reply) -> ClientError {
    ClientError::Protocol(format!("expected {want}, got {got:?}"))
}

/// A handle on one entity of the connection's scene. Copyable; it does not keep the entity
/// alive (a destroyed entity's methods fail with `entity_not_found`).
#[derive(Debug, Clone, Copy)]
pub struct Entity<'a> {
    conn: &'a Connection,
    id: u64,
}

impl Entity<'_> {
    /// The entity id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sets its local transform; returns the sequence number frames will name once it shows.
    pub async fn set_transform(&self, transform: EntityTransform) -> Result<u64, ClientError> {
        self.conn
            .set_transforms(vec![TransformUpdate {
                entity: self.id,
                transform,
            }])
            .await
    }

    /// Shows or hides its subtree.
    pub async fn set_visible(&self, visible: bool) -> Result<u64, ClientError> {
        self.conn
            .applied(Request::SetVisible {
                entity: self.id,
                visible,
            })
            .await
    }

    /// Replaces its hierarchical state override.
    pub async fn set_state(&self, state: StateOverride) -> Result<u64, ClientError> {
        self.conn
            .applied(Request::SetStateOverride {
                entity: self.id,
                state,
            })
            .await
    }

    /// Draws its subtree in `KHR_materials_variants` variant `variant` (an index into
    /// [`LoadedModel::variants`]), or in the default materials with `None`.
    ///
    /// This replaces the entity's whole state override with one that sets only the variant
    /// (hidden, see-through, selected and tint then inherit from its parent); to combine them,
    /// set [`StateOverride::variant`] in [`Self::set_state`].
    ///
    /// ```no_run
    /// # async fn demo(conn: farview_client::Connection) -> Result<(), farview_client::ClientError> {
    /// let model = conn.load_model("Shoe/Shoe.gltf").await?;
    /// if let Some(i) = model.variants.iter().position(|v| v == "midnight") {
    ///     conn.entity(model.root_entity).set_variant(Some(i as u32)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn set_variant(&self, variant: Option<u32>) -> Result<u64, ClientError> {
        self.set_state(StateOverride {
            variant,
            ..StateOverride::default()
        })
        .await
    }

    /// Points the camera at its subtree from `direction` (see [`Connection::fit_view`]).
    pub async fn fit_view(&self, direction: Option<[f32; 3]>) -> Result<CameraPose, ClientError> {
        self.conn.fit_view(Some(self.id), direction).await
    }

    /// Replaces its material override.
    pub async fn set_material(&self, material: MaterialOverride) -> Result<u64, ClientError> {
        self.conn
            .applied(Request::SetMaterialOverride {
                entity: self.id,
                material,
            })
            .await
    }

    /// Moves it under `parent` (or to the roots), keeping its world transform or its local one.
    pub async fn reparent(
        &self,
        parent: Option<u64>,
        keep_world: bool,
    ) -> Result<u64, ClientError> {
        self.conn
            .applied(Request::Reparent {
                entity: self.id,
                parent,
                keep_world,
            })
            .await
    }

    /// Destroys it and its subtree; returns how many entities went.
    pub async fn destroy(self) -> Result<u64, ClientError> {
        self.conn.destroy_entity(self.id).await
    }

    /// Its children.
    pub async fn children(&self) -> Result<Vec<EntityNode>, ClientError> {
        self.conn.children(self.id).await
    }

    /// Its local and world bounds.
    pub async fn bounds(&self) -> Result<EntityBounds, ClientError> {
        self.conn.bounds(self.id).await
    }
}

impl Connection {
    /// A handle on entity `id` (no round trip).
    pub fn entity(&self, id: u64) -> Entity<'_> {
        Entity { conn: self, id }
    }

    /// Sends a command answered with `Applied`; returns its sequence number.
    async fn applied(&self, request: Request) -> Result<u64, ClientError> {
        match self.request(request).await? {
            (seq, Reply::Applied) => Ok(seq),
            (_, other) => Err(unexpected("Applied", other)),
        }
    }

    /// Creates an empty entity (a group to parent others under).
    pub async fn create_entity(
        &self,
        parent: Option<u64>,
        name: Option<&str>,
        transform: EntityTransform,
    ) -> Result<Entity<'_>, ClientError> {
        match self
            .request(Request::CreateEntity {
                parent,
                name: name.map(str::to_owned),
                transform,
            })
            .await?
        {
            (_, Reply::EntityCreated { entity }) => Ok(self.entity(entity)),
            (_, other) => Err(unexpected("EntityCreated", other)),
        }
    }

    /// Destroys an entity and its subtree; returns how many entities went.
    pub async fn destroy_entity(&self, entity: u64) -> Result<u64, ClientError> {
        match self.request(Request::DestroyEntity { entity }).await? {
            (_, Reply::Destroyed { entities }) => Ok(entities),
            (_, other) => Err(unexpected("Destroyed", other)),
        }
    }

    /// Sets many local transforms in one message (all or nothing); returns its sequence number.
    pub async fn set_transforms(&self, updates: Vec<TransformUpdate>) -> Result<u64, ClientError> {
        self.applied(Request::SetTransforms { updates }).await
    }

    /// Queues a transform batch without waiting for its reply (see [`Connection::submit`]).
    pub async fn submit_transforms(
        &self,
        updates: Vec<TransformUpdate>,
    ) -> Result<PendingReply, ClientError> {
        self.submit(Request::SetTransforms { updates }).await
    }

    /// Adds a light; returns its id.
    pub async fn add_light(&self, light: Light) -> Result<u32, ClientError> {
        match self.request(Request::AddLight { light }).await? {
            (_, Reply::LightAdded { id }) => Ok(id),
            (_, other) => Err(unexpected("LightAdded", other)),
        }
    }

    /// Replaces light `id`.
    pub async fn update_light(&self, id: u32, light: Light) -> Result<u64, ClientError> {
        self.applied(Request::UpdateLight { id, light }).await
    }

    /// Removes light `id`.
    pub async fn remove_light(&self, id: u32) -> Result<u64, ClientError> {
        self.applied(Request::RemoveLight { id }).await
    }

    /// Adds a cut plane; returns its id.
    pub async fn add_cut_plane(&self, plane: CutPlane) -> Result<u32, ClientError> {
        match self.request(Request::AddCutPlane { plane }).await? {
            (_, Reply::CutPlaneAdded { id }) => Ok(id),
            (_, other) => Err(unexpected("CutPlaneAdded", other)),
        }
    }

    /// Moves cut plane `id`.
    pub async fn update_cut_plane(&self, id: u32, plane: CutPlane) -> Result<u64, ClientError> {
        self.applied(Request::UpdateCutPlane { id, plane }).await
    }

    /// Removes cut plane `id`.
    pub async fn remove_cut_plane(&self, id: u32) -> Result<u64, ClientError> {
        self.applied(Request::RemoveCutPlane { id }).await
    }

    /// An entity's children.
    pub async fn children(&self, entity: u64) -> Result<Vec<EntityNode>, ClientError> {
        match self.request(Request::GetChildren { entity }).await? {
            (_, Reply::Children { children, .. }) => Ok(children),
            (_, other) => Err(unexpected("Children", other)),
        }
    }

    /// An entity's local and world bounds.
    pub async fn bounds(&self, entity: u64) -> Result<EntityBounds, ClientError> {
        match self.request(Request::GetBounds { entity }).await? {
            (_, Reply::Bounds(b)) => Ok(b),
            (_, other) => Err(unexpected("Bounds", other)),
        }
    }

    /// Casts a ray; the closest hit only, or every hit nearest first.
    pub async fn raycast(
        &self,
        origin: [f32; 3],
        direction: [f32; 3],
        max_distance: f32,
        all: bool,
    ) -> Result<Vec<RayHit>, ClientError> {
        let ray = RayQuery {
            origin,
            direction,
            max_distance,
            all,
        };
        match self.request(Request::Raycast { ray }).await? {
            (_, Reply::Hits(h)) => Ok(h),
            (_, other) => Err(unexpected("Hits", other)),
        }
    }

    /// Scene statistics.
    pub async fn stats(&self) -> Result<SceneStats, ClientError> {
        match self.request(Request::GetStats).await? {
            (_, Reply::Stats(s)) => Ok(s),
            (_, other) => Err(unexpected("Stats", other)),
        }
    }

    /// Changes the look from the next frame on: only the fields set in `update` change. Returns
    /// the sequence number frames will name once they show it.
    ///
    /// An environment the host has not loaded yet is loaded and prefiltered first (seconds on a
    /// software rasterizer); frames keep the old look meanwhile, and requests sent after this
    /// one wait for it. Values out of range fail with `invalid_argument` and change nothing; an
    /// unknown environment fails with `environment_not_found`, whose message lists the names
    /// the host has.
    ///
    /// ```no_run
    /// # async fn demo(conn: farview_client::Connection) -> Result<(), farview_client::ClientError> {
    /// use farview_client::{LookUpdate, ToneMapping};
    ///
    /// conn.set_look(LookUpdate {
    ///     environment: Some("neutral_sky".into()),
    ///     background: Some([1.0, 1.0, 1.0]),
    ///     tone_mapping: Some(ToneMapping::AcesFilmic),
    ///     exposure: Some(1.5),
    ///     ..Default::default()
    /// })
    /// .await?;
    /// let look = conn.look().await?;
    /// assert_eq!(look.exposure, 1.5);
    /// # Ok(()) }
    /// ```
    pub async fn set_look(&self, update: LookUpdate) -> Result<u64, ClientError> {
        self.applied(Request::SetLook(update)).await
    }

    /// The current look: environment name, background, tone mapping, exposure, outline.
    pub async fn look(&self) -> Result<LookState, ClientError> {
        match self.request(Request::GetLook).await? {
            (_, Reply::Look(l)) => Ok(l),
            (_, other) => Err(unexpected("Look", other)),
        }
    }

    /// Points the camera at `entity`'s subtree (every root with `None`) so that it fills the
    /// view, looking from `direction` (relative to its centre; `None`: from the front, slightly
    /// above, [`farview_protocol::FIT_VIEW_DIRECTION`]). The camera keeps its field of view;
    /// the host answers with the pose it set, which frames from then on use. Fails with
    /// `entity_not_found`, or `nothing_to_frame` when there is no geometry.
    ///
    /// ```no_run
    /// # async fn demo(conn: farview_client::Connection) -> Result<(), farview_client::ClientError> {
    /// let model = conn.load_model("Fox/Fox.glb").await?;
    /// let pose = conn.fit_view(Some(model.root_entity), None).await?;
    /// // From the right side instead:
    /// conn.fit_view(None, Some([1.0, 0.0, 0.0])).await?;
    /// # let _ = pose;
    /// # Ok(()) }
    /// ```
    pub async fn fit_view(
        &self,
        entity: Option<u64>,
        direction: Option<[f32; 3]>,
    ) -> Result<CameraPose, ClientError> {
        match self.request(Request::FitView { entity, direction }).await? {
            (_, Reply::CameraFitted(pose)) => Ok(pose),
            (_, other) => Err(unexpected("CameraFitted", other)),
        }
    }

    /// The animations of the model rooted at `root` (its `LoadedModel::root_entity`), in the
    /// order [`Self::animate`] indexes them.
    pub async fn list_animations(&self, root: u64) -> Result<Vec<AnimationInfo>, ClientError> {
        match self.request(Request::ListAnimations { root }).await? {
            (_, Reply::Animations(list)) => Ok(list),
            (_, other) => Err(unexpected("Animations", other)),
        }
    }

    /// Plays, pauses, seeks, re-times or stops the animation of the model rooted at `root`.
    /// One animation plays per model; the host answers with the state after the command, and
    /// frames from then on show it (their header's `animation` names the time shown).
    ///
    /// ```no_run
    /// # async fn demo(conn: farview_client::Connection) -> Result<(), farview_client::ClientError> {
    /// use farview_client::AnimationCommand;
    /// let fox = conn.load_model("Fox/Fox.glb").await?;
    /// let walk = conn.list_animations(fox.root_entity).await?
    ///     .iter().position(|a| a.name == "Walk").unwrap_or(0) as u32;
    /// conn.animate(fox.root_entity, AnimationCommand::Play {
    ///     index: walk, speed: 1.0, looping: true, start_s: 0.0,
    /// }).await?;
    /// conn.animate(fox.root_entity, AnimationCommand::SetSpeed { speed: 0.5 }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn animate(
        &self,
        root: u64,
        command: AnimationCommand,
    ) -> Result<AnimationState, ClientError> {
        match self.request(Request::Animate { root, command }).await? {
            (_, Reply::AnimationState(state)) => Ok(state),
            (_, other) => Err(unexpected("AnimationState", other)),
        }
    }

    /// Looks through camera `camera` of the model rooted at `root` (an index into
    /// `LoadedModel::camera_list`), as the camera's node is placed now; answers the pose set.
    pub async fn view_camera(&self, root: u64, camera: u32) -> Result<CameraPose, ClientError> {
        match self.request(Request::ViewCamera { root, camera }).await? {
            (_, Reply::CameraFitted(pose)) => Ok(pose),
            (_, other) => Err(unexpected("CameraFitted", other)),
        }
    }

    /// Starts loading a model from the host's assets; await [`PendingLoad::finish`] for the
    /// result, or [`PendingLoad::cancel`] it. Progress shows in [`Connection::load_progress`].
    pub async fn begin_load(&self, path: &str) -> Result<PendingLoad<'_>, ClientError> {
        let pending = self
            .submit(Request::LoadModel { path: path.into() })
            .await?;
        Ok(PendingLoad {
            conn: self,
            pending,
        })
    }

    /// Sends a self-contained model (GLB, or glTF with data URIs) over an upload stream and
    /// loads it; the host caps the size by the session's size.
    pub async fn upload_model(&self, name: &str, bytes: &[u8]) -> Result<LoadedModel, ClientError> {
        let id = self.next_upload.fetch_add(1, Ordering::Relaxed);
        let mut stream = self
            .conn
            .open_uni()
            .await
            .map_err(|e| ClientError::from_connection(&e))?;
        let mut header = Vec::with_capacity(20);
        header.extend_from_slice(&UPLOAD_MAGIC);
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        let load = self
            .submit(Request::LoadUploadedModel {
                upload: id,
                name: name.into(),
            })
            .await?;
        // The host may refuse the upload (too large) by stopping the stream; its reason comes
        // back as the load's error, so write failures are not reported here.
        if stream.write_all(&header).await.is_ok() && stream.write_all(bytes).await.is_ok() {
            let _ = stream.finish();
        }
        match load.reply().await? {
            Reply::ModelLoaded(m) => Ok(m),
            other => Err(unexpected("ModelLoaded", other)),
        }
    }
}

/// A model load in progress.
#[derive(Debug)]
pub struct PendingLoad<'a> {
    conn: &'a Connection,
    pending: PendingReply,
}

impl PendingLoad<'_> {
    /// The load request's sequence number (progress events name it).
    pub fn seq(&self) -> u64 {
        self.pending.seq()
    }

    /// Asks the host to stop the load; [`Self::finish`] then fails with `load_cancelled`
    /// (unless the load had already completed).
    pub async fn cancel(&self) -> Result<(), ClientError> {
        match self
            .conn
            .request(Request::CancelLoad {
                load_seq: self.pending.seq(),
            })
            .await?
        {
            (_, Reply::LoadCancelled) => Ok(()),
            (_, other) => Err(unexpected("LoadCancelled", other)),
        }
    }

    /// Waits for the load's result.
    pub async fn finish(self) -> Result<LoadedModel, ClientError> {
        match self.pending.reply().await? {
            Reply::ModelLoaded(m) => Ok(m),
            other => Err(unexpected("ModelLoaded", other)),
        }
    }
}
