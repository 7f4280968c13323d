//! The comparison job: several methods, each with the papers' recipe (or its own search), scored on the same shots
//! and ranked. The CLI gives class folders, the app its project's images; the draws, the entries and the scoring
//! are made here once.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::RunPlan;
use crate::error::{Error, Result};
use crate::select::{CompareEntry, CompareRow, SearchOptions};
use crate::train::{working_side, Dataset, Init, Recipe, Samples, Session};
use crate::tuning::{Method, MethodOptions};

/// What the methods are compared on.
pub enum CompareData {
    /// Class folders: `seeds` draws of `shots` images per class (every image, once per seed, when unset).
    Folder {
        dir: PathBuf,
        shots: Option<usize>,
        seeds: usize,
    },
    /// Decoded training images (one draw).
    Samples {
        classes: Vec<String>,
        train: Samples,
    },
}

pub struct CompareJob {
    pub data: CompareData,
    /// Each with the papers' default options.
    pub methods: Vec<Method>,
    pub plan: RunPlan,
    /// Each method's own search first.
    pub auto: Option<SearchOptions>,
    /// Write each method's tuned file into this folder.
    pub out: Option<PathBuf>,
}

/// The methods compared when none are named: every method but full fine-tuning, the slow baseline.
pub fn default_compared() -> Vec<Method> {
    Method::ALL
        .into_iter()
        .filter(|m| m.spec().compared_by_default())
        .collect()
}

impl CompareJob {
    /// The classes and the training draws; `log` hears about skipped images.
    fn draws(
        &self,
        input: (usize, usize),
        log: &mut dyn FnMut(&str),
    ) -> Result<(Vec<String>, Vec<Samples>)> {
        match &self.data {
            CompareData::Samples { classes, train } => Ok((classes.clone(), vec![train.clone()])),
            CompareData::Folder { dir, shots, seeds } => {
                let ds = Dataset::from_folder(dir)?;
                let mut draws = Vec::new();
                for seed in 0..(*seeds).max(1) as u64 {
                    let idx = match shots {
                        Some(k) => ds.k_shot(*k, seed).0,
                        None => (0..ds.items.len()).collect(),
                    };
                    let items: Vec<_> = idx.iter().map(|&i| ds.items[i].clone()).collect();
                    let (s, problems) = Samples::decode(&items, working_side(input));
                    problems.iter().for_each(|p| log(&format!("warning: {p}")));
                    draws.push(s);
                }
                Ok((ds.classes, draws))
            }
        }
    }

    /// Each method with its recipe for `images` training images.
    pub fn entries(&self, images: usize) -> Vec<CompareEntry> {
        self.methods
            .iter()
            .map(|&method| CompareEntry {
                label: method.name().to_string(),
                recipe: Recipe {
                    method,
                    options: MethodOptions::defaults(method),
                    init: Init::Method,
                    config: self.plan.config(method, images),
                    warm_head: false,
                },
            })
            .collect()
    }

    /// Scores every method on `session`, ranked best first; `log` hears each step (the first line says what is
    /// compared). A stop before every method is scored gives no ranking.
    pub fn run(
        &self,
        session: &Session,
        stop: &AtomicBool,
        log: &mut dyn FnMut(&str),
    ) -> Result<Vec<CompareRow>> {
        let (classes, draws) = self.draws(session.transform.size, log)?;
        let images = draws.first().map_or(0, Samples::len);
        let entries = self.entries(images);
        if let CompareData::Folder { dir, shots, seeds } = &self.data {
            log(&format!(
                "comparing {} methods on {} ({} classes, {images} training images{}, {} draw(s)){}",
                entries.len(),
                dir.display(),
                classes.len(),
                shots.map(|k| format!(", {k}-shot")).unwrap_or_default(),
                (*seeds).max(1),
                if self.auto.is_some() {
                    ", each with its own search"
                } else {
                    ", the papers' recipes"
                }
            ));
        }
        crate::select::compare(
            session,
            &classes,
            &draws,
            &entries,
            self.auto.as_ref(),
            self.out.as_deref(),
            stop,
            log,
        )
        .map_err(|e| match e {
            Error::Stopped(_) => Error::Stopped(
                "the comparison was stopped before every method was scored: no ranking".into(),
            ),
            e => e,
        })
    }
}
