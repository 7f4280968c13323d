//! Attention maps over the patch grid from post-softmax attention [heads, T, T] per layer (one image), tokens
//! ordered [prefix tokens, registers, prompts, patches]. Where a model has no class token, the "CLS" maps read the
//! mean of the pooled tokens' rows (their pooled feature is their mean), weighted by the pooling query's attention
//! for attention-pooled models (SigLIP).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::hooks::TokenLayout;

/// How the heads of a layer become one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadFusion {
    Mean,
    Max,
    Min,
    Head(usize),
}

impl HeadFusion {
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            "min" => Ok(Self::Min),
            n => n.parse().map(Self::Head).map_err(|_| {
                Error::Input(format!(
                    "--head `{n}`: expected mean, max, min or a head index"
                ))
            }),
        }
    }
}

/// Which map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MapMode {
    /// CLS → patch attention of one layer.
    Cls { layer: usize },
    /// Prompt k → patch attention of one layer (`None`: the mean over prompts).
    Prompt { layer: usize, prompt: Option<usize> },
    /// Attention rollout over all layers (Abnar & Zuidema 2020) with a discard ratio that keeps CLS→CLS.
    Rollout { discard: f32 },
    /// Gradient-weighted rollout (Chefer et al. 2021): per layer mean_h(clamp(∂score/∂A ⊙ A, 0)), R += cam·R.
    GradRollout,
}

/// One layer's attention [heads·T·T] fused over heads into [T·T].
pub fn fuse_heads(a: &[f32], heads: usize, t: usize, fusion: HeadFusion) -> Result<Vec<f64>> {
    let tt = t * t;
    if let HeadFusion::Head(h) = fusion {
        if h >= heads {
            return Err(Error::Input(format!(
                "head {h} does not exist; the model has {heads} heads"
            )));
        }
        return Ok(a[h * tt..(h + 1) * tt].iter().map(|v| *v as f64).collect());
    }
    Ok((0..tt)
        .map(|i| {
            let vals = (0..heads).map(|h| a[h * tt + i] as f64);
            match fusion {
                HeadFusion::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                HeadFusion::Min => vals.fold(f64::INFINITY, f64::min),
                _ => vals.sum::<f64>() / heads as f64,
            }
        })
        .collect())
}

