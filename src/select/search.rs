//! The search itself: score candidates on the shots (k-fold or held out), halve, and report the winner with the
//! table of every candidate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::folds::{fold_split, stratified_folds, Protocol};
use super::grid::{search_grid, Candidate};
use super::halving::{plan, rank_by, RankBy, DEFAULT_BUDGET};
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;

pub use crate::records::{SearchEvent, Selection, Trial};
use crate::train::{initial_tuning, Init, Recipe, Session};
use crate::train::{predict_logits, train, Samples, TrainEvent};
use crate::tuning::GpuTuning;
use crate::tuning::Tuning;

/// What `--auto` searches.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Prompt counts to try as well (VPT methods only; `--auto-prompts`).
    pub prompts: Option<Vec<usize>>,
    /// The most the search may cost, in default runs.
    pub budget: f64,
    /// What each rung ranks by (held-out loss; see `RankBy`).
    pub rank_by: RankBy,
    /// Prompt methods with an SGD recipe also try AdamW (`grid::search_grid`). Off by default: on the glyph
    /// testbed it left the regret as it was and raised the cost (BENCHMARKS.md, session 11).
    pub prompt_adamw: bool,
    /// The most cross-validation folds (`folds::SEARCH_FOLDS` by default).
    pub max_folds: usize,
    /// Every setting also with a warm head (LP-FT: the linear probe's head to start from; `grid::search_grid`).
    /// Off by default until the regret table says it helps.
    pub warm_head: bool,
    /// Each fold trains with as many optimizer steps per epoch as the final run on all the shots (`matched_batch`).
    /// On by default: on the glyph testbed's regret table it moved every method's choice to the grid's best or next
    /// to it (BENCHMARKS.md, session 13), where folds at the recipe's batch chose learning rates 3-4x too large.
    pub match_steps: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            prompts: None,
            budget: DEFAULT_BUDGET,
            rank_by: RankBy::default(),
            prompt_adamw: false,
            max_folds: super::folds::SEARCH_FOLDS,
            warm_head: false,
            match_steps: true,
        }
    }
}

impl Selection {
    /// Applies the chosen setting to `recipe` (its schedule over `train_images`).
    pub fn apply(&self, recipe: &mut Recipe, train_images: usize) {
        apply_candidate(recipe, &self.chosen, recipe.config.epochs, train_images);
    }
}

pub fn apply_candidate(recipe: &mut Recipe, c: &Candidate, epochs: usize, train_images: usize) {
    recipe.config.optim.lr = c.lr;
    recipe.config.optim.weight_decay = c.weight_decay;
    if let Some(k) = c.optimizer {
        recipe.config.optim.kind = k;
    }
    if let Some(p) = c.prompts {
        recipe.options.prompts = p;
    }
    recipe.warm_head = c.warm_head;
    recipe.config = recipe.config.rescheduled(epochs, train_images);
}

fn stopped() -> Error {
    Error::Stopped(
        "stopped during the hyper-parameter search: nothing was trained on all the shots".into(),
    )
}

/// Mean cross-entropy of rows of `logits` against `labels`.
fn mean_cross_entropy(logits: &[f32], classes: usize, labels: &[usize]) -> f64 {
    let mut sum = 0.0;
    for (row, &l) in logits.chunks(classes).zip(labels) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        sum += lse - row[l] as f64;
    }
    sum / labels.len().max(1) as f64
}

/// How one candidate is scored: the data it is trained and validated on.
pub struct Scorer<'a> {
    pub session: &'a Session<'a>,
    pub recipe: &'a Recipe,
    pub classes: usize,
    pub protocol: Protocol,
    /// (training, held-out) samples of each fold, or all the shots and the validation set.
    splits: Vec<(Samples, Samples)>,
    /// SPT's starting prototypes per (fold, prompt count): the same for every learning rate, and each costs a
    /// forward over the fold's images, so they are computed once.
    spt_inits: RefCell<HashMap<(usize, usize), Tuning>>,
    /// Folds train with the final run's steps per epoch (`matching_steps`).
    match_steps: bool,
    all_images: usize,
}

