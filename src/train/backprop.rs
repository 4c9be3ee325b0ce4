//! The slide encoder's forward and backward passes written out layer by layer over
//! [`Gradients`] (as llm.c writes GPT-2's): what trains the slide encoder on a GPU, with f32
//! master weights and AdamW on the device. On the CPU the same code is checked against
//! candle's autodiff of [`SlideEncoder::logits`] (the tests below), and the GPU's operations
//! against the CPU's (`backend::grad_check`).
//!
//! The forward is [`SlideEncoder::logits`]'s, with each block's residual add and norm as
//! separate operations and the activations each backward step reads kept.

use crate::backend::grad::{AdamWState, AdamWStep, Gradients, LinearGrads, NormGrads};
use crate::backend::{BackendError, PositionSpec};
use crate::model::slide_encoder::SlideEncoderConfig;
use crate::model::weights::{as_matrix, HostTensor};
use std::collections::HashMap;

/// One trainable tensor: its f32 master copy, the copy the forward computes with, AdamW's
/// moments.
struct Param<B: Gradients> {
    shape: Vec<usize>,
    /// The f32 master weights and AdamW's moments.
    state: AdamWState<B::Tensor>,
    compute: B::Tensor,
    /// Weight decay applies (matrices only: not biases, norms or one-row heads).
    decays: bool,
}

/// The slide encoder's parameters, by name.
pub struct Params<B: Gradients> {
    backend: B,
    params: HashMap<String, Param<B>>,
}

/// Gradients summed over a step's crops, by parameter name.
pub struct Grads<B: Gradients> {
    sums: HashMap<String, B::Tensor>,
}

impl<B: Gradients> Grads<B> {
    pub fn new() -> Grads<B> {
        Grads { sums: HashMap::new() }
    }

    fn add(&mut self, be: &B, name: String, g: B::Tensor) -> Result<(), BackendError> {
        let sum = match self.sums.remove(&name) {
            Some(old) => be.add(&old, &g)?,
            None => g,
        };
        self.sums.insert(name, sum);
        Ok(())
    }

    /// The gradient of `name`, once a crop has been through [`crop_gradients`].
    pub fn get(&self, name: &str) -> Option<&B::Tensor> {
        self.sums.get(name)
    }
}

impl<B: Gradients> Default for Grads<B> {
    fn default() -> Self {
        Grads::new()
    }
}

/// AdamW's constants, as the CPU path's (`train::AdamW`).
const BETAS: (f64, f64) = (0.9, 0.999);
const EPS: f64 = 1e-8;

impl<B: Gradients> Params<B> {
    /// `config`'s tensors from `host` (every one must be there, in its shape).
    pub fn new(
        backend: &B,
        config: &SlideEncoderConfig,
        host: &HashMap<String, HostTensor>,
    ) -> Result<Params<B>, BackendError> {
        let mut params = HashMap::new();
        for (name, shape) in config.expected_shapes() {
            let t = host
                .get(&name)
                .filter(|t| t.shape == shape)
                .ok_or_else(|| BackendError::Input(format!("tensor {name} of shape {shape:?} is missing")))?;
            let (rows, cols) = as_matrix(&shape);
            let master = backend.master(&t.data, rows, cols)?;
            params.insert(
                name.clone(),
                Param {
                    compute: backend.for_compute(&master)?,
                    state: AdamWState {
                        w: master,
                        m: backend.zeros(rows, cols)?,
                        v: backend.zeros(rows, cols)?,
                    },
                    decays: name.ends_with("weight") && !name.contains("norm") && rows > 1,
                    shape,
                },
            );
        }
        Ok(Params {
            backend: backend.clone(),
            params,
        })
    }

    fn get(&self, name: &str) -> &B::Tensor {
        &self.params[name].compute
    }

    /// The master weights on the host, in the model file's shapes.
    pub fn to_host(&self) -> Result<HashMap<String, HostTensor>, BackendError> {
        self.params
            .iter()
            .map(|(name, p)| {
                let data = self.backend.download(&p.state.w)?;
                Ok((
                    name.clone(),
                    HostTensor {
                        data,
                        shape: p.shape.clone(),
                    },
                ))
            })
            .collect()
    }

