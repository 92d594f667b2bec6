//! A bounded record of recently rendered frames, so tests (and debugging tools) can compare what
//! the host rendered with what a device decoded. Off unless a [`FrameTap`] is passed in
//! [`crate::HostOptions`]; it copies every frame, so it is not for production streams.
//!
//! The tap is also where tests inject a render-loop failure ([`FrameTap::fail_size`]): a failure
//! that real drivers produce rarely and at random (device lost, out of memory) has to be made on
//! purpose to prove that it ends only the session it hits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One rendered frame: tightly packed RGBA8 (sRGB) rows.
#[derive(Clone, PartialEq, Eq)]
pub struct TappedFrame {
    /// The host's frame number (matches [`farview_protocol::FrameHeader::frame_number`]).
    pub frame_number: u64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl std::fmt::Debug for TappedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TappedFrame")
            .field("frame_number", &self.frame_number)
            .finish_non_exhaustive()
    }
}

/// Keeps the last `capacity` rendered frames of every stream on the host.
#[derive(Clone, Debug)]
pub struct FrameTap {
    frames: Arc<Mutex<VecDeque<TappedFrame>>>,
    capacity: usize,
    fail: Arc<Mutex<Option<(u32, u32, String)>>>,
    slow: Arc<Mutex<Option<(u32, u32, u32)>>>,
}

impl FrameTap {
    /// A tap holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity: capacity.max(1),
            fail: Arc::default(),
            slow: Arc::default(),
        }
    }

    /// Makes the render loop of every stream of `width`x`height` fail with `cause` at its next
    /// frame, as a lost device would.
    pub fn fail_size(&self, width: u32, height: u32, cause: &str) {
        if let Ok(mut f) = self.fail.lock() {
            *f = Some((width, height, cause.to_owned()));
        }
    }

    /// Makes the next `count` readbacks of streams of `width`x`height` outlast their budget, as
    /// on a GPU busy with other streams' work (the renderer's real timeout path, with a zero
    /// budget for one wait).
    pub fn slow_readbacks(&self, width: u32, height: u32, count: u32) {
        if let Ok(mut s) = self.slow.lock() {
            *s = Some((width, height, count));
        }
    }

    /// Whether the next readback of this size should time out (and counts it down).
    pub(crate) fn take_slow_readback(&self, width: u32, height: u32) -> bool {
        let Ok(mut s) = self.slow.lock() else {
            return false;
        };
        match s.as_mut() {
            Some((w, h, n)) if (*w, *h) == (width, height) && *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Records a frame, or returns the injected failure for its size.
    pub(crate) fn push(
        &self,
        frame_number: u64,
        width: u32,
        height: u32,
        rgba: Vec<u8>,
    ) -> Result<(), String> {
        if let Ok(f) = self.fail.lock()
            && let Some((w, h, cause)) = f.as_ref()
            && (*w, *h) == (width, height)
        {
            return Err(cause.clone());
        }
        if let Ok(mut q) = self.frames.lock() {
            if q.len() == self.capacity {
                q.pop_front();
            }
            q.push_back(TappedFrame {
                frame_number,
                width,
                height,
                rgba,
            });
        }
        Ok(())
    }

    /// The frame with that number, if still held.
    pub fn get(&self, frame_number: u64) -> Option<TappedFrame> {
        self.frames
            .lock()
            .ok()?
            .iter()
            .find(|f| f.frame_number == frame_number)
            .cloned()
    }

    /// The frame with that number and size, if still held (streams of different sizes number
    /// their frames independently).
    pub fn get_sized(&self, frame_number: u64, width: u32, height: u32) -> Option<TappedFrame> {
        self.frames
            .lock()
            .ok()?
            .iter()
            .find(|f| (f.frame_number, f.width, f.height) == (frame_number, width, height))
            .cloned()
    }

    /// Frame numbers currently held.
    pub fn numbers(&self) -> Vec<u64> {
        self.frames
            .lock()
            .map(|q| q.iter().map(|f| f.frame_number).collect())
            .unwrap_or_default()
    }
}
