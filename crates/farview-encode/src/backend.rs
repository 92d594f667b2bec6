//! Choosing the encoder backend: the one place a hardware encoder (NVENC, VA-API) is added.
//! See `docs/encoders.md` for what a backend must do to sit behind [`VideoEncoder`].

use crate::{EncodeError, EncoderSettings, OpenH264Encoder, VideoEncoder};

/// Which encoder a stream uses (the host's `stream.encoder` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncoderKind {
    /// The best backend this build has and this machine can run: hardware backends first, in
    /// [`BACKENDS`] order, once they exist; openh264, which runs everywhere, last.
    #[default]
    Auto,
    /// openh264, built from source: the portable software encoder.
    OpenH264,
}

impl EncoderKind {
    /// Parses a configuration value: `auto` or a backend name from [`BACKENDS`].
    pub fn parse(name: &str) -> Result<Self, EncodeError> {
        match name {
            "auto" => Ok(Self::Auto),
            "openh264" => Ok(Self::OpenH264),
            other => Err(EncodeError::UnknownBackend {
                name: other.chars().take(64).collect(),
                known: BACKENDS.join(", "),
            }),
        }
    }
}

/// The backends compiled into this build, in the order `auto` tries them. A hardware backend
/// goes before openh264 behind its cargo feature, and `auto` skips it when its probe finds no
/// device (no driver, no capable GPU), so one binary serves every machine.
pub const BACKENDS: &[&str] = &["openh264"];

/// Creates the encoder `kind` names for `settings`.
pub fn create_encoder(
    kind: EncoderKind,
    settings: EncoderSettings,
) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    match kind {
        // With hardware backends: try each in `BACKENDS` order, falling through on
        // `EncodeError::Unavailable`, and log which one the stream got.
        EncoderKind::Auto | EncoderKind::OpenH264 => Ok(Box::new(OpenH264Encoder::new(settings)?)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_auto_runs_on_any_machine() {
        assert_eq!(EncoderKind::parse("auto").unwrap(), EncoderKind::Auto);
        assert_eq!(
            EncoderKind::parse("openh264").unwrap(),
            EncoderKind::OpenH264
        );
        let e = EncoderKind::parse("nvenc").unwrap_err();
        assert!(
            e.to_string().contains("nvenc") && e.to_string().contains("openh264"),
            "{e}"
        );
        let enc = create_encoder(
            EncoderKind::Auto,
            EncoderSettings {
                width: 64,
                height: 64,
                ..EncoderSettings::default()
            },
        )
        .unwrap();
        assert_eq!(enc.name(), "openh264");
    }
}
