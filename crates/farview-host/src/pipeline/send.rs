//! The send stage: the QUIC driver for [`GroupSender`]'s decisions (native and WebTransport
//! sessions alike, through `web_transport_quinn`, which wraps native connections raw). It opens one unidirectional
//! stream per group, writes frame records with a deadline, and samples the QUIC path for the
//! adaptive bitrate controller.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use farview_protocol::MediaStreamHeader;

use super::clock::StageClock;
use super::group::{GroupAction, GroupSender, WriteOutcome};
use super::stats::{Shared, Stage, StatsLog};
use super::{Attachment, NetFrame, StreamSettings};
use crate::abr::{BitrateController, PathSample, SAMPLE_INTERVAL};

/// Feeds the adaptive bitrate controller from the attached connection's path statistics.
struct PathSampler {
    abr: BitrateController,
    started: std::time::Instant,
    last_sample: std::time::Instant,
    last_path: (u64, u64),
    last_drops: u64,
}

impl PathSampler {
    fn restart(&mut self, conn: &quinn::Connection) {
        let p = conn.stats().path;
        self.last_path = (p.sent_packets, p.lost_packets);
    }

    fn maybe_sample(&mut self, conn: &quinn::Connection, shared: &Shared, now: std::time::Instant) {
        if now.saturating_duration_since(self.last_sample) < SAMPLE_INTERVAL {
            return;
        }
        self.last_sample = now;
        let c = &shared.counters;
        let p = conn.stats().path;
        let drops = c.dropped_encoder_busy.load(Ordering::Relaxed)
            + c.dropped_stale.load(Ordering::Relaxed);
        let sample = PathSample {
            now_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            rtt_ms: p.rtt.as_secs_f64() * 1000.0,
            sent: p.sent_packets.saturating_sub(self.last_path.0),
            lost: p.lost_packets.saturating_sub(self.last_path.1),
            dropped_frames: drops.saturating_sub(self.last_drops),
        };
        self.last_path = (p.sent_packets, p.lost_packets);
        self.last_drops = drops;
        if let Some(b) = self.abr.on_sample(sample) {
            tracing::debug!(bitrate = b, ?sample, "adaptive bitrate");
            shared.target_bitrate.store(u64::from(b), Ordering::Relaxed);
        }
    }
}

/// Resets a group's stream: the device stops receiving frames it can no longer decode.
fn reset(stream: &mut Option<web_transport_quinn::SendStream>) {
    if let Some(mut s) = stream.take() {
        let _ = s.reset(0);
    }
}

pub(crate) async fn send_loop(
    mut attachment: tokio::sync::watch::Receiver<Option<Attachment>>,
    mut frames: tokio::sync::mpsc::Receiver<NetFrame>,
    shared: Arc<Shared>,
    settings: StreamSettings,
    clock: Arc<dyn StageClock>,
) {
    let c = &shared.counters;
    let m = shared.metrics.clone();
    let mut groups = GroupSender::new(settings.max_frame_age.as_micros() as u64);
    let mut target: Option<Attachment> = None;
    let mut stream: Option<web_transport_quinn::SendStream> = None;
    let mut stats = StatsLog::new(clock.now());
    let mut sampler = PathSampler {
        abr: BitrateController::new(
            settings.bitrate_bps,
            settings.min_bitrate_bps,
            settings.bitrate_bps,
        ),
        started: clock.now(),
        last_sample: clock.now(),
        last_path: (0, 0),
        last_drops: 0,
    };
    loop {
        let next = tokio::select! {
            changed = attachment.changed() => {
                if changed.is_err() {
                    break;
                }
                target = attachment.borrow_and_update().clone();
                match &target {
                    Some(t) => {
                        sampler.restart(&t.conn);
                        if groups.on_attach() {
                            reset(&mut stream);
                        }
                    }
                    None => {
                        reset(&mut stream);
                        groups.on_detach();
                    }
                }
                stream = None;
                shared.force_keyframe.store(true, Ordering::Relaxed);
                continue;
            }
            next = tokio::time::timeout(Duration::from_secs(1), frames.recv()) => next,
        };
        let now = clock.now();
        stats.maybe_log(c, now);
        if let Some(t) = &target {
            sampler.maybe_sample(&t.conn, &shared, now);
        }
        let mut f = match next {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => continue,
        };
        let Some(conn) = target.as_ref().map(|t| t.conn.clone()) else {
            continue;
        };
        let group = match groups.on_frame(&f.header, clock.wall_us()) {
            GroupAction::Discard => continue,
            GroupAction::Drop { reason, reset: r } => {
                shared.dropped(reason);
                if r {
                    reset(&mut stream);
                }
                shared.force_keyframe.store(true, Ordering::Relaxed);
                continue;
            }
            GroupAction::Open { group } => {
                // A keyframe closes the current group and opens the next on a fresh stream.
                if let Some(mut s) = stream.take() {
                    let _ = s.finish();
                }
                let opened = async {
                    let mut s = conn.open_uni().await.ok()?;
                    let _ = s.set_priority(0);
                    s.write_all(&MediaStreamHeader { version: 1, group }.encode())
                        .await
                        .ok()?;
                    Some(s)
                };
                match opened.await {
                    Some(s) => stream = Some(s),
                    None => {
                        tracing::debug!("device connection gone; waiting for another");
                        groups.on_write(WriteOutcome::ConnectionLost);
                        target = None;
                        continue;
                    }
                }
                c.keyframes.fetch_add(1, Ordering::Relaxed);
                m.keyframes.inc();
                group
            }
            GroupAction::Send { group } => group,
        };
        let Some(s) = stream.as_mut() else { continue };
        f.header.group = group;
        f.header.send_us = clock.wall_us();
        let Ok(prefix) = f.header.record_prefix(f.data.len()) else {
            tracing::warn!(
                bytes = f.data.len(),
                "encoded frame exceeds the record limit; dropped"
            );
            continue;
        };
        let t0 = clock.now();
        let write = async {
            s.write_all(&prefix).await?;
            s.write_all(&f.data).await
        };
        let outcome = match tokio::time::timeout(settings.max_frame_age, write).await {
            Ok(Ok(())) => {
                shared.stage(Stage::Send, clock.now().saturating_duration_since(t0));
                let n = (prefix.len() + f.data.len()) as u64;
                c.bytes_sent.fetch_add(n, Ordering::Relaxed);
                m.bytes_sent.inc_by(n);
                m.frame_bytes.observe(f.data.len() as f64);
                WriteOutcome::Sent
            }
            Ok(Err(web_transport_quinn::WriteError::Stopped(code))) => {
                tracing::debug!(group, code = %code, "device stopped the group");
                stream = None;
                WriteOutcome::StoppedByPeer
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "media stream closed; waiting for a device");
                stream = None;
                target = None;
                WriteOutcome::ConnectionLost
            }
            Err(_) => WriteOutcome::Stalled,
        };
        if let Some(GroupAction::Drop { reason, reset: r }) = groups.on_write(outcome) {
            shared.dropped(reason);
            if r {
                reset(&mut stream);
            }
            shared.force_keyframe.store(true, Ordering::Relaxed);
        }
    }
    if let Some(mut s) = stream.take() {
        let _ = s.finish();
    }
}
