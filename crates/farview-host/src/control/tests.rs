//! The control state machine on virtual time: no sockets, no runtime, no sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use farview_protocol::{CameraPose, Event, LeaseInfo, encode_message};

fn bytes(seq: u64, request: Request) -> Vec<u8> {
    encode_message(&ClientMessage { seq, request }).unwrap()
}

fn hello(version: u16) -> Request {
    Request::Hello {
        version,
        client: "test".into(),
        session: None,
    }
}

fn info() -> StreamInfo {
    StreamInfo {
        version: PROTOCOL_VERSION,
        width: 64,
        height: 64,
        fps: 30.0,
        codec: "h264".into(),
        host: "test".into(),
        adapter: "none".into(),
        session_id: None,
        resume_secret: None,
        lease: None::<LeaseInfo>,
    }
}

fn drain(c: &mut ControlState) -> Vec<Action> {
    std::iter::from_fn(|| c.poll()).collect()
}

fn error_code(a: &Action) -> Option<ErrorCode> {
    match a {
        Action::Send(ServerMessage::Reply { result: Err(e), .. }) => Some(e.code),
        _ => None,
    }
}

/// A connection past its Welcome.
fn open(t0: Instant) -> ControlState {
    let mut c = ControlState::new(t0);
    c.on_bytes(&bytes(1, hello(PROTOCOL_VERSION)), t0);
    assert!(matches!(drain(&mut c)[..], [Action::Bind { seq: 1, .. }]));
    c.on_bound(Ok(info()), t0);
    let a = drain(&mut c);
    assert!(matches!(
        a[..],
        [Action::Send(ServerMessage::Reply {
            seq: 1,
            result: Ok(Reply::Welcome(_))
        })]
    ));
    c
}

#[test]
fn hello_then_bind_then_welcome() {
    let t0 = Instant::now();
    let c = open(t0);
    assert!(c.wants_read());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn unsupported_version_queues_the_typed_reply_before_the_close() {
    let t0 = Instant::now();
    let mut c = ControlState::new(t0);
    c.on_bytes(&bytes(1, hello(PROTOCOL_VERSION + 99)), t0);
    let a = drain(&mut c);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(error_code(&a[0]), Some(ErrorCode::UNSUPPORTED_VERSION));
    assert!(matches!(&a[1], Action::Close { code, .. } if *code == CloseCode::PROTOCOL_ERROR));
    assert!(c.is_closed() && !c.wants_read());
}

#[test]
fn a_first_message_that_is_not_hello_is_refused_before_the_close() {
    let t0 = Instant::now();
    let mut c = ControlState::new(t0);
    c.on_bytes(&bytes(5, Request::Ping), t0);
    let a = drain(&mut c);
    assert_eq!(error_code(&a[0]), Some(ErrorCode::HELLO_REQUIRED));
    assert!(matches!(
        &a[0],
        Action::Send(ServerMessage::Reply { seq: 5, .. })
    ));
    assert!(matches!(a[1], Action::Close { .. }));
    assert_eq!(a.len(), 2);
}

#[test]
fn hello_deadline_runs_on_virtual_time() {
    let t0 = Instant::now();
    let mut c = ControlState::new(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + HELLO_TIMEOUT));
    c.on_timeout(t0 + HELLO_TIMEOUT - Duration::from_millis(1));
    assert!(drain(&mut c).is_empty());
    c.on_timeout(t0 + HELLO_TIMEOUT);
    assert!(
        matches!(&drain(&mut c)[..], [Action::Close { code, .. }] if *code == CloseCode::PROTOCOL_ERROR)
    );
    // Once closed, nothing more happens.
    c.on_bytes(&bytes(1, hello(PROTOCOL_VERSION)), t0 + HELLO_TIMEOUT);
    assert!(drain(&mut c).is_empty());
}

#[test]
fn a_refused_bind_sends_the_reason_then_closes() {
    let t0 = Instant::now();
    let mut c = ControlState::new(t0);
    c.on_bytes(&bytes(1, hello(PROTOCOL_VERSION)), t0);
    drain(&mut c);
    let refusal = WireError::new(ErrorCode::SESSION_IN_USE, "in use");
    c.on_bound(Err((CloseCode::REFUSED, refusal)), t0);
    let a = drain(&mut c);
    assert_eq!(error_code(&a[0]), Some(ErrorCode::SESSION_IN_USE));
    assert!(matches!(&a[1], Action::Close { code, .. } if *code == CloseCode::REFUSED));
}

