//! Successive halving (Jamieson & Talwalkar 2016) sized to a budget: every candidate is scored after a few
//! epochs, the best third goes on with about three times as many, until two are left; the best of the last rung
//! wins. Each rung restarts its survivors with a full warmup-and-cosine schedule of the rung's length.

pub use crate::records::{RankBy, Rung, Schedule};

/// The fraction of a rung's candidates that go on to the next.
pub const ETA: usize = 3;

/// A search costs at most this many default runs (one default run = the final run's epochs on all the shots).
pub const DEFAULT_BUDGET: f64 = 6.0;

/// How many candidates of `n` survive each rung: n, ⌈n/3⌉, … while at least two are left to compare.
pub fn rung_sizes(n: usize) -> Vec<usize> {
    let mut sizes = vec![n.max(1)];
    while *sizes.last().unwrap_or(&1) > ETA - 1 {
        let next = sizes.last().unwrap_or(&1).div_ceil(ETA);
        sizes.push(next);
    }
    if sizes.len() > 1 && sizes.last() == Some(&1) {
        sizes.pop();
    }
    sizes
}

/// The schedule for `n` candidates whose scoring costs `cost_per_epoch` passes over the shots per epoch
/// (k − 1 for k folds), when a default run is `epochs` epochs: the longest last rung that keeps the whole
/// search within `budget` default runs. Rung r runs about last/3^(R−1−r) epochs (at least one). When even one
/// epoch per rung is over budget, that is the schedule, and its cost says so.
pub fn plan(n: usize, cost_per_epoch: f64, epochs: usize, budget: f64) -> Schedule {
    let sizes = rung_sizes(n);
    let epochs = epochs.max(1);
    let schedule_for = |last: usize| {
        let r = sizes.len();
        let rungs: Vec<Rung> = sizes
            .iter()
            .enumerate()
            .map(|(i, &candidates)| {
                let div = (ETA as f64).powi((r - 1 - i) as i32);
                Rung {
                    candidates,
                    epochs: ((last as f64 / div).round() as usize).max(1),
                }
            })
            .collect();
        let passes = training_passes(&rungs);
        Schedule {
            cost: cost_per_epoch * passes as f64 / epochs as f64,
            rungs,
        }
    };
    (1..=epochs)
        .rev()
        .map(schedule_for)
        .find(|s| s.cost <= budget + 1e-9)
        .unwrap_or_else(|| schedule_for(1))
}

/// Epochs trained over all rungs: a rung no longer than the one before reuses its survivors' scores.
fn training_passes(rungs: &[Rung]) -> usize {
    let mut prev = 0;
    rungs
        .iter()
        .map(|r| {
            let fresh = r.epochs > prev;
            prev = r.epochs;
            if fresh {
                r.candidates * r.epochs
            } else {
                0
            }
        })
        .sum()
}

/// The order of a rung's (accuracy, loss) results under `by`, then the earlier candidate.
pub fn rank_by(scores: &[(f64, f64)], by: RankBy) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| by.compare(scores[a], scores[b]).then(a.cmp(&b)));
    order
}

/// The order in which a rung's results rank: higher mean accuracy first, then lower mean loss (accuracy ties
/// are common on a few validation images), then the earlier candidate.
pub fn rank(scores: &[(f64, f64)]) -> Vec<usize> {
    rank_by(scores, RankBy::Accuracy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_keep_a_third_until_two_are_left() {
        assert_eq!(rung_sizes(10), vec![10, 4, 2]);
        assert_eq!(rung_sizes(11), vec![11, 4, 2]);
        assert_eq!(rung_sizes(30), vec![30, 10, 4, 2]);
        assert_eq!(rung_sizes(3), vec![3]);
        assert_eq!(rung_sizes(2), vec![2]);
        assert_eq!(rung_sizes(1), vec![1]);
    }

    #[test]
    fn plan_fits_the_budget_and_grows_by_three() {
        // 10 candidates, 4-fold (3 passes per epoch), 30-epoch default runs, budget 6.
        let s = plan(10, 3.0, 30, 6.0);
        assert!(s.cost <= 6.0, "{s:?}");
        let e: Vec<usize> = s.rungs.iter().map(|r| r.epochs).collect();
        assert!(e.windows(2).all(|w| w[1] >= w[0]), "{e:?}");
        assert!(*e.last().unwrap() <= 30);
        let passes: usize = s.rungs.iter().map(|r| r.candidates * r.epochs).sum();
        assert!((s.cost - 3.0 * passes as f64 / 30.0).abs() < 1e-12);
        assert!(plan(10, 3.0, 30, 6.0 - 0.5).rungs.last().unwrap().epochs <= e[2]);
        // A rung as short as the one before reuses its scores: it costs nothing.
        let s = plan(10, 3.0, 12, 6.0);
        let e: Vec<usize> = s.rungs.iter().map(|r| r.epochs).collect();
        assert_eq!(e, vec![1, 1, 4], "{s:?}");
        assert!((s.cost - 3.0 * (10.0 + 8.0) / 12.0).abs() < 1e-12, "{s:?}");
        // Cheap scoring (2 folds) reaches the full length on the last rung.
        let s = plan(10, 1.0, 30, 6.0);
        assert_eq!(s.rungs.last().unwrap().epochs, 30);
        assert_eq!(s.rungs[0].epochs, 3);
        // Over budget even at one epoch a rung: that schedule, with its real cost.
        let s = plan(30, 4.0, 2, 6.0);
        assert!(s.rungs.iter().all(|r| r.epochs == 1));
        assert!(s.cost > 6.0);
    }

    #[test]
    fn ranking_breaks_accuracy_ties_by_loss() {
        let scores = [(0.5, 1.0), (0.75, 2.0), (0.75, 1.5), (0.5, 0.9)];
        assert_eq!(rank(&scores), vec![2, 1, 3, 0]);
        assert_eq!(rank_by(&scores, RankBy::Loss), vec![3, 0, 2, 1]);
        // A diverged candidate (infinite loss) ranks last by loss.
        assert_eq!(
            rank_by(&[(0.0, f64::INFINITY), (0.1, 3.0)], RankBy::Loss),
            vec![1, 0]
        );
    }
}
