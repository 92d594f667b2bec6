//! What a connection writes on its control stream, from wherever it is computed: the connection
//! itself, a model load, or the render thread. Everything goes through one bounded queue that a
//! transport driver drains in order, so replies cannot be reordered behind the driver's back and
//! memory is bounded by the permits, not by how fast a device pipelines requests.
//!
//! This module has no I/O: the driver (QUIC today, WebTransport next) owns the stream and writes
//! what [`OutboxReceiver`] yields.

use std::sync::Arc;
use std::time::Duration;

use farview_protocol::{Event, Reply, ServerMessage, WireError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Replies and events that may be queued at once: a device that pipelines requests without
/// reading replies is slowed by transport flow control, not by unbounded memory.
pub(crate) const IN_FLIGHT: usize = 1024;

/// One item for the driver.
pub(crate) enum Outgoing {
    /// A message (boxed: a load's reply is large, a flush is small); its permit is released once
    /// written.
    Message {
        msg: Box<ServerMessage>,
        permit: Option<OwnedSemaphorePermit>,
    },
    /// Everything queued before has been handed to the transport: finish the stream, wait
    /// (bounded) until the peer has it, then signal. Sent before a close so that a refusal or a
    /// `Closing` event reaches the device instead of being overtaken by the close frame.
    Flush { done: oneshot::Sender<()> },
}

/// The receiving end, for the transport driver.
pub(crate) type OutboxReceiver = mpsc::Receiver<Outgoing>;

/// The sending end: cheap to clone, one per producer.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    permits: Arc<Semaphore>,
}

/// The outbox is closed: the connection's driver has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

impl Outbox {
    /// A new outbox and the receiver its driver drains.
    pub(crate) fn new() -> (Self, OutboxReceiver) {
        // Room for every permit plus the unmetered flushes and closing events.
        let (tx, rx) = mpsc::channel(IN_FLIGHT + 8);
        (
            Self {
                tx,
                permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            },
            rx,
        )
    }

    /// A slot for one more message; waits while [`IN_FLIGHT`] are queued.
    pub(crate) async fn reserve(&self) -> Result<ReplySink, Gone> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Gone)?;
        Ok(ReplySink {
            tx: self.tx.clone(),
            permit,
        })
    }

    /// Queues any message, waiting for a slot.
    pub(crate) async fn send(&self, msg: ServerMessage) -> Result<(), Gone> {
        self.reserve().await?.send(msg);
        if self.tx.is_closed() {
            Err(Gone)
        } else {
            Ok(())
        }
    }

    /// Queues the reply to request `seq`, waiting for a slot.
    pub(crate) async fn reply(
        &self,
        seq: u64,
        result: Result<Reply, WireError>,
    ) -> Result<(), Gone> {
        if let Err(e) = &result {
            tracing::debug!(seq, code = %e.code, message = %crate::untrusted::Untrusted(&e.message), "request refused");
        }
        self.send(ServerMessage::Reply { seq, result }).await
    }

    /// Queues an advisory event only if a slot is free right now (progress under back-pressure
    /// is skipped; replies never are). True when queued.
    pub(crate) fn try_event(&self, event: Event) -> bool {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => self
                .tx
                .try_send(Outgoing::Message {
                    msg: Box::new(ServerMessage::Event(event)),
                    permit: Some(permit),
                })
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Queues a message that must not wait for a slot (a `Closing` event or a last refusal): a
    /// device that stopped reading holds every slot, and it must still be told and closed. It
    /// uses the channel's spare room and gives up after `limit`.
    pub(crate) async fn send_unmetered(
        &self,
        msg: ServerMessage,
        limit: Duration,
    ) -> Result<(), Gone> {
        let sent = self.tx.send(Outgoing::Message {
            msg: Box::new(msg),
            permit: None,
        });
        match tokio::time::timeout(limit, sent).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }

    /// Waits until every reserved slot has been written (replies the render thread still
    /// computes included), then until the stream is finished and acknowledged; at most `limit`
    /// in all, after which the stream is finished anyway.
    pub(crate) async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let all = u32::try_from(IN_FLIGHT).unwrap_or(u32::MAX);
        // Holding every permit also stops new reservations from slipping in after the flush.
        let _all = tokio::time::timeout_at(deadline, self.permits.acquire_many(all)).await;
        let (done, rx) = oneshot::channel();
        if let Ok(Ok(())) =
            tokio::time::timeout_at(deadline, self.tx.send(Outgoing::Flush { done })).await
        {
            let _ = tokio::time::timeout_at(deadline, rx).await;
        }
    }
}