#[test]
fn requests_sent_before_the_welcome_wait_for_it() {
    let t0 = Instant::now();
    let mut c = ControlState::new(t0);
    let mut b = bytes(1, hello(PROTOCOL_VERSION));
    b.extend(bytes(2, Request::Ping));
    c.on_bytes(&b, t0);
    // Only the bind: the ping is buffered until the Welcome is queued.
    assert!(matches!(drain(&mut c)[..], [Action::Bind { .. }]));
    assert!(!c.wants_read());
    c.on_bound(Ok(info()), t0);
    let a = drain(&mut c);
    assert!(matches!(
        a[0],
        Action::Send(ServerMessage::Reply { seq: 1, .. })
    ));
    assert_eq!(
        a[1],
        Action::Answer {
            seq: 2,
            request: Request::Ping
        }
    );
}

#[test]
fn sequence_numbers_must_increase() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.on_bytes(&bytes(1, Request::Ping), t0);
    let a = drain(&mut c);
    assert_eq!(error_code(&a[0]), Some(ErrorCode::PROTOCOL_ERROR));
    c.on_bytes(&bytes(2, Request::GetStats), t0);
    assert_eq!(
        drain(&mut c),
        vec![Action::Render {
            seq: 2,
            request: Request::GetStats
        }]
    );
}

#[test]
fn scene_requests_wait_behind_a_load_and_apply_in_order_after_it() {
    let t0 = Instant::now();
    let mut c = open(t0);
    let mut b = bytes(
        2,
        Request::LoadModel {
            path: "a.glb".into(),
        },
    );
    b.extend(bytes(3, Request::GetStats));
    b.extend(bytes(4, Request::Ping));
    b.extend(bytes(
        5,
        Request::SetCamera {
            pose: CameraPose {
                position: [0.0, 0.0, 3.0],
                rotation: [0.0, 0.0, 0.0, 1.0],
                fov_y: 1.0,
                near: 0.1,
                far: 100.0,
            },
        },
    ));
    c.on_bytes(&b, t0);
    let a = drain(&mut c);
    // The load starts, the ping (connection route) is answered at once; the scene requests wait.
    assert_eq!(
        a,
        vec![
            Action::StartLoad {
                seq: 2,
                source: LoadSource::Path("a.glb".into())
            },
            Action::Answer {
                seq: 4,
                request: Request::Ping
            },
        ]
    );
    assert!(c.loading());
    c.on_load_done(Ok(Reply::LoadCancelled), t0 + Duration::from_secs(3));
    let a = drain(&mut c);
    assert!(matches!(
        a[0],
        Action::Send(ServerMessage::Reply { seq: 2, .. })
    ));
    assert!(matches!(a[1], Action::Render { seq: 3, .. }));
    assert!(matches!(a[2], Action::Render { seq: 5, .. }));
    assert_eq!(a.len(), 3);
}

#[test]
fn a_second_load_in_the_backlog_holds_what_follows_it() {
    let t0 = Instant::now();
    let mut c = open(t0);
    let mut b = bytes(2, Request::LoadModel { path: "a".into() });
    b.extend(bytes(3, Request::LoadModel { path: "b".into() }));
    b.extend(bytes(4, Request::GetStats));
    c.on_bytes(&b, t0);
    assert!(matches!(
        drain(&mut c)[..],
        [Action::StartLoad { seq: 2, .. }]
    ));
    c.on_load_done(Err(WireError::new(ErrorCode::MODEL_NOT_FOUND, "no")), t0);
    let a = drain(&mut c);
    assert_eq!(error_code(&a[0]), Some(ErrorCode::MODEL_NOT_FOUND));
    assert!(matches!(a[1], Action::StartLoad { seq: 3, .. }));
    assert_eq!(a.len(), 2, "GetStats must wait for the second load: {a:?}");
    c.on_load_done(Ok(Reply::LoadCancelled), t0);
    assert!(matches!(drain(&mut c)[1], Action::Render { seq: 4, .. }));
}

#[test]
fn a_look_change_holds_what_follows_it_like_a_load() {
    let t0 = Instant::now();
    let mut c = open(t0);
    let update = farview_protocol::LookUpdate {
        environment: Some("studio".into()),
        ..Default::default()
    };
    let mut b = bytes(2, Request::SetLook(update.clone()));
    b.extend(bytes(3, Request::GetLook));
    b.extend(bytes(4, Request::Ping));
    c.on_bytes(&b, t0);
    // The environment may take seconds to prefilter: pings are answered meanwhile, and the
    // GetLook waits so that it reads the new look.
    assert_eq!(
        drain(&mut c),
        vec![
            Action::StartLook {
                seq: 2,
                update: Box::new(update)
            },
            Action::Answer {
                seq: 4,
                request: Request::Ping
            },
        ]
    );
    assert!(c.loading());
    c.on_load_done(Ok(Reply::Applied), t0 + Duration::from_secs(3));
    let a = drain(&mut c);
    assert!(matches!(
        a[0],
        Action::Send(ServerMessage::Reply {
            seq: 2,
            result: Ok(Reply::Applied)
        })
    ));
    assert_eq!(
        a[1],
        Action::Render {
            seq: 3,
            request: Request::GetLook
        }
    );
    assert_eq!(a.len(), 2);
}

