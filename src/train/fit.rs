//! The training loop: data-parallel forward and backward, AdamW steps, evaluation every epoch,
//! metrics, plots, checkpoints (at epoch ends and every few steps) and bit-for-bit resume.
use super::dist::{all_reduce_grads, broadcast_vars, shard, sum_scalars, Collective, BUCKET_BYTES};
use super::{
    clip_grad_norm, cross_entropy, lr_at, plot_history, AdamW, EpochMetrics, TrainConfig,
    TrainSummary, TrainerState,
};
use crate::data::Loader;
use crate::models::ImageClassifier;
use crate::nn::{Ctx, ParamStore};
use crate::progress::{Progress, Silent};
use crate::util::{atomic_write, read_json, write_json};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Mean loss and top-1 accuracy over a loader (eval mode, no shuffling or augmentation);
/// each batch is split across `threads` shards computed concurrently.
pub fn evaluate(
    model: &dyn ImageClassifier,
    loader: &Loader,
    threads: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    evaluate_shard(model, loader, threads, device, None)
}

/// [`evaluate`] with the loader's items split over the ranks of `dist` (each scores its
/// share; the sums are added up), the whole set without one.
pub fn evaluate_shard(
    model: &dyn ImageClassifier,
    loader: &Loader,
    threads: usize,
    device: &Device,
    dist: Option<&dyn Collective>,
) -> Result<(f64, f64)> {
    let order = loader.order(0, false);
    // No padding here: every item once, on one rank.
    let order: Vec<usize> = match dist {
        Some(c) => order
            .into_iter()
            .skip(c.rank())
            .step_by(c.world())
            .collect(),
        None => order,
    };
    let (mut loss_sum, mut correct, mut n) = (0f64, 0usize, 0usize);
    let run = |part: &[usize]| -> Result<(f64, usize)> {
        let batch = loader.batch(part, false, 0, device)?;
        // No gradients here: the fused inference kernels.
        let logits = model.logits(&batch.images, &mut Ctx::inference())?;
        let loss = cross_entropy(&logits, &batch.labels, 0.0)?.to_scalar::<f32>()? as f64;
        Ok((
            loss * part.len() as f64,
            count_correct(&logits, &batch.labels)?,
        ))
    };
    for idx in order.chunks(loader.batch_size.max(1)) {
        let per = idx.len().div_ceil(threads.max(1));
        let parts: Vec<&[usize]> = idx.chunks(per.max(1)).collect();
        let results: Vec<Result<(f64, usize)>> =
            shard_pool(parts.len()).install(|| parts.par_iter().map(|p| run(p)).collect());
        for r in results {
            let (l, c) = r?;
            loss_sum += l;
            correct += c;
        }
        n += idx.len();
    }
    if let Some(c) = dist {
        let s = sum_scalars(c, &[loss_sum, correct as f64, n as f64])?;
        (loss_sum, correct, n) = (s[0], s[1].round() as usize, s[2].round() as usize);
    }
    Ok((loss_sum / n.max(1) as f64, correct as f64 / n.max(1) as f64))
}

fn count_correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    Ok(pred
        .eq(&labels.to_dtype(DType::U32)?)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize)
}

const LATEST: &str = "latest";

/// The JSON files that describe a model next to its weights: `("config.json", …)` and, for HF
/// models, `("preprocessor_config.json", …)`.
pub type ModelFiles = [(String, serde_json::Value)];

/// Saves weights (`model.safetensors`) and the model's JSON files into `dir` (atomic writes).
pub fn save_model(dir: &Path, store: &ParamStore, files: &ModelFiles) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    store.save(&dir.join("model.safetensors"))?;
    for (name, value) in files {
        write_json(&dir.join(name), value)?;
    }
    Ok(())
}

fn save_checkpoint(
    out: &Path,
    store: &ParamStore,
    opt: &AdamW,
    state: &TrainerState,
    config: &ModelFiles,
) -> Result<PathBuf> {
    let name = if state.batches_done == 0 {
        format!("checkpoint-{}", state.epoch)
    } else {
        format!("checkpoint-step-{}", state.global_step)
    };
    save_checkpoint_as(out, &name, store, opt, state, config)
}

