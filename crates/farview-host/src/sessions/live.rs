//! One live session's entry in the manager's table: its state machine, token and settings, the
//! pipeline start-up built for it, how its device is told it ended, and its counters (read from
//! the pipeline, written to the store by the periodic checkpoint).

use std::sync::{Arc, Mutex};

use farview_protocol::LeaseInfo;
use farview_session::{Session, SessionRecord};
use tokio_util::sync::CancellationToken;

use super::{CreateSession, Ended, Snapshot};
use crate::config::SizeConfig;
use crate::pipeline::{Pipeline, Shared};

pub(super) struct Live {
    pub(super) session: Session,
    pub(super) token: String,
    pub(super) request: CreateSession,
    pub(super) size: SizeConfig,
    pub(super) pipeline: Option<Arc<Pipeline>>,
    /// What the counters are read from: the pipeline's shared state, once there is one.
    counts: Option<Arc<Shared>>,
    pub(super) ended: CancellationToken,
    pub(super) ended_why: Arc<Mutex<Option<Ended>>>,
    /// Counters as the last checkpoint wrote them (frames sent, models loaded); `None` until
    /// one did, or after one failed.
    checkpointed: Option<(u64, u64)>,
}

impl Live {
    pub(super) fn new(
        session: Session,
        token: String,
        request: CreateSession,
        size: SizeConfig,
    ) -> Self {
        Self {
            session,
            token,
            request,
            size,
            pipeline: None,
            counts: None,
            ended: CancellationToken::new(),
            ended_why: Arc::default(),
            checkpointed: None,
        }
    }

    /// Starting → ready, with the pipeline start-up built and its models in the scene (the
    /// render thread counts a model before it answers its load, so the first reading has them).
    pub(super) fn ready(&mut self, pipeline: Arc<Pipeline>, now_ms: u64) {
        self.counts = Some(pipeline.shared.clone());
        self.pipeline = Some(pipeline);
        self.session.mark_ready(now_ms);
        self.refresh();
    }

    /// Reads the counters from the pipeline into the record.
    pub(super) fn refresh(&mut self) {
        let Some(shared) = &self.counts else {
            return;
        };
        let sent = shared
            .counters
            .sent
            .load(std::sync::atomic::Ordering::Relaxed);
        let models = shared.models.load(std::sync::atomic::Ordering::Relaxed);
        self.session.count(sent, models);
    }

    /// The record, fresh counters included, when those changed since the last checkpoint (which
    /// this then counts as written).
    pub(super) fn take_unchecked(&mut self) -> Option<SessionRecord> {
        self.refresh();
        let r = self.session.record();
        let counters = Some((r.frames_sent, r.models_loaded));
        (counters != self.checkpointed).then(|| {
            self.checkpointed = counters;
            r.clone()
        })
    }

    /// The last checkpoint did not reach the store: the next one writes this record again.
    pub(super) fn checkpoint_failed(&mut self) {
        self.checkpointed = None;
    }

    /// The session as the API shows it, token included.
    pub(super) fn snapshot(&self, now_ms: u64) -> Snapshot {
        Snapshot {
            record: self.session.record().clone(),
            token: Some(self.token.clone()),
            as_of_ms: now_ms,
        }
    }

    pub(super) fn lease_info(&self, now_ms: u64) -> LeaseInfo {
        LeaseInfo {
            max_lease_ms: self.session.record().max_lease_ms,
            elapsed_ms: self.session.elapsed_ms(now_ms),
            remaining_ms: self.session.remaining_ms(now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use uuid::Uuid;

    use super::*;

    fn live(models: &[&str]) -> Live {
        let models: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
        let (session, token) = Session::new(Uuid::new_v4(), "standard", 60_000, models.clone(), 0);
        let size = SizeConfig {
            width: 64,
            height: 64,
            fps: 10.0,
            bitrate_bps: 1_000_000,
            max_triangles: 1000,
            max_upload_bytes: 1000,
            min_bitrate_bps: 0,
        };
        let request = CreateSession {
            max_lease_time: "0:1:0".into(),
            size: "standard".into(),
            models,
        };
        Live::new(session, token, request, size)
    }

    #[test]
    fn a_checkpoint_takes_a_record_only_when_its_counters_changed() {
        let mut l = live(&[]);
        let shared = Arc::new(Shared::default());
        l.counts = Some(shared.clone());
        l.session.mark_ready(10);
        assert!(l.take_unchecked().is_some(), "the first one");
        assert!(l.take_unchecked().is_none(), "nothing counted since");
        shared.counters.sent.store(356, Ordering::Relaxed);
        assert_eq!(l.take_unchecked().map(|r| r.frames_sent), Some(356));
        assert!(l.take_unchecked().is_none(), "unchanged since");
        l.checkpoint_failed();
        assert_eq!(
            l.take_unchecked().map(|r| r.frames_sent),
            Some(356),
            "again"
        );
        shared.models.store(1, Ordering::Relaxed);
        assert_eq!(l.take_unchecked().map(|r| r.models_loaded), Some(1));
    }
}
