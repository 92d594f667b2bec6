//! Wire types of a stream's look: the environment that lights the scene (image-based
//! lighting), the background, exposure, tone mapping and the selection outline. Everything but
//! the scene itself, set with [`crate::Request::SetLook`] and read with
//! [`crate::Request::GetLook`].

use serde::{Deserialize, Serialize};

/// The environment name that switches image-based lighting off.
pub const NO_ENVIRONMENT: &str = "none";
/// Longest environment name, in bytes.
pub const MAX_ENVIRONMENT_NAME: usize = 64;
/// Largest [`LookUpdate::environment_intensity`].
pub const MAX_ENVIRONMENT_INTENSITY: f32 = 16.0;
/// Largest [`LookUpdate::exposure`].
pub const MAX_EXPOSURE: f32 = 64.0;
/// Largest [`OutlineSettings::width_px`].
pub const MAX_OUTLINE_WIDTH_PX: f32 = 16.0;
/// Largest [`OutlineSettings::pulse_period_s`].
pub const MAX_OUTLINE_PULSE_PERIOD_S: f32 = 60.0;

/// How linear scene colour becomes display colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ToneMapping {
    /// Khronos PBR Neutral: base colours as authored up to ~0.8, highlights compressed (the
    /// glTF Sample Viewer's default).
    #[default]
    KhrPbrNeutral,
    /// ACES filmic (Hill's fit): more contrast, desaturated highlights.
    AcesFilmic,
    /// Clamp only.
    None,
}

/// The outline drawn around selected entities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutlineSettings {
    /// Linear RGB, each in [0, 1].
    pub color: [f32; 3],
    /// Width in pixels, 0 (none) to [`MAX_OUTLINE_WIDTH_PX`].
    pub width_px: f32,
    /// Seconds per pulse of its opacity, 0 (steady) to [`MAX_OUTLINE_PULSE_PERIOD_S`].
    pub pulse_period_s: f32,
}

/// A change of look; `None` fields keep their current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookUpdate {
    /// Environment by name: the file `<name>.hdr` in the host's environments directory, or
    /// [`NO_ENVIRONMENT`] for no image-based lighting. 1 to [`MAX_ENVIRONMENT_NAME`] ASCII
    /// letters, digits, `_` and `-`.
    pub environment: Option<String>,
    /// Multiplies the environment's light, 0 to [`MAX_ENVIRONMENT_INTENSITY`].
    pub environment_intensity: Option<f32>,
    /// Draw the environment behind the scene instead of the background colour.
    pub show_environment: Option<bool>,
    /// Background colour, linear RGB each in [0, 1], displayed as is (not tone mapped).
    pub background: Option<[f32; 3]>,
    /// Tone mapping.
    pub tone_mapping: Option<ToneMapping>,
    /// Multiplies scene colour before tone mapping; > 0 and at most [`MAX_EXPOSURE`].
    pub exposure: Option<f32>,
    /// Selection outline.
    pub outline: Option<OutlineSettings>,
}

/// A stream's look, as [`crate::Reply::Look`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookState {
    /// Environment name ([`NO_ENVIRONMENT`] when there is no image-based lighting).
    pub environment: String,
    /// Multiplier of the environment's light.
    pub environment_intensity: f32,
    /// Whether the environment is drawn behind the scene.
    pub show_environment: bool,
    /// Background colour, linear RGB.
    pub background: [f32; 3],
    /// Tone mapping.
    pub tone_mapping: ToneMapping,
    /// Exposure.
    pub exposure: f32,
    /// Selection outline.
    pub outline: OutlineSettings,
}

/// Whether `name` may name an environment: 1 to [`MAX_ENVIRONMENT_NAME`] ASCII letters, digits,
/// `_` and `-` (so it can never be a path).
pub fn is_environment_name(name: &str) -> bool {
    (1..=MAX_ENVIRONMENT_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn in_range(what: &str, v: f32, min: f32, max: f32) -> Result<(), String> {
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(format!("{what} must be in [{min}, {max}], got {v}"))
    }
}

fn colour(what: &str, c: [f32; 3]) -> Result<(), String> {
    if c.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
        Ok(())
    } else {
        Err(format!(
            "{what} must be linear RGB with each component in [0, 1], got {c:?}"
        ))
    }
}

impl LookUpdate {
    /// Checks every set field against its bound (see `docs/protocol.md`); returns a message for
    /// the device naming the first that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.environment
            && !is_environment_name(name)
        {
            return Err(format!(
                "environment names are 1 to {MAX_ENVIRONMENT_NAME} ASCII letters, digits, '_' or '-' (or \"{NO_ENVIRONMENT}\")"
            ));
        }
        if let Some(v) = self.environment_intensity {
            in_range("environment_intensity", v, 0.0, MAX_ENVIRONMENT_INTENSITY)?;
        }
        if let Some(c) = self.background {
            colour("background", c)?;
        }
        if let Some(v) = self.exposure
            && !(v.is_finite() && v > 0.0 && v <= MAX_EXPOSURE)
        {
            return Err(format!(
                "exposure must be > 0 and at most {MAX_EXPOSURE}, got {v}"
            ));
        }
        if let Some(o) = &self.outline {
            colour("outline.color", o.color)?;
            in_range("outline.width_px", o.width_px, 0.0, MAX_OUTLINE_WIDTH_PX)?;
            in_range(
                "outline.pulse_period_s",
                o.pulse_period_s,
                0.0,
                MAX_OUTLINE_PULSE_PERIOD_S,
            )?;
        }
        Ok(())
    }
}