impl<'a> Scorer<'a> {
    pub fn new(
        session: &'a Session<'a>,
        recipe: &'a Recipe,
        classes: usize,
        train: &'a Samples,
        val: Option<&'a Samples>,
        protocol: Protocol,
    ) -> Result<Self> {
        let splits = match (&protocol, val) {
            (Protocol::CrossValidation { folds }, _) => {
                let fold_of = stratified_folds(&train.labels, *folds, recipe.config.seed);
                (0..*folds)
                    .map(|f| {
                        let (tr, va) = fold_split(&fold_of, f);
                        (train.subset(&tr), train.subset(&va))
                    })
                    .collect()
            }
            (Protocol::HeldOut { .. }, Some(v)) => vec![(train.clone(), v.clone())],
            (Protocol::HeldOut { .. }, None) => {
                return Err(Error::Input(
                    "a held-out search needs validation images".into(),
                ))
            }
        };
        Ok(Self {
            session,
            recipe,
            classes,
            protocol,
            splits,
            spt_inits: RefCell::default(),
            match_steps: false,
            all_images: train.len(),
        })
    }

    /// With `on`, each fold trains with `matched_batch`: as many optimizer steps per epoch as the final run.
    pub fn matching_steps(mut self, on: bool) -> Self {
        self.match_steps = on;
        self
    }

    /// The recipe a fold of `images` trains `c` with for `epochs`: the candidate's setting, its schedule over the
    /// fold, and with `matching_steps` the batch that keeps the final run's steps per epoch.
    pub fn fold_recipe(&self, c: &Candidate, epochs: usize, images: usize) -> Recipe {
        let mut recipe = self.recipe.clone();
        if self.match_steps {
            recipe.config.batch = matched_batch(recipe.config.batch, self.all_images, images);
        }
        apply_candidate(&mut recipe, c, epochs, images);
        recipe
    }

    /// The images each fold trains on.
    pub fn fold_sizes(&self) -> Vec<usize> {
        self.splits.iter().map(|(tr, _)| tr.len()).collect()
    }

    /// The starting tuning of `recipe` on fold `f`'s training part (SPT prototypes cached).
    fn initial(&self, recipe: &Recipe, f: usize, tr: &Samples) -> Result<Tuning> {
        if !matches!(recipe.init, Init::Spt(_)) {
            return initial_tuning(self.session, recipe, self.classes, tr);
        }
        let key = (f, recipe.options.prompts);
        if let Some(t) = self.spt_inits.borrow().get(&key) {
            return Ok(t.clone());
        }
        let t = initial_tuning(self.session, recipe, self.classes, tr)?;
        self.spt_inits.borrow_mut().insert(key, t.clone());
        Ok(t)
    }

    /// Logits [n·classes] of `samples` under `tuning`: a probe's head applied to the session's cached pooled
    /// features, else the tuned model's forward.
    fn logits(&self, tuning: &Tuning, samples: &Samples) -> Result<Vec<f32>> {
        let s = self.session;
        let head = tuning.method.head_only().then(|| {
            (
                tuning.tensors.get("head.weight"),
                tuning.tensors.get("head.bias"),
            )
        });
        if let Some((Some(w), Some(b))) = head {
            let f = s.pooled_features(samples)?;
            let d = f.shape[1];
            let mut out = Vec::with_capacity(samples.len() * self.classes);
            for row in f.data.chunks(d) {
                for c in 0..self.classes {
                    let wc = &w.data[c * d..(c + 1) * d];
                    let dot: f32 = row.iter().zip(wc).map(|(a, b)| a * b).sum();
                    out.push(dot + b.data[c]);
                }
            }
            return Ok(out);
        }
        let gt = GpuTuning::upload(s.gpu, tuning)?;
        Ok(predict_logits(s.gpu, s.vit, s.transform, &gt, samples, 64)?.data)
    }

