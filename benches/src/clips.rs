//! Rendered clips for the codec figures: content that is hard for an encoder (a textured model
//! filling the frame, a thousand trees, a fast orbit) and the demo's walking fox (residue).

use std::path::PathBuf;

use anyhow::Context;
use farview_render::{Camera, FrameRenderer};
use farview_scene::{ImportLimits, ModelInfo, Scene};
use glam::{Quat, Vec3};

/// A camera path over a scene, rendered frame by frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Clip {
    /// DamagedHelmet close enough to fill the frame, turning 20° and dollying in over the clip:
    /// fine texture everywhere, sub-pixel motion.
    HelmetClose,
    /// The generated 1,000-tree forest, flown over while turning.
    Forest,
    /// DamagedHelmet framed whole, one full turn per second at 60 fps (6° a frame).
    FastOrbit,
    /// The demo: the fox walking while the camera orbits once over 300 frames.
    FoxWalk,
}

impl Clip {
    /// How tables and plots name it.
    pub fn name(self) -> &'static str {
        match self {
            Clip::HelmetClose => "helmet close-up",
            Clip::Forest => "1000-tree forest",
            Clip::FastOrbit => "helmet fast orbit",
            Clip::FoxWalk => "fox walking (demo)",
        }
    }
}

/// The Khronos corpus (`FARVIEW_CORPUS` or `../shared/corpus`), where DamagedHelmet lives.
pub fn corpus_root() -> PathBuf {
    std::env::var_os("FARVIEW_CORPUS").map_or_else(
        || crate::repo_root().join("../shared/corpus"),
        PathBuf::from,
    )
}

/// A scene set up for `clip`, and the model in it.
pub struct ClipScene {
    clip: Clip,
    scene: Scene,
    info: ModelInfo,
    walk: Option<usize>,
}

impl ClipScene {
    /// Loads the clip's model (DamagedHelmet from the corpus, the forest generated, the fox
    /// from assets/).
    pub fn new(clip: Clip) -> anyhow::Result<Self> {
        let limits = ImportLimits::default();
        let (model, name) = match clip {
            Clip::HelmetClose | Clip::FastOrbit => {
                let path = "khronos/DamagedHelmet/glTF-Binary/DamagedHelmet.glb";
                let model = farview_scene::import_file(&corpus_root(), path, &limits)
                    .with_context(|| {
                        format!(
                            "{path} under {} (set FARVIEW_CORPUS to the Khronos corpus)",
                            corpus_root().display()
                        )
                    })?;
                (model, path)
            }
            Clip::Forest => {
                let glb = farview_scene::synthetic::forest_glb(1000);
                let model = farview_scene::synthetic::import(&glb, &limits)?;
                (model, "forest")
            }
            Clip::FoxWalk => (
                farview_scene::import_file(&crate::assets_root(), "Fox/Fox.glb", &limits)?,
                "Fox/Fox.glb",
            ),
        };
        let mut scene = Scene::default();
        let info = scene.add_model(name, model)?;
        let walk = if clip == Clip::FoxWalk {
            let list = scene.animations(info.root)?;
            Some(
                list.iter()
                    .position(|a| a.name == "Walk")
                    .context("Fox has no Walk animation")?,
            )
        } else {
            None
        };
        Ok(Self {
            clip,
            scene,
            info,
            walk,
        })
    }

    /// Poses the scene for frame `i` of `n` (at `fps`) and returns the camera that sees it.
    pub fn frame(&mut self, i: usize, n: usize, fps: f32) -> anyhow::Result<Camera> {
        let t = i as f32 / n.max(1) as f32;
        let c = self.info.bounds.center();
        let base = crate::framing_camera(&self.info);
        let orbit = |cam: Camera, angle: f32, zoom: f32| {
            let rot = Quat::from_rotation_y(angle);
            let mut cam = cam;
            cam.position = c + rot * (cam.position - c) * zoom;
            cam.rotation = rot * cam.rotation;
            cam.near *= zoom;
            cam
        };
        Ok(match self.clip {
            Clip::HelmetClose => orbit(base, (t * 20.0).to_radians(), 0.3 - 0.03 * t),
            Clip::FastOrbit => orbit(base, i as f32 * 6f32.to_radians(), 1.0),
            Clip::Forest => {
                let yaw = (t * 30.0).to_radians();
                let eye = Vec3::new(-20.0 + 10.0 * t, 7.0, 25.0 - 10.0 * t);
                let ahead = Quat::from_rotation_y(-yaw) * Vec3::new(0.45, -0.4, -1.0);
                Camera::looking_at(eye, eye + ahead, 50f32.to_radians(), 0.1, 200.0)
            }
            Clip::FoxWalk => {
                if let Some(walk) = self.walk {
                    self.scene.pose_at(self.info.root, walk, i as f32 / fps)?;
                }
                orbit(base, t * std::f32::consts::TAU, 1.0)
            }
        })
    }

    /// Renders frame `i` of `n`: tightly packed RGBA8.
    pub fn render(
        &mut self,
        renderer: &mut FrameRenderer,
        i: usize,
        n: usize,
        fps: f32,
    ) -> anyhow::Result<Vec<u8>> {
        let cam = self.frame(i, n, fps)?;
        Ok(renderer.render_blocking(&self.scene, &cam)?)
    }
}
