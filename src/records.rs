//! Plain records the layers hand upward: the optimizer's kind, a search's candidates, schedule, trials and
//! selection, a run's epoch statistics, progress events and divergence. They sit below `train`, `select` and the
//! tuned file (whose metadata holds a selection and a divergence), so those import them and not each other; each
//! is re-exported where it was first named (`train::EpochStats`, `select::Selection`, ...).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

impl OptimizerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sgd => "SGD",
            Self::Adamw => "AdamW",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "sgd" => Some(Self::Sgd),
            "adamw" => Some(Self::Adamw),
            _ => None,
        }
    }
}

/// One setting of the search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Peak learning rate as the optimizer uses it (already scaled to the batch for SGD).
    pub lr: f32,
    pub weight_decay: f32,
    /// VPT prompt tokens, when the search chooses them.
    pub prompts: Option<usize>,
    /// The optimizer, when not the recipe's (AdamW beside a prompt method's SGD recipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerKind>,
    /// LP-FT: start from the head of a linear probe trained first on the same images (`Recipe::warm_head`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm_head: bool,
}

impl Candidate {
    /// "lr 1.00e-3, wd 1e-4" and, when the candidate names one, its optimizer.
    pub fn describe(&self) -> String {
        let mut s = format!("lr {:.3e}, wd {:.0e}", self.lr, self.weight_decay);
        if let Some(p) = self.prompts {
            s.push_str(&format!(", {p} prompts"));
        }
        if let Some(k) = self.optimizer {
            s.push_str(&format!(", {}", k.name()));
        }
        if self.warm_head {
            s.push_str(", warm head");
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rung {
    pub candidates: usize,
    pub epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub rungs: Vec<Rung>,
    /// Planned cost in default runs (training passes over the shots, the scoring forwards not counted).
    pub cost: f64,
}

/// One candidate's score at the last rung it reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub candidate: Candidate,
    /// The last rung it ran (0-based) and that rung's epochs.
    pub rung: usize,
    pub epochs: usize,
    /// Accuracy on each fold's held-out images (one entry for a held-out protocol).
    pub folds: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    /// Mean cross-entropy on the held-out images (none when training diverged on a fold: JSON has no infinity).
    pub loss: Option<f64>,
    /// Training diverged (loss not finite) on some fold: scored as 0.
    pub diverged: bool,
}

impl Trial {
    /// What a rung ranks (see `RankBy::compare`): (mean accuracy, loss), a diverged setting's loss infinite.
    pub fn score(&self) -> (f64, f64) {
        (self.mean, self.loss.unwrap_or(f64::INFINITY))
    }
}

/// What a search chose and why: recorded in the tuned file's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub protocol: String,
    pub optimizer: OptimizerKind,
    /// The recipe's own setting (the method's defaults, or the user's).
    pub default: Candidate,
    pub chosen: Candidate,
    /// The chosen setting's mean ± std fold accuracy at its last rung.
    pub score: f64,
    pub score_std: f64,
    pub schedule: Schedule,
    /// Every candidate, best first: those that reached later rungs, then by score.
    pub table: Vec<Trial>,
    pub seconds: f64,
}

impl Selection {
    /// The search table as text, one candidate a line.
    pub fn table_text(&self) -> String {
        let mut s = format!(
            "{:>10} {:>8} {:>5} {:>7}  {:>15}  {:>6}  {:>6}  {}\n",
            "lr", "wd", "optim", "prompts", "accuracy", "loss", "epochs", "folds"
        );
        for t in &self.table {
            let mark = if t.candidate == self.chosen {
                "  <- chosen"
            } else {
                ""
            };
            let default = if t.candidate == self.default {
                " (recipe)"
            } else {
                ""
            };
            s.push_str(&format!(
                "{:>10.3e} {:>8.0e} {:>5} {:>7}  {:>6.1}% ± {:>4.1}  {:>6}  {:>6}  {}{}{}{}\n",
                t.candidate.lr,
                t.candidate.weight_decay,
                t.candidate.optimizer.unwrap_or(self.optimizer).name(),
                t.candidate
                    .prompts
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                100.0 * t.mean,
                100.0 * t.std,
                t.loss.map_or_else(|| "-".into(), |l| format!("{l:.3}")),
                t.epochs,
                t.folds
                    .iter()
                    .map(|a| format!("{:.0}", 100.0 * a))
                    .collect::<Vec<_>>()
                    .join(" "),
                if t.diverged { " diverged" } else { "" },
                default,
                mark
            ));
        }
        s
    }
}

/// What a rung ranks its candidates by: held-out loss by default, chosen on the glyph testbed's regret table
/// (BENCHMARKS.md, session 11: vpt-deep's regret 8.2 → 5.6 points, linear 5.9 → 5.4, LoRA level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankBy {
    /// Mean held-out accuracy, ties broken by loss.
    Accuracy,
    /// Mean held-out cross-entropy (continuous: no ties on a few validation images), ties broken by accuracy.
    #[default]
    Loss,
}

