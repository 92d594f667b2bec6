//! A bounded record of recently rendered frames, so tests (and debugging tools) can compare what
//! the host rendered with what a device decoded. Off unless a [`FrameTap`] is passed in
//! [`crate::HostOptions`]; it copies every frame, so it is not for production streams.

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
}

impl FrameTap {
    /// A tap holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&self, frame_number: u64, width: u32, height: u32, rgba: Vec<u8>) {
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

    /// Frame numbers currently held.
    pub fn numbers(&self) -> Vec<u64> {
        self.frames
            .lock()
            .map(|q| q.iter().map(|f| f.frame_number).collect())
            .unwrap_or_default()
    }
}