#[test]
fn cancel_names_the_running_load_only() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.on_bytes(&bytes(2, Request::LoadModel { path: "a".into() }), t0);
    drain(&mut c);
    c.on_bytes(&bytes(3, Request::CancelLoad { load_seq: 9 }), t0);
    assert_eq!(
        error_code(&drain(&mut c)[0]),
        Some(ErrorCode::INVALID_ARGUMENT)
    );
    c.on_bytes(&bytes(4, Request::CancelLoad { load_seq: 2 }), t0);
    let a = drain(&mut c);
    assert_eq!(a[0], Action::CancelLoad { seq: 2 });
    assert!(matches!(
        a[1],
        Action::Send(ServerMessage::Reply {
            seq: 4,
            result: Ok(Reply::LoadCancelled)
        })
    ));
}

#[test]
fn the_backlog_is_bounded_and_stops_reading_when_full() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.on_bytes(&bytes(2, Request::LoadModel { path: "a".into() }), t0);
    drain(&mut c);
    let mut b = Vec::new();
    for seq in 3..(3 + MAX_BACKLOG as u64 + 10) {
        b.extend(bytes(seq, Request::GetStats));
    }
    c.on_bytes(&b, t0);
    assert!(drain(&mut c).is_empty());
    assert!(!c.wants_read(), "a full backlog must stop reading");
    // The ten that did not fit stay buffered (not refused, not lost) until the load ends.
    c.on_load_done(Ok(Reply::LoadCancelled), t0);
    let a = drain(&mut c);
    assert_eq!(a.len(), 1 + MAX_BACKLOG + 10);
    let seqs: Vec<u64> = a[1..]
        .iter()
        .map(|a| match a {
            Action::Render { seq, .. } => *seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "out of order");
    assert!(c.wants_read());
}

#[test]
fn long_upload_names_are_refused() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.on_bytes(
        &bytes(
            2,
            Request::LoadUploadedModel {
                upload: 1,
                name: "n".repeat(MAX_UPLOAD_NAME + 1),
            },
        ),
        t0,
    );
    assert_eq!(
        error_code(&drain(&mut c)[0]),
        Some(ErrorCode::INVALID_ARGUMENT)
    );
    assert!(!c.loading());
}

#[test]
fn a_second_hello_is_a_typed_error_not_a_close() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.on_bytes(&bytes(2, hello(PROTOCOL_VERSION)), t0);
    assert_eq!(
        error_code(&drain(&mut c)[0]),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
    assert!(!c.is_closed());
}

#[test]
fn broken_framing_closes_without_a_reply() {
    let t0 = Instant::now();
    let mut c = open(t0);
    // A length prefix far beyond the message limit.
    c.on_bytes(&[0xff, 0xff, 0xff, 0xff], t0);
    assert!(
        matches!(&drain(&mut c)[..], [Action::Close { code, .. }] if *code == CloseCode::PROTOCOL_ERROR)
    );
}

#[test]
fn ending_sends_a_closing_event_then_closes_and_drops_waiting_work() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.on_bytes(&bytes(2, Request::LoadModel { path: "a".into() }), t0);
    c.on_bytes(&bytes(3, Request::GetStats), t0);
    drain(&mut c);
    c.on_ending(
        ErrorCode::LEASE_EXPIRED,
        CloseCode::SESSION_ENDED,
        "lease expired",
    );
    let a = drain(&mut c);
    assert!(matches!(
        &a[0],
        Action::Send(ServerMessage::Event(Event::Closing(e))) if e.code == ErrorCode::LEASE_EXPIRED
    ));
    assert!(matches!(&a[1], Action::Close { code, .. } if *code == CloseCode::SESSION_ENDED));
    // A late load result after the close is ignored (no reply, no backlog replay).
    c.on_load_done(Ok(Reply::LoadCancelled), t0);
    assert!(drain(&mut c).is_empty());
}

#[test]
fn end_of_stream_mid_message_is_a_protocol_error() {
    let t0 = Instant::now();
    let mut c = open(t0);
    let b = bytes(2, Request::Ping);
    c.on_bytes(&b[..b.len() - 1], t0);
    c.on_end(t0);
    assert!(
        matches!(&drain(&mut c)[..], [Action::Close { code, .. }] if *code == CloseCode::PROTOCOL_ERROR)
    );
    let mut c = open(t0);
    c.on_bytes(&b, t0);
    c.on_end(t0);
    let a = drain(&mut c);
    assert!(matches!(a[0], Action::Answer { seq: 2, .. }));
    assert!(matches!(&a[1], Action::Close { code, .. } if *code == CloseCode::NORMAL));
}
