//! A local implementation of Agones' SDK gRPC service (the sidecar every game server pod talks
//! to), generated from the `sdk.proto` the `agones` crate ships, for tests: it records what a
//! game server calls (Ready, Health pings, labels, annotations, Shutdown) and plays what the
//! cluster does (an allocation moves the game server to `Allocated` with the allocation's
//! annotations and tells every watcher). Labels and annotations set through the SDK get the
//! `agones.dev/sdk-` prefix, as the real sidecar gives them.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_stream::Stream;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tonic::{Request, Response, Status, Streaming};

mod api {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    tonic::include_proto!("agones.dev.sdk");
}

use api::game_server::status::Port;
use api::game_server::{ObjectMeta, Status as GsStatus};
pub use api::{Empty, GameServer, KeyValue};

/// Prefix the sidecar puts before keys set with `SetLabel` and `SetAnnotation`.
pub const SDK_PREFIX: &str = "agones.dev/sdk-";

/// What the game server has called so far.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// `Ready` calls.
    pub ready: u32,
    /// When each health ping arrived.
    pub health: Vec<Instant>,
    /// `Shutdown` calls.
    pub shutdown: u32,
    /// `Allocate` calls (a game server allocating itself).
    pub self_allocated: u32,
}

struct Inner {
    recorded: Recorded,
}

