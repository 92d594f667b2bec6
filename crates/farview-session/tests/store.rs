//! The record store on a real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use farview_session::{RecordStore, Session, Status, StopReason};
use uuid::Uuid;

#[test]
fn records_survive_reopen_restart_marks_live_ones_and_retention_purges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let (live, done) = {
        let store = RecordStore::open(&path).unwrap();
        let (mut a, _) = Session::new(Uuid::new_v4(), "standard", 60_000, vec![], 1_000);
        a.mark_ready(1_500);
        store.put(a.record()).unwrap();
        let (mut b, _) = Session::new(
            Uuid::new_v4(),
            "premium",
            60_000,
            vec!["m.glb".into()],
            2_000,
        );
        b.stop(StopReason::Stopped, 3_000);
        store.put(b.record()).unwrap();
        (a.record().clone(), b.record().clone())
    };
    let store = RecordStore::open(&path).unwrap();
    assert_eq!(store.get(done.id).unwrap().unwrap(), done);
    assert_eq!(store.list(false).unwrap(), vec![live.clone()]);
    assert_eq!(store.list(true).unwrap().len(), 2);
    assert_eq!(store.fail_live("host restarted", 9_000).unwrap(), 1);
    let failed = store.get(live.id).unwrap().unwrap();
    assert_eq!(failed.status, Status::Error);
    assert_eq!(failed.stop_reason.as_deref(), Some("host restarted"));
    assert_eq!(
        store.purge_ended_before(5_000).unwrap(),
        1,
        "only the one that ended at 3000"
    );
    assert!(store.get(done.id).unwrap().is_none());
    assert!(store.get(live.id).unwrap().is_some());
    assert!(store.get(Uuid::new_v4()).unwrap().is_none());
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordStore::open(&dir.path().join("s.db")).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let (mut s, _) =
                        Session::new(Uuid::new_v4(), "standard", 60_000, vec![], t * 100 + i);
                    store.put(s.record()).unwrap();
                    if i % 2 == 0 {
                        s.stop(StopReason::Stopped, 10_000);
                        store.put(s.record()).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all = store.list(true).unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(
        all.iter().filter(|r| r.status == Status::Stopped).count(),
        8 * 13
    );
}

#[test]
fn a_late_write_cannot_revive_an_ended_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = RecordStore::open(&dir.path().join("s.db")).unwrap();
    let (mut s, _) = Session::new(Uuid::new_v4(), "standard", 60_000, vec![], 1_000);
    s.mark_ready(1_500);
    let stale_ready = s.record().clone();
    s.stop(StopReason::Stopped, 2_000);
    store.put(s.record()).unwrap();
    // A racing path wrote its older copy after the stop was recorded.
    store.put(&stale_ready).unwrap();
    assert_eq!(
        store.get(s.record().id).unwrap().unwrap().status,
        Status::Stopped
    );
    assert!(store.list(false).unwrap().is_empty());
}

#[test]
fn a_restart_stops_live_sessions_at_the_last_heartbeat_with_the_checkpointed_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let (live, late, ended) = {
        let store = RecordStore::open(&path).unwrap();
        assert_eq!(store.last_alive_ms().unwrap(), None);
        let (mut a, _) = Session::new(Uuid::new_v4(), "standard", 600_000, vec![], 1_000);
        a.mark_ready(1_500);
        store.put(a.record()).unwrap();
        let (mut b, _) = Session::new(Uuid::new_v4(), "standard", 600_000, vec![], 2_000);
        b.stop(StopReason::Stopped, 3_000);
        store.put(b.record()).unwrap();
        let ended = b.record().clone();
        // The host streams: a checkpoint every few seconds, counters only rise.
        a.count(120, 1);
        b.count(99, 9); // ended: its record is final, a checkpoint leaves it alone
        store.checkpoint([a.record(), b.record()], 5_000).unwrap();
        a.count(356, 1);
        store.checkpoint([a.record()], 10_000).unwrap();
        let mut stale = a.record().clone();
        stale.frames_sent = 200;
        store.checkpoint([&stale], 15_000).unwrap();
        assert_eq!(store.last_alive_ms().unwrap(), Some(15_000));
        // Created after the last heartbeat, just before the host was killed.
        let (c, _) = Session::new(Uuid::new_v4(), "standard", 600_000, vec![], 16_000);
        store.put(c.record()).unwrap();
        // Killed here: 356 frames were sent, the record says so, status still `ready`.
        (a.record().id, c.record().id, ended)
    };
    let store = RecordStore::open(&path).unwrap();
    assert_eq!(store.get(live).unwrap().unwrap().frames_sent, 356);
    assert_eq!(store.fail_live("host restarted", 99_000).unwrap(), 2);
    let failed = store.get(live).unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.stop_reason.as_deref()),
        (Status::Error, Some("host restarted"))
    );
    assert_eq!(
        (failed.frames_sent, failed.models_loaded),
        (356, 1),
        "counters kept"
    );
    assert_eq!(
        failed.stopped_at_ms,
        Some(15_000),
        "stopped when last known alive, not at the restart"
    );
    assert_eq!(
        store.get(late).unwrap().unwrap().stopped_at_ms,
        Some(16_000),
        "never before the session was created"
    );
    assert_eq!(store.get(ended.id).unwrap().unwrap(), ended);
    assert_eq!(store.fail_live("host restarted", 100_000).unwrap(), 0);
}

#[test]
fn without_a_heartbeat_a_restart_stops_live_sessions_at_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = RecordStore::open(&dir.path().join("s.db")).unwrap();
    let (s, _) = Session::new(Uuid::new_v4(), "standard", 60_000, vec![], 1_000);
    store.put(s.record()).unwrap();
    assert_eq!(store.fail_live("host restarted", 9_000).unwrap(), 1);
    assert_eq!(
        store.get(s.record().id).unwrap().unwrap().stopped_at_ms,
        Some(9_000)
    );
}
