//! summary.json: what a run records for a finished slide (`OUT/<name>/summary.json`), the
//! schema every reader of a run's results (resuming, the index, scoring) shares.

use crate::analysis::pipeline::StageSeconds;
use crate::slide::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file's name in a slide's output folder; written last, so that its presence means
/// every other output is complete.
pub const SUMMARY_FILE: &str = "summary.json";

/// What a run records for a finished slide (`OUT/<name>/summary.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub software: String,
    pub slide: String,
    pub fingerprint: Fingerprint,
    pub model: String,
    pub model_sha256: String,
    /// The model's notice (the bundled models: trained on synthetic slides only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_notice: Option<String>,
    pub settings: serde_json::Value,
    pub device: String,
    /// Where stage 1's tiles were decoded ("CPU", or the GPU's decoder and its share).
    #[serde(default)]
    pub tile_decoding: String,
    pub mpp: f64,
    pub mpp_source: String,
    pub dimensions: [u64; 2],
    pub tissue_tiles: usize,
    pub tokens: usize,
    pub token_um: f64,
    pub seconds: Seconds,
    pub peak_rss_bytes: Option<u64>,
    pub device_memory_bytes: Option<u64>,
    /// The slide's and the highest token's tumour probability; null when no tile had
    /// tissue, which is "nothing analysed", not "no tumour" (`no_tissue` says why).
    pub slide_probability: Option<f32>,
    pub max_probability: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_tissue: Option<String>,
    pub tumour_area_mm2: f64,
    pub tumour_regions: usize,
    pub detections: usize,
    pub outputs: Vec<String>,
    /// Seconds each output took to write.
    #[serde(default)]
    pub export_seconds: BTreeMap<String, f64>,
    /// When and where the summary was written, and by which command (run metadata, as
    /// WSInfer records; not compared when resuming).
    #[serde(default)]
    pub run: RunInfo,
}

/// When, where and by which command a slide's results were made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// RFC 3339, UTC.
    pub finished: String,
    pub host: String,
    /// The command line, as the process was given it.
    pub command: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Seconds {
    pub tissue: f64,
    pub read: f64,
    #[serde(default)]
    pub decode: f64,
    pub stage1: f64,
    pub stage1_waiting: f64,
    /// The device idle between stage 1's batches (0 in summaries written before it was measured).
    #[serde(default)]
    pub stage1_device_idle: f64,
    /// Of `decode`, on the device's decoders (0 on the CPU, and in summaries written before
    /// they were measured): in the decoding library's calls, and waiting for the device to
    /// finish the batches.
    #[serde(default)]
    pub decode_submit: f64,
    #[serde(default)]
    pub decode_device_wait: f64,
    pub stage2: f64,
    pub export: f64,
    /// From the start of the slide's work to its summary, less the time it waited for the
    /// slide before it (for the model, or for the writer). Slides of a batch overlap (the
    /// next one's tissue is found while this one is analysed, its outputs written while the
    /// next is), so the totals add up to more than the batch's wall time.
    pub total: f64,
}

impl Seconds {
    pub fn from_stages(s: &StageSeconds, export: f64, total: f64) -> Seconds {
        Seconds {
            tissue: s.tissue,
            read: s.read,
            decode: s.decode,
            stage1: s.stage1,
            stage1_waiting: s.stage1_waiting,
            stage1_device_idle: s.stage1_device_idle,
            decode_submit: s.decode_submit,
            decode_device_wait: s.decode_device_wait,
            stage2: s.stage2,
            export,
            total,
        }
    }
}
