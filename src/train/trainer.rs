//! The training loop: epochs of shuffled mini-batches (augmented on worker threads), one GPU step per batch,
//! evaluation after each epoch, and the best tuning kept. A stop flag ends it cleanly between steps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::augment::Augment;
use super::dataset::Samples;
use super::metrics::argmax_rows;
use super::optim::{OptimConfig, Optimizer, OptimizerKind};
use super::session::Session;
use super::step::{compute_grads, compute_head_grads, StepOptions};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::model::{ForwardOptions, GpuViT, HostTensor};
use crate::preprocess::Transform;
pub use crate::records::{Divergence, EpochStats, TrainEvent};
use crate::rng::Rng;
use crate::tuning::GpuTuning;
use crate::tuning::{Method, Tuning};

/// Training epochs unless a person says otherwise: one default for the CLI, the app and the search's cost unit.
pub const DEFAULT_EPOCHS: usize = 30;
/// Images per step unless a person says otherwise (the same for the CLI and the app).
pub const DEFAULT_BATCH: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub optim: OptimConfig,
    pub seed: u64,
    pub augment: Augment,
    /// Images per GPU micro-batch; chosen from the adapter's limits when unset.
    pub micro_batch: Option<usize>,
}

impl TrainConfig {
    /// The papers' recipe for `method` (REFERENCE.md), scaled to `steps_per_epoch`: VPT and the linear probe
    /// train with SGD (momentum 0.9, lr = base·batch/256), the adapters with AdamW; warmup for the first 10% of
    /// the steps, then cosine decay.
    pub fn defaults(method: Method, epochs: usize, batch: usize, steps_per_epoch: usize) -> Self {
        let scaled = |base: f32| base * batch as f32 / 256.0;
        let r = method.recipe();
        let lr = if r.sgd { scaled(r.lr) } else { r.lr };
        let kind = if r.sgd {
            OptimizerKind::Sgd
        } else {
            OptimizerKind::Adamw
        };
        let optim = OptimConfig::new(kind, lr, r.weight_decay);
        Self {
            epochs,
            batch,
            optim,
            seed: 0,
            augment: Augment::default(),
            micro_batch: None,
        }
        .rescheduled(epochs, steps_per_epoch * batch)
    }

    /// The recipe with the user's changes to its optimiser, learning rate or weight decay.
    pub fn overridden(mut self, o: &RecipeOverrides) -> Self {
        if let Some(k) = o.optimizer {
            self.optim.kind = k;
        }
        if let Some(lr) = o.lr {
            self.optim.lr = lr;
        }
        if let Some(wd) = o.weight_decay {
            self.optim.weight_decay = wd;
        }
        self
    }

    /// The same recipe run for `epochs` epochs over `train_images` images: warmup for the first 10% of the
    /// steps, then cosine decay to the end.
    pub fn rescheduled(&self, epochs: usize, train_images: usize) -> Self {
        let steps_per_epoch = train_images.div_ceil(self.batch.max(1)).max(1);
        let total = (epochs * steps_per_epoch) as u32;
        let mut c = self.clone();
        c.epochs = epochs;
        c.optim.total_steps = total;
        c.optim.warmup_steps = total / 10;
        c
    }
}

/// What a user changed in a method's recipe (the CLI's `--optimizer/--lr/--wd`, the app's learning rate).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecipeOverrides {
    pub optimizer: Option<OptimizerKind>,
    pub lr: Option<f32>,
    pub weight_decay: Option<f32>,
}

pub struct TrainOutcome {
    /// The tuning with the best validation accuracy (the last one without a validation set).
    pub best: Tuning,
    pub best_epoch: usize,
    pub history: Vec<EpochStats>,
    /// The stop flag ended the run early.
    pub stopped: bool,
    /// Training diverged after at least one good epoch: the run stopped there and `best` is from before.
    pub diverged: Option<Divergence>,
}

