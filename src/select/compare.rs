//! Method comparison on the user's images: every method scored by the same protocol on the same shots (and
//! seeds), with or without its own search, ranked.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use super::folds::Protocol;
use super::grid::Candidate;
use super::search::{apply_candidate, mean_std, search, Scorer, SearchOptions};
use crate::error::{Error, Result};
use crate::train::Samples;
use crate::train::{Recipe, Session};
use crate::tuned::TunedMeta;
use crate::tuning::{Method, Tuning};

/// A method to compare, with its recipe (the papers' defaults unless the user changed them).
#[derive(Debug, Clone)]
pub struct CompareEntry {
    pub label: String,
    pub recipe: Recipe,
}

/// One method's result.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub label: String,
    pub method: Method,
    pub parameters: usize,
    /// Mean held-out accuracy of the scored setting: over seeds when there are several, else over folds.
    pub score: f64,
    pub std: f64,
    /// Each seed's score.
    pub per_seed: Vec<f64>,
    /// The setting scored on the first seed (the search's choice with `auto`, else the recipe's own).
    pub setting: Candidate,
    pub protocol: String,
    pub seconds: f64,
    /// The tuned file written for this method (`out`).
    pub tuned: Option<PathBuf>,
}

fn candidate_of(recipe: &Recipe) -> Candidate {
    Candidate {
        lr: recipe.config.optim.lr,
        weight_decay: recipe.config.optim.weight_decay,
        prompts: None,
        optimizer: None,
        warm_head: recipe.warm_head,
    }
}

/// Scores every entry on each of `draws` (one training set of shots per seed), ranked best first. With `auto`
/// each method runs its own search and is scored by its chosen setting's cross-validation score (the search's
/// own estimate: optimistic by the choice, alike for every method). With `out`, each method's chosen setting is
/// trained on the first draw and written to `out/<label>.safetensors`.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    session: &Session,
    classes: &[String],
    draws: &[Samples],
    entries: &[CompareEntry],
    auto: Option<&SearchOptions>,
    out: Option<&Path>,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<CompareRow>> {
    let first = draws
        .first()
        .ok_or_else(|| Error::Input("compare needs training images".into()))?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(crate::Error::io("create", dir))?;
    }
    let mut rows = Vec::new();
    for entry in entries {
        let start = Instant::now();
        let (mut per_seed, mut fold_std, mut setting, mut protocol) =
            (Vec::new(), 0.0, candidate_of(&entry.recipe), String::new());
        for (seed, draw) in draws.iter().enumerate() {
            let mut recipe = entry.recipe.clone();
            recipe.config.seed = entry.recipe.config.seed + seed as u64;
            let (score, std, chosen, proto) = match auto {
                Some(a) => {
                    let sel = search(
                        session,
                        &recipe,
                        classes,
                        draw,
                        None,
                        a,
                        stop,
                        &mut |_| {},
                        log,
                    )?
                    .ok_or_else(one_shot)?;
                    (sel.score, sel.score_std, sel.chosen, sel.protocol)
                }
                None => {
                    let protocol =
                        Protocol::choose(&draw.labels, classes.len(), 0).ok_or_else(one_shot)?;
                    let scorer = Scorer::new(
                        session,
                        &recipe,
                        classes.len(),
                        draw,
                        None,
                        protocol.clone(),
                    )?;
                    let c = candidate_of(&recipe);
                    let t = scorer.score(&c, recipe.config.epochs, stop)?;
                    (t.mean, t.std, c, protocol.describe())
                }
            };
            if seed == 0 {
                (fold_std, setting, protocol) = (std, chosen, proto);
            }
            per_seed.push(score);
            log(&format!(
                "{:<14} seed {seed}: {:.1}% ± {:.1} ({})",
                entry.label,
                100.0 * score,
                100.0 * std,
                chosen.describe()
            ));
        }
        let (score, seed_std) = mean_std(&per_seed);
        let mut recipe = entry.recipe.clone();
        let epochs = recipe.config.epochs;
        apply_candidate(&mut recipe, &setting, epochs, first.len());
        let tuned = match out {
            Some(dir) => {
                match session.fit(&recipe, classes.len(), first, None, stop, &mut |_| {}) {
                    Ok(o) => {
                        let mut meta = TunedMeta::new(
                            &o.best,
                            session.backbone,
                            classes.to_vec(),
                            &recipe.init.describe(),
                        );
                        meta.image_size = session.transform.size;
                        meta.diverged = o.diverged.clone();
                        if let Some(d) = &o.diverged {
                            log(&format!("{}: {d}", entry.label));
                        }
                        let path = dir.join(format!("{}.safetensors", file_label(&entry.label)));
                        crate::tuned::write(&path, &o.best, &meta)?;
                        Some(path)
                    }
                    // A method whose run diverges has no tuned file; the others' comparison goes on.
                    Err(e @ Error::Diverged { .. }) => {
                        log(&format!("{}: {e}; no tuned file written", entry.label));
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let parameters = Tuning::init(
            recipe.method,
            recipe.options.clone(),
            session.backbone,
            classes.len(),
            0,
        )?
        .parameter_count();
        rows.push(CompareRow {
            label: entry.label.clone(),
            method: recipe.method,
            parameters,
            score,
            std: if draws.len() > 1 { seed_std } else { fold_std },
            per_seed,
            setting,
            protocol,
            seconds: start.elapsed().as_secs_f64(),
            tuned,
        });
    }
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(rows)
}

fn one_shot() -> Error {
    Error::Input(
        "comparing methods needs at least 2 images per class (to score on images a run did not train on)"
            .into(),
    )
}

fn file_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The ranked table as text.
pub fn table_text(rows: &[CompareRow]) -> String {
    let mut s = format!(
        "{:<4} {:<14} {:>15} {:>12} {:>10} {:>8} {:>8}\n",
        "rank", "method", "accuracy", "parameters", "lr", "wd", "time"
    );
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!(
            "{:<4} {:<14} {:>6.1}% ± {:>5.1} {:>12} {:>10.2e} {:>8.0e} {:>7.1}s\n",
            i + 1,
            r.label,
            100.0 * r.score,
            100.0 * r.std,
            r.parameters,
            r.setting.lr,
            r.setting.weight_decay,
            r.seconds
        ));
    }
    s
}
