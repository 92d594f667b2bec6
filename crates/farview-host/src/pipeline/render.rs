//! The render stage: the thread that owns the scene. It applies commands in order, paces frames
//! ([`Pacer`], no I/O, tested on virtual time), renders, reads back and hands RGBA (or GPU-made
//! I420) to the encode stage through a one-slot channel: back-pressure, not a queue.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use farview_encode::I420Frame;
use farview_protocol::{ErrorCode, Reply, ServerMessage, WireError};
use farview_render::{Camera, FrameRenderer, strip_padding};
use farview_scene::Scene;

use super::clock::StageClock;
use super::stats::{Shared, Stage};
use super::{AddedModel, RawFrame, RenderCommand, StreamSettings};
use crate::tap::FrameTap;

/// Longest gap between frames when frames are skipped for an unchanged scene, so the device
/// still sees the stream alive.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(1);

/// What to do at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// No device: keep applying commands, render nothing.
    Idle,
    /// Nothing changed and a frame went out recently: the frame would repeat the last one.
    Skip,
    /// Render a frame.
    Render,
}

/// Frame pacing: the tick schedule, the skip-unchanged rule, and frames started by input.
///
/// At a constant rate (`skip_unchanged` off) a frame starts on every tick, so a change waits for
/// the next one, half an interval on average. With `skip_unchanged` on (the default) ticks only
/// look for work, and a change that arrives between them starts its frame at once, as soon as
/// one interval has passed since the last frame started: that interval is the frame-rate cap,
/// and the hand-off to the encoder (a one-slot channel) keeps a burst of input from running
/// ahead of it. Command-to-frame then approaches the stages' sum instead of sum + half a tick.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    next_tick: Instant,
    last_render: Option<Instant>,
    skip_unchanged: bool,
}

impl Pacer {
    pub(crate) fn new(fps: f32, skip_unchanged: bool, now: Instant) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / f64::from(fps.max(1.0))),
            next_tick: now,
            last_render: None,
            skip_unchanged,
        }
    }

    /// When the next tick is due.
    #[cfg(test)]
    pub(crate) fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// When the render thread should next decide, given whether a change is waiting for a frame
    /// (a command arrived since the last frame, with a device streaming): at the next tick, or,
    /// when frames follow input, as soon as the frame-rate cap allows.
    pub(crate) fn due(&self, change_pending: bool) -> Instant {
        match self.last_render {
            Some(last) if self.skip_unchanged && change_pending => {
                (last + self.interval).min(self.next_tick)
            }
            _ => self.next_tick,
        }
    }

    /// Decides the tick that is due at `now`. A stage that fell behind restarts the schedule
    /// from now instead of rendering a burst to catch up.
    pub(crate) fn on_tick(
        &mut self,
        now: Instant,
        streaming: bool,
        changed: bool,
        keyframe_wanted: bool,
    ) -> Tick {
        if !streaming {
            self.next_tick = now + self.interval;
            return Tick::Idle;
        }
        self.next_tick = if self.next_tick + self.interval > now {
            self.next_tick + self.interval
        } else {
            now + self.interval
        };
        let recent = self
            .last_render
            .is_some_and(|t| now.saturating_duration_since(t) < KEEPALIVE);
        if self.skip_unchanged && !changed && !keyframe_wanted && recent {
            return Tick::Skip;
        }
        if self.skip_unchanged {
            // Ticks follow the frames that input started.
            self.next_tick = now + self.interval;
        }
        self.last_render = Some(now);
        Tick::Render
    }
}

/// Render-thread state besides the scene: the camera, the environment's name, the last command
/// applied, and which asset path each loaded model came from (so a second load of a file shares
/// its assets).
struct RenderState {
    camera: Camera,
    /// The name of the environment the renderer's lighting holds.
    environment: String,
    last_seq: u64,
    by_key: HashMap<String, farview_scene::ModelId>,
    /// A command arrived since the last frame was rendered.
    changed: bool,
    /// Levels of detail of added models, built in the background.
    levels: super::levels::LevelBuilds,
}