/// Training has diverged when a step's loss is not finite, or when the mean training loss of `DIVERGED_EPOCHS`
/// epochs in a row is above `DIVERGED_FACTOR` × ln(C): three times the loss of guessing uniformly over the C
/// classes, which is where an untrained head starts. An epoch above it is never kept (one alone may be a spike the
/// run recovers from); a run that diverges stops at once, and what it kept is the best good epoch's model.
pub const DIVERGED_FACTOR: f64 = 3.0;
/// Epochs in a row above the limit that make a divergence.
pub const DIVERGED_EPOCHS: usize = 2;

/// The loss above which an epoch counts as diverged, for `classes` classes.
pub fn diverged_above(classes: usize) -> f64 {
    DIVERGED_FACTOR * (classes.max(2) as f64).ln()
}

/// Normalised model inputs for `idx` of `samples`, augmented with per-image seeds, on worker threads.
pub fn batch_pixels(
    samples: &Samples,
    idx: &[usize],
    t: &Transform,
    aug: Option<(&Augment, u64)>,
) -> HostTensor {
    let (h, w) = t.size;
    let per = 3 * h * w;
    let mut data = vec![0.0f32; idx.len() * per];
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(8);
    let chunk = idx.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (ci, (out, ids)) in data
            .chunks_mut(chunk * per)
            .zip(idx.chunks(chunk))
            .enumerate()
        {
            s.spawn(move || {
                for (j, (&i, dst)) in ids.iter().zip(out.chunks_mut(per)).enumerate() {
                    let img = &samples.images[i];
                    let v = match aug {
                        Some((a, seed)) => {
                            let mut rng = Rng::new(
                                seed ^ ((ci * chunk + j) as u64).wrapping_mul(0x9E37_79B9),
                            );
                            a.apply(img, t, &mut rng)
                        }
                        None => t.apply(img),
                    };
                    dst.copy_from_slice(&v);
                }
            });
        }
    });
    HostTensor::new(vec![idx.len(), 3, h, w], data)
}

/// Logits [n, classes] of `samples` under `tuning` (eval transform), in batches of `batch`.
pub fn predict_logits(
    gpu: &Gpu,
    vit: &GpuViT,
    t: &Transform,
    tuning: &GpuTuning,
    samples: &Samples,
    batch: usize,
) -> Result<HostTensor> {
    let mut data = Vec::new();
    let all: Vec<usize> = (0..samples.len()).collect();
    for ids in all.chunks(batch.max(1)) {
        let px = batch_pixels(samples, ids, t, None);
        let out = vit.forward(
            gpu,
            &px,
            &ForwardOptions {
                tuning: Some(tuning),
                max_batch: Some(batch),
                ..Default::default()
            },
        )?;
        let l = out
            .logits
            .ok_or_else(|| Error::Input("the tuning has no head".into()))?;
        data.extend(l.data);
    }
    Ok(HostTensor::new(
        vec![samples.len(), tuning.num_classes],
        data,
    ))
}

fn accuracy(logits: &HostTensor, labels: &[usize]) -> f64 {
    let pred = argmax_rows(&logits.data, logits.shape[1]);
    let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    correct as f64 / labels.len().max(1) as f64
}