impl RankBy {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "accuracy" => Some(Self::Accuracy),
            "loss" => Some(Self::Loss),
            _ => None,
        }
    }

    /// Which of two (accuracy, loss) results ranks first: the chosen measure, then the other.
    pub fn compare(self, a: (f64, f64), b: (f64, f64)) -> std::cmp::Ordering {
        let accuracy = b.0.total_cmp(&a.0);
        let loss = a.1.total_cmp(&b.1);
        match self {
            RankBy::Accuracy => accuracy.then(loss),
            RankBy::Loss => loss.then(accuracy),
        }
    }

    /// A search table's order: later rungs first, each rung in this ranking's order.
    pub fn compare_trials(self, a: &Trial, b: &Trial) -> std::cmp::Ordering {
        b.rung.cmp(&a.rung).then(self.compare(a.score(), b.score()))
    }
}

/// Progress of a search, as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchEvent {
    Planned {
        protocol: String,
        candidates: usize,
        schedule: Schedule,
        /// The recipe's optimizer: a candidate without its own trains with it.
        optimizer: OptimizerKind,
        /// What each rung ranks its candidates by.
        rank_by: RankBy,
    },
    /// A candidate has been scored at a rung.
    Trial {
        rung: usize,
        rungs: usize,
        index: usize,
        of: usize,
        trial: Trial,
    },
    /// A line of progress from a longer job (a comparison's method and seed).
    Note(String),
}

impl SearchEvent {
    /// One line for a status bar.
    pub fn status(&self) -> String {
        match self {
            Self::Planned {
                candidates,
                schedule,
                ..
            } => format!(
                "choosing the learning rate: {candidates} settings, {} rungs, about {:.1} default runs",
                schedule.rungs.len(),
                schedule.cost
            ),
            Self::Trial {
                rung,
                rungs,
                index,
                of,
                trial,
            } => format!(
                "search rung {}/{rungs}, setting {}/{of}: lr {:.2e} wd {:.0e} scored {:.1}%",
                rung + 1,
                index + 1,
                trial.candidate.lr,
                trial.candidate.weight_decay,
                100.0 * trial.mean
            ),
            Self::Note(m) => m.clone(),
        }
    }
}

/// Progress, as the loop goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    Step {
        epoch: usize,
        step: usize,
        steps_per_epoch: usize,
        loss: f64,
        accuracy: f64,
        images_per_s: f64,
        lr: f32,
    },
    Epoch(EpochStats),
    /// Progress of a hyper-parameter search before the run (`--auto`).
    Search(SearchEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

/// Where and how a run diverged, for the messages and the tuned file's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The epoch (from 1) whose loss diverged.
    pub epoch: usize,
    /// That epoch's mean training loss; `None` when a step's loss was not finite.
    pub loss: Option<f64>,
    /// The epoch (from 1) of the model kept.
    pub kept_epoch: usize,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loss = match self.loss {
            Some(l) => format!("loss {l:.3}"),
            None => "the loss is not finite".into(),
        };
        write!(
            f,
            "training diverged at epoch {}: {loss}; the kept model is epoch {}'s; try --auto or a smaller --lr",
            self.epoch, self.kept_epoch
        )
    }
}
