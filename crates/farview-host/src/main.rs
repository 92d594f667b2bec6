//! `farview-host`: runs a host node until Ctrl-C or SIGTERM.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    quiet_mesa_device_select();
    farview_host::limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` connects to a Wayland or X
/// display to put "the display's GPU" first, and on a headless host prints
/// "error: XDG_RUNTIME_DIR is invalid or not set" on stderr, outside the log, at every start.
/// The host chooses its adapter itself (`adapter`), so the layer has nothing to add: it is
/// turned off unless the operator configured it (`NODEVICE_SELECT`, `MESA_VK_DEVICE_SELECT*`).
#[allow(unsafe_code)]
fn quiet_mesa_device_select() {
    let configured = std::env::vars_os().any(|(k, _)| {
        k.to_str()
            .is_some_and(|k| k == "NODEVICE_SELECT" || k.starts_with("MESA_VK_DEVICE_SELECT"))
    });
    if !configured {
        // SAFETY: called first thing in `main`, before the runtime or any other thread exists,
        // so nothing reads the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = farview_host::Cli::parse();
    let filter = EnvFilter::try_from_env("FARVIEW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One JSON object per line, span fields included, for log shippers.
        farview_host::LogFormat::Json => logs.json().with_current_span(true).init(),
        farview_host::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let print = cli.print_config;
    let config = cli.into_config()?;
    if print {
        // Secrets are shown masked: the output lands in terminals, logs and tickets.
        let mut shown = config.clone();
        for key in &mut shown.sessions.api_keys {
            *key = "********".into();
        }
        println!("{}", toml::to_string_pretty(&shown)?);
        return Ok(());
    }
    let host = farview_host::start(config, farview_host::HostOptions::default()).await?;
    println!(
        "farview-host listening: quic {} http {} fingerprint {}",
        host.quic_addr, host.http_addr, host.fingerprint
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    host.shutdown().await;
    Ok(())
}