fn matmul(a: &[f64], b: &[f64], t: usize) -> Vec<f64> {
    let mut c = vec![0.0; t * t];
    for i in 0..t {
        for k in 0..t {
            let aik = a[i * t + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..t {
                c[i * t + j] += aik * b[k * t + j];
            }
        }
    }
    c
}

/// Rollout R = Â_L ⋯ Â_1 with Â = rownorm((A' + I)/2), A' the fused attention with the smallest `discard`
/// fraction of entries zeroed (CLS→CLS always kept). Returns R [T·T].
pub fn rollout(layers: &[Vec<f64>], t: usize, discard: f32) -> Vec<f64> {
    let mut r: Vec<f64> = (0..t * t)
        .map(|i| if i % (t + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    for a in layers {
        let mut a = a.clone();
        let drop = ((t * t) as f64 * discard as f64) as usize;
        if drop > 0 {
            let mut order: Vec<usize> = (0..t * t).collect();
            order.sort_by(|&x, &y| a[x].total_cmp(&a[y]));
            for &i in order.iter().take(drop) {
                if i != 0 {
                    a[i] = 0.0;
                }
            }
        }
        for i in 0..t {
            a[i * t + i] += 1.0;
        }
        for i in 0..t {
            let s: f64 = a[i * t..(i + 1) * t].iter().sum();
            if s > 0.0 {
                a[i * t..(i + 1) * t].iter_mut().for_each(|v| *v /= s);
            }
        }
        r = matmul(&a, &r, t);
    }
    r
}

/// The map over the `grid` of patches for one image, normalised to a maximum of 1.
/// `attn[l]` is layer l's [heads·T·T]; `grads[l]` (grad-rollout only) the gradient of the class score w.r.t. it.
pub fn attention_map(
    attn: &[Vec<f32>],
    grads: Option<&[Vec<f32>]>,
    heads: usize,
    t: usize,
    prompts: usize,
    mode: MapMode,
    fusion: HeadFusion,
) -> Result<Vec<f32>> {
    let layout = TokenLayout {
        prefix: 1,
        registers: 0,
        prompts,
        patches: t.saturating_sub(1 + prompts),
    };
    attention_map_in(attn, grads, heads, layout, None, mode, fusion)
}

/// `attention_map` for a sequence laid out as `layout` (registers included). `pool_weights`, for a model that
/// pools by attention, weigh the pooled tokens' rows (the pooling query's attention, one weight per token from
/// `layout.pool_start()`); without them the "CLS" maps read CLS, or the mean of the pooled tokens' rows.
pub fn attention_map_in(
    attn: &[Vec<f32>],
    grads: Option<&[Vec<f32>]>,
    heads: usize,
    layout: TokenLayout,
    pool_weights: Option<&[f32]>,
    mode: MapMode,
    fusion: HeadFusion,
) -> Result<Vec<f32>> {
    let (t, prompts) = (layout.total(), layout.prompts);
    let patches = layout.patch_rows();
    // The rows the pooled feature reads, with their weights: the pooling query's attention over the pooled
    // tokens, else CLS, else every pooled token alike (average pooling).
    let start = layout.pool_start();
    let query: Vec<(usize, f64)> = match (pool_weights, layout.cls()) {
        (Some(w), _) if w.len() == t - start => w
            .iter()
            .enumerate()
            .map(|(i, &v)| (start + i, v as f64))
            .collect(),
        // DeiT distilled: its head reads CLS and the distillation token alike.
        (_, Some(_)) if layout.prefix == 2 => vec![(0, 0.5), (1, 0.5)],
        (_, Some(c)) => vec![(c, 1.0)],
        _ => (start..t).map(|r| (r, 1.0 / (t - start) as f64)).collect(),
    };
    let from_query = |a: &[f64]| -> Vec<f64> {
        patches
            .clone()
            .map(|j| query.iter().map(|&(r, w)| w * a[r * t + j]).sum::<f64>())
            .collect()
    };
    let layer_of = |l: usize| {
        attn.get(l).ok_or_else(|| {
            Error::Input(format!(
                "layer {l} does not exist; the model has {} layers",
                attn.len()
            ))
        })
    };
    let row: Vec<f64> = match mode {
        MapMode::Cls { layer } => from_query(&fuse_heads(layer_of(layer)?, heads, t, fusion)?),
        MapMode::Prompt { layer, prompt } => {
            if prompts == 0 {
                return Err(Error::Input(
                    "prompt maps need a tuned file with prompts".into(),
                ));
            }
            let a = fuse_heads(layer_of(layer)?, heads, t, fusion)?;
            let rows = layout.prompt_rows();
            let ks: Vec<usize> = match prompt {
                Some(k) if k < prompts => vec![rows.start + k],
                Some(k) => {
                    return Err(Error::Input(format!(
                        "prompt {k} does not exist; there are {prompts}"
                    )))
                }
                None => rows.collect(),
            };
            patches
                .map(|j| ks.iter().map(|&row| a[row * t + j]).sum::<f64>() / ks.len() as f64)
                .collect()
        }
        MapMode::Rollout { discard } => {
            let fused = attn
                .iter()
                .map(|a| fuse_heads(a, heads, t, fusion))
                .collect::<Result<Vec<_>>>()?;
            from_query(&rollout(&fused, t, discard))
        }
        MapMode::GradRollout => {
            let grads = grads
                .ok_or_else(|| Error::Input("grad-rollout needs attention gradients".into()))?;
            let mut r: Vec<f64> = (0..t * t)
                .map(|i| if i % (t + 1) == 0 { 1.0 } else { 0.0 })
                .collect();
            for (a, g) in attn.iter().zip(grads) {
                let tt = t * t;
                let cam: Vec<f64> = (0..tt)
                    .map(|i| {
                        (0..heads)
                            .map(|h| (g[h * tt + i] as f64 * a[h * tt + i] as f64).max(0.0))
                            .sum::<f64>()
                            / heads as f64
                    })
                    .collect();
                let add = matmul(&cam, &r, t);
                r.iter_mut().zip(add).for_each(|(x, y)| *x += y);
            }
            from_query(&r)
        }
    };
    let max = row.iter().cloned().fold(0.0f64, f64::max);
    Ok(row
        .iter()
        .map(|v| if max > 0.0 { (v / max) as f32 } else { 0.0 })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a class token, the CLS map is the mean of the pooled tokens' rows (prompts included); attention
    /// pooling weighs them by its query's attention.
    #[test]
    fn without_a_class_token_the_cls_map_reads_the_pooled_tokens_rows() {
        let layout = TokenLayout {
            prefix: 0,
            registers: 1,
            prompts: 1,
            patches: 2,
        };
        let t = layout.total();
        // One head; row r attends to patch columns 2 and 3 with weights (r+1, 2(r+1)), elsewhere 0.
        let mut a = vec![0.0f32; t * t];
        for r in 0..t {
            a[r * t + 2] = (r + 1) as f32;
            a[r * t + 3] = 2.0 * (r + 1) as f32;
        }
        let cls = MapMode::Cls { layer: 0 };
        let map = |a: &[f32], w: Option<&[f32]>| {
            attention_map_in(&[a.to_vec()], None, 1, layout, w, cls, HeadFusion::Mean).expect("map")
        };
        // Rows 1..4 (after the register): means 3 and 6, normalised to 0.5 and 1.
        assert_eq!(map(&a, None), vec![0.5, 1.0]);
        // Row 1 (the prompt) now looks at patch 0 most: the mean changes little, a query on it alone fully.
        a[t + 2] = 10.0;
        assert_eq!(map(&a, Some(&[1.0, 0.0, 0.0])), vec![1.0, 0.4]);
        let mean = map(&a, None);
        assert!(mean[0] < 1.0 && mean[1] == 1.0, "{mean:?}");
    }
}
