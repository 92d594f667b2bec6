//! Scores Farview's frames against the Sample Viewer goldens and prints the per-model table;
//! `--sheet` also writes a side-by-side contact sheet (golden left, Farview right).
//!
//! `cargo run --release -p farview-benches --bin farview-golden -- --sheet docs/goldens-contact-sheet.png`

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use farview_benches::golden;
use farview_render::{AdapterChoice, Environment, GpuContext, RenderQuality};

#[derive(Parser)]
struct Args {
    /// Adapter: auto, software, gl, vulkan, hardware.
    #[arg(long, default_value = "software")]
    adapter: AdapterChoice,
    /// Quality: high (the default: per-pixel, 4x MSAA), medium (per-pixel) or fast (per-vertex).
    #[arg(long, default_value = "high")]
    quality: String,
    /// Where Farview's frames go.
    #[arg(long, default_value = "target/goldens")]
    out: PathBuf,
    /// Write a contact sheet PNG here.
    #[arg(long)]
    sheet: Option<PathBuf>,
    /// Only these scenes.
    scenes: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus = golden::corpus_root()
        .context("no corpus: set FARVIEW_CORPUS or place ../shared/corpus/khronos")?;
    let gpu = GpuContext::new(args.adapter)?;
    let env = Environment::load_default(&gpu)?;
    let lighting = golden::reference_lighting(env);
    let quality = match args.quality.as_str() {
        "high" => RenderQuality::HIGH,
        "medium" => RenderQuality::MEDIUM,
        "fast" => RenderQuality::FAST,
        other => anyhow::bail!("unknown quality {other:?} (high, medium, fast)"),
    };
    let (scores, missing) =
        golden::run_suite(&gpu, &lighting, quality, &corpus, &args.out, &args.scenes)?;
    println!("adapter: {}", gpu.summary());
    println!("{}", golden::table(&scores));
    if !missing.is_empty() {
        println!("no golden for: {}", missing.join(", "));
    }
    if let Some(sheet) = args.sheet {
        let mut images = Vec::new();
        for s in scores.iter().filter(|s| s.error.is_none()) {
            let scene = golden::scenes()?
                .into_iter()
                .find(|g| g.name == s.name)
                .context("scene vanished")?;
            let g = golden::read_png(
                &golden::goldens_dir()
                    .join("png")
                    .join(format!("{}.png", s.name)),
                scene.width,
                scene.height,
            )?;
            let o = golden::read_png(
                &args.out.join(format!("{}.png", s.name)),
                scene.width,
                scene.height,
            )?;
            images.push((g, o, scene.width, scene.height));
        }
        let rows: Vec<_> = images
            .iter()
            .map(|(g, o, w, h)| (g.as_slice(), o.as_slice(), *w, *h))
            .collect();
        let (rgba, w, h) = golden::contact_sheet(&rows, 160, 3);
        golden::write_png(&sheet, &rgba, w, h)?;
        println!("contact sheet: {sheet:?} ({w}x{h})");
    }
    Ok(())
}
