//! H.264 through openh264, compiled from source by the `openh264` crate (with `nasm` present its
//! assembly kernels are used; without it the build silently falls back to C, 2–3x slower).

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode, UsageType, VuiConfig,
};

use crate::{EncodeError, EncodedFrame, EncoderSettings, I420Frame, VideoEncoder, contains_idr};

/// The portable software encoder (openh264 built from source).
///
/// Configuration, chosen for interactive latency:
/// - **Constrained baseline** (openh264's only output): no B-frames, so decode order equals
///   display order and every access unit can be shown the moment it arrives.
/// - **Bitrate rate control** (`RC_BITRATE_MODE`) with **frame skipping off**: every input frame
///   yields exactly one access unit; an empty bitstream is reported as
///   [`EncodeError::Encoder`], never passed on silently. openh264 warns at start-up that it
///   cannot hold the bitrate strictly without skipping; in practice it tracks the target on
///   steady content and overshoots on hard content (see below).
/// - **`CameraVideoRealTime` usage**, not screen content. Measured on a rendered-looking 720p
///   scene with sub-pixel pan and zoom (a one-off comparison, not kept as a test): at 8 Mb/s both hit
///   the target, screen content gains ~1.5 dB Y-PSNR but is ~40 % slower (7.8 vs 5.5 ms/frame);
///   at 2 Mb/s screen content overshot the target 2.5x (5.0 Mb/s) while camera mode stayed at
///   2.7 Mb/s (IDR included). A congestion controller needs the rate to follow `set_bitrate`, so
///   camera mode wins. (On whole-pixel scrolling, desktop-like content screen mode does better.)
/// - **Background detection off**: with it, openh264 skips macroblocks whose source is
///   unchanged and keeps whatever residue the reconstruction holds there (ghosts of a moving
///   model on a flat background); see `config` for the measurement.
/// - **Low complexity**: ~20 % faster than openh264's medium on hard content for a few tenths
///   of a dB; see `config`.
/// - **IDRs** at the start, on `force_keyframe` (openh264's `ForceIntraFrame`), and every
///   [`EncoderSettings::keyframe_interval`] frames (openh264's intra period) if set.
///   [`EncodedFrame::keyframe`] is read from the output itself: true exactly when it holds a NAL
///   unit of type 5 (IDR slice). SPS and PPS precede every IDR.
/// - **VUI colour description is signalled**: the SPS carries BT.709 primaries, transfer and
///   matrix with `video_full_range_flag = 0` (limited range), matching [`crate::rgba_to_i420`].
/// - `threads` is passed to openh264 as its thread count, but with a single slice per picture
///   (lowest latency, one NAL per frame) openh264 gains nothing from more than one.
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

/// The usage type [`OpenH264Encoder`] runs with; see the type's docs for the measurement.
const USAGE: UsageType = UsageType::CameraVideoRealTime;

fn config(s: &EncoderSettings) -> EncoderConfig {
    let c = EncoderConfig::new();
    let c = match s.max_slice_bytes {
        Some(b) if b > 0 => c.max_slice_len(b),
        _ => c,
    };
    c.bitrate(BitRate::from_bps(s.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(s.max_fps))
        .usage_type(USAGE)
        .rate_control_mode(RateControlMode::Bitrate)
        .skip_frames(false)
        .num_threads(s.threads)
        .intra_frame_period(IntraFramePeriod::from_num_frames(
            s.keyframe_interval.unwrap_or(0),
        ))
        .vui(VuiConfig::bt709())
        // Background detection marks macroblocks whose *source* did not change as background
        // and skips them, so what an earlier frame left in the *reconstruction* (where a model
        // was, coded coarsely) stays: orange specks and grey smears behind the walking fox.
        // Measured by `farview-codec-bench` on the demo's clip at 8 Mbit/s: 10,407 stray
        // background pixels over 30 sampled frames with it, 1 without, at the same bitrate
        // and a higher worst-frame PSNR (56.0 against 53.0 dB).
        .background_detection(false)
        // Low complexity (openh264's fastest mode decision and motion search): measured by
        // `farview-codec-bench` on the hard clips at 720p, 2-8 Mbit/s, medium and low
        // alternating in one session: ~20 % less time per frame (ours / x264 ultrafast from
        // 1.55x to 1.2x, geometric mean) for at most 0.4 dB Y-PSNR, and on the forest clip
        // slightly more.
        .complexity(Complexity::Low)
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
        let mut inner = Encoder::with_api_config(OpenH264API::from_source(), config(&settings))
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        crate::openh264_raw::route_to_tracing(&mut inner);
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

    /// Changes the rate controller's target on the running encoder (openh264's
    /// `ENCODER_OPTION_BITRATE`, see `openh264_raw`): no IDR, rate control carries on. Before
    /// the first frame openh264 refuses the option (it initialises lazily), and the encoder is
    /// recreated instead, which costs nothing then. Setting the current value again is a no-op.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), EncodeError> {
        let settings = EncoderSettings {
            bitrate_bps,
            ..self.settings.clone()
        };
        check(&settings)?;
        if bitrate_bps == self.settings.bitrate_bps {
            return Ok(());
        }
        if self.frames > 0 && crate::openh264_raw::set_bitrate(&mut self.inner, bitrate_bps) {
            tracing::debug!(
                from = self.settings.bitrate_bps,
                to = bitrate_bps,
                "openh264: bitrate changed on the running encoder"
            );
            self.settings = settings;
            return Ok(());
        }
        tracing::debug!(
            from = self.settings.bitrate_bps,
            to = bitrate_bps,
            "openh264: recreating encoder for a new bitrate"
        );
        self.inner = Encoder::with_api_config(OpenH264API::from_source(), config(&settings))
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        crate::openh264_raw::route_to_tracing(&mut self.inner);
        self.settings = settings;
        self.frames = 0;
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        // Configured without B-frames or lookahead: every `encode` already returned its picture.
        Ok(Vec::new())
    }

    fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    fn name(&self) -> &'static str {
        "openh264"
    }
}
