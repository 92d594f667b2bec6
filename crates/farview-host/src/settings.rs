//! What one stream renders and encodes at, resolved once from the configuration: the `[stream]`
//! section for ad-hoc streams, a session size's picture and bitrate for sessions (the other knobs
//! always come from `[stream]`). One function, so the two paths cannot drift apart.

use std::time::Duration;

use crate::config::{SizeConfig, StreamConfig};

/// Stream settings resolved from the config.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: f32,
    pub(crate) bitrate_bps: u32,
    pub(crate) keyframe_interval_frames: Option<u32>,
    pub(crate) max_frame_age: Duration,
    /// Convert to I420 on the GPU (falls back to the CPU where the renderer cannot).
    pub(crate) gpu_color_conversion: bool,
    /// Floor of the adaptive bitrate (`bitrate_bps` is its start and ceiling).
    pub(crate) min_bitrate_bps: u32,
    /// Skip rendering while neither the scene nor the camera changed (one frame per second
    /// keeps the stream alive).
    pub(crate) skip_unchanged_frames: bool,
    /// The encoder backend.
    pub(crate) encoder: farview_encode::EncoderKind,
    /// openh264 threads.
    pub(crate) encoder_threads: u16,
    /// Slice size limit in bytes; 0: one slice per picture.
    pub(crate) encoder_max_slice_bytes: u32,
    /// Level-of-detail error budget, pixels, and how far the frame-time budget may raise it.
    pub(crate) lod_error_px: f32,
    pub(crate) max_lod_error_px: f32,
    /// See [`crate::StreamConfig::occlusion_culling`].
    pub(crate) occlusion_culling: bool,
}

impl StreamSettings {
    /// Settings for a stream: `size` (a session's) overrides the picture and bitrate of
    /// `stream`; `software_adapter` says whether the GPU is a CPU rasterizer (colour conversion
    /// `auto` converts on the CPU there, where it is faster).
    pub(crate) fn resolve(
        stream: &StreamConfig,
        size: Option<&SizeConfig>,
        software_adapter: bool,
    ) -> Self {
        let (width, height, fps, bitrate_bps, min_bitrate_bps) = match size {
            Some(s) => (s.width, s.height, s.fps, s.bitrate_bps, s.min_bitrate_bps),
            None => (
                stream.width,
                stream.height,
                stream.fps,
                stream.bitrate_bps,
                stream.min_bitrate_bps,
            ),
        };
        Self {
            width,
            height,
            fps,
            bitrate_bps,
            keyframe_interval_frames: (stream.keyframe_interval_s > 0.0)
                .then(|| (stream.keyframe_interval_s * fps).round().max(1.0) as u32),
            max_frame_age: Duration::from_millis(stream.max_frame_age_ms),
            min_bitrate_bps: if min_bitrate_bps > 0 {
                min_bitrate_bps.min(bitrate_bps)
            } else {
                (bitrate_bps / 8).max(100_000)
            },
            skip_unchanged_frames: stream.skip_unchanged_frames,
            encoder: stream.encoder.kind(),
            encoder_threads: stream.encoder_threads,
            encoder_max_slice_bytes: stream.encoder_max_slice_bytes,
            lod_error_px: stream.lod_error_px,
            max_lod_error_px: stream.max_lod_error_px,
            occlusion_culling: stream.occlusion_culling,
            gpu_color_conversion: stream.color_conversion.on_gpu(software_adapter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_overrides_picture_and_bitrate_but_not_the_stream_knobs() {
        let stream = StreamConfig {
            keyframe_interval_s: 2.0,
            max_frame_age_ms: 123,
            ..StreamConfig::default()
        };
        let size = SizeConfig {
            width: 640,
            height: 360,
            fps: 30.0,
            bitrate_bps: 1_000_000,
            max_triangles: 1,
            max_upload_bytes: 1,
            min_bitrate_bps: 0,
        };
        let s = StreamSettings::resolve(&stream, Some(&size), true);
        assert_eq!((s.width, s.height, s.bitrate_bps), (640, 360, 1_000_000));
        assert_eq!(s.keyframe_interval_frames, Some(60));
        assert_eq!(s.max_frame_age, Duration::from_millis(123));
        assert_eq!(s.min_bitrate_bps, 125_000);
        let adhoc = StreamSettings::resolve(&stream, None, true);
        assert_eq!((adhoc.width, adhoc.height), (stream.width, stream.height));
        assert_eq!(
            adhoc.keyframe_interval_frames,
            Some((2.0 * stream.fps).round() as u32)
        );
    }

    #[test]
    fn a_floor_above_the_ceiling_is_clamped() {
        let stream = StreamConfig {
            bitrate_bps: 1_000_000,
            min_bitrate_bps: 5_000_000,
            ..StreamConfig::default()
        };
        assert_eq!(
            StreamSettings::resolve(&stream, None, false).min_bitrate_bps,
            1_000_000
        );
    }
}
