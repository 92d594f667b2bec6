//! The readback ring: a few mappable buffers, so the next frame can be recorded and submitted
//! while an earlier one is still being mapped and copied out (wgpu's `render_to_texture`
//! example: `COPY_SRC` target, copy into a buffer with rows padded to 256 bytes, `map_async`,
//! poll).
//!
//! # Waiting on a shared device
//!
//! Every stream's renderer shares one [`GpuContext`], so one device and one queue: a frame waits
//! behind the frames other streams queued before it, and any thread's `Device::poll` or
//! `Queue::submit` runs the device's maintenance, which takes *every* ready `map_async` callback
//! and fires it on *that* thread after the maintenance returns. So a successful
//! `PollType::Wait` for our submission does not mean our callback has run: another stream's
//! thread may hold it, about to fire it. And one blocking wait is not a reliable clock either:
//! wgpu-hal's GL backend clamps a wait to `i32::MAX` ns (about 2.1 s) whatever timeout is asked.
//! [`ReadbackRing::collect`] therefore waits in short slices, re-reading the callback's state
//! after each, until the frame is mapped or its budget ([`READBACK_TIMEOUT`] by default) is
//! spent; then it returns the transient [`RenderError::ReadbackTimeout`] and keeps the frame in
//! flight for the next call.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::{GpuContext, RenderError};

/// Readback buffers per renderer: enough for one frame being copied out, one in flight, one spare.
pub(crate) const RING: usize = 3;
/// How long a blocking [`ReadbackRing::collect`] waits for one frame before it reports the
/// transient [`RenderError::ReadbackTimeout`].
pub(crate) const READBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest single blocking wait: well under the GL backend's ~2.1 s cap, and short enough
/// that a callback fired on another thread is noticed promptly.
const WAIT_SLICE: Duration = Duration::from_millis(200);
/// Pause before re-reading the map state when the GPU is done but another thread holds our
/// callback.
const CALLBACK_NAP: Duration = Duration::from_micros(100);

const MAP_PENDING: u8 = 0;
const MAP_OK: u8 = 1;
const MAP_FAILED: u8 = 2;

/// A frame copied back to host memory: rows of `width * 4` RGBA8 (sRGB) bytes, `stride` apart,
/// or, with [`FrameRenderer::enable_gpu_i420`](crate::FrameRenderer::enable_gpu_i420), a
/// tightly packed I420 frame (Y, U, V planes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadbackFrame {
    /// The tag passed to [`FrameRenderer::submit`](crate::FrameRenderer::submit) (the host's
    /// frame number).
    pub tag: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes between RGBA rows (padded to wgpu's 256-byte copy alignment); `width` for I420.
    pub stride: usize,
    /// The bytes are I420 (converted on the GPU), not RGBA.
    pub i420: bool,
}

/// Removes the row padding of a read-back frame: tightly packed `width * 4` byte rows (see
/// [`pack_rows`], which does it in place).
pub fn strip_padding(data: &[u8], frame: ReadbackFrame) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let read = if frame.i420 {
        w * h * 3 / 2
    } else {
        frame.stride.max(1).max(w * 4) * h
    };
    let mut out = data[..read.min(data.len())].to_vec();
    pack_rows(&mut out, frame);
    out
}

/// Leaves `data` holding the frame's tightly packed `width * 4` byte rows (or its I420 bytes),
/// in place: a caller that reuses one buffer frame after frame neither allocates nor copies
/// the frame once more. Rows are moved whole, not byte by byte (an iterator of bytes copied a
/// 3.7 MB frame at a few bytes a cycle).
pub(crate) fn pack_rows(data: &mut Vec<u8>, frame: ReadbackFrame) {
    let row = frame.width as usize * 4;
    if frame.i420 || frame.stride == row {
        let len = if frame.i420 {
            frame.width as usize * frame.height as usize * 3 / 2
        } else {
            row * frame.height as usize
        };
        data.truncate(len);
        return;
    }
    // Row by row towards the front; each row's bytes lie at or after where they go.
    let stride = frame.stride.max(1);
    let mut packed = 0;
    for r in 0..frame.height as usize {
        let from = r * stride;
        if from >= data.len() {
            break;
        }
        let n = row.min(stride).min(data.len() - from);
        data.copy_within(from..from + n, packed);
        packed += n;
    }
    data.truncate(packed);
}

struct Slot {
    buffer: wgpu::Buffer,
    in_flight: Option<InFlight>,
}

struct InFlight {
    tag: u64,
    submission: wgpu::SubmissionIndex,
    state: Arc<AtomicU8>,
}

/// What the ring's buffers hold.
#[derive(Clone, Copy)]
enum Layout {
    /// RGBA rows `stride` bytes apart.
    Rgba { stride: usize },
    /// Packed I420 from the GPU conversion pass.
    I420,
}

/// The ring of readback buffers of one renderer.
pub(crate) struct ReadbackRing {
    ctx: GpuContext,
    width: u32,
    height: u32,
    layout: Layout,
    frame_bytes: u64,
    slots: Vec<Slot>,
    pending: VecDeque<usize>,
    next: usize,
    timeout: Duration,
}