    /// One AdamW step (the `t`-th) at learning rate `lr` on `grads`, their global norm first
    /// clipped to `max_norm` when given; returns that norm before clipping (measured only
    /// then: it waits for the device).
    pub fn step(
        &mut self,
        grads: &Grads<B>,
        lr: f64,
        weight_decay: f64,
        t: i32,
        max_norm: Option<f64>,
    ) -> Result<Option<f64>, BackendError> {
        let be = &self.backend;
        let norm = match max_norm {
            Some(_) => Some(be.sum_squares(&grads.sums.values().collect::<Vec<_>>())?.sqrt()),
            None => None,
        };
        let grad_scale = match (max_norm, norm) {
            (Some(max), Some(norm)) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        for (name, p) in &mut self.params {
            let Some(g) = grads.sums.get(name) else {
                continue;
            };
            let step = AdamWStep {
                lr,
                beta1: BETAS.0,
                beta2: BETAS.1,
                eps: EPS,
                weight_decay: if p.decays { weight_decay } else { 0.0 },
                t,
                grad_scale,
            };
            p.state = be.adamw(&p.state, g, step)?;
            p.compute = be.for_compute(&p.state.w)?;
        }
        Ok(norm)
    }
}

/// One crop of a slide's token grid: features `[n, input_dim]` where the backend computes,
/// grid positions and labels.
pub struct Crop<'a, T> {
    pub features: &'a T,
    pub positions: &'a [[f32; 2]],
    pub labels: &'a [f32],
}

/// What one block's backward reads.
struct Saved<B: Gradients> {
    h: B::Tensor,
    qkv: B::Tensor,
    attended: B::Tensor,
    lse: B::Tensor,
    mid: B::Tensor,
    normed: B::Tensor,
    hidden: B::Tensor,
    activated: B::Tensor,
}

/// The norm after block `b`'s input: block `b`'s norm1, or the final norm after the last.
fn norm_after(config: &SlideEncoderConfig, b: usize) -> String {
    match b < config.depth {
        true => format!("slide.blocks.{b}.norm1"),
        false => "slide.norm".into(),
    }
}

/// The loss of one crop ([`crate::train`]'s: the tokens' mean binary cross-entropy plus a
/// tenth of the slide logit's against "any tumour") and its gradients in the logits.
fn loss_and_gradients(tokens: &[f32], slide: f32, labels: &[f32]) -> (f64, Vec<f32>, f32) {
    let softplus = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let n = tokens.len() as f64;
    let mut loss = 0.0;
    let dz = tokens
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let (z, y) = (z as f64, y as f64);
            loss += (softplus(z) - z * y) / n;
            ((sigmoid(z) - y) / n) as f32
        })
        .collect();
    let any = if labels.iter().any(|&l| l > 0.0) { 1.0 } else { 0.0 };
    let s = slide as f64;
    loss += 0.1 * (softplus(s) - s * any);
    (loss, dz, (0.1 * (sigmoid(s) - any)) as f32)
}

