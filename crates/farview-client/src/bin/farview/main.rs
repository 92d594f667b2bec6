//! `farview`: the command-line client, built only on the SDK.

mod camera;
mod exit;
mod sinks;
mod stream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use farview_client::{ClientError, CreateSession, ErrorCode, SessionClient, SessionInfo};

use crate::exit::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "farview",
    version,
    about = "Farview client: sessions, streams, models",
    after_help = exit::EXIT_CODES_HELP
)]
struct Cli {
    /// Session API base URL (the host's HTTP address; `https://` when it serves TLS).
    #[arg(long, global = true, env = "FARVIEW_API")]
    api: Option<String>,
    /// API key for the session API (sent as a bearer token).
    #[arg(long, global = true, env = "FARVIEW_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Also trust the CA certificates in this PEM file for `https://` APIs (a private CA).
    #[arg(long, global = true, env = "FARVIEW_API_CA")]
    api_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect, load a model, move the camera and write the stream (H.264, MP4, PNGs).
    Stream(Box<stream::StreamArgs>),
    /// List the models the host can load (paths under its assets root, with sizes).
    Models(stream::ConnectArgs),
    /// Create, inspect, extend and stop sessions through the host's session API.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Ask the host's `/healthz` (no API key needed); exit 0 when it answers ok. For container
    /// health checks.
    Health,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Create a session and print it as JSON.
    Create {
        /// Maximum lease as h:m:s.
        #[arg(long)]
        lease: String,
        /// Size name from the host's config.
        #[arg(long, default_value = "standard")]
        size: String,
        /// Model to load before the session reports ready (repeatable).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Use this id (idempotent PUT) instead of a host-chosen one.
        #[arg(long)]
        id: Option<String>,
        /// Wait until the session is ready (or fails) before printing it.
        #[arg(long)]
        wait: bool,
    },
    /// Print one session as JSON.
    Show {
        /// Session id.
        id: String,
    },
    /// Print live sessions as a JSON array.
    List {
        /// Include stopped, expired and failed sessions still retained.
        #[arg(long)]
        all: bool,
    },
    /// Set a live session's lease (h:m:s from creation) and print it.
    Extend {
        /// Session id.
        id: String,
        /// New maximum lease as h:m:s.
        #[arg(long)]
        lease: String,
    },
    /// Stop a session (stopping twice is fine) and print it.
    Stop {
        /// Session id.
        id: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FARVIEW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            Failure::of(&e).code()
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let api = api_client(&cli)?;
    match cli.command {
        Command::Stream(args) => stream::stream(*args, api.as_ref()).await,
        Command::Models(args) => stream::models(args, api.as_ref()).await,
        Command::Session(cmd) => {
            let Some(api) = api.filter(|_| cli.api_key.is_some()) else {
                return Err(usage(
                    "session commands need --api URL and --api-key KEY (or FARVIEW_API / FARVIEW_API_KEY)",
                ));
            };
            session(cmd, &api).await
        }
        Command::Health => {
            let Some(api) = api else {
                return Err(usage("health needs --api URL (or FARVIEW_API)"));
            };
            let health = api.health().await?;
            print_json(&health)?;
            anyhow::ensure!(
                health.get("status").and_then(|s| s.as_str()) == Some("ok"),
                "the host is not healthy"
            );
            Ok(())
        }
    }
}

/// A usage error found after parsing: exits 2 like clap's own.
fn usage(message: &str) -> anyhow::Error {
    clap::Error::raw(clap::error::ErrorKind::MissingRequiredArgument, message).into()
}

/// The API client the flags describe (a key is optional: `health` needs none).
fn api_client(cli: &Cli) -> anyhow::Result<Option<SessionClient>> {
    let Some(url) = &cli.api else {
        return Ok(None);
    };
    let ca = match &cli.api_ca {
        Some(path) => std::fs::read(path)
            .map_err(|e| anyhow::Error::new(e).context(format!("reading {}", path.display())))?,
        None => Vec::new(),
    };
    let key = cli.api_key.as_deref().unwrap_or_default();
    Ok(Some(SessionClient::with_root_certificates(url, key, &ca)?))
}

/// Prints the error with what to do about the common ones.
fn report(e: &anyhow::Error) {
    if let Some(clap) = e.downcast_ref::<clap::Error>() {
        eprintln!("error: {clap}");
        return;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Host(w)) if w.code == ErrorCode::SESSION_RESUME_REQUIRED => eprintln!(
            "error: host refused with {}: {}\nhint: the session is bound to the device that \
             first connected; pass the resume secret it printed with --resume-secret",
            w.code, w.message
        ),
        Some(ClientError::Host(w)) => {
            eprintln!("error: host refused with {}: {}", w.code, w.message)
        }
        Some(ClientError::Api {
            status,
            code,
            message,
        }) => eprintln!("error: API answered {status} {code}: {message}"),
        _ => eprintln!("error: {e:#}"),
    }
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn session(cmd: SessionCommand, api: &SessionClient) -> anyhow::Result<()> {
    let info: SessionInfo = match cmd {
        SessionCommand::Create {
            lease,
            size,
            models,
            id,
            wait,
        } => {
            let req = CreateSession {
                max_lease_time: lease,
                size,
                models,
            };
            let created = match id {
                Some(id) => api.put_session(&id, &req).await?,
                None => api.create_session(&req).await?,
            };
            if wait {
                stream::wait_ready(api, &created.id).await?
            } else {
                created
            }
        }
        SessionCommand::Show { id } => api.session(&id).properties().await?,
        SessionCommand::List { all } => return print_json(&api.list(all).await?),
        SessionCommand::Extend { id, lease } => api.session(&id).extend_lease(&lease).await?,
        SessionCommand::Stop { id } => api.session(&id).stop().await?,
    };
    print_json(&info)
}

/// How long `--wait` and `stream --session` wait for a session to be ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(120);
