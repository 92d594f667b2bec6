//! The two openh264 options the `openh264` crate's safe API lacks, set through its raw API. This
//! module is the one place in the crate that uses `unsafe`, for these two options:
//!
//! - **Trace routing.** openh264 prints its warnings with its own `printf` to stderr (at encoder
//!   start: "bitrate can't be controlled ... without enabling skip frame", which is by design
//!   here: every rendered frame is sent). Operators read logs through `tracing`, so its
//!   messages are routed there.
//! - **Runtime bitrate.** `ENCODER_OPTION_BITRATE` changes the rate controller's target on the
//!   running encoder. Without it a bitrate change meant a new encoder, whose first frame is an
//!   IDR: a frame-size spike on exactly the congested link that asked for fewer bits.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};

use openh264::encoder::Encoder;
use openh264_sys2::{
    ENCODER_OPTION_BITRATE, ENCODER_OPTION_TRACE_CALLBACK, SBitrateInfo, SPATIAL_LAYER_ALL,
    WELS_LOG_ERROR, WELS_LOG_INFO, WELS_LOG_WARNING, WelsTraceCallback,
};

/// openh264's trace callback: one formatted, NUL-terminated message per call.
unsafe extern "C" fn forward(_context: *mut c_void, level: c_int, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: openh264 passes a NUL-terminated string that lives for the duration of the call
    // (its trace buffer), and we copy out of it before returning.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    let text = text.trim();
    match level {
        l if l <= WELS_LOG_ERROR => tracing::error!(target: "openh264", "{text}"),
        l if l <= WELS_LOG_WARNING => tracing::warn!(target: "openh264", "{text}"),
        l if l <= WELS_LOG_INFO => tracing::info!(target: "openh264", "{text}"),
        _ => tracing::debug!(target: "openh264", "{text}"),
    }
}

/// Routes the encoder's messages to `tracing`. Call before the first frame: openh264 starts
/// (and prints its start-up warnings) lazily on it.
pub(crate) fn route_to_tracing(encoder: &mut Encoder) {
    let callback: WelsTraceCallback = Some(forward);
    // SAFETY: the encoder is created (its raw API holds a live `ISVCEncoder`); trace options are
    // accepted before initialisation (openh264's `SetOption` exempts them from its init check);
    // openh264 copies the function pointer out of the pointed-to variable during the call; and
    // `forward` is a plain function that lives for the whole program. The return code is
    // ignored: without the callback openh264 keeps printing to stderr, which is harmless.
    unsafe {
        let raw = encoder.raw_api();
        let _ = raw.set_option(
            ENCODER_OPTION_TRACE_CALLBACK,
            (&raw const callback).cast_mut().cast(),
        );
    }
}

/// Sets the target bitrate of a running encoder without restarting it (no IDR); false when
/// openh264 refuses, as it does before its first frame (it initialises lazily on it), and the
/// caller then recreates the encoder instead.
pub(crate) fn set_bitrate(encoder: &mut Encoder, bitrate_bps: u32) -> bool {
    let mut info = SBitrateInfo {
        iLayer: SPATIAL_LAYER_ALL,
        iBitrate: c_int::try_from(bitrate_bps).unwrap_or(c_int::MAX),
    };
    // SAFETY: the encoder is created (its raw API holds a live `ISVCEncoder`); `info` is a
    // valid `SBitrateInfo` that outlives the call, which reads it and keeps no pointer to it;
    // openh264 checks its initialisation state and the values itself and answers with a
    // return code, which is checked.
    unsafe {
        let raw = encoder.raw_api();
        raw.set_option(ENCODER_OPTION_BITRATE, (&raw mut info).cast()) == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::{EncoderSettings, I420Frame, OpenH264Encoder, VideoEncoder};

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_start_up_warning_reaches_tracing() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let settings = EncoderSettings {
                width: 64,
                height: 64,
                ..EncoderSettings::default()
            };
            let mut encoder = OpenH264Encoder::new(settings).unwrap();
            let frame = I420Frame::new(64, 64).unwrap();
            encoder.encode(&frame, false).unwrap();
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("openh264") && log.contains("skip frame"),
            "openh264's warning arrives as a tracing event: {log:?}"
        );
    }
}