/// The crop's loss, its gradients times `weight` added to `grads`.
pub fn crop_gradients<B: Gradients>(
    config: &SlideEncoderConfig,
    params: &Params<B>,
    crop: &Crop<B::Tensor>,
    weight: f32,
    grads: &mut Grads<B>,
) -> Result<f64, BackendError> {
    let be = &params.backend;
    let c = config;
    let n = crop.positions.len();
    let (rows, cols) = be.shape(crop.features);
    if n == 0 || (rows, cols) != (n, c.input_dim) || crop.labels.len() != n {
        return Err(BackendError::Input(format!(
            "a crop of {n} tokens with [{rows}, {cols}] features and {} labels",
            crop.labels.len()
        )));
    }
    let (heads, hd) = (c.heads, c.width / c.heads);
    let offsets = [0, n];
    let positions = be.prepare_positions(
        PositionSpec {
            positions: crop.positions,
            rope_base: Some(c.rope_base),
            alibi: c.alibi,
        },
        heads,
        hd,
    )?;
    let w = |name: String| params.get(&name);
    let linear = |x: &B::Tensor, prefix: &str, bias: bool| {
        let b = bias.then(|| w(format!("{prefix}.bias")));
        be.linear(x, w(format!("{prefix}.weight")), b)
    };
    let norm = |x: &B::Tensor, prefix: &str| {
        be.layer_norm(
            x,
            w(format!("{prefix}.weight")),
            w(format!("{prefix}.bias")),
            c.norm_eps,
        )
    };

    // Forward. `streams[b]`: the residual stream entering block b (the last: leaving the
    // final block), whose norm is `norm_after(b)`.
    let mut streams = vec![linear(crop.features, "slide.proj_in", true)?];
    let mut h = norm(&streams[0], &norm_after(c, 0))?;
    let mut saved: Vec<Saved<B>> = Vec::with_capacity(c.depth);
    for b in 0..c.depth {
        let name = |s: &str| format!("slide.blocks.{b}.{s}");
        let qkv = linear(&h, &name("attn.qkv"), true)?;
        let (attended, lse) = be.attention_saving(&qkv, &offsets, heads, hd, Some(&positions))?;
        let mid = be.add(&streams[b], &linear(&attended, &name("attn.proj"), true)?)?;
        let normed = norm(&mid, &name("norm2"))?;
        let hidden = linear(&normed, &name("mlp.fc1"), true)?;
        let activated = be.gelu(&hidden)?;
        streams.push(be.add(&mid, &linear(&activated, &name("mlp.fc2"), true)?)?);
        let next = norm(&streams[b + 1], &norm_after(c, b + 1))?;
        saved.push(Saved {
            h: std::mem::replace(&mut h, next),
            qkv,
            attended,
            lse,
            mid,
            normed,
            hidden,
            activated,
        });
    }
    let pooled = be.mean_rows(&h, 1, 0, n)?;
    let token_logits = be.download(&linear(&h, "slide.token_head", true)?)?;
    let slide_logit = be.download(&linear(&pooled, "slide.slide_head", true)?)?[0];
    let (loss, dz, dslide) = loss_and_gradients(&token_logits, slide_logit, crop.labels);

    // Backward.
    let dz: Vec<f32> = dz.iter().map(|g| g * weight).collect();
    let dz = be.master(&dz, n, 1)?;
    let dslide = be.master(&[dslide * weight], 1, 1)?;
    // Each layer's parameter gradients go into `grads`; its input's gradient comes back.
    let grads = std::cell::RefCell::new(grads);
    let keep = |name: String, g: B::Tensor| grads.borrow_mut().add(be, name, g);
    let linear_back = |x: &B::Tensor, prefix: &str, dy: &B::Tensor| -> Result<B::Tensor, BackendError> {
        let LinearGrads { dx, dw, db } = be.linear_backward(x, w(format!("{prefix}.weight")), dy, true)?;
        keep(format!("{prefix}.weight"), dw)?;
        keep(format!("{prefix}.bias"), db.expect("asked for"))?;
        Ok(dx)
    };
    let dh = linear_back(&h, "slide.token_head", &dz)?;
    let dpooled = linear_back(&pooled, "slide.slide_head", &dslide)?;
    // dh: the gradient in the normed stream; direct: in the stream itself, past the norm.
    let mut dh = be.add(&dh, &be.repeat_row(&dpooled, n, 1.0 / n as f32)?)?;
    let mut direct: Option<B::Tensor> = None;
    let norm_back = |x: &B::Tensor, prefix: &str, dy: &B::Tensor| -> Result<B::Tensor, BackendError> {
        let NormGrads { dx, dw, db } =
            be.layer_norm_backward(x, w(format!("{prefix}.weight")), dy, c.norm_eps)?;
        keep(format!("{prefix}.weight"), dw)?;
        keep(format!("{prefix}.bias"), db)?;
        Ok(dx)
    };
    for b in (0..c.depth).rev() {
        let s = &saved[b];
        let name = |x: &str| format!("slide.blocks.{b}.{x}");
        let dx = norm_back(&streams[b + 1], &norm_after(c, b + 1), &dh)?;
        let dx = match direct.take() {
            Some(d) => be.add(&dx, &d)?,
            None => dx,
        };
        let dactivated = linear_back(&s.activated, &name("mlp.fc2"), &dx)?;
        let dhidden = be.gelu_backward(&s.hidden, &dactivated)?;
        let dnormed = linear_back(&s.normed, &name("mlp.fc1"), &dhidden)?;
        let dmid = be.add(&dx, &norm_back(&s.mid, &name("norm2"), &dnormed)?)?;
        let dattended = linear_back(&s.attended, &name("attn.proj"), &dmid)?;
        let dqkv = be.attention_backward(
            &s.qkv,
            &s.attended,
            &s.lse,
            &dattended,
            &offsets,
            heads,
            hd,
            Some(&positions),
        )?;
        dh = linear_back(&s.h, &name("attn.qkv"), &dqkv)?;
        direct = Some(dmid);
    }
    let dx = norm_back(&streams[0], &norm_after(c, 0), &dh)?;
    let dx = match direct {
        Some(d) => be.add(&dx, &d)?,
        None => dx,
    };
    linear_back(crop.features, "slide.proj_in", &dx)?;
    Ok(loss)
}

