//! Which frames go out, and on which group stream: a state machine with no I/O, fed each encoded
//! frame's header and the time, answering what the send driver must do. One group is one QUIC
//! unidirectional stream that starts at an IDR (moq's model), so a lagging device restarts at a
//! keyframe on a fresh stream instead of receiving a queue of stale frames.

use farview_protocol::FrameHeader;

use crate::metrics::DropReason;

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupAction {
    /// Finish the current group's stream (if any), open one for `group` and send the frame.
    Open { group: u64 },
    /// Send the frame on the current group's stream.
    Send { group: u64 },
    /// Drop the frame and ask the encoder for a keyframe; with `reset`, also reset the current
    /// group's stream (the device would only receive frames it can no longer use).
    Drop { reason: DropReason, reset: bool },
    /// No device is attached: the frame goes nowhere and counts as nothing.
    Discard,
}

/// How a write on the group stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// Written.
    Sent,
    /// The device stopped the stream (it fell behind and gave up on the group).
    StoppedByPeer,
    /// The write did not finish within the frame age limit.
    Stalled,
    /// The connection is gone.
    ConnectionLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No device attached.
    Detached,
    /// A device is attached; frames are dropped until the next keyframe opens a group.
    AwaitingKeyframe,
    /// Frames go on the stream of this group.
    InGroup(u64),
}

/// The group sender's state for one pipeline.
#[derive(Debug)]
pub(crate) struct GroupSender {
    state: State,
    /// The last group number handed out (groups count up across devices and restarts).
    group: u64,
    max_age_us: u64,
}

impl GroupSender {
    /// Frames older than `max_age_us` (from render start to now) are stale.
    pub(crate) fn new(max_age_us: u64) -> Self {
        Self {
            state: State::Detached,
            group: 0,
            max_age_us,
        }
    }

    /// A device was attached (or replaced): it starts at the next keyframe. True when a stream
    /// of the previous device's group must be reset.
    pub(crate) fn on_attach(&mut self) -> bool {
        let had_stream = matches!(self.state, State::InGroup(_));
        self.state = State::AwaitingKeyframe;
        had_stream
    }

    /// The device went away.
    pub(crate) fn on_detach(&mut self) {
        self.state = State::Detached;
    }

    /// Decides about one encoded frame at wall-clock time `now_us`.
    pub(crate) fn on_frame(&mut self, header: &FrameHeader, now_us: u64) -> GroupAction {
        if self.state == State::Detached {
            return GroupAction::Discard;
        }
        if now_us.saturating_sub(header.render_start_us) > self.max_age_us {
            return self.restart(DropReason::Stale);
        }
        if header.keyframe {
            self.group += 1;
            self.state = State::InGroup(self.group);
            return GroupAction::Open { group: self.group };
        }
        match self.state {
            State::InGroup(group) => GroupAction::Send { group },
            _ => GroupAction::Drop {
                reason: DropReason::AwaitingKeyframe,
                reset: false,
            },
        }
    }

    /// How the last `Open` or `Send` write ended; a `Drop` tells the driver to reset.
    pub(crate) fn on_write(&mut self, outcome: WriteOutcome) -> Option<GroupAction> {
        match outcome {
            WriteOutcome::Sent => None,
            WriteOutcome::StoppedByPeer | WriteOutcome::Stalled => {
                Some(self.restart(DropReason::Stale))
            }
            WriteOutcome::ConnectionLost => {
                self.state = State::Detached;
                None
            }
        }
    }

    /// Abandons the current group: the next frame sent opens a new one at an IDR.
    fn restart(&mut self, reason: DropReason) -> GroupAction {
        let reset = matches!(self.state, State::InGroup(_));
        self.state = State::AwaitingKeyframe;
        GroupAction::Drop { reason, reset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn frame(render_start_us: u64, keyframe: bool) -> FrameHeader {
        FrameHeader {
            frame_number: 0,
            group: 0,
            last_command_seq: 0,
            render_start_us,
            render_end_us: render_start_us,
            encode_end_us: render_start_us,
            send_us: 0,
            width: 16,
            height: 16,
            keyframe,
            animation: None,
            detail: None,
        }
    }

    #[test]
    fn nothing_goes_out_without_a_device() {
        let mut g = GroupSender::new(250 * MS);
        assert_eq!(g.on_frame(&frame(0, true), 0), GroupAction::Discard);
    }

    #[test]
    fn a_device_starts_at_a_keyframe_on_a_new_group() {
        let mut g = GroupSender::new(250 * MS);
        assert!(!g.on_attach());
        assert_eq!(
            g.on_frame(&frame(0, false), MS),
            GroupAction::Drop {
                reason: DropReason::AwaitingKeyframe,
                reset: false
            }
        );
        assert_eq!(
            g.on_frame(&frame(16 * MS, true), 17 * MS),
            GroupAction::Open { group: 1 }
        );
        assert_eq!(
            g.on_frame(&frame(33 * MS, false), 34 * MS),
            GroupAction::Send { group: 1 }
        );
        // A periodic keyframe closes the group and opens the next.
        assert_eq!(
            g.on_frame(&frame(50 * MS, true), 51 * MS),
            GroupAction::Open { group: 2 }
        );
    }

    #[test]
    fn a_stale_frame_resets_the_group_and_waits_for_a_keyframe() {
        let mut g = GroupSender::new(250 * MS);
        g.on_attach();
        g.on_frame(&frame(0, true), MS);
        // Rendered at 100 ms, sent at 351 ms: older than 250 ms.
        assert_eq!(
            g.on_frame(&frame(100 * MS, false), 351 * MS),
            GroupAction::Drop {
                reason: DropReason::Stale,
                reset: true
            }
        );
        // Later fresh P-frames are useless without the dropped one.
        assert!(matches!(
            g.on_frame(&frame(400 * MS, false), 401 * MS),
            GroupAction::Drop {
                reason: DropReason::AwaitingKeyframe,
                ..
            }
        ));
        assert_eq!(
            g.on_frame(&frame(420 * MS, true), 421 * MS),
            GroupAction::Open { group: 2 }
        );
        // Exactly at the limit is still fresh.
        assert_eq!(
            g.on_frame(&frame(500 * MS, false), 750 * MS),
            GroupAction::Send { group: 2 }
        );
    }

    #[test]
    fn a_stalled_or_stopped_write_restarts_the_group() {
        let mut g = GroupSender::new(250 * MS);
        g.on_attach();
        g.on_frame(&frame(0, true), 0);
        assert_eq!(
            g.on_write(WriteOutcome::Stalled),
            Some(GroupAction::Drop {
                reason: DropReason::Stale,
                reset: true
            })
        );
        assert!(matches!(
            g.on_frame(&frame(10, false), 10),
            GroupAction::Drop { .. }
        ));
        g.on_frame(&frame(20, true), 20);
        assert!(g.on_write(WriteOutcome::StoppedByPeer).is_some());
        assert_eq!(g.on_write(WriteOutcome::Sent), None);
    }

    #[test]
    fn a_lost_connection_detaches_and_a_new_device_resets_the_old_group() {
        let mut g = GroupSender::new(250 * MS);
        g.on_attach();
        g.on_frame(&frame(0, true), 0);
        assert!(
            g.on_attach(),
            "the previous device's open group must be reset"
        );
        g.on_frame(&frame(0, true), 0);
        assert_eq!(g.on_write(WriteOutcome::ConnectionLost), None);
        assert_eq!(g.on_frame(&frame(0, true), 0), GroupAction::Discard);
        g.on_detach();
        assert!(!g.on_attach());
    }
}
