//! H.264 through openh264, compiled from source by the `openh264` crate (with `nasm` present its
//! assembly kernels are used; without it the build silently falls back to C, 2–3x slower).

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType, VuiConfig,
};

use crate::{EncodeError, EncodedFrame, EncoderSettings, I420Frame, VideoEncoder, contains_idr};

/// The portable software encoder: constrained baseline (no B-frames, decode order = display
/// order), bitrate rate control with frame skipping off so every input frame yields an access
/// unit, and the SPS carrying a BT.709 limited-range colour description.
pub struct OpenH264Encoder {
    inner: Encoder,
    settings: EncoderSettings,
    frames: u64,
}

impl std::fmt::Debug for OpenH264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenH264Encoder")
            .field("settings", &self.settings)
            .field("frames", &self.frames)
            .finish()
    }
}

fn config(s: &EncoderSettings) -> EncoderConfig {
    EncoderConfig::new()
        .bitrate(BitRate::from_bps(s.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(s.max_fps))
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .skip_frames(false)
        .num_threads(s.threads)
        .intra_frame_period(IntraFramePeriod::from_num_frames(
            s.keyframe_interval.unwrap_or(0),
        ))
        .vui(VuiConfig::bt709())
}

fn check(s: &EncoderSettings) -> Result<(), EncodeError> {
    I420Frame::new(s.width, s.height)?;
    if !(s.max_fps.is_finite() && s.max_fps > 0.0) || s.bitrate_bps == 0 {
        return Err(EncodeError::Encoder(format!(
            "invalid rate settings: {} bps at {} fps",
            s.bitrate_bps, s.max_fps
        )));
    }
    Ok(())
}

impl OpenH264Encoder {
    /// Creates an encoder.
    pub fn new(settings: EncoderSettings) -> Result<Self, EncodeError> {
        check(&settings)?;
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config(&settings))
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        Ok(Self {
            inner,
            settings,
            frames: 0,
        })
    }
}

impl VideoEncoder for OpenH264Encoder {
    fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<EncodedFrame, EncodeError> {
        if (frame.width(), frame.height()) != (self.settings.width, self.settings.height) {
            return Err(EncodeError::InvalidDimensions {
                width: frame.width(),
                height: frame.height(),
            });
        }
        if force_keyframe && self.frames > 0 {
            self.inner.force_intra_frame();
        }
        let ms = (self.frames as f64 * 1000.0 / f64::from(self.settings.max_fps)) as u64;
        self.frames += 1;
        let bs = self
            .inner
            .encode_at(frame, Timestamp::from_millis(ms))
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        let frame_type = bs.frame_type();
        let mut data = Vec::new();
        bs.write_vec(&mut data);
        if data.is_empty() || matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            return Err(EncodeError::Encoder(format!(
                "openh264 produced no picture (frame type {frame_type:?})"
            )));
        }
        let keyframe = contains_idr(&data);
        Ok(EncodedFrame { data, keyframe })
    }

    /// openh264's runtime bitrate option is only reachable through its unsafe raw API, so this
    /// recreates the encoder; the next frame is an IDR.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), EncodeError> {
        let settings = EncoderSettings {
            bitrate_bps,
            ..self.settings.clone()
        };
        check(&settings)?;
        self.inner = Encoder::with_api_config(OpenH264API::from_source(), config(&settings))
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        self.settings = settings;
        self.frames = 0;
        Ok(())
    }

    fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    fn name(&self) -> &'static str {
        "openh264"
    }
}