/// Training steps timed ([`time_steps`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepTiming {
    pub tokens: usize,
    pub steps: usize,
    /// The median step's seconds (forward, backward, AdamW), after two warm-up steps.
    pub median_seconds: f64,
    pub steps_per_second: f64,
    pub last_loss: f64,
}

/// Times `steps` training steps of the slide encoder `config` (its starting weights) on one
/// crop of `tokens` tokens (random features on a square grid, a tenth of them labelled
/// tumour), each step a forward, a backward and an AdamW update.
pub fn time_steps<B: Gradients>(
    be: &B,
    config: &SlideEncoderConfig,
    tokens: usize,
    steps: usize,
) -> Result<StepTiming, BackendError> {
    let host = config
        .random_weights()
        .map_err(|e| BackendError::Input(e.to_string()))?;
    let mut params = Params::new(be, config, &host)?;
    let side = (tokens as f64).sqrt().ceil() as usize;
    let mut rng = crate::util::rng::Rng::new(7);
    let features: Vec<f32> = (0..tokens * config.input_dim)
        .map(|_| rng.range(-1.0, 1.0) as f32)
        .collect();
    let positions: Vec<[f32; 2]> = (0..tokens)
        .map(|i| [(i / side) as f32, (i % side) as f32])
        .collect();
    let labels: Vec<f32> = (0..tokens)
        .map(|_| if rng.chance(0.1) { 1.0 } else { 0.0 })
        .collect();
    // On the device for every step, as a training run keeps its slides' features where
    // they fit (slide_stage.rs) and as PyTorch's reference keeps its crop.
    let features = be.upload(&features, tokens, config.input_dim)?;
    let crop = Crop {
        features: &features,
        positions: &positions,
        labels: &labels,
    };
    let mut times = Vec::with_capacity(steps);
    let mut last_loss = 0.0;
    for step in 1..=steps.max(1) + 2 {
        let start = std::time::Instant::now();
        let mut grads = Grads::new();
        last_loss = crop_gradients(config, &params, &crop, 1.0, &mut grads)?;
        params.step(&grads, 1e-4, 0.05, step as i32, Some(1.0))?;
        // A read back after AdamW ends the step on the host.
        be.sum_squares(&[grads
            .get("slide.norm.bias")
            .expect("every parameter has a gradient")])?;
        if step > 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median_seconds = times[times.len() / 2];
    Ok(StepTiming {
        tokens,
        steps: times.len(),
        median_seconds,
        steps_per_second: 1.0 / median_seconds,
        last_loss,
    })
}

/// The encoder's gradients on backend `b` against the CPU's, from the same random weights
/// and one random crop of 900 tokens (inputs from `seed`), with RoPE and with RoPE and ALiBi:
/// the loss and every parameter's gradient, in relative L2 error.
pub fn check_encoder_gradients<B: Gradients>(
    b: &B,
    seed: u64,
    print: &mut dyn FnMut(&crate::backend::check::Check),
) -> Result<Vec<crate::backend::check::Check>, BackendError> {
    use crate::backend::check::compare;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;
    let config = SlideEncoderConfig {
        input_dim: 96,
        width: 128,
        depth: 2,
        heads: 2,
        mlp_ratio: 2.0,
        norm_eps: 1e-6,
        rope_base: 100.0,
        alibi: false,
        group_patches: None,
    };
    let expected = config.expected_shapes();
    let mut host = crate::model::weights::random_host(&expected, seed)
        .map_err(|e| BackendError::Input(e.to_string()))?;
    // Weights of a trained size (std 0.02 leaves the blocks nearly idle), rounded to bf16.
    let mut rng = crate::util::rng::Rng::new(seed ^ 0x9e37);
    for (name, t) in host.iter_mut() {
        let spread = if name.contains("norm") {
            0.2
        } else {
            2.0 / (t.data.len() as f64 / t.shape[0] as f64).sqrt()
        };
        for x in &mut t.data {
            *x = half::bf16::from_f32(*x + rng.range(-spread, spread) as f32).to_f32();
        }
    }
    let n = 900;
    let round = |x: f64| half::bf16::from_f64(x).to_f32();
    let features: Vec<f32> = (0..n * config.input_dim)
        .map(|_| round(rng.range(-2.0, 2.0)))
        .collect();
    let positions: Vec<[f32; 2]> = (0..n).map(|i| [(i / 30) as f32, (i % 30) as f32]).collect();
    let labels: Vec<f32> = positions
        .iter()
        .map(|p| if p[0] < 10.0 && p[1] > 12.0 { 1.0 } else { 0.0 })
        .collect();
    let (on_device, on_cpu) = (
        b.upload(&features, n, config.input_dim)?,
        CpuBackend.upload(&features, n, config.input_dim)?,
    );
    let crop = Crop {
        features: &on_device,
        positions: &positions,
        labels: &labels,
    };
    let cpu_crop = Crop {
        features: &on_cpu,
        positions: &positions,
        labels: &labels,
    };
    let mut checks = Vec::new();
    // With the rotary embedding alone, then with ALiBi too.
    for alibi in [false, true] {
        let config = SlideEncoderConfig {
            alibi,
            ..config.clone()
        };
        // 2 blocks, 2 heads of 64, 900 tokens.
        let what = format!("slide encoder, RoPE{}", if alibi { " + ALiBi" } else { "" });
        let mut grads = Grads::new();
        let loss = crop_gradients(&config, &Params::new(b, &config, &host)?, &crop, 1.0, &mut grads)?;
        let mut cpu_grads = Grads::new();
        let cpu_params = Params::new(&CpuBackend, &config, &host)?;
        let cpu_loss = crop_gradients(&config, &cpu_params, &cpu_crop, 1.0, &mut cpu_grads)?;
        let c = compare(format!("{what}: loss"), &[loss as f32], &[cpu_loss], true);
        print(&c);
        checks.push(c);
        for (name, _) in &expected {
            let got = b.download(grads.get(name).expect("every parameter has a gradient"))?;
            let want: Vec<f64> = CpuBackend
                .download(cpu_grads.get(name).expect("every parameter has a gradient"))?
                .into_iter()
                .map(f64::from)
                .collect();
            let c = compare(format!("{what}: gradient {name}"), &got, &want, true);
            print(&c);
            checks.push(c);
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summed gradient of `name`, as f32 values.
    fn gradient(grads: &Grads<CpuBackend>, name: &str) -> Vec<f32> {
        grads
            .get(name)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }
    use crate::backend::autodiff::AutodiffBackend;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;
    use crate::model::slide_encoder::SlideEncoder;
    use crate::model::weights::random_host;
    use candle_core::Var;
    use std::path::Path;

    fn config(depth: usize) -> SlideEncoderConfig {
        SlideEncoderConfig {
            input_dim: 12,
            width: 16,
            depth,
            heads: 2,
            mlp_ratio: 2.0,
            norm_eps: 1e-6,
            rope_base: 100.0,
            alibi: false,
            group_patches: None,
        }
    }

    /// Random weights, with norms and biases away from their starting values so that
    /// every gradient is exercised.
    fn weights(c: &SlideEncoderConfig) -> HashMap<String, HostTensor> {
        let mut host = random_host(&c.expected_shapes(), 5).unwrap();
        let mut rng = crate::util::rng::Rng::new(9);
        for t in host.values_mut() {
            for x in &mut t.data {
                *x += rng.range(-0.3, 0.3) as f32;
            }
        }
        host
    }

    /// A crop's random features (`dim` a token), grid positions `side` wide, and labels (a
    /// quarter of the tokens tumour).
    fn inputs(n: usize, dim: usize, side: usize, seed: u64) -> (Vec<f32>, Vec<[f32; 2]>, Vec<f32>) {
        let mut rng = crate::util::rng::Rng::new(seed);
        let features = (0..n * dim).map(|_| rng.range(-1.0, 1.0) as f32).collect();
        let positions = (0..n).map(|i| [(i / side) as f32, (i % side) as f32]).collect();
        let labels = (0..n).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        (features, positions, labels)
    }

    #[test]
    fn gradients_match_candle_autodiff_of_the_encoder() {
        for depth in [0, 2] {
            let c = config(depth);
            let host = weights(&c);
            let n = 23;
            let (features, positions, labels) = inputs(n, c.input_dim, 5, 3);
            let x = CpuBackend.upload(&features, n, c.input_dim).unwrap();
            let crop = Crop {
                features: &x,
                positions: &positions,
                labels: &labels,
            };

            let params = Params::new(&CpuBackend, &c, &host).unwrap();
            let mut grads = Grads::new();
            let loss = crop_gradients(&c, &params, &crop, 1.0, &mut grads).unwrap();

            let ad = AutodiffBackend::default();
            let encoder = SlideEncoder::new(&ad, c.clone(), &host, Path::new("test")).unwrap();
            let x = ad.upload(&features, n, c.input_dim).unwrap();
            let (tokens, slide) = encoder.logits(&x, &positions).unwrap();
            let reference = crate::train::token_and_slide_loss(&tokens, &slide, &labels).unwrap();
            let want = reference.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (loss - want).abs() < 1e-4 * (1.0 + want.abs()),
                "loss {loss} against {want}"
            );
            let store = reference.backward().unwrap();
            for (name, t) in encoder.weights().named() {
                let var = Var::from_tensor(t).unwrap();
                let expected = store.get(var.as_tensor()).expect("a gradient for every weight");
                let expected = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let got = gradient(&grads, name);
                let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
                let worst = got
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-4 * scale.max(1.0),
                    "depth {depth}, {name}: off by {worst} (largest {scale})"
                );
            }
        }
    }

    #[test]
    fn gradients_with_the_alibi_bias_match_finite_differences() {
        // candle's autodiff path does not take ALiBi; central differences of the loss do.
        let c = SlideEncoderConfig {
            alibi: true,
            ..config(1)
        };
        let host = weights(&c);
        let (features, positions, labels) = inputs(14, c.input_dim, 4, 8);
        let x = CpuBackend.upload(&features, 14, c.input_dim).unwrap();
        let crop = Crop {
            features: &x,
            positions: &positions,
            labels: &labels,
        };
        let loss_at = |host: &HashMap<String, HostTensor>| {
            let params = Params::new(&CpuBackend, &c, host).unwrap();
            crop_gradients(&c, &params, &crop, 1.0, &mut Grads::new()).unwrap()
        };
        let params = Params::new(&CpuBackend, &c, &host).unwrap();
        let mut grads = Grads::new();
        crop_gradients(&c, &params, &crop, 1.0, &mut grads).unwrap();
        for name in [
            "slide.proj_in.weight",
            "slide.blocks.0.attn.qkv.weight",
            "slide.blocks.0.attn.qkv.bias",
            "slide.blocks.0.norm2.weight",
            "slide.norm.bias",
        ] {
            let got = gradient(&grads, name);
            for i in (0..got.len()).step_by(got.len() / 5 + 1) {
                let eps = 1e-2f32;
                let nudged = |delta: f32| {
                    let mut h = host.clone();
                    h.get_mut(name).unwrap().data[i] += delta;
                    loss_at(&h)
                };
                let numeric = (nudged(eps) - nudged(-eps)) / (2.0 * eps as f64);
                let err = (numeric - got[i] as f64).abs();
                assert!(
                    err < 1e-3 * (1.0 + numeric.abs()),
                    "{name}[{i}]: {} against {numeric}",
                    got[i]
                );
            }
        }
    }
}
