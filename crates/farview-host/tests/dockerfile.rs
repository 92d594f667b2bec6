//! No Docker engine runs in CI, so this test reads the Dockerfile and checks that what it names
//! (binaries, paths, ports, env vars, packages, user, health check) agrees with the code and
//! the repository. With `FARVIEW_DOCKER_BUILD=1` and a working engine (`docker` or `podman`)
//! it also builds the image (20+ minutes on 2 cores, so never by default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;

use clap::CommandFactory;
use farview_host::{Cli, DEFAULT_HTTP_ADDR, DEFAULT_QUIC_ADDR};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("Dockerfile")).unwrap()
}

/// The image builds, when asked and an engine answers.
#[test]
fn the_image_builds_where_an_engine_runs() {
    if std::env::var_os("FARVIEW_DOCKER_BUILD").is_none() {
        eprintln!(
            "skipped: set FARVIEW_DOCKER_BUILD=1 to build the image (needs docker or podman)"
        );
        return;
    }
    let engine = ["docker", "podman"].into_iter().find(|e| {
        std::process::Command::new(e)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(engine) = engine else {
        panic!("FARVIEW_DOCKER_BUILD is set but neither docker nor podman has a running engine");
    };
    let status = std::process::Command::new(engine)
        .args(["build", "-t", "farview-host:test", "."])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success(), "{engine} build failed");
}

/// Instructions with line continuations joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

fn port(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().unwrap().port()
}

#[test]
fn dockerfile_matches_the_code() {
    let ins = instructions(&dockerfile());
    let of = |kw: &str| {
        ins.iter()
            .filter(|i| i.starts_with(kw))
            .cloned()
            .collect::<Vec<_>>()
    };

    assert_eq!(
        of("FROM ").len(),
        2,
        "one build stage and one runtime stage"
    );
    assert!(
        of("FROM ")[1].contains("debian:") && of("FROM ")[1].contains("slim"),
        "runtime stage is slim Debian"
    );

    let expose = of("EXPOSE ").join(" ");
    assert!(
        expose.contains(&format!("{}/udp", port(DEFAULT_QUIC_ADDR))),
        "QUIC port exposed as UDP: {expose}"
    );
    assert!(
        expose.contains(&format!("{}/tcp", port(DEFAULT_HTTP_ADDR))),
        "HTTP port exposed as TCP: {expose}"
    );

    // Every FARVIEW_* variable the image sets is one the host reads, with the default ports.
    let cmd = Cli::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let env = of("ENV ").join(" ");
    let mut seen = 0;
    for kv in env.split_whitespace().filter(|s| s.starts_with("FARVIEW_")) {
        let (k, v) = kv.split_once('=').unwrap();
        // FARVIEW_LOG is the log filter; FARVIEW_API is the `farview` CLI's, for the health check.
        if k != "FARVIEW_LOG" && k != "FARVIEW_API" {
            assert!(
                known.iter().any(|n| n == k),
                "Dockerfile sets {k}, which farview-host does not read"
            );
        }
        if k == "FARVIEW_QUIC_ADDR" {
            assert_eq!(port(v), port(DEFAULT_QUIC_ADDR));
        }
        if k == "FARVIEW_HTTP_ADDR" {
            assert_eq!(port(v), port(DEFAULT_HTTP_ADDR));
        }
        seen += 1;
    }
    assert!(
        seen >= 4,
        "expected the data dir, assets root and both addresses to be set"
    );
    assert!(env.contains("NVIDIA_DRIVER_CAPABILITIES=graphics,utility"));

    let runs = of("RUN ").join(" ");
    for pkg in ["nasm", "libvulkan1", "mesa-vulkan-drivers"] {
        assert!(
            runs.split_whitespace().any(|w| w == pkg),
            "package {pkg} not installed in the image"
        );
    }
    assert!(runs.contains("nvidia_icd.json"), "NVIDIA Vulkan ICD file");
    assert!(runs.contains("-p farview-host"), "builds the host binary");

    let entry = of("ENTRYPOINT ").join(" ");
    assert!(
        entry.contains("/usr/local/bin/farview-host"),
        "entrypoint runs the host: {entry}"
    );
    assert_eq!(env!("CARGO_PKG_NAME"), "farview-host");

    // The health check asks /healthz through the CLI the image ships, at the HTTP port.
    let health = of("HEALTHCHECK ").join(" ");
    assert!(
        health.contains("/usr/local/bin/farview") && health.contains("\"health\""),
        "HEALTHCHECK runs `farview health`: {health}"
    );
    assert!(env.contains(&format!(
        "FARVIEW_API=http://127.0.0.1:{}",
        port(DEFAULT_HTTP_ADDR)
    )));
    // Both binaries the runtime stage copies are built and copied out of the build cache.
    let copies = of("COPY ").join(" ");
    for bin in ["farview-host", "farview"] {
        assert!(
            copies.contains(&format!("/out/{bin}"))
                && runs.contains(&format!("target/release/{bin}")),
            "{bin} is built and copied: {copies}"
        );
    }
    assert!(runs.contains("-p farview-client"), "builds the CLI");
    assert!(
        runs.contains("--mount=type=cache,target=/usr/local/cargo/registry")
            && runs.contains("--mount=type=cache,target=/src/target"),
        "dependencies are cached between builds"
    );
    // Every path the image copies from the context exists and is not ignored.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target/", ".git/"] {
        assert!(ignored.contains(&must), ".dockerignore leaves out {must}");
    }
    for copy in of("COPY ").iter().filter(|c| !c.contains("--from")) {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            if *src == "." {
                continue;
            }
            assert!(root().join(src).exists(), "COPY {src}: no such path");
            assert!(
                !ignored.iter().any(|i| i.trim_end_matches('/') == *src),
                "COPY {src} is excluded by .dockerignore"
            );
        }
    }

    let user = of("USER ");
    assert_eq!(user.len(), 1);
    assert!(
        !user[0].contains("root") && user[0] != "USER 0",
        "runs as a non-root user"
    );
}
