//! The SDK's bounded frame queue between the media readers and the app.
//!
//! When the app stops taking frames and the queue is full, waiting would push back into QUIC's
//! flow-control windows, which hold many frames and so turn a pause into seconds of latency. So
//! instead the queue drops what it holds, the reader stops that group's stream (the host then
//! abandons it) and asks for a keyframe, and frames are refused until that keyframe arrives: the
//! app always resumes with a fresh, decodable frame.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::Frame;

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    last_pushed: Option<u64>,
    awaiting_keyframe: bool,
    closed: bool,
    dropped: u64,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued for the app.
    Queued,
    /// Older than a frame already queued (a late frame of an abandoned group): ignored.
    Stale,
    /// Not a keyframe while the queue waits for one: ignored.
    AwaitingKeyframe,
    /// The queue was full: it was emptied; the caller should abandon its group and ask for a
    /// keyframe.
    Overflow,
}

#[derive(Debug)]
pub(crate) struct FrameQueue {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl FrameQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&self, frame: Frame) -> Push {
        let Ok(mut s) = self.state.lock() else {
            return Push::Stale;
        };
        if s.last_pushed
            .is_some_and(|l| frame.header.frame_number <= l)
        {
            return Push::Stale;
        }
        if s.awaiting_keyframe && !frame.header.keyframe {
            s.dropped += 1;
            return Push::AwaitingKeyframe;
        }
        if s.frames.len() >= self.capacity {
            s.dropped += s.frames.len() as u64 + 1;
            s.frames.clear();
            s.awaiting_keyframe = true;
            return Push::Overflow;
        }
        s.awaiting_keyframe = false;
        s.last_pushed = Some(frame.header.frame_number);
        s.frames.push_back(frame);
        drop(s);
        self.notify.notify_one();
        Push::Queued
    }

    /// The next frame; `None` once closed and drained. Cancel-safe: a frame is removed only in
    /// the same step that returns it.
    pub(crate) async fn pop(&self) -> Option<Frame> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().ok()?;
                if let Some(f) = s.frames.pop_front() {
                    return Some(f);
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    pub(crate) fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Frames the SDK dropped because the app did not take them in time.
    pub(crate) fn dropped(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.dropped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use farview_protocol::FrameHeader;

    fn frame(n: u64, keyframe: bool) -> Frame {
        Frame {
            header: FrameHeader {
                frame_number: n,
                keyframe,
                ..Default::default()
            },
            data: vec![],
            received_us: 0,
        }
    }

    #[tokio::test]
    async fn overflow_empties_the_queue_and_waits_for_a_keyframe() {
        let q = FrameQueue::new(2);
        assert_eq!(q.push(frame(1, true)), Push::Queued);
        assert_eq!(q.push(frame(2, false)), Push::Queued);
        assert_eq!(q.push(frame(3, false)), Push::Overflow);
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.push(frame(4, false)), Push::AwaitingKeyframe);
        assert_eq!(q.push(frame(5, true)), Push::Queued);
        assert_eq!(q.push(frame(5, true)), Push::Stale);
        assert_eq!(q.push(frame(6, false)), Push::Queued);
        assert_eq!(q.pop().await.unwrap().header.frame_number, 5);
        assert_eq!(q.pop().await.unwrap().header.frame_number, 6);
        q.close();
        assert!(q.pop().await.is_none());
    }
}
