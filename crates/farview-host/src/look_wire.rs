//! The wire's look and the renderer's [`Lighting`], converted both ways: `SetLook` updates
//! applied to a renderer's lighting, and the lighting reported by `GetLook`. Pure functions,
//! shared by the render thread (`pipeline`) and the look cache (`look`).

use farview_protocol::{LookState, LookUpdate, OutlineSettings};
use farview_render::{Environment, Lighting, Outline, ToneMapping};
use glam::Vec3;

/// `lighting` with `update`'s set fields applied; `environment` is `Some` when the update names
/// one (already prefiltered: `Some(None)` for no image-based lighting).
pub(crate) fn updated(
    lighting: &Lighting,
    update: &LookUpdate,
    environment: Option<Option<Environment>>,
) -> Lighting {
    let mut l = lighting.clone();
    if let Some(env) = environment {
        l.environment = env;
    }
    if let Some(v) = update.environment_intensity {
        l.environment_intensity = v;
    }
    if let Some(v) = update.show_environment {
        l.show_environment = v;
    }
    if let Some(v) = update.background {
        l.background = Vec3::from_array(v);
    }
    if let Some(v) = update.tone_mapping {
        l.tone_mapping = match v {
            farview_protocol::ToneMapping::KhrPbrNeutral => ToneMapping::KhrPbrNeutral,
            farview_protocol::ToneMapping::AcesFilmic => ToneMapping::AcesFilmic,
            farview_protocol::ToneMapping::None => ToneMapping::None,
        };
    }
    if let Some(v) = update.exposure {
        l.exposure = v;
    }
    if let Some(o) = update.outline {
        l.outline = Outline {
            color: Vec3::from_array(o.color),
            width_px: o.width_px,
            pulse_period_s: o.pulse_period_s,
        };
    }
    l
}

/// The wire view of `lighting`, whose environment is called `environment`.
pub(crate) fn state(lighting: &Lighting, environment: &str) -> LookState {
    LookState {
        environment: environment.to_owned(),
        environment_intensity: lighting.environment_intensity,
        show_environment: lighting.show_environment,
        background: lighting.background.to_array(),
        tone_mapping: match lighting.tone_mapping {
            ToneMapping::KhrPbrNeutral => farview_protocol::ToneMapping::KhrPbrNeutral,
            ToneMapping::AcesFilmic => farview_protocol::ToneMapping::AcesFilmic,
            ToneMapping::None => farview_protocol::ToneMapping::None,
        },
        exposure: lighting.exposure,
        outline: OutlineSettings {
            color: lighting.outline.color.to_array(),
            width_px: lighting.outline.width_px,
            pulse_period_s: lighting.outline.pulse_period_s,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_update_changes_only_what_it_sets_and_reads_back() {
        let base = Lighting::default();
        let same = updated(&base, &LookUpdate::default(), None);
        assert_eq!(state(&same, "none"), state(&base, "none"));
        let update = LookUpdate {
            background: Some([0.5, 0.25, 0.0]),
            exposure: Some(2.0),
            tone_mapping: Some(farview_protocol::ToneMapping::None),
            outline: Some(OutlineSettings {
                color: [0.0, 1.0, 0.0],
                width_px: 5.0,
                pulse_period_s: 2.0,
            }),
            ..LookUpdate::default()
        };
        let s = state(&updated(&base, &update, Some(None)), "none");
        assert_eq!(s.background, [0.5, 0.25, 0.0]);
        assert_eq!(s.exposure, 2.0);
        assert_eq!(s.tone_mapping, farview_protocol::ToneMapping::None);
        assert_eq!(s.outline, update.outline.unwrap());
        assert_eq!(s.environment_intensity, base.environment_intensity);
        assert_eq!(s.show_environment, base.show_environment);
    }
}
