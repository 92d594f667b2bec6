//! Writes the generated big glTF models of issue #15 (`city.glb`, `scan.glb`,
//! `hierarchy.glb`; see `farview_benches::bigmodels`) and prints a table of their sizes.
//! `--check-import` also imports each one, with the default limits and with limits raised just
//! enough, and says which limits refuse it.
//!
//! `cargo run --release -p farview-benches --bin farview-gen-models -- [--out DIR] [--only city|scan|hierarchy]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use farview_benches::bigmodels::{self, ModelCounts};
use farview_scene::ImportLimits;

#[derive(Parser)]
struct Args {
    /// Where the files go.
    #[arg(long, default_value = "target/bigmodels")]
    out: PathBuf,
    /// Only this model: city, scan or hierarchy.
    #[arg(long)]
    only: Option<String>,
    /// City blocks per side.
    #[arg(long, default_value_t = bigmodels::CITY_BLOCKS)]
    city_blocks: u32,
    /// Scan vertices per side.
    #[arg(long, default_value_t = bigmodels::SCAN_SIDE)]
    scan_side: u32,
    /// Hierarchy nodes.
    #[arg(long, default_value_t = bigmodels::HIERARCHY_NODES)]
    hierarchy_nodes: u32,
    /// Also import each file (default limits, then limits raised just enough) and report.
    #[arg(long)]
    check_import: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let names = ["city", "scan", "hierarchy"];
    if let Some(only) = &args.only
        && !names.contains(&only.as_str())
    {
        anyhow::bail!("unknown model {only:?} (city, scan, hierarchy)");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    for name in names {
        if args.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let start = Instant::now();
        let (glb, counts) = match name {
            "city" => bigmodels::city_glb_scaled(args.city_blocks),
            "scan" => bigmodels::scan_glb(args.scan_side),
            _ => bigmodels::hierarchy_glb(args.hierarchy_nodes),
        };
        let generate = start.elapsed().as_secs_f64();
        let path = args.out.join(format!("{name}.glb"));
        let start = Instant::now();
        std::fs::write(&path, &glb).with_context(|| format!("writing {}", path.display()))?;
        let write = start.elapsed().as_secs_f64();
        eprintln!("{}: {} bytes in {generate:.1} s", path.display(), glb.len());
        if args.check_import {
            checks.push(check_import(name, &glb, &counts));
        }
        rows.push((path, glb.len(), counts, generate, write));
    }
    println!(
        "| file | bytes | nodes | meshes | source triangles | drawn triangles | vertices | largest accessor | generate s | write s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (path, bytes, c, generate, write) in &rows {
        println!(
            "| {} | {bytes} | {} | {} | {} | {} | {} | {} | {generate:.1} | {write:.1} |",
            path.display(),
            c.nodes,
            c.meshes,
            c.source_triangles,
            c.drawn_triangles,
            c.vertices,
            c.largest_accessor
        );
    }
    for check in checks {
        println!("\n{check}");
    }
    Ok(())
}

/// Imports `glb` with the default limits, then with limits raised just enough (into a scene
/// with room for it), and describes what happened.
fn check_import(name: &str, glb: &[u8], counts: &ModelCounts) -> String {
    let mut out = format!("{name}: import with ImportLimits::default(): ");
    let defaults = ImportLimits::default();
    let start = Instant::now();
    match farview_scene::synthetic::import(glb, &defaults) {
        Ok(_) => out.push_str(&format!("ok ({:.1} s)", start.elapsed().as_secs_f64())),
        Err(e) => out.push_str(&format!("refused: {e}")),
    }
    for s in bigmodels::shortfalls(counts, glb.len() as u64, &defaults) {
        out.push_str(&format!(
            "\n  - {}: default {}, needs {} (+{}, {:.2}x)",
            s.limit,
            s.allowed,
            s.needed,
            s.needed - s.allowed,
            s.needed as f64 / s.allowed as f64
        ));
    }
    let raised = bigmodels::limits_for(counts, glb.len() as u64, &defaults);
    let start = Instant::now();
    match farview_scene::synthetic::import(glb, &raised) {
        Ok(model) => {
            let imported = start.elapsed().as_secs_f64();
            let (nodes, tris) = (model.nodes.len(), model.triangle_count());
            let mut scene = farview_scene::Scene::new(nodes + 1);
            let start = Instant::now();
            match scene.add_model(name, model) {
                Ok(info) => out.push_str(&format!(
                    "\n  with raised limits: imported in {imported:.1} s ({nodes} nodes, {tris} source triangles), added to a Scene::new({}) in {:.1} s ({} triangles drawn){}",
                    nodes + 1,
                    start.elapsed().as_secs_f64(),
                    info.triangles,
                    if info.triangles == counts.drawn_triangles && tris as u64 == counts.source_triangles {
                        ", as generated"
                    } else {
                        ", NOT as generated"
                    }
                )),
                Err(e) => out.push_str(&format!("\n  with raised limits: imported, scene refused: {e}")),
            }
        }
        Err(e) => out.push_str(&format!("\n  with raised limits: refused: {e}")),
    }
    out
}
