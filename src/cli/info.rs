use anyhow::Result;
use clap::Args;
use flashslide::slide::Slide;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The slide file
    slide: PathBuf,
    /// Print JSON (all properties included) instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> Result<ExitCode> {
    let slide = Slide::open(&args.slide)?;
    if args.json {
        let levels: Vec<_> = slide
            .levels()
            .iter()
            .map(|l| {
                json!({"width": l.width, "height": l.height, "downsample": l.downsample,
                       "tile_width": l.tile_width, "tile_height": l.tile_height})
            })
            .collect();
        let associated: Vec<_> = slide
            .associated_names()
            .map(|n| {
                let (w, h) = slide.associated_dimensions(n).unwrap_or((0, 0));
                json!({"name": n, "width": w, "height": h})
            })
            .collect();
        let out = json!({
            "path": args.slide,
            "vendor": slide.vendor(),
            "detected_by": slide.detected_by(),
            "levels": levels,
            "mpp": slide.mpp().map(|m| json!({"x": m.x, "y": m.y, "source": m.source})),
            "mpp_problem": slide.mpp_problem(),
            "objective_power": slide.objective_power(),
            "associated": associated,
            "properties": slide.properties(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (w, h) = slide.dimensions();
    println!("{}", args.slide.display());
    println!("  vendor            {}", slide.vendor());
    println!("  detected by       {}", slide.detected_by());
    match slide.mpp() {
        Some(m) => {
            println!(
                "  MPP               {:.4} x {:.4} µm/px (from {})",
                m.x, m.y, m.source
            );
            println!(
                "  size              {w} x {h} px = {:.2} x {:.2} mm",
                w as f64 * m.x / 1000.0,
                h as f64 * m.y / 1000.0
            );
        }
        None => {
            match slide.mpp_problem() {
                Some(problem) => println!("  MPP               unknown: {problem}; pass --mpp to run"),
                None => println!("  MPP               unknown (the file does not say)"),
            }
            println!("  size              {w} x {h} px");
        }
    }
    match slide.objective_power() {
        Some(p) => println!("  objective power   {p}x"),
        None => println!("  objective power   unknown"),
    }
    println!("  levels            {}", slide.levels().len());
    for (i, l) in slide.levels().iter().enumerate() {
        println!(
            "    [{i}] {:>7} x {:<7} downsample {:<10} tiles {}x{}",
            l.width,
            l.height,
            flashslide::slide::format_double(l.downsample),
            l.tile_width,
            l.tile_height
        );
    }
    let names: Vec<_> = slide.associated_names().collect();
    if names.is_empty() {
        println!("  associated images none");
    } else {
        println!("  associated images");
        for n in names {
            let (aw, ah) = slide.associated_dimensions(n).unwrap_or((0, 0));
            println!("    {n:<10} {aw} x {ah}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