/// A reserved slot: whoever computes the reply (often the render thread) sends it here.
pub(crate) struct ReplySink {
    tx: mpsc::Sender<Outgoing>,
    permit: OwnedSemaphorePermit,
}

impl ReplySink {
    /// Sends `msg` without waiting (the slot was reserved); usable from any thread.
    pub(crate) fn send(self, msg: ServerMessage) {
        let out = Outgoing::Message {
            msg: Box::new(msg),
            permit: Some(self.permit),
        };
        // Capacity exceeds the permits, so this only fails once the connection is gone.
        if self.tx.try_send(out).is_err() {
            tracing::debug!("reply dropped: the connection's writer is gone");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_are_bounded_by_permits_and_released_when_written() {
        let (out, mut rx) = Outbox::new();
        let mut sinks = Vec::new();
        for _ in 0..IN_FLIGHT {
            sinks.push(out.reserve().await.unwrap());
        }
        // The next reservation waits until one queued message is written.
        let waiting = tokio::time::timeout(Duration::from_millis(20), out.reserve()).await;
        assert!(waiting.is_err(), "a slot was handed out beyond IN_FLIGHT");
        assert!(!out.try_event(Event::LoadProgress { seq: 1, percent: 5 }));
        sinks.pop().unwrap().send(ServerMessage::Reply {
            seq: 7,
            result: Ok(Reply::Applied),
        });
        match rx.recv().await.unwrap() {
            Outgoing::Message { msg, permit } => {
                assert_eq!(
                    *msg,
                    ServerMessage::Reply {
                        seq: 7,
                        result: Ok(Reply::Applied)
                    }
                );
                drop(permit);
            }
            Outgoing::Flush { .. } => panic!("unexpected flush"),
        }
        assert!(out.try_event(Event::LoadProgress { seq: 1, percent: 5 }));
    }

    #[tokio::test]
    async fn flush_waits_for_a_reply_still_being_computed() {
        let (out, mut rx) = Outbox::new();
        // The render thread reserved a slot and has not answered yet.
        let sink = out.reserve().await.unwrap();
        let flushing = tokio::spawn({
            let out = out.clone();
            async move { out.flush(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        sink.send(ServerMessage::Reply {
            seq: 3,
            result: Ok(Reply::Applied),
        });
        match rx.recv().await {
            Some(Outgoing::Message { msg, permit }) => {
                assert!(matches!(*msg, ServerMessage::Reply { seq: 3, .. }));
                drop(permit);
            }
            _ => panic!("the reply must come before the flush"),
        }
        match rx.recv().await {
            Some(Outgoing::Flush { done }) => done.send(()).unwrap(),
            _ => panic!("flush expected"),
        }
        flushing.await.unwrap();
    }

    #[tokio::test]
    async fn an_unmetered_message_passes_a_full_queue() {
        let (out, mut rx) = Outbox::new();
        let mut sinks = Vec::new();
        for _ in 0..IN_FLIGHT {
            sinks.push(out.reserve().await.unwrap());
        }
        for s in sinks {
            s.send(ServerMessage::Reply {
                seq: 1,
                result: Ok(Reply::Applied),
            });
        }
        // Nobody reads (a device that stopped): the closing event still gets in.
        let closing = ServerMessage::Event(Event::Closing(WireError::new(
            farview_protocol::ErrorCode::LEASE_EXPIRED,
            "lease expired",
        )));
        out.send_unmetered(closing.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        let mut last = None;
        while let Ok(item) = rx.try_recv() {
            last = Some(item);
        }
        assert!(matches!(last, Some(Outgoing::Message { msg, .. }) if *msg == closing));
    }

    #[tokio::test]
    async fn flush_is_ordered_after_what_was_queued() {
        let (out, mut rx) = Outbox::new();
        out.reply(1, Ok(Reply::CameraSet)).await.unwrap();
        let flushing = tokio::spawn({
            let out = out.clone();
            async move { out.flush(Duration::from_secs(30)).await }
        });
        assert!(matches!(rx.recv().await, Some(Outgoing::Message { .. })));
        match rx.recv().await {
            Some(Outgoing::Flush { done }) => done.send(()).unwrap(),
            _ => panic!("flush must follow the reply"),
        }
        flushing.await.unwrap();
    }
}