/// Everything the render stage owns.
pub(crate) struct RenderStage {
    pub(crate) renderer: FrameRenderer,
    /// The name of the environment `renderer` starts with.
    pub(crate) environment: String,
    pub(crate) settings: StreamSettings,
    pub(crate) commands: mpsc::Receiver<RenderCommand>,
    pub(crate) frames: mpsc::SyncSender<RawFrame>,
    pub(crate) pool: mpsc::Receiver<Vec<u8>>,
    pub(crate) tap: Option<FrameTap>,
    pub(crate) clock: Arc<dyn StageClock>,
}

impl RenderStage {
    /// Runs until the pipeline stops; an error ends the pipeline (and its session) with why.
    pub(crate) fn run(mut self, shared: &Shared) -> Result<(), String> {
        self.renderer.set_readback_timeout(READBACK_BUDGET);
        let mut scene = Scene::default();
        // Skinned and morphed meshes are posed once: by the GPU where it can, else by the
        // scene on the CPU.
        scene.set_cpu_posing(!self.renderer.gpu_posing());
        let mut st = RenderState {
            camera: Camera::default(),
            environment: std::mem::take(&mut self.environment),
            last_seq: 0,
            by_key: HashMap::new(),
            changed: true,
            levels: super::levels::LevelBuilds::new(self.renderer.uploader()),
        };
        let mut pacer = Pacer::new(
            self.settings.fps,
            self.settings.skip_unchanged_frames,
            self.clock.now(),
        );
        let mut number = 0u64;
        let mut animated_at = self.clock.now();
        let mut budget = super::budget::DetailBudget::new(
            Duration::from_secs_f64(1.0 / f64::from(self.settings.fps.max(1.0))),
            self.settings.lod_error_px,
            self.settings.max_lod_error_px,
        );
        self.renderer.set_lod_error_px(budget.px());
        self.renderer
            .set_occlusion_culling(self.settings.occlusion_culling);
        loop {
            shared
                .beat_us
                .store(self.clock.wall_us(), Ordering::Relaxed);
            // Apply everything that arrived, in order, then wait for the tick while listening.
            loop {
                let pending = st.changed && shared.streaming.load(Ordering::Relaxed);
                let wait = pacer
                    .due(pending)
                    .saturating_duration_since(self.clock.now());
                match self.commands.recv_timeout(wait) {
                    Ok(cmd) => {
                        st.changed = true;
                        let was_animating = scene.is_animating();
                        apply(cmd, &mut scene, &mut self.renderer, &mut st, shared);
                        // An animation that starts now starts its clock now, not at the last
                        // tick.
                        if !was_animating && scene.is_animating() {
                            animated_at = self.clock.now();
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
            if shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let ready: Vec<_> = st.levels.ready().collect();
            for (id, levels) in ready {
                if self.renderer.attach_levels(id, levels) > 0 {
                    st.changed = true;
                }
            }
            let now = self.clock.now();
            // Animations run on the frame clock; a playing one changes every frame.
            if scene.is_animating() {
                let dt = now.saturating_duration_since(animated_at);
                scene.advance_animations(dt.as_secs_f32());
                st.changed = true;
            }
            animated_at = now;
            match pacer.on_tick(
                now,
                shared.streaming.load(Ordering::Relaxed),
                st.changed,
                shared.force_keyframe.load(Ordering::Relaxed),
            ) {
                Tick::Idle => continue,
                Tick::Skip => {
                    shared.skipped_unchanged();
                    continue;
                }
                Tick::Render => {}
            }
            st.changed = false;
            let Some(raw) = self.render(&mut scene, &st, number, shared, &mut budget)? else {
                continue;
            };
            // Blocks while the encoder is busy with the previous frame: back-pressure.
            if self.frames.send(raw).is_err() {
                return Ok(());
            }
            number += 1;
        }
    }

    fn render(
        &mut self,
        scene: &mut Scene,
        st: &RenderState,
        number: u64,
        shared: &Shared,
        budget: &mut super::budget::DetailBudget,
    ) -> Result<Option<RawFrame>, String> {
        let render_start_us = self.clock.wall_us();
        let t0 = self.clock.now();
        let drawn_at_px = self.renderer.lod_error_px();
        scene.update_world_transforms();
        self.renderer
            .submit(scene, &st.camera, number)
            .map_err(|e| e.to_string())?;
        let mut rgba = self.pool.try_recv().unwrap_or_default();
        let frame = self
            .collect(&mut rgba, shared)?
            .ok_or_else(|| "rendered frame missing from the readback ring".to_string())?;
        let took = self.clock.now().saturating_duration_since(t0);
        shared.stage(Stage::Render, took);
        // Measured, not guessed: the next frame's detail follows this one's render time.
        self.renderer.set_lod_error_px(budget.on_frame(took));
        let detail = farview_protocol::FrameDetail {
            lod_error_millipx: (drawn_at_px * 1000.0).round() as u32,
            triangles: u32::try_from(self.renderer.stats().triangles).unwrap_or(u32::MAX),
        };
        if let Some(tap) = &self.tap {
            // The tap holds RGBA; a GPU-converted frame is converted back (tests only).
            let pixels = if frame.i420 {
                let mut f = I420Frame::new(frame.width, frame.height).map_err(|e| e.to_string())?;
                f.copy_from_packed(&rgba).map_err(|e| e.to_string())?;
                farview_encode::i420_to_rgba(&f)
            } else {
                strip_padding(&rgba, frame)
            };
            tap.push(frame.tag, frame.width, frame.height, pixels)?;
        }
        Ok(Some(RawFrame {
            number,
            last_seq: st.last_seq,
            render_start_us,
            render_end_us: self.clock.wall_us(),
            stride: frame.stride,
            rgba,
            i420: frame.i420,
            detail: Some(detail),
            animation: scene
                .shown_animation()
                .map(|(root, t)| farview_protocol::FrameAnimation {
                    root: root.0,
                    time_us: (f64::from(t) * 1e6).round() as u64,
                }),
        }))
    }
}

impl RenderStage {
    /// Waits for the frame's readback. A readback that outlasts its budget (a busy GPU shared
    /// with other streams) is retried, counted, rather than ending the session; only a lost
    /// device or a frame lost for good is an error.
    fn collect(
        &mut self,
        rgba: &mut Vec<u8>,
        shared: &Shared,
    ) -> Result<Option<farview_render::ReadbackFrame>, String> {
        let mut tries = 0u32;
        let (w, h) = (self.renderer.width(), self.renderer.height());
        let slow = self
            .tap
            .as_ref()
            .is_some_and(|t| t.take_slow_readback(w, h));
        loop {
            if slow {
                // Test hook: the first wait gets no budget, so it times out for real.
                self.renderer.set_readback_timeout(if tries == 0 {
                    Duration::ZERO
                } else {
                    READBACK_BUDGET
                });
            }
            match self.renderer.collect(true, rgba) {
                Ok(frame) => return Ok(frame),
                Err(e) if e.is_transient() && tries < MAX_READBACK_RETRIES => {
                    tries += 1;
                    shared.readback_retried();
                    tracing::warn!(error = %e, tries, "readback slow; waiting again");
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Readback waits (each up to [`READBACK_BUDGET`]) before a frame counts as lost.
const MAX_READBACK_RETRIES: u32 = 5;
/// How long one readback wait may take: generous, because several streams share one GPU and
/// a software rasterizer on few cores can be slow under load.
const READBACK_BUDGET: Duration = Duration::from_secs(10);

fn budget_error(adding: u64, have: u64, max: u64) -> WireError {
    WireError::new(
        ErrorCode::MODEL_TOO_LARGE,
        format!(
            "the model has {adding} triangles; with the {have} already in the scene that exceeds this session size's budget of {max}"
        ),
    )
}

fn apply(
    cmd: RenderCommand,
    scene: &mut Scene,
    renderer: &mut FrameRenderer,
    st: &mut RenderState,
    shared: &Shared,
) {
    match cmd {
        RenderCommand::AddModel {
            seq,
            name,
            key,
            model,
            uploaded,
            max_triangles,
            reply,
        } => {
            let have = scene.loaded_triangles();
            let adding = model.triangle_count() as u64;
            let result = if have.saturating_add(adding) > max_triangles {
                Err(budget_error(adding, have, max_triangles))
            } else {
                scene
                    .add_model(&name, *model)
                    .map_err(crate::scene_ops::scene_error)
                    .inspect(|info| {
                        renderer.insert_model(info.model, uploaded);
                        if let Some(model) = scene.model(info.model) {
                            st.levels.request(info.model, model);
                        }
                        if let Some(k) = key {
                            st.by_key.insert(k, info.model);
                        }
                    })
                    .map(|info| added(scene, info))
            };
            st.last_seq = st.last_seq.max(seq);
            // Counted before the reply leaves, so whoever hears "loaded" reads a count that
            // includes it.
            refresh_counts(scene, shared);
            let _ = reply.send(result);
        }
        RenderCommand::Instantiate {
            seq,
            key,
            max_triangles,
            reply,
        } => {
            let result = st
                .by_key
                .get(&key)
                .copied()
                .filter(|id| scene.model(*id).is_some())
                .map(|id| {
                    let have = scene.loaded_triangles();
                    let adding = scene.model(id).map_or(0, |m| m.triangle_count() as u64);
                    if have.saturating_add(adding) > max_triangles {
                        return Err(budget_error(adding, have, max_triangles));
                    }
                    scene
                        .instantiate(&key, id)
                        .map_err(crate::scene_ops::scene_error)
                        .map(|info| added(scene, info))
                });
            if result.as_ref().is_some_and(Result::is_ok) {
                st.last_seq = st.last_seq.max(seq);
            }
            refresh_counts(scene, shared);
            let _ = reply.send(result);
        }
        RenderCommand::SetCamera { seq, camera, reply } => {
            st.camera = camera;
            st.last_seq = st.last_seq.max(seq);
            reply.send(ServerMessage::Reply {
                seq,
                result: Ok(Reply::CameraSet),
            });
        }
        RenderCommand::SetLook {
            seq,
            update,
            environment,
            reply,
        } => {
            let (name, env) = match environment {
                Some((name, env)) => (Some(name), Some(env)),
                None => (None, None),
            };
            let lighting = crate::look_wire::updated(renderer.lighting(), &update, env);
            // Nothing changes unless the renderer takes the new lighting.
            let result = renderer
                .set_lighting(lighting)
                .map(|()| {
                    if let Some(name) = name {
                        st.environment = name;
                    }
                    st.last_seq = st.last_seq.max(seq);
                    Reply::Applied
                })
                .map_err(|e| {
                    WireError::new(ErrorCode::INTERNAL, format!("cannot apply the look: {e}"))
                });
            let _ = reply.send(result);
        }
        RenderCommand::Stall(d) => std::thread::sleep(d),
        RenderCommand::Scene {
            seq,
            request,
            reply,
        } => {
            let destroys = matches!(request, farview_protocol::Request::DestroyEntity { .. });
            let mut view = crate::scene_ops::View {
                camera: &mut st.camera,
                environment: &st.environment,
            };
            let result = crate::scene_ops::execute(request, scene, renderer, &mut view);
            st.last_seq = st.last_seq.max(seq);
            if destroys {
                refresh_counts(scene, shared);
            }
            reply.send(ServerMessage::Reply { seq, result });
        }
    }
}

/// What a load's reply reports: the scene's figures and the model's variant names.
fn added(scene: &Scene, info: farview_scene::ModelInfo) -> AddedModel {
    let variants = scene
        .model(info.model)
        .map(|m| m.variants.clone())
        .unwrap_or_default();
    let cameras = scene
        .model_cameras(info.root)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(c, entity)| {
            Some(farview_protocol::ModelCamera {
                name: c.name,
                entity: entity?.0,
                yfov: c.yfov,
                znear: c.znear,
                zfar: c.zfar,
                aspect_ratio: c.aspect_ratio,
            })
        })
        .collect();
    AddedModel {
        info,
        variants,
        cameras,
    }
}

/// Models in the scene, for the session's counters. Only model-changing commands call it: a
/// device may send a thousand transform updates a second and each walk costs.
fn refresh_counts(scene: &Scene, shared: &Shared) {
    shared
        .models
        .store(scene.models().count() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_micros(16_667);

    #[test]
    fn ticks_follow_the_frame_interval_on_virtual_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(60.0, false, t0);
        assert_eq!(p.on_tick(t0, true, true, false), Tick::Render);
        let mut now = t0;
        for _ in 0..59 {
            now = p.next_tick();
            assert_eq!(p.on_tick(now, true, false, false), Tick::Render);
        }
        // 60 ticks take one second of virtual time.
        let elapsed = p.next_tick() - t0;
        assert!((elapsed.as_secs_f64() - 1.0).abs() < 0.001, "{elapsed:?}");
        // A stage that fell 100 ms behind restarts the schedule instead of bursting.
        let late = now + Duration::from_millis(100);
        p.on_tick(late, true, false, false);
        assert!(p.next_tick() - late <= FRAME + Duration::from_micros(1));
    }

    #[test]
    fn without_a_device_the_loop_idles() {
        let t0 = Instant::now();
        let mut p = Pacer::new(30.0, false, t0);
        assert_eq!(p.on_tick(t0, false, true, true), Tick::Idle);
    }

    #[test]
    fn an_unchanged_scene_is_skipped_but_kept_alive_every_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(60.0, true, t0);
        assert_eq!(p.on_tick(t0, true, true, false), Tick::Render);
        let mut rendered = 0;
        let mut now = t0;
        while now < t0 + Duration::from_millis(2_500) {
            now = p.next_tick();
            if p.on_tick(now, true, false, false) == Tick::Render {
                rendered += 1;
            }
        }
        // Keepalive frames at ~1 s and ~2 s only.
        assert_eq!(rendered, 2);
        // A change or a keyframe request renders at the next tick.
        now = p.next_tick();
        assert_eq!(p.on_tick(now, true, true, false), Tick::Render);
        now = p.next_tick();
        assert_eq!(p.on_tick(now, true, false, true), Tick::Render);
        now = p.next_tick();
        assert_eq!(p.on_tick(now, true, false, false), Tick::Skip);
    }

    #[test]
    fn a_change_starts_a_frame_at_once_within_the_frame_rate_cap() {
        let t0 = Instant::now();
        let mut p = Pacer::new(60.0, true, t0);
        assert_eq!(p.on_tick(t0, true, true, false), Tick::Render);
        // Nothing pending: wake at the next tick (to look at keyframe requests), skip it.
        assert_eq!(p.due(false), t0 + p.interval);
        let mut now = p.next_tick();
        assert_eq!(p.on_tick(now, true, false, false), Tick::Skip);
        // A change 5 ms after that tick is due at once: the last frame started over an
        // interval ago, and the frame does not wait for the next tick.
        let arrived = now + Duration::from_millis(5);
        assert!(p.due(true) <= arrived);
        assert_eq!(p.on_tick(arrived, true, true, false), Tick::Render);
        // The schedule follows that frame: the next is one interval later, not earlier, even
        // for a change that arrives 1 ms after it (the cap).
        assert_eq!(p.next_tick(), arrived + p.interval);
        assert_eq!(p.due(true), arrived + p.interval);
        // A stream of changes faster than the cap renders at the cap: 60 frames a second.
        now = arrived;
        let mut frames = 0;
        while now < arrived + Duration::from_secs(1) {
            let next = p.due(true);
            now = now.max(next);
            if p.on_tick(now, true, true, false) == Tick::Render {
                frames += 1;
            }
            now += Duration::from_millis(3);
        }
        assert!((55..=61).contains(&frames), "{frames} frames in a second");
        // At a constant rate a change still waits for the tick.
        let mut c = Pacer::new(60.0, false, t0);
        c.on_tick(t0, true, true, false);
        assert_eq!(c.due(true), c.next_tick());
    }
}