    /// Trains `c` for `epochs` on each fold's training part and scores it on the held-out part.
    pub fn score(&self, c: &Candidate, epochs: usize, stop: &AtomicBool) -> Result<Trial> {
        let (mut accs, mut losses, mut diverged) = (Vec::new(), Vec::new(), false);
        for (f, (tr, va)) in self.splits.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(stopped());
            }
            let recipe = self.fold_recipe(c, epochs, tr.len());
            let fitted = self
                .initial(&recipe, f, tr)
                .and_then(|t| train(self.session, t, tr, None, &recipe.config, stop, &mut |_| {}));
            match fitted {
                Ok(out) if out.stopped => return Err(stopped()),
                Ok(out) if out.diverged.is_some() => {
                    diverged = true;
                    accs.push(0.0);
                    losses.push(f64::INFINITY);
                }
                Ok(out) => {
                    let logits = self.logits(&out.best, va)?;
                    let pred = crate::train::argmax_rows(&logits, self.classes);
                    let correct = pred.iter().zip(&va.labels).filter(|(p, l)| p == l).count();
                    accs.push(correct as f64 / va.len().max(1) as f64);
                    losses.push(mean_cross_entropy(&logits, self.classes, &va.labels));
                }
                Err(Error::Diverged { .. }) => {
                    diverged = true;
                    accs.push(0.0);
                    losses.push(f64::INFINITY);
                }
                Err(e) => return Err(e),
            }
        }
        let (mean, std) = mean_std(&accs);
        let loss = (!diverged).then(|| losses.iter().sum::<f64>() / losses.len().max(1) as f64);
        Ok(Trial {
            candidate: *c,
            rung: 0,
            epochs,
            folds: accs,
            mean,
            std,
            loss,
            diverged,
        })
    }
}

