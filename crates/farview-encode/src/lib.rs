//! Colour conversion and H.264 encoding for Farview streams.
//!
//! Rendered frames arrive as sRGB RGBA8; [`rgba_to_i420`] converts them to planar 4:2:0 with the
//! BT.709 matrix in limited range (what every hardware decoder and browser expects for HD video),
//! and a [`VideoEncoder`] turns them into Annex-B access units. [`OpenH264Encoder`] is the portable
//! software backend built from source; hardware encoders will sit behind the same trait.
//!
//! Everything here is tuned for low latency rather than compression: a remote-rendering stream is
//! interactive, so a frame must leave the encoder as soon as it is rendered. Hence no B-frames (no
//! reordering delay), no frame skipping (every rendered frame is sent), single-slice pictures, an
//! IDR at the start and whenever a client asks (joining or recovering from loss), and a colour
//! conversion cheap enough for the per-frame path (about 1 ms at 720p on one core).

mod backend;
mod color;
mod error;
mod h264;
mod openh264_raw;
mod quality;

pub use backend::{BACKENDS, EncoderKind, create_encoder};
pub use color::{I420Frame, i420_to_rgba, rgba_to_i420, rgba_to_i420_threaded};
pub use error::EncodeError;
pub use h264::OpenH264Encoder;
pub use quality::{Residue, background_residue, psnr_plane, psnr_rgba};

/// Encoder settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    /// Frame width (even).
    pub width: u32,
    /// Frame height (even).
    pub height: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Highest frame rate the stream runs at (rate control budgets bits per frame from it).
    pub max_fps: f32,
    /// Frames between IDRs; `None` (or `Some(0)`): only at the start and on request.
    pub keyframe_interval: Option<u32>,
    /// Encoder threads (0 = auto). openh264 only uses more than one with several slices.
    pub threads: u16,
    /// Split pictures into slices of at most this many bytes (`None`: one slice per picture,
    /// the lowest latency). Several slices let openh264's threads work in parallel.
    pub max_slice_bytes: Option<u32>,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            bitrate_bps: 8_000_000,
            max_fps: 60.0,
            keyframe_interval: None,
            threads: 1,
            max_slice_bytes: None,
        }
    }
}

/// One encoded access unit.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// H.264 Annex-B bytes (start codes; SPS and PPS precede every IDR).
    pub data: Vec<u8>,
    /// True exactly when the access unit holds an IDR picture.
    pub keyframe: bool,
}

/// The encoder seam: openh264 today, hardware encoders (NVENC, VA-API) later.
pub trait VideoEncoder: Send {
    /// Encodes one frame; with `force_keyframe` the result is an IDR. Every call yields output.
    fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<EncodedFrame, EncodeError>;
    /// Returns the access units the encoder still holds, in order, at the end of a stream or
    /// before a reconfiguration. Encoders with lookahead or asynchronous hardware queues hold
    /// some; a zero-latency software encoder returns none.
    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError>;
    /// Changes the target bitrate from the next frame on.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), EncodeError>;
    /// Current settings.
    fn settings(&self) -> &EncoderSettings;
    /// Backend name, for logs and metrics.
    fn name(&self) -> &'static str;
}

/// True when an Annex-B buffer contains an IDR slice (NAL type 5). Used to set
/// [`EncodedFrame::keyframe`]; exported for receivers and tests.
pub fn contains_idr(annex_b: &[u8]) -> bool {
    nal_types(annex_b).any(|t| t == 5)
}

/// NAL unit types in an Annex-B buffer, in order.
pub fn nal_types(annex_b: &[u8]) -> impl Iterator<Item = u8> + '_ {
    nal_units(annex_b).filter_map(|nal| nal.first().map(|header| header & 0x1F))
}

/// The NAL units of an Annex-B buffer, in order, without their start codes (nor the zero byte
/// that makes a start code 4 bytes long, nor trailing zero padding). Allocates nothing: it runs
/// on every encoded frame.
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    fn start_code(b: &[u8]) -> Option<usize> {
        b.windows(3).position(|w| w == [0, 0, 1])
    }
    let mut rest = start_code(annex_b).map_or(&[][..], |i| &annex_b[i + 3..]);
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (unit, next) = match start_code(rest) {
                Some(i) => (&rest[..i], &rest[i + 3..]),
                None => (rest, &[][..]),
            };
            rest = next;
            let end = unit.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            if end > 0 {
                return Some(&unit[..end]);
            }
        }
        None
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn nal_scanning() {
        // SPS (4-byte start code), PPS, IDR slice (3-byte start code).
        let au = [
            0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 9, 0, 0, 1, 0x65, 9, 9,
        ];
        assert_eq!(nal_types(&au).collect::<Vec<_>>(), vec![7, 8, 5]);
        assert!(contains_idr(&au));
        let p = [0, 0, 0, 1, 0x41, 0x9a, 5];
        assert!(!contains_idr(&p));
        assert!(!contains_idr(&[]));
    }

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        let units: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(
            units,
            [&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn default_settings() {
        let s = EncoderSettings::default();
        assert_eq!((s.width, s.height, s.bitrate_bps), (1280, 720, 8_000_000));
        assert_eq!((s.max_fps, s.keyframe_interval, s.threads), (60.0, None, 1));
    }
}
