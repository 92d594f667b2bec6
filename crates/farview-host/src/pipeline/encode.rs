//! The encode stage: colour conversion (unless the GPU already did it) and a [`VideoEncoder`]
//! behind the trait, so hardware encoders slot in beside openh264. It skips a frame *before*
//! encoding when the network queue is full, which keeps the H.264 reference chain intact.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use farview_encode::{
    EncodeError, EncodedFrame, EncoderSettings, I420Frame, VideoEncoder, rgba_to_i420,
};
use farview_protocol::FrameHeader;

use super::clock::StageClock;
use super::stats::{Shared, Stage};
use super::{NetFrame, RawFrame, StreamSettings};
use crate::metrics::DropReason;

/// The encoder for a stream, of the backend the configuration names (`auto`: the best this
/// build and machine have; see `farview_encode::create_encoder`).
pub(crate) fn encoder_for(s: &StreamSettings) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    farview_encode::create_encoder(
        s.encoder,
        EncoderSettings {
            width: s.width,
            height: s.height,
            bitrate_bps: s.bitrate_bps,
            max_fps: s.fps,
            keyframe_interval: s.keyframe_interval_frames,
            threads: s.encoder_threads,
            max_slice_bytes: (s.encoder_max_slice_bytes > 0).then_some(s.encoder_max_slice_bytes),
        },
    )
}

/// Runs until the render stage stops or the sender goes away; flushes the encoder at the end.
pub(crate) fn encode_loop(
    mut encoder: Box<dyn VideoEncoder>,
    mut i420: I420Frame,
    frames: mpsc::Receiver<RawFrame>,
    pool: mpsc::SyncSender<Vec<u8>>,
    net: tokio::sync::mpsc::Sender<NetFrame>,
    shared: &Shared,
    clock: &Arc<dyn StageClock>,
) -> Result<(), String> {
    let m = &shared.metrics;
    let mut first = true;
    let mut last: Option<RawMeta> = None;
    while let Ok(raw) = frames.recv() {
        let t0 = clock.now();
        if raw.i420 {
            // Converted on the GPU: one copy into the encoder's frame.
            i420.copy_from_packed(&raw.rgba)
                .map_err(|e| e.to_string())?;
        } else {
            rgba_to_i420(&raw.rgba, raw.stride, &mut i420).map_err(|e| e.to_string())?;
        }
        shared.stage(Stage::Convert, clock.now().saturating_duration_since(t0));
        let meta = RawMeta::of(&raw);
        let _ = pool.try_send(raw.rgba);
        if net.is_closed() {
            return Ok(());
        }
        if net.capacity() == 0 {
            // Skipped before encoding, so later P-frames still reference frames the device has.
            shared.dropped(DropReason::EncoderBusy);
            continue;
        }
        let want = shared.target_bitrate.load(Ordering::Relaxed);
        let have = shared.applied_bitrate.load(Ordering::Relaxed);
        if want != have && want > 0 {
            // openh264 takes the new rate on the running encoder (no IDR); only before its first
            // frame is it recreated, which costs nothing then.
            encoder
                .set_bitrate(u32::try_from(want).unwrap_or(u32::MAX))
                .map_err(|e| e.to_string())?;
            shared.applied_bitrate.store(want, Ordering::Relaxed);
            m.encoder_bitrate_bps
                .add(i64::try_from(want).unwrap_or(i64::MAX) - i64::try_from(have).unwrap_or(0));
            tracing::debug!(from = have, to = want, "encoder bitrate changed");
        }
        let force =
            std::mem::take(&mut first) | shared.force_keyframe.swap(false, Ordering::Relaxed);
        let t1 = clock.now();
        let encoded = encoder.encode(&i420, force).map_err(|e| e.to_string())?;
        shared.stage(Stage::Encode, clock.now().saturating_duration_since(t1));
        if !forward(&net, &meta, encoded, &i420, clock) {
            return Ok(());
        }
        last = Some(meta);
    }
    // The render stage stopped: whatever the encoder still holds belongs to the last frame.
    if let Some(meta) = last {
        for encoded in encoder.flush().map_err(|e| e.to_string())? {
            if !forward(&net, &meta, encoded, &i420, clock) {
                break;
            }
        }
    }
    Ok(())
}

/// What the encode stage keeps of a raw frame for its header.
#[derive(Clone, Copy)]
struct RawMeta {
    number: u64,
    last_seq: u64,
    render_start_us: u64,
    render_end_us: u64,
    animation: Option<farview_protocol::FrameAnimation>,
    detail: Option<farview_protocol::FrameDetail>,
}

impl RawMeta {
    fn of(raw: &RawFrame) -> Self {
        Self {
            number: raw.number,
            last_seq: raw.last_seq,
            render_start_us: raw.render_start_us,
            render_end_us: raw.render_end_us,
            animation: raw.animation,
            detail: raw.detail,
        }
    }
}

/// Hands an access unit to the sender; false once the sender is gone.
fn forward(
    net: &tokio::sync::mpsc::Sender<NetFrame>,
    meta: &RawMeta,
    encoded: EncodedFrame,
    i420: &I420Frame,
    clock: &Arc<dyn StageClock>,
) -> bool {
    let header = FrameHeader {
        frame_number: meta.number,
        group: 0,
        last_command_seq: meta.last_seq,
        render_start_us: meta.render_start_us,
        render_end_us: meta.render_end_us,
        encode_end_us: clock.wall_us(),
        send_us: 0,
        width: i420.width() as u16,
        height: i420.height() as u16,
        keyframe: encoded.keyframe,
        animation: meta.animation,
        detail: meta.detail,
    };
    let sent = net.try_send(NetFrame {
        header,
        data: encoded.data,
    });
    !(sent.is_err() && net.is_closed())
}
