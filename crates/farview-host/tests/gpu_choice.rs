//! One host per GPU: the `gpu` setting picks one of several, a bad value is refused at start,
//! and a host that finds only a software rasterizer refuses to start unless told it may.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use farview_host::{Config, HostError, HostOptions};

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.into(),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: common::repo_root().join("assets"),
        ..Config::default()
    }
}

fn options() -> HostOptions {
    // The host opens its own adapter (that is what is tested), but shares the prefiltered sky.
    HostOptions {
        default_environment: Some(common::default_environment()),
        ..HostOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_setting_and_software_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let has_gpu = farview_render::GpuContext::new(farview_render::AdapterChoice::Hardware).is_ok();

    // Not a GPU selector: refused before any adapter is opened.
    let mut c = config(dir.path());
    c.gpu = Some("the big one".into());
    let err = farview_host::start(c, options()).await.unwrap_err();
    assert!(err.to_string().contains("gpu"), "{err}");

    // No ninth GPU here: refused, naming what was found.
    let mut c = config(dir.path());
    c.gpu = Some("8".into());
    c.allow_software_adapter = true;
    let err = farview_host::start(c, options()).await.unwrap_err();
    assert!(
        matches!(err, HostError::Render(_)) && err.to_string().contains("gpu"),
        "{err}"
    );

    if has_gpu {
        // GPU 0 is this machine's first GPU.
        let mut c = config(dir.path());
        c.gpu = Some("0".into());
        let host = farview_host::start(c, options()).await.expect("GPU 0");
        assert!(!host.adapter.to_lowercase().contains("llvmpipe"));
        host.shutdown().await;
        eprintln!("this machine has a GPU: the software refusal is not exercised");
        return;
    }
    // Only the software rasterizer: refused by default, with the way out in the message.
    let err = farview_host::start(config(dir.path()), options())
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::SoftwareAdapter { .. }), "{err}");
    assert!(err.to_string().contains("allow_software_adapter"), "{err}");
    // Told it may, or asked for by name: it starts.
    for tweak in [
        (|c: &mut Config| c.allow_software_adapter = true) as fn(&mut Config),
        |c: &mut Config| c.adapter = "software".into(),
    ] {
        let mut c = config(dir.path());
        tweak(&mut c);
        let host = farview_host::start(c, options())
            .await
            .expect("allowed software adapter");
        assert!(host.adapter.to_lowercase().contains("llvmpipe") || host.adapter.contains("Cpu"));
        host.shutdown().await;
    }
}