/// A running local SDK server. Dropping it stops the server.
pub struct LocalSdk {
    inner: Arc<Mutex<Inner>>,
    game_server: watch::Sender<GameServer>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for LocalSdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSdk")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LocalSdk {
    /// Starts a server on a free localhost port for a game server called `name` whose node has
    /// `address` and whose ports are `ports` (name, host port), in state `Scheduled`.
    pub async fn start(name: &str, address: &str, ports: &[(&str, i32)]) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let game_server = GameServer {
            object_meta: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                ..ObjectMeta::default()
            }),
            spec: None,
            status: Some(GsStatus {
                state: "Scheduled".into(),
                address: address.into(),
                ports: ports
                    .iter()
                    .map(|(n, p)| Port {
                        name: (*n).into(),
                        port: *p,
                    })
                    .collect(),
                ..GsStatus::default()
            }),
        };
        let (tx, _) = watch::channel(game_server);
        let inner = Arc::new(Mutex::new(Inner {
            recorded: Recorded::default(),
        }));
        let service = Service {
            inner: inner.clone(),
            game_server: tx.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(api::sdk_server::SdkServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            inner,
            game_server: tx,
            addr,
            stop: Some(stop),
        })
    }

    /// The port to give the game server (`AGONES_SDK_GRPC_PORT`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What was called so far.
    pub fn recorded(&self) -> Recorded {
        self.inner
            .lock()
            .map(|i| i.recorded.clone())
            .unwrap_or_default()
    }

    /// The game server as the sidecar holds it now.
    pub fn game_server(&self) -> GameServer {
        self.game_server.borrow().clone()
    }

    /// Its state (`Scheduled`, `Ready`, `Allocated`, `Shutdown`, ...).
    pub fn state(&self) -> String {
        self.game_server
            .borrow()
            .status
            .as_ref()
            .map(|s| s.state.clone())
            .unwrap_or_default()
    }

    /// Its labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        meta(&self.game_server.borrow())
            .labels
            .into_iter()
            .collect()
    }

    /// Its annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        meta(&self.game_server.borrow())
            .annotations
            .into_iter()
            .collect()
    }

    /// What the allocator does to a Ready game server: `Allocated`, with the allocation's
    /// annotations merged in, and every watcher told. False when it was not Ready.
    pub fn allocate(&self, annotations: &[(&str, &str)]) -> bool {
        let mut allocated = false;
        self.game_server.send_modify(|gs| {
            let Some(status) = gs.status.as_mut() else {
                return;
            };
            if status.state != "Ready" {
                return;
            }
            status.state = "Allocated".into();
            let meta = gs.object_meta.get_or_insert_with(ObjectMeta::default);
            for (k, v) in annotations {
                meta.annotations.insert((*k).into(), (*v).into());
            }
            allocated = true;
        });
        allocated
    }

    /// Waits until `done` holds for what was recorded, at most `timeout`; the last record on
    /// timeout.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&Recorded, &GameServer) -> bool,
    ) -> Result<Recorded, Recorded> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.recorded();
            if done(&r, &self.game_server()) {
                return Ok(r);
            }
            if Instant::now() >= end {
                return Err(r);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LocalSdk {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn meta(gs: &GameServer) -> ObjectMeta {
    gs.object_meta.clone().unwrap_or_default()
}

struct Service {
    inner: Arc<Mutex<Inner>>,
    game_server: watch::Sender<GameServer>,
}

impl Service {
    fn record(&self, f: impl FnOnce(&mut Recorded)) {
        if let Ok(mut i) = self.inner.lock() {
            f(&mut i.recorded);
        }
    }

    fn set_state(&self, state: &str) {
        self.game_server.send_modify(|gs| {
            if let Some(s) = gs.status.as_mut() {
                s.state = state.into();
            }
        });
    }
}

type GameServerStream = Pin<Box<dyn Stream<Item = Result<GameServer, Status>> + Send>>;

#[tonic::async_trait]
impl api::sdk_server::Sdk for Service {
    async fn ready(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.record(|r| r.ready += 1);
        // A game server that is already allocated stays so (Agones ignores the call).
        let allocated = self
            .game_server
            .borrow()
            .status
            .as_ref()
            .is_some_and(|s| s.state == "Allocated");
        if !allocated {
            self.set_state("Ready");
        }
        Ok(Response::new(Empty {}))
    }

    async fn allocate(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.record(|r| r.self_allocated += 1);
        self.set_state("Allocated");
        Ok(Response::new(Empty {}))
    }

    async fn shutdown(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.record(|r| r.shutdown += 1);
        self.set_state("Shutdown");
        Ok(Response::new(Empty {}))
    }

    async fn health(&self, request: Request<Streaming<Empty>>) -> Result<Response<Empty>, Status> {
        let mut pings = request.into_inner();
        while let Ok(Some(_)) = pings.message().await {
            self.record(|r| r.health.push(Instant::now()));
        }
        Ok(Response::new(Empty {}))
    }

    async fn get_game_server(&self, _: Request<Empty>) -> Result<Response<GameServer>, Status> {
        Ok(Response::new(self.game_server.borrow().clone()))
    }

    type WatchGameServerStream = GameServerStream;

    async fn watch_game_server(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::WatchGameServerStream>, Status> {
        let stream = tokio_stream::StreamExt::map(
            WatchStream::new(self.game_server.subscribe()),
            Ok::<_, Status>,
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_label(&self, request: Request<KeyValue>) -> Result<Response<Empty>, Status> {
        let kv = request.into_inner();
        self.game_server.send_modify(|gs| {
            gs.object_meta
                .get_or_insert_with(ObjectMeta::default)
                .labels
                .insert(format!("{SDK_PREFIX}{}", kv.key), kv.value);
        });
        Ok(Response::new(Empty {}))
    }

    async fn set_annotation(&self, request: Request<KeyValue>) -> Result<Response<Empty>, Status> {
        let kv = request.into_inner();
        self.game_server.send_modify(|gs| {
            gs.object_meta
                .get_or_insert_with(ObjectMeta::default)
                .annotations
                .insert(format!("{SDK_PREFIX}{}", kv.key), kv.value);
        });
        Ok(Response::new(Empty {}))
    }

    async fn reserve(&self, _: Request<api::Duration>) -> Result<Response<Empty>, Status> {
        self.set_state("Reserved");
        Ok(Response::new(Empty {}))
    }
}
