//! No Docker engine runs in CI, so this test reads the Dockerfile and checks that what it names
//! (binary, ports, env vars, packages, user) agrees with the code's defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;

use clap::CommandFactory;
use farview_host::{Cli, DEFAULT_HTTP_ADDR, DEFAULT_QUIC_ADDR};

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile")).unwrap()
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
        if k != "FARVIEW_LOG" {
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

    let user = of("USER ");
    assert_eq!(user.len(), 1);
    assert!(
        !user[0].contains("root") && user[0] != "USER 0",
        "runs as a non-root user"
    );
}