/// Writes `out/<name>/` (weights, model files, optimizer moments, `trainer_state.json`), points
/// `latest` at it and removes every other checkpoint.
pub(crate) fn save_checkpoint_as(
    out: &Path,
    name: &str,
    store: &ParamStore,
    opt: &AdamW,
    state: &impl serde::Serialize,
    config: &ModelFiles,
) -> Result<PathBuf> {
    // A new directory per checkpoint, then an atomic switch of `latest`: a crash (or SIGKILL)
    // mid-write leaves the previous checkpoint intact and pointed to.
    let dir = out.join(name);
    save_model(&dir, store, config)?;
    crate::nn::store::save_safetensors(&dir.join("optimizer.safetensors"), &opt.state_tensors()?)?;
    write_json(&dir.join("trainer_state.json"), state)?;
    atomic_write(&out.join(LATEST), name.as_bytes())?;
    // Every other checkpoint goes: the previous one, and any a killed run left half-written.
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("checkpoint-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(dir)
}

/// The trainer state of `out`'s latest checkpoint, and that checkpoint's directory.
pub(crate) fn latest_state<S: serde::de::DeserializeOwned>(out: &Path) -> Result<(PathBuf, S)> {
    let dir = latest_checkpoint(out)
        .ok_or_else(|| Error::Msg(format!("cannot resume: no checkpoint in {}", out.display())))?;
    let state = read_json(&dir.join("trainer_state.json"))?;
    Ok((dir, state))
}

/// Restores a checkpoint's weights into `store` and its moments into `opt` at `step`.
pub(crate) fn restore_checkpoint(
    dir: &Path,
    store: &ParamStore,
    opt: &mut AdamW,
    step: usize,
    device: &Device,
) -> Result<()> {
    restore_weights(store, dir, device)?;
    let moments = crate::nn::store::load_safetensors(&dir.join("optimizer.safetensors"), device)?;
    opt.load_state(&moments, step as u64)
}

/// `metrics.jsonl` rewritten to hold exactly `history`: lines past a checkpoint (a crash after
/// logging) would otherwise be duplicated on resume.
pub(crate) fn write_metrics<T: serde::Serialize>(path: &Path, history: &[T]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        text += &serde_json::to_string(m).map_err(|e| Error::Msg(e.to_string()))?;
        text.push('\n');
    }
    atomic_write(path, text.as_bytes())
}

/// One more `metrics.jsonl` line.
pub(crate) fn append_metrics<T: serde::Serialize>(path: &Path, m: &T) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(
        f,
        "{}",
        serde_json::to_string(m).map_err(|e| Error::Msg(e.to_string()))?
    )
    .map_err(|e| Error::io(path, e))
}

/// Sets every trainable variable of `store` from `dir/model.safetensors`; a missing or
/// mis-shaped tensor is an error naming it.
pub(crate) fn restore_weights(store: &ParamStore, dir: &Path, device: &Device) -> Result<()> {
    let weights = crate::nn::store::load_safetensors(&dir.join("model.safetensors"), device)?;
    for (name, var) in store.vars() {
        let t = weights.get(&name).ok_or_else(|| Error::Checkpoint {
            path: dir.to_path_buf(),
            report: format!("missing tensor {name} (was the run trained with another model?)"),
        })?;
        if t.dims() != var.dims() {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                report: format!(
                    "tensor {name} is {:?} there, the model wants {:?} (was the run trained with another config?)",
                    t.dims(),
                    var.dims()
                ),
            });
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The checkpoint directory `latest` points to, if any.
pub fn latest_checkpoint(out: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(out.join(LATEST)).ok()?;
    let dir = out.join(name.trim());
    dir.is_dir().then_some(dir)
}

/// How a call to [`fit`] runs.
#[derive(Clone, Copy)]
pub struct FitOptions<'a> {
    /// Continue from the latest checkpoint in the output directory.
    pub resume: bool,
    /// Stop (after checkpointing) once this many epochs are complete, without changing the
    /// schedule: a later `resume` continues exactly where this left off.
    pub stop_after: Option<usize>,
    /// Data-parallel threads: each batch is split into this many shards whose forward and
    /// backward run concurrently (0 or 1: one thread). Small models keep both cores busier
    /// this way than with candle's per-op threading; run with single-threaded ops
    /// ([`single_threaded_ops`]) so the shards do not fight over candle's thread pools.
    pub threads: usize,
    /// Also checkpoint every this many optimizer steps within an epoch (0: at epoch ends only);
    /// resuming from such a checkpoint continues mid-epoch, bit for bit.
    pub save_every_steps: usize,
    /// Where steps (one phase per epoch, in batches), epoch results and notes go.
    pub progress: &'a dyn Progress,
    /// Data parallelism over ranks (processes, one per GPU): each rank trains on its shard of
    /// every epoch with `train.batch_size` items per step, gradients are averaged over the
    /// ranks, and only rank 0 writes. `None`: this process alone.
    pub dist: Option<&'a dyn Collective>,
}

