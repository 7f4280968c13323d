//! The candidate settings a search tries: the papers' grids (REFERENCE.md §8) around the method's recipe.

pub use crate::records::Candidate;
use crate::train::OptimizerKind;

/// VPT's base learning rates for SGD (lr = base·batch/256), every other value of its sweep
/// {50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1, 0.05}: the same span at half the cost.
pub const SGD_BASE_LRS: [f32; 5] = [25.0, 5.0, 1.0, 0.25, 0.05];
/// Weight decays for SGD, from VPT's sweep {0.01, 0.001, 0.0001, 0}.
pub const SGD_WEIGHT_DECAYS: [f32; 2] = [1e-4, 1e-2];
/// AdamW: a log grid of half-decade steps around the method's own learning rate.
pub const ADAMW_LR_FACTORS: [f32; 5] = [0.1, 0.316, 1.0, 3.16, 10.0];
/// AdamW's decoupled weight decay: the papers' 1e-4 and the 0.05 common for ViTs.
pub const ADAMW_WEIGHT_DECAYS: [f32; 2] = [1e-4, 5e-2];
/// The prompt counts `--auto-prompts` tries (VPT's {1, 5, 10, 50, 100, 200} without the extremes).
pub const PROMPT_COUNTS: [usize; 3] = [5, 10, 50];

/// The grid for an optimizer whose recipe is (`default_lr`, `default_wd`) at `batch`: learning rate × weight
/// decay (× prompt counts when given). The recipe itself is always a candidate, so a search never has to
/// leave it without evidence.
pub fn candidates(
    kind: OptimizerKind,
    default_lr: f32,
    default_wd: f32,
    batch: usize,
    prompts: Option<&[usize]>,
) -> Vec<Candidate> {
    let (lrs, wds): (Vec<f32>, &[f32]) = match kind {
        OptimizerKind::Sgd => (
            SGD_BASE_LRS
                .iter()
                .map(|b| b * batch as f32 / 256.0)
                .collect(),
            &SGD_WEIGHT_DECAYS,
        ),
        OptimizerKind::Adamw => (
            ADAMW_LR_FACTORS.iter().map(|f| f * default_lr).collect(),
            &ADAMW_WEIGHT_DECAYS,
        ),
    };
    let mut pairs: Vec<(f32, f32)> = lrs
        .iter()
        .flat_map(|&lr| wds.iter().map(move |&wd| (lr, wd)))
        .collect();
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * a.abs().max(b.abs());
    if !pairs
        .iter()
        .any(|&(lr, wd)| close(lr, default_lr) && close(wd, default_wd))
    {
        pairs.push((default_lr, default_wd));
    }
    let prompt_choices: Vec<Option<usize>> = match prompts {
        Some(p) if !p.is_empty() => p.iter().map(|&n| Some(n)).collect(),
        _ => vec![None],
    };
    prompt_choices
        .iter()
        .flat_map(|&p| {
            pairs.iter().map(move |&(lr, weight_decay)| Candidate {
                lr,
                weight_decay,
                prompts: p,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_grid_is_vpts_scaled_to_the_batch_and_keeps_the_recipe() {
        // VPT-deep's recipe: base 5 at batch 32 -> 0.625, wd 1e-4: already on the grid.
        let c = candidates(OptimizerKind::Sgd, 0.625, 1e-4, 32, None);
        assert_eq!(c.len(), 10);
        assert!(c
            .iter()
            .any(|c| c.lr == 25.0 * 32.0 / 256.0 && c.weight_decay == 1e-2));
        assert!(c.iter().any(|c| c.lr == 0.625 && c.weight_decay == 1e-4));
        // The linear probe's base 10 is not on the thinned grid: the recipe is added.
        let c = candidates(OptimizerKind::Sgd, 1.25, 1e-4, 32, None);
        assert_eq!(c.len(), 11);
        assert_eq!(c.last().map(|c| (c.lr, c.weight_decay)), Some((1.25, 1e-4)));
    }

    #[test]
    fn adamw_grid_centres_on_the_recipe_and_prompts_multiply() {
        let c = candidates(OptimizerKind::Adamw, 5e-3, 1e-4, 32, Some(&PROMPT_COUNTS));
        assert_eq!(c.len(), 30);
        let lrs: Vec<f32> = c.iter().take(10).step_by(2).map(|c| c.lr).collect();
        assert!(
            (lrs[0] - 5e-4).abs() < 1e-9 && (lrs[4] - 5e-2).abs() < 1e-7,
            "{lrs:?}"
        );
        assert_eq!(c[0].prompts, Some(5));
        assert_eq!(c[29].prompts, Some(50));
    }
}