/// The smallest batch with which `fold` images take no more optimizer steps per epoch than `all` images at
/// `batch`: a fold of half the shots at the recipe's batch takes fewer steps than the final run (3 instead of 5 for
/// 40 of 80 images at 16), and a rung then favours learning rates too large for the final run. An epoch costs the
/// same images either way; the learning rate is the candidate's.
pub fn matched_batch(batch: usize, all: usize, fold: usize) -> usize {
    let steps = all.div_ceil(batch.max(1)).max(1);
    fold.div_ceil(steps).clamp(1, batch.max(1))
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = if v.len() < 2 {
        0.0
    } else {
        (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    (mean, std)
}

/// Chooses the learning rate and weight decay (and prompt count) of `recipe` on `train` by successive halving
/// over the grid. `None`, with a notice through `log`, when the shots allow no honest score.
#[allow(clippy::too_many_arguments)]
pub fn search(
    session: &Session,
    recipe: &Recipe,
    classes: &[String],
    train: &Samples,
    val: Option<&Samples>,
    opts: &SearchOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&TrainEvent),
    log: &mut dyn FnMut(&str),
) -> Result<Option<Selection>> {
    let start = Instant::now();
    let held_out = val.map_or(0, |v| v.len());
    let Some(protocol) =
        Protocol::choose_at_most(&train.labels, classes.len(), held_out, opts.max_folds)
    else {
        log("--auto: one image per class and no validation images, so nothing to choose the learning rate on; \
             training with the method's defaults (add images or give --val to search)");
        return Ok(None);
    };
    let optim = &recipe.config.optim;
    let prompts = opts
        .prompts
        .as_deref()
        .filter(|_| recipe.method.uses_prompts());
    let default = Candidate {
        lr: optim.lr,
        weight_decay: optim.weight_decay,
        prompts: prompts.map(|_| recipe.options.prompts),
        optimizer: None,
        warm_head: false,
    };
    let grid = search_grid(
        optim.kind,
        optim.lr,
        optim.weight_decay,
        recipe.config.batch,
        prompts,
        opts.prompt_adamw && recipe.method.uses_prompts(),
        opts.warm_head && recipe.method != crate::tuning::Method::Linear,
    );
    let schedule = plan(
        grid.len(),
        protocol.cost_per_epoch(),
        recipe.config.epochs,
        opts.budget,
    );
    if schedule.cost > opts.budget + 1e-9 {
        log(&format!(
            "--auto: {} settings at one epoch per rung already cost {:.1} default runs of {} epochs, over the \
             budget of {}; the search runs at that cost (more epochs make each rung longer and the share smaller)",
            grid.len(),
            schedule.cost,
            recipe.config.epochs,
            opts.budget
        ));
    }
    on_event(&TrainEvent::Search(SearchEvent::Planned {
        protocol: protocol.describe(),
        candidates: grid.len(),
        schedule: schedule.clone(),
        optimizer: optim.kind,
        rank_by: opts.rank_by,
    }));
    let scorer = Scorer::new(session, recipe, classes.len(), train, val, protocol.clone())?
        .matching_steps(opts.match_steps);
    let mut alive: Vec<usize> = (0..grid.len()).collect();
    let mut last: Vec<Option<Trial>> = vec![None; grid.len()];
    for (r, rung) in schedule.rungs.iter().enumerate() {
        alive.truncate(rung.candidates);
        let mut scores = Vec::new();
        for (i, &c) in alive.iter().enumerate() {
            // A rung no longer than the last one this setting ran would repeat it exactly (same seed).
            let mut trial = match &last[c] {
                Some(t) if t.epochs >= rung.epochs => t.clone(),
                _ => scorer.score(&grid[c], rung.epochs, stop)?,
            };
            trial.rung = r;
            on_event(&TrainEvent::Search(SearchEvent::Trial {
                rung: r,
                rungs: schedule.rungs.len(),
                index: i,
                of: alive.len(),
                trial: trial.clone(),
            }));
            scores.push(trial.score());
            last[c] = Some(trial);
        }
        alive = rank_by(&scores, opts.rank_by)
            .into_iter()
            .map(|i| alive[i])
            .collect();
    }
    let chosen = alive[0];
    let mut table: Vec<Trial> = last.into_iter().flatten().collect();
    table.sort_by(|a, b| opts.rank_by.compare_trials(a, b));
    // The winner leads its rung's ties, as the ranking chose it.
    if let Some(pos) = table.iter().position(|t| t.candidate == grid[chosen]) {
        let t = table.remove(pos);
        table.insert(0, t);
    }
    let best = &table[0];
    Ok(Some(Selection {
        protocol: protocol.describe(),
        optimizer: optim.kind,
        default,
        chosen: grid[chosen],
        score: best.mean,
        score_std: best.std,
        schedule,
        table,
        seconds: start.elapsed().as_secs_f64(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adamw_candidate_trains_with_adamw_and_a_plain_one_keeps_the_recipes_optimizer() {
        use crate::train::{OptimizerKind, TrainConfig};
        use crate::tuning::{Method, MethodOptions};
        let method = Method::VptDeep;
        let mut recipe = Recipe {
            method,
            options: MethodOptions::defaults(method),
            init: Init::Method,
            config: TrainConfig::defaults(method, 10, 8, 4),
            warm_head: false,
        };
        assert_eq!(recipe.config.optim.kind, OptimizerKind::Sgd);
        let mut c = Candidate {
            lr: 0.5,
            weight_decay: 1e-2,
            prompts: Some(5),
            optimizer: None,
            warm_head: false,
        };
        apply_candidate(&mut recipe, &c, 10, 32);
        assert_eq!(recipe.config.optim.kind, OptimizerKind::Sgd);
        assert_eq!((recipe.config.optim.lr, recipe.options.prompts), (0.5, 5));
        c.optimizer = Some(OptimizerKind::Adamw);
        c.lr = 3e-3;
        apply_candidate(&mut recipe, &c, 10, 32);
        assert_eq!(recipe.config.optim.kind, OptimizerKind::Adamw);
        assert_eq!(
            (recipe.config.optim.lr, recipe.config.optim.weight_decay),
            (3e-3, 1e-2)
        );
        assert_eq!(c.describe(), "lr 3.000e-3, wd 1e-2, 5 prompts, AdamW");
    }

    #[test]
    fn a_matched_batch_gives_a_fold_the_final_runs_steps_per_epoch() {
        // 20 classes at 4 shots, two folds: 40 images at batch 8 take the 5 steps of 80 at 16.
        assert_eq!(matched_batch(16, 80, 40), 8);
        for batch in [1, 7, 16, 32] {
            for all in 2..200 {
                for fold in [all / 2, all - all / 5, all - 1]
                    .into_iter()
                    .filter(|&f| f > 0)
                {
                    let b = matched_batch(batch, all, fold);
                    assert!((1..=batch).contains(&b), "{batch} {all} {fold}: {b}");
                    let (want, got) = (all.div_ceil(batch), fold.div_ceil(b));
                    // Never more steps than the final run; one image more per step would give fewer.
                    assert!(got <= want, "{batch} {all} {fold}: {b}");
                    assert!(
                        b == 1 || fold.div_ceil(b - 1) > want,
                        "{batch} {all} {fold}: {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn cross_entropy_of_logits() {
        let l = [0.0f32, 0.0, 10.0, 0.0];
        let ce = mean_cross_entropy(&l, 2, &[0, 0]);
        let expect = (2f64.ln() + (1.0 + (-10f64).exp()).ln()) / 2.0;
        assert!((ce - expect).abs() < 1e-9, "{ce} {expect}");
        assert_eq!(mean_std(&[0.5, 1.0]).0, 0.75);
        assert!((mean_std(&[0.5, 1.0]).1 - 0.353_553_390_593_273_8).abs() < 1e-12);
    }
}