fn readback_buffer(device: &wgpu::Device, label: &str, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    })
}

impl ReadbackRing {
    /// A ring for RGBA frames with rows `stride` bytes apart.
    pub(crate) fn new_rgba(ctx: &GpuContext, width: u32, height: u32, stride: usize) -> Self {
        let frame_bytes = (stride * height as usize) as u64;
        let slots = (0..RING)
            .map(|_| Slot {
                buffer: readback_buffer(ctx.device(), "readback", frame_bytes),
                in_flight: None,
            })
            .collect();
        Self {
            ctx: ctx.clone(),
            width,
            height,
            layout: Layout::Rgba { stride },
            frame_bytes,
            slots,
            pending: VecDeque::with_capacity(RING),
            next: 0,
            timeout: READBACK_TIMEOUT,
        }
    }

    /// Reallocates the buffers for packed I420 frames of `bytes` bytes. Only before the first
    /// frame is submitted.
    pub(crate) fn switch_to_i420(&mut self, bytes: u64) -> Result<(), RenderError> {
        if !self.pending.is_empty() {
            return Err(RenderError::Gpu(
                "enable GPU colour conversion before submitting frames".into(),
            ));
        }
        for slot in &mut self.slots {
            slot.buffer = readback_buffer(self.ctx.device(), "readback i420", bytes);
        }
        self.layout = Layout::I420;
        self.frame_bytes = bytes;
        Ok(())
    }

    /// How long a blocking [`Self::collect`] waits before the transient timeout.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The slot the next frame goes to, or [`RenderError::RingFull`].
    pub(crate) fn reserve(&self) -> Result<usize, RenderError> {
        match self.slots.get(self.next) {
            Some(slot) if slot.in_flight.is_none() => Ok(self.next),
            _ => Err(RenderError::RingFull(RING)),
        }
    }

    /// The buffer of a slot from [`Self::reserve`], for the frame's copy command.
    pub(crate) fn buffer(&self, slot: usize) -> Option<&wgpu::Buffer> {
        self.slots.get(slot).map(|s| &s.buffer)
    }

