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
/// AdamW for prompt methods whose recipe is SGD: centred on the learning rate of the PETL code bases that train
/// prompts with AdamW (around 1e-3, REFERENCE.md §12), the same half-decade steps and weight decays as above.
pub const PROMPT_ADAMW_LR: f32 = 1e-3;
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
    with_prompts(&pairs, prompts, None)
}

/// Every (lr, wd) pair at every prompt count (or none), with the candidates' optimizer.
fn with_prompts(
    pairs: &[(f32, f32)],
    prompts: Option<&[usize]>,
    optimizer: Option<OptimizerKind>,
) -> Vec<Candidate> {
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
                optimizer,
                warm_head: false,
            })
        })
        .collect()
}

/// The search's grid for a recipe: its optimizer's grid (`candidates`), and with `prompt_adamw` (a prompt method
/// whose recipe is SGD, VPT's official optimizer) an AdamW grid beside it (the optimizer later prompt code bases
/// use; `SearchOptions::prompt_adamw`, off by default); with `warm_head` every setting again starting from the
/// linear probe's head (LP-FT; `SearchOptions::warm_head`, off by default).
pub fn search_grid(
    kind: OptimizerKind,
    default_lr: f32,
    default_wd: f32,
    batch: usize,
    prompts: Option<&[usize]>,
    prompt_adamw: bool,
    warm_head: bool,
) -> Vec<Candidate> {
    let mut grid = candidates(kind, default_lr, default_wd, batch, prompts);
    if prompt_adamw && kind == OptimizerKind::Sgd {
        let pairs: Vec<(f32, f32)> = ADAMW_LR_FACTORS
            .iter()
            .flat_map(|f| {
                ADAMW_WEIGHT_DECAYS
                    .iter()
                    .map(move |&wd| (f * PROMPT_ADAMW_LR, wd))
            })
            .collect();
        grid.extend(with_prompts(&pairs, prompts, Some(OptimizerKind::Adamw)));
    }
    if warm_head {
        let warm: Vec<Candidate> = grid
            .iter()
            .map(|c| Candidate {
                warm_head: true,
                ..*c
            })
            .collect();
        grid.extend(warm);
    }
    grid
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

    #[test]
    fn prompt_adamw_adds_an_adamw_grid_beside_an_sgd_recipe() {
        // VPT-deep at batch 32: SGD's 10 settings, then AdamW's 10 around 1e-3.
        let g = search_grid(OptimizerKind::Sgd, 0.625, 1e-4, 32, None, true, false);
        assert_eq!(g.len(), 20);
        assert!(g[..10].iter().all(|c| c.optimizer.is_none()));
        let adamw: Vec<(f32, f32)> = g[10..]
            .iter()
            .map(|c| {
                assert_eq!(c.optimizer, Some(OptimizerKind::Adamw));
                (c.lr, c.weight_decay)
            })
            .collect();
        assert!(
            (adamw[0].0 - 1e-4).abs() < 1e-9 && adamw[0].1 == 1e-4,
            "{adamw:?}"
        );
        assert!(
            (adamw[9].0 - 1e-2).abs() < 1e-8 && adamw[9].1 == 5e-2,
            "{adamw:?}"
        );
        // Not for a method whose recipe is already AdamW, nor when not asked (the default; the linear probe).
        assert_eq!(
            search_grid(OptimizerKind::Adamw, 1e-3, 1e-4, 32, None, true, false).len(),
            10
        );
        assert_eq!(
            search_grid(OptimizerKind::Sgd, 1.25, 1e-4, 32, None, false, false).len(),
            11
        );
        // With prompt counts, both grids take each.
        let g = search_grid(
            OptimizerKind::Sgd,
            0.625,
            1e-4,
            32,
            Some(&PROMPT_COUNTS),
            true,
            false,
        );
        assert_eq!(g.len(), 60);
    }

    #[test]
    fn warm_head_repeats_every_setting_starting_from_the_probes_head() {
        let cold = search_grid(OptimizerKind::Adamw, 5e-3, 1e-4, 32, None, false, false);
        let g = search_grid(OptimizerKind::Adamw, 5e-3, 1e-4, 32, None, false, true);
        assert_eq!(g.len(), 2 * cold.len());
        assert!(g[..cold.len()].iter().all(|c| !c.warm_head));
        for (w, c) in g[cold.len()..].iter().zip(&cold) {
            assert!(w.warm_head);
            assert_eq!(
                Candidate {
                    warm_head: false,
                    ..*w
                },
                *c
            );
        }
        assert!(g[cold.len()].describe().ends_with(", warm head"));
    }
}