/// Trains `tuning` on `train`; evaluates on `val` after each epoch and keeps the best.
pub fn train(
    session: &Session,
    tuning: Tuning,
    train: &Samples,
    val: Option<&Samples>,
    cfg: &TrainConfig,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainOutcome> {
    if train.is_empty() {
        return Err(Error::Input("no training images".into()));
    }
    let (gpu, vit, transform) = (session.gpu, session.vit, session.transform);
    let gt = GpuTuning::upload(gpu, &tuning)?;
    let grads = gt.zeros_like(gpu)?;
    let mut opt = Optimizer::new(gpu, &gt.params, cfg.optim.clone())?;
    let mut rng = Rng::new(cfg.seed);
    let mut best = tuning;
    let mut best_metric = f64::NEG_INFINITY;
    let mut best_epoch = 0;
    let mut history = Vec::new();
    let steps_per_epoch = train.len().div_ceil(cfg.batch.max(1));
    let mut stopped = false;
    let mut diverged = None;
    let limit = diverged_above(best.num_classes);
    // Whether an epoch below the limit was kept, and how many epochs in a row were above it.
    let (mut kept_any, mut above_in_a_row) = (false, 0);
    // The linear probe without augmentation trains on features computed once.
    let features = if best.method.head_only() && cfg.augment == Augment::none() {
        Some(session.pooled_features(train)?)
    } else {
        None
    };
    'epochs: for epoch in 0..cfg.epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        for (step, ids) in order.chunks(cfg.batch.max(1)).enumerate() {
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break 'epochs;
            }
            let t0 = Instant::now();
            let labels: Vec<usize> = ids.iter().map(|&i| train.labels[i]).collect();
            let lr = opt.current_lr();
            let mut after =
                |rec: &mut Recorder| opt.record_step(rec, &gt.params, &grads, &gt.shapes);
            let aug_seed = rng.next_u64();
            let out = match &features {
                Some(f) => {
                    let d = f.shape[1];
                    let rows: Vec<f32> = ids
                        .iter()
                        .flat_map(|&i| f.data[i * d..(i + 1) * d].iter().copied())
                        .collect();
                    let fb = HostTensor::new(vec![ids.len(), d], rows);
                    compute_head_grads(gpu, &gt, &grads, &fb, &labels, Some(&mut after))?
                }
                None => {
                    let px = batch_pixels(train, ids, transform, Some((&cfg.augment, aug_seed)));
                    compute_grads(
                        gpu,
                        vit,
                        &gt,
                        &grads,
                        &px,
                        &labels,
                        StepOptions {
                            micro_batch: cfg.micro_batch,
                            dropout_seed: Some((aug_seed >> 32) as u32),
                            timing: false,
                        },
                        Some(&mut after),
                    )?
                }
            };
            if !out.loss.is_finite() {
                if !kept_any {
                    return Err(Error::Diverged {
                        loss: out.loss,
                        epoch: epoch + 1,
                        step: step + 1,
                        lr: cfg.optim.lr,
                    });
                }
                diverged = Some(Divergence {
                    epoch: epoch + 1,
                    loss: None,
                    kept_epoch: best_epoch + 1,
                });
                break 'epochs;
            }
            let acc = accuracy(&out.logits, &labels);
            loss_sum += out.loss * ids.len() as f64;
            correct += (acc * ids.len() as f64).round() as usize;
            seen += ids.len();
            on_event(&TrainEvent::Step {
                epoch,
                step,
                steps_per_epoch,
                loss: out.loss,
                accuracy: acc,
                images_per_s: ids.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                lr,
            });
        }
        let val_accuracy = match val {
            Some(v) if !v.is_empty() => {
                let logits = predict_logits(gpu, vit, transform, &gt, v, cfg.batch.max(8))?;
                Some(accuracy(&logits, &v.labels))
            }
            _ => None,
        };
        let stats = EpochStats {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        let exploding = stats.loss > limit;
        above_in_a_row = if exploding { above_in_a_row + 1 } else { 0 };
        // Without a validation set the latest epoch counts as best; an epoch above the limit never does.
        let metric = val_accuracy.unwrap_or(epoch as f64);
        if !exploding && metric >= best_metric {
            best_metric = metric;
            best_epoch = epoch;
            best = gt.download(gpu)?;
            kept_any = true;
        }
        let loss = stats.loss;
        on_event(&TrainEvent::Epoch(stats.clone()));
        history.push(stats);
        let last_epoch = epoch + 1 == cfg.epochs;
        if above_in_a_row >= DIVERGED_EPOCHS || (last_epoch && !kept_any) {
            if !kept_any {
                return Err(Error::Diverged {
                    loss,
                    epoch: epoch + 1,
                    step: steps_per_epoch,
                    lr: cfg.optim.lr,
                });
            }
            diverged = Some(Divergence {
                epoch: epoch + 1,
                loss: Some(loss),
                kept_epoch: best_epoch + 1,
            });
            break 'epochs;
        }
    }
    if history.is_empty() {
        // Stopped before the first epoch ended: keep what the GPU holds now.
        best = gt.download(gpu)?;
    }
    Ok(TrainOutcome {
        best,
        best_epoch,
        history,
        stopped,
        diverged,
    })
}
