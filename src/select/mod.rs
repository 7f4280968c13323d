//! Hyper-parameter selection on the user's own images, and method comparison under the same protocol.
//!
//! Every paper this project implements picks its learning rate and weight decay per data set on validation data;
//! with a few shots per class there is none to spare, so a candidate is scored by k-fold cross-validation over
//! the shots (`folds`), the candidates come from the papers' grids (`grid`), and successive halving keeps the
//! cost within a few default runs (`halving`).

pub mod compare;
pub mod folds;
pub mod grid;
pub mod halving;
mod search;

pub use compare::{compare, table_text as compare_table, CompareEntry, CompareRow};
pub use folds::Protocol;
pub use grid::Candidate;
pub use halving::{RankBy, Rung, Schedule};
pub use search::{
    apply_candidate, mean_std, search, Scorer, SearchEvent, SearchOptions, Selection, Trial,
};
