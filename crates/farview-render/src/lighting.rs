//! How a frame looks besides the scene itself: the environment that lights it, the background,
//! exposure and tone mapping, and the selection outline. The scene's own lights are part of the
//! scene (`Scene::lights`).

use glam::Vec3;

use crate::Environment;

/// How linear scene colour becomes display colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ToneMapping {
    /// Khronos PBR Neutral: keeps base colours as authored up to ~0.8 and compresses
    /// highlights (the glTF Sample Viewer's default).
    #[default]
    KhrPbrNeutral,
    /// ACES filmic (Hill's fit): more contrast, desaturated highlights.
    AcesFilmic,
    /// Clamp only.
    None,
}

impl ToneMapping {
    /// The value `shaders/mesh.wgsl` switches on.
    pub(crate) fn shader_mode(self) -> u32 {
        match self {
            Self::KhrPbrNeutral => 0,
            Self::AcesFilmic => 1,
            Self::None => 2,
        }
    }
}

/// The outline drawn around selected entities (Azure Remote Rendering's outline settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outline {
    /// Colour, linear RGB.
    pub color: Vec3,
    /// Width in pixels (0 draws none).
    pub width_px: f32,
    /// Pulse period in seconds: the outline's opacity follows a cosine between 0.4 and 1 over
    /// it; 0 keeps it steady.
    pub pulse_period_s: f32,
}

impl Default for Outline {
    fn default() -> Self {
        Self {
            color: Vec3::new(1.0, 0.5, 0.0),
            width_px: 3.0,
            pulse_period_s: 0.0,
        }
    }
}

impl Outline {
    /// Opacity at `time_s` seconds.
    pub(crate) fn alpha_at(&self, time_s: f32) -> f32 {
        if self.pulse_period_s <= 0.0 || !self.pulse_period_s.is_finite() {
            return 1.0;
        }
        let phase = (time_s / self.pulse_period_s).fract() * std::f32::consts::TAU;
        0.7 + 0.3 * phase.cos()
    }
}

/// Everything a frame is lit and finished with besides the scene's lights.
#[derive(Debug, Clone)]
pub struct Lighting {
    /// Image-based lighting; `None` lights with [`Self::fallback_ambient`] only.
    pub environment: Option<Environment>,
    /// Multiplies the environment's radiance.
    pub environment_intensity: f32,
    /// Draw the environment behind the scene instead of [`Self::background`].
    pub show_environment: bool,
    /// Background colour, linear RGB, as displayed (not tone mapped).
    pub background: Vec3,
    /// Uniform ambient radiance when there is no environment.
    pub fallback_ambient: Vec3,
    /// Multiplies scene colour before tone mapping.
    pub exposure: f32,
    /// Tone mapping.
    pub tone_mapping: ToneMapping,
    /// Selection outline.
    pub outline: Outline,
}

impl Default for Lighting {
    fn default() -> Self {
        Self {
            environment: None,
            environment_intensity: 1.0,
            show_environment: false,
            background: Vec3::new(0.02, 0.025, 0.035),
            fallback_ambient: Vec3::splat(0.3),
            exposure: 1.0,
            tone_mapping: ToneMapping::default(),
            outline: Outline::default(),
        }
    }
}