impl Default for FitOptions<'_> {
    fn default() -> Self {
        FitOptions {
            resume: false,
            stop_after: None,
            threads: 0,
            save_every_steps: 0,
            progress: &Silent,
            dist: None,
        }
    }
}

/// Makes candle's CPU ops single-threaded (for data-parallel training). Must run before the
/// first tensor op: candle reads these variables when its thread pools start.
pub fn single_threaded_ops() {
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    std::env::set_var("RAYON_NUM_THREADS", "1");
}

use crate::util::worker_pool as shard_pool;

/// The summed gradients of one batch, with the batch's mean loss and correct count.
pub struct StepGrads {
    pub grads: candle_core::backprop::GradStore,
    pub loss: f64,
    pub correct: usize,
}

type ShardOut = (candle_core::backprop::GradStore, f64, usize);

/// Forward and backward of one shard: its loss weighted by `weight` (its share of the batch),
/// dropout seeded by `seed`; the gradients, the weighted loss and the correct count.
fn shard_grads(
    model: &dyn ImageClassifier,
    batch: &crate::data::Batch,
    seed: u64,
    label_smoothing: f64,
    weight: f64,
) -> Result<ShardOut> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Cut before every large block, so the backward frees each block's activations as it goes.
    let mut segments = crate::nn::Segments::default();
    let logits = model.logits(
        &batch.images,
        &mut Ctx::train(&mut rng).with_segments(&mut segments),
    )?;
    let loss = cross_entropy(&logits, &batch.labels, label_smoothing)?;
    let (value, correct) = (
        loss.to_scalar::<f32>()? as f64 * weight,
        count_correct(&logits, &batch.labels)?,
    );
    // The scaled loss is then the only reference to the last segment's graph.
    let scaled = (&loss * weight)?;
    drop((logits, loss));
    let grads = super::backward_segmented(scaled, &mut segments)?;
    Ok((grads, value, correct))
}

/// Forward and backward of the batch `idx`, split into `threads` shards computed concurrently.
/// Each shard's loss is weighted by its share of the batch, so the summed gradients equal the
/// full batch's mean-loss gradients.
#[allow(clippy::too_many_arguments)]
pub fn grads_data_parallel(
    model: &dyn ImageClassifier,
    loader: &Loader,
    idx: &[usize],
    epoch: usize,
    step_seed: u64,
    label_smoothing: f64,
    threads: usize,
    device: &Device,
) -> Result<StepGrads> {
    let shards = threads.clamp(1, idx.len().max(1));
    let per = idx.len().div_ceil(shards);
    let total = idx.len() as f64;
    let run = |k: usize, part: &[usize]| -> Result<ShardOut> {
        let batch = loader.batch(part, true, epoch, device)?;
        let seed = step_seed ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        shard_grads(
            model,
            &batch,
            seed,
            label_smoothing,
            part.len() as f64 / total,
        )
    };
    let parts: Vec<&[usize]> = idx.chunks(per.max(1)).collect();
    let results: Vec<Result<ShardOut>> = if parts.len() == 1 {
        vec![run(0, parts[0])]
    } else {
        shard_pool(parts.len()).install(|| {
            parts
                .par_iter()
                .enumerate()
                .map(|(k, p)| run(k, p))
                .collect()
        })
    };
    let mut iter = results.into_iter();
    let (mut grads, mut loss, mut correct) = iter
        .next()
        .ok_or_else(|| Error::Msg("empty batch".into()))??;
    for r in iter {
        let (g, l, c) = r?;
        loss += l;
        correct += c;
        // Summed in shard order: deterministic.
        super::optim::merge_grads(&mut grads, &g)?;
    }
    Ok(StepGrads {
        grads,
        loss,
        correct,
    })
}

