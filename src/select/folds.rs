//! Stratified k-fold splits of the training shots: with a handful of images per class there is no spare
//! validation set, so each candidate setting is trained k times, each time scored on the images it did not see.

use crate::rng::Rng;

/// The most folds a protocol uses: more would cost more runs for little less noise.
pub const MAX_FOLDS: usize = 5;
/// The most folds `--auto`'s search scores on: a candidate-epoch then costs one pass over the shots, not k − 1, so the
/// budget buys rungs long enough to rank learning rates (chosen on the glyph testbed's regret table, BENCHMARKS.md
/// session 11).
pub const SEARCH_FOLDS: usize = 2;

/// How a candidate setting is scored.
#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    /// k-fold cross-validation over the training shots, stratified by class.
    CrossValidation { folds: usize },
    /// Trained on all the shots, scored on a held-out set (1 image per class leaves nothing to fold).
    HeldOut { images: usize },
}

impl Protocol {
    /// k = min(fewest images of any class, 5) folds when that is at least 2; otherwise a held-out set when one
    /// exists; otherwise none (the method's defaults apply).
    pub fn choose(labels: &[usize], classes: usize, held_out: usize) -> Option<Self> {
        Self::choose_at_most(labels, classes, held_out, MAX_FOLDS)
    }

    /// `choose` with at most `max_folds` folds (at least 2): fewer folds cost fewer passes an epoch, so the same
    /// budget buys longer rungs.
    pub fn choose_at_most(
        labels: &[usize],
        classes: usize,
        held_out: usize,
        max_folds: usize,
    ) -> Option<Self> {
        let k = fewest_per_class(labels, classes).min(max_folds.max(2));
        if k >= 2 {
            Some(Self::CrossValidation { folds: k })
        } else if held_out > 0 {
            Some(Self::HeldOut { images: held_out })
        } else {
            None
        }
    }

    /// Training passes over the shots that scoring one candidate for one epoch costs, in units of one epoch on
    /// all the shots: k runs on (k-1)/k of them, or one run on all of them.
    pub fn cost_per_epoch(&self) -> f64 {
        match self {
            Self::CrossValidation { folds } => (*folds - 1) as f64,
            Self::HeldOut { .. } => 1.0,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::CrossValidation { folds } => {
                format!("{folds}-fold cross-validation over the training shots (stratified)")
            }
            Self::HeldOut { images } => {
                format!("held-out validation on {images} images (one shot per class leaves nothing to fold)")
            }
        }
    }
}

/// The fewest images any of `classes` has (0 when one has none).
pub fn fewest_per_class(labels: &[usize], classes: usize) -> usize {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if l < classes {
            counts[l] += 1;
        }
    }
    counts.into_iter().min().unwrap_or(0)
}

/// The fold (0..k) of every sample: each class's images are shuffled with `seed` and dealt round the folds,
/// each class starting where the previous one stopped, so fold sizes differ by at most one.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Vec<usize> {
    assert!(k >= 1, "at least one fold");
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = Rng::new(seed ^ 0xF01D);
    let mut fold_of = vec![0usize; labels.len()];
    let mut next = 0usize;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        rng.shuffle(&mut idx);
        for i in idx {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    fold_of
}

/// (training, validation) sample indices of fold `f`.
pub fn fold_split(fold_of: &[usize], f: usize) -> (Vec<usize>, Vec<usize>) {
    (0..fold_of.len()).partition(|&i| fold_of[i] != f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(per_class: &[usize]) -> Vec<usize> {
        per_class
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
            .collect()
    }

    #[test]
    fn folds_are_stratified_disjoint_and_cover_every_sample() {
        let l = labels(&[4, 4, 4, 5, 7]);
        let k = 4;
        let fold_of = stratified_folds(&l, k, 3);
        let mut seen = vec![0usize; l.len()];
        for f in 0..k {
            let (train, val) = fold_split(&fold_of, f);
            assert_eq!(train.len() + val.len(), l.len());
            assert!(train.iter().all(|i| !val.contains(i)), "fold {f} overlaps");
            for &i in &val {
                seen[i] += 1;
            }
            // Every class of at least k images has one or two images in every validation fold.
            for c in 0..5 {
                let n = val.iter().filter(|&&i| l[i] == c).count();
                assert!((1..=2).contains(&n), "class {c} has {n} images in fold {f}");
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "each sample validates exactly once"
        );
        let sizes: Vec<usize> = (0..k).map(|f| fold_split(&fold_of, f).1.len()).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }

    #[test]
    fn folds_are_seeded() {
        let l = labels(&[6, 6, 6]);
        assert_eq!(stratified_folds(&l, 3, 7), stratified_folds(&l, 3, 7));
        assert_ne!(stratified_folds(&l, 3, 7), stratified_folds(&l, 3, 8));
    }

    #[test]
    fn protocol_follows_the_shots() {
        // k = min(fewest per class, 5).
        assert_eq!(
            Protocol::choose(&labels(&[4, 4, 4]), 3, 0),
            Some(Protocol::CrossValidation { folds: 4 })
        );
        assert_eq!(
            Protocol::choose(&labels(&[16, 9, 8]), 3, 0),
            Some(Protocol::CrossValidation { folds: 5 })
        );
        assert_eq!(
            Protocol::choose(&labels(&[2, 3]), 2, 10),
            Some(Protocol::CrossValidation { folds: 2 })
        );
        // One shot: a held-out set when there is one, else nothing.
        assert_eq!(
            Protocol::choose(&labels(&[1, 1, 1]), 3, 6),
            Some(Protocol::HeldOut { images: 6 })
        );
        assert_eq!(Protocol::choose(&labels(&[1, 3]), 2, 0), None);
        assert_eq!(
            Protocol::choose_at_most(&labels(&[4, 4, 4]), 3, 0, 2),
            Some(Protocol::CrossValidation { folds: 2 })
        );
        assert_eq!(Protocol::CrossValidation { folds: 4 }.cost_per_epoch(), 3.0);
    }
}
