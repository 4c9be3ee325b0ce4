use anyhow::{anyhow, Result};
use clap::Args;
use flashslide::eval::results::evaluate;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// What `flashslide run` wrote: one folder per slide
    results: PathBuf,
    /// The ground truth: a folder holding, per slide, <slide stem>.lesions.json (as
    /// `flashslide synth` writes beside its slides), <stem>.xml (ASAP, CAMELYON16's
    /// annotations) or <stem>.geojson (QuPath annotations classified tumour or metastasis)
    #[arg(long)]
    truth: PathBuf,
    /// Also write the whole evaluation (per slide, the FROC curve) as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: EvaluateArgs) -> Result<ExitCode> {
    let evaluation = evaluate(&args.results, &args.truth)?;
    print!("{}", evaluation.markdown());
    if let Some(path) = &args.json {
        let text = serde_json::to_vec_pretty(&evaluation)?;
        flashslide::util::atomic::write_bytes(path, &text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