/// Trains `model` (whose parameters live in `store`) and evaluates every epoch.
///
/// Writes into `out`: `metrics.jsonl` (one line per epoch), `curves.png`, `checkpoint-N/`
/// (weights, config, optimizer moments, trainer state; `latest` names it), `best/` and the final
/// `model.safetensors` + `config.json`. With `resume`, continues from `latest`, bit-for-bit:
/// shuffling, augmentation and dropout are seeded per (seed, epoch, step), not by a running RNG.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    model: &dyn ImageClassifier,
    store: &ParamStore,
    model_config: &ModelFiles,
    train: &Loader,
    test: &Loader,
    cfg: &TrainConfig,
    out: &Path,
    opts: &FitOptions,
    device: &Device,
) -> Result<TrainSummary> {
    cfg.validate()?;
    let resume = opts.resume;
    let progress = opts.progress;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let vars = store.vars();
    if vars.is_empty() {
        return Err(Error::Msg("the model has no trainable parameters".into()));
    }
    let var_list: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let dist = opts.dist.filter(|c| c.world() > 1);
    let main = dist.is_none_or(|c| c.is_main());
    let progress: &dyn Progress = if main { progress } else { &Silent };
    // One start for every rank (a resume then loads the same checkpoint everywhere).
    if let Some(c) = dist {
        broadcast_vars(&vars, c)?;
    }
    let named_vars = vars.clone();
    let mut opt = AdamW::with_layer_norms(vars, cfg.optim, &model.layer_norms());
    for (prefix, scale) in &cfg.lr_scales {
        opt.set_lr_scale(prefix, *scale);
    }
    let mut state = TrainerState {
        epoch: 0,
        global_step: 0,
        batches_done: 0,
        partial: (0.0, 0, 0, 0.0),
        best_test_accuracy: None,
        history: vec![],
        config: cfg.clone(),
        train_seconds: 0.0,
    };
    let metrics_path = out.join("metrics.jsonl");
    if resume {
        let (dir, saved): (PathBuf, TrainerState) = latest_state(out)?;
        if saved.config != *cfg {
            progress.note("resuming with the saved training config; this run's settings differ and are ignored except the epoch count");
        }
        restore_checkpoint(&dir, store, &mut opt, saved.global_step, device)?;
        state = saved;
        state.config.epochs = cfg.epochs;
        if main {
            write_metrics(&metrics_path, &state.history)?;
        }
        progress.note(&format!(
            "resumed from {} (epoch {}, batch {}, step {})",
            dir.display(),
            state.epoch,
            state.batches_done,
            state.global_step
        ));
    } else if main {
        atomic_write(&metrics_path, b"")?;
    }
    let cfg = state.config.clone();
    opt.config = cfg.optim;
    // This rank's items per epoch (all of them without ranks).
    let per_rank = |order: Vec<usize>| match dist {
        Some(c) => shard(&order, c.rank(), c.world()),
        None => order,
    };
    let steps_per_epoch = match dist {
        Some(c) => train
            .dataset
            .len()
            .div_ceil(c.world())
            .div_ceil(train.batch_size.max(1)),
        None => train.num_batches(),
    };
    let total_steps = steps_per_epoch.div_ceil(cfg.grad_accum.max(1)) * cfg.epochs;
    let warmup = (cfg.warmup_fraction * total_steps as f64).round() as usize;
    let mut last_dir = latest_checkpoint(out).unwrap_or_else(|| out.to_path_buf());
    let mut last = state.history.last().cloned();

    let end = opts.stop_after.map_or(cfg.epochs, |s| s.min(cfg.epochs));
    for epoch in state.epoch..end {
        let t0 = Instant::now();
        // A mid-epoch checkpoint: skip the batches it has done, with their running sums.
        let resume_at = std::mem::take(&mut state.batches_done);
        let partial = std::mem::take(&mut state.partial);
        let (mut loss_sum, mut correct, mut seen, seconds_before) = if resume_at > 0 {
            partial
        } else {
            Default::default()
        };
        let seen_before = seen;
        progress.start(
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            Some(steps_per_epoch as u64),
        );
        progress.advance(resume_at as u64, "");
        let order = per_rank(train.order(epoch, true));
        let mut lr = cfg.optim.lr;
        let accum = cfg.grad_accum.max(1);
        let batches: Vec<&[usize]> = order.chunks(train.batch_size.max(1)).collect();
        let mut pending: Option<candle_core::backprop::GradStore> = None;
        // Off the CPU (and on the CPU's GPU-path check, kernels off), the next batches are
        // read, augmented and copied to the device on a thread of their own while the device
        // computes this one (two in flight).
        let prefetch = !(device.is_cpu() && crate::nn::cpu::kernels_enabled());
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<crate::data::Batch>>(2);
            if prefetch {
                let todo: Vec<&[usize]> = batches[resume_at.min(batches.len())..].to_vec();
                scope.spawn(move || {
                    for idx in todo {
                        if tx.send(train.batch(idx, true, epoch, device)).is_err() {
                            break;
                        }
                    }
                });
            } else {
                drop(tx);
            }
            for (bi, idx) in batches.iter().enumerate().skip(resume_at) {
                let micro = bi % accum;
                // Dropout's RNG is a function of (seed, step, micro-batch, shard): resuming replays
                // the same masks.
                let step_seed = cfg.seed
                    ^ (state.global_step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
                    ^ (micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let step = if prefetch {
                    let batch = rx
                        .recv()
                        .map_err(|_| Error::Msg("the batch reader stopped".into()))??;
                    let (grads, loss, correct) =
                        shard_grads(model, &batch, step_seed, cfg.label_smoothing, 1.0)?;
                    StepGrads {
                        grads,
                        loss,
                        correct,
                    }
                } else {
                    grads_data_parallel(
                        model,
                        train,
                        idx,
                        epoch,
                        step_seed,
                        cfg.label_smoothing,
                        opts.threads,
                        device,
                    )?
                };
                let mut step = step;
                let mut items = idx.len();
                if let Some(c) = dist {
                    all_reduce_grads(&mut step.grads, &named_vars, c, BUCKET_BYTES)?;
                    // Logged over the world's batch: (Σ loss·n, Σ correct, Σ n) / world.
                    let s = sum_scalars(
                        c,
                        &[
                            step.loss * idx.len() as f64,
                            step.correct as f64,
                            idx.len() as f64,
                        ],
                    )?;
                    items = s[2].round() as usize;
                    step.loss = s[0] / s[2].max(1.0);
                    step.correct = s[1].round() as usize;
                }
                // Before any update: a NaN loss must not reach the weights (or a checkpoint).
                if !step.loss.is_finite() {
                    return Err(Error::Msg(format!(
                        "loss became {} at step {}: try a lower learning rate",
                        step.loss, state.global_step
                    )));
                }
                loss_sum += step.loss * items as f64;
                correct += step.correct;
                seen += items;
                // Average over the micro-batches of one optimizer step.
                let group = accum.min(batches.len() - (bi - micro));
                // GradStore has no public constructor: the first micro-batch's store accumulates.
                let acc = if micro == 0 {
                    let mut first = step.grads;
                    if group > 1 {
                        for v in &var_list {
                            if let Some(g) = first.get(v) {
                                let g = (g / group as f64)?;
                                first.insert(v, g);
                            }
                        }
                    }
                    first
                } else {
                    let mut acc = pending
                        .take()
                        .ok_or_else(|| Error::Msg("no gradients".into()))?;
                    for v in &var_list {
                        if let Some(g) = step.grads.get(v) {
                            let g = (g / group as f64)?;
                            let sum = match acc.get(v) {
                                Some(prev) => (prev + g)?,
                                None => g,
                            };
                            acc.insert(v, sum);
                        }
                    }
                    acc
                };
                pending = Some(acc);
                if micro + 1 == group {
                    let mut grads = pending
                        .take()
                        .ok_or_else(|| Error::Msg("no gradients".into()))?;
                    if cfg.clip_grad_norm > 0.0 {
                        let norm = clip_grad_norm(&mut grads, &var_list, cfg.clip_grad_norm)?;
                        if !norm.is_finite() {
                            return Err(Error::Msg(format!(
                                "gradient norm became {norm} at step {}: try a lower learning rate",
                                state.global_step
                            )));
                        }
                    }
                    lr = lr_at(
                        cfg.optim.lr,
                        state.global_step,
                        warmup,
                        total_steps,
                        cfg.schedule,
                    );
                    opt.step(&grads, lr)?;
                    state.global_step += 1;
                    let every = opts.save_every_steps;
                    if every > 0
                        && state.global_step.is_multiple_of(every)
                        && bi + 1 < batches.len()
                    {
                        state.batches_done = bi + 1;
                        state.partial = (
                            loss_sum,
                            correct,
                            seen,
                            seconds_before + t0.elapsed().as_secs_f64(),
                        );
                        if main {
                            save_checkpoint(out, store, &opt, &state, model_config)?;
                        }
                        // Only the checkpoint carries them: the epoch goes on with its own sums.
                        state.batches_done = 0;
                        state.partial = Default::default();
                    }
                }
                let el = t0.elapsed().as_secs_f64();
                progress.advance(
                    1,
                    &format!(
                        "loss {:.4} {:.0} img/s",
                        loss_sum / seen as f64,
                        (seen - seen_before) as f64 / el
                    ),
                );
            }
            Ok(())
        })?;
        progress.finish();
        let seconds = seconds_before + t0.elapsed().as_secs_f64();
        let (test_loss, test_accuracy) = evaluate_shard(model, test, opts.threads, device, dist)?;
        state.epoch = epoch + 1;
        state.train_seconds += seconds;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss,
            test_accuracy,
            lr,
            seconds,
            images_per_second: seen as f64 / seconds,
        };
        progress.note(&format!("epoch {}/{}: {m}", m.epoch, cfg.epochs));
        if main {
            append_metrics(&metrics_path, &m)?;
        }
        state.history.push(m.clone());
        if state.best_test_accuracy.is_none_or(|b| test_accuracy > b) {
            state.best_test_accuracy = Some(test_accuracy);
            if main {
                save_model(&out.join("best"), store, model_config)?;
            }
        }
        if main {
            last_dir = save_checkpoint(out, store, &opt, &state, model_config)?;
            if let Err(e) = plot_history(&state.history, &out.join("curves.png")) {
                progress.note(&format!("warning: could not draw the plot: {e}"));
            }
        } else {
            last_dir = out.join(format!("checkpoint-{}", state.epoch));
        }
        last = Some(m);
    }
    if state.epoch >= cfg.epochs && main {
        save_model(out, store, model_config)?;
    }
    // Rank 0's files are complete before any rank returns.
    if let Some(c) = dist {
        c.barrier()?;
    }
    let last = last.ok_or_else(|| Error::Msg("no epoch was run (epochs = 0?)".into()))?;
    Ok(TrainSummary {
        epochs: state.epoch,
        test_accuracy: last.test_accuracy,
        test_loss: last.test_loss,
        best_test_accuracy: state.best_test_accuracy.unwrap_or(0.0),
        train_seconds: state.train_seconds,
        checkpoint: last_dir,
        metrics: metrics_path,
        plot: out.join("curves.png"),
    })
}