    /// Marks a reserved slot in flight once its frame is submitted, and asks for its mapping.
    pub(crate) fn push(&mut self, slot: usize, tag: u64, submission: wgpu::SubmissionIndex) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let state = Arc::new(AtomicU8::new(MAP_PENDING));
        let cb_state = state.clone();
        // The callback may run on any thread that polls or submits on the shared device.
        s.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            cb_state.store(
                if r.is_ok() { MAP_OK } else { MAP_FAILED },
                Ordering::Release,
            );
        });
        s.in_flight = Some(InFlight {
            tag,
            submission,
            state,
        });
        self.pending.push_back(slot);
        self.next = (slot + 1) % RING;
    }

    /// Frames submitted but not yet collected.
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// GPU memory the ring's buffers take.
    pub(crate) fn bytes(&self) -> u64 {
        self.frame_bytes * RING as u64
    }

    /// Copies the oldest submitted frame into `out` and frees its buffer. With `wait`, blocks
    /// until the frame is mapped or the timeout passes ([`RenderError::ReadbackTimeout`], the
    /// frame stays in flight); without, returns `None` if it is not ready yet. Returns `None`
    /// when nothing is in flight.
    pub(crate) fn collect(
        &mut self,
        wait: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<ReadbackFrame>, RenderError> {
        let Some(&index) = self.pending.front() else {
            return Ok(None);
        };
        let Some(flight) = self.slots.get(index).and_then(|s| s.in_flight.as_ref()) else {
            self.pending.pop_front();
            return Ok(None);
        };
        let (tag, state) = (flight.tag, flight.state.clone());
        if wait {
            self.wait_mapped(tag, &state, &flight.submission)?;
        } else {
            self.ctx
                .device()
                .poll(wgpu::PollType::Poll)
                .map_err(|e| RenderError::Readback(e.to_string()))?;
        }
        match state.load(Ordering::Acquire) {
            MAP_OK => {}
            MAP_FAILED => {
                self.free_front(index);
                return Err(match self.ctx.lost() {
                    Some(why) => RenderError::DeviceLost(why),
                    None => RenderError::Readback(format!(
                        "mapping the readback buffer of frame {tag} failed"
                    )),
                });
            }
            _ => return Ok(None),
        }
        let Some(slot) = self.slots.get(index) else {
            return Ok(None);
        };
        {
            let view = slot
                .buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| RenderError::Readback(e.to_string()))?;
            out.clear();
            out.extend_from_slice(&view);
        }
        slot.buffer.unmap();
        self.free_front(index);
        let (stride, i420) = match self.layout {
            Layout::Rgba { stride } => (stride, false),
            Layout::I420 => (self.width as usize, true),
        };
        Ok(Some(ReadbackFrame {
            tag,
            width: self.width,
            height: self.height,
            stride,
            i420,
        }))
    }

    fn free_front(&mut self, index: usize) {
        if let Some(slot) = self.slots.get_mut(index) {
            slot.in_flight = None;
        }
        self.pending.pop_front();
    }

    /// Blocks until the map callback of the frame `tag` has run (either way), in slices of at
    /// most [`WAIT_SLICE`], for at most `self.timeout` (see the module documentation).
    fn wait_mapped(
        &self,
        tag: u64,
        state: &AtomicU8,
        submission: &wgpu::SubmissionIndex,
    ) -> Result<(), RenderError> {
        let start = Instant::now();
        let mut slices = 0u32;
        loop {
            if state.load(Ordering::Acquire) != MAP_PENDING {
                if slices > 1 {
                    tracing::debug!(tag, waited = ?start.elapsed(), slices, "slow readback");
                }
                return Ok(());
            }
            if let Some(why) = self.ctx.lost() {
                return Err(RenderError::DeviceLost(why));
            }
            let waited = start.elapsed();
            let Some(left) = self.timeout.checked_sub(waited).filter(|d| !d.is_zero()) else {
                tracing::warn!(
                    tag,
                    ?waited,
                    "readback not finished in time; frame kept in flight"
                );
                return Err(RenderError::ReadbackTimeout { tag, waited });
            };
            slices += 1;
            match self.ctx.device().poll(wgpu::PollType::Wait {
                submission_index: Some(submission.clone()),
                timeout: Some(left.min(WAIT_SLICE)),
            }) {
                // The GPU is done. Our callback has run, or another thread's poll or submit took
                // it and is about to fire it: look again shortly.
                Ok(_) => {
                    if state.load(Ordering::Acquire) == MAP_PENDING {
                        std::thread::sleep(CALLBACK_NAP);
                    }
                }
                // The queue is busy with earlier frames (ours or other streams'): keep waiting.
                Err(wgpu::PollError::Timeout) => {}
                Err(e) => return Err(RenderError::Readback(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32, stride: usize) -> ReadbackFrame {
        ReadbackFrame {
            tag: 0,
            width,
            height,
            stride,
            i420: false,
        }
    }

    #[test]
    fn padding_is_stripped_row_by_row_and_unpadded_rows_are_copied_whole() {
        // Three rows of 2 pixels (8 bytes) padded to 12, each byte its row and column.
        let padded: Vec<u8> = (0..3u8)
            .flat_map(|r| (0..12u8).map(move |c| r * 16 + c))
            .collect();
        let stripped = strip_padding(&padded, frame(2, 3, 12));
        let expected: Vec<u8> = (0..3u8)
            .flat_map(|r| (0..8u8).map(move |c| r * 16 + c))
            .collect();
        assert_eq!(stripped, expected);
        // No padding: the bytes as they are, without what lies past the last row.
        let mut tight = expected.clone();
        tight.extend_from_slice(&[0xee; 5]);
        assert_eq!(strip_padding(&tight, frame(2, 3, 8)), expected);
        // A short buffer gives what it holds, never a panic.
        assert_eq!(
            strip_padding(&padded[..20], frame(2, 3, 12)),
            expected[..16]
        );
        assert!(strip_padding(&[], frame(2, 3, 0)).is_empty());
    }

    /// Packing in place leaves each row's first `width * 4` bytes, row after row, and no more
    /// than the frame: padded, tight or short buffers, odd strides, I420.
    #[test]
    fn rows_packed_in_place_match_the_stripped_copy() {
        // The rows as an independent reference reads them.
        let reference = |data: &[u8], f: ReadbackFrame| -> Vec<u8> {
            let row = f.width as usize * 4;
            if f.i420 {
                let len = f.width as usize * f.height as usize * 3 / 2;
                return data[..len.min(data.len())].to_vec();
            }
            if f.stride == row {
                return data[..(row * f.height as usize).min(data.len())].to_vec();
            }
            data.chunks(f.stride.max(1))
                .take(f.height as usize)
                .flat_map(|r| r[..row.min(r.len())].to_vec())
                .collect()
        };
        let padded: Vec<u8> = (0..3u8)
            .flat_map(|r| (0..12u8).map(move |c| r * 16 + c))
            .collect();
        let mut tight = strip_padding(&padded, frame(2, 3, 12));
        tight.extend_from_slice(&[0xee; 5]);
        let cases = [
            (padded.clone(), frame(2, 3, 12)),
            (padded[..20].to_vec(), frame(2, 3, 12)),
            (padded[..5].to_vec(), frame(2, 3, 12)),
            (tight.clone(), frame(2, 3, 8)),
            (Vec::new(), frame(2, 3, 0)),
            (Vec::new(), frame(2, 3, 12)),
            (padded.clone(), frame(2, 3, 0)),
            (padded.clone(), frame(4, 3, 5)),
            (
                padded.clone(),
                ReadbackFrame {
                    i420: true,
                    ..frame(4, 2, 4)
                },
            ),
        ];
        for (data, f) in cases {
            let want = reference(&data, f);
            let mut got = data.clone();
            pack_rows(&mut got, f);
            assert_eq!(got, want, "{} bytes, {f:?}", data.len());
            assert_eq!(strip_padding(&data, f), want, "{} bytes, {f:?}", data.len());
        }
    }
}
