//! What a training forward saves for its backward. A frozen linear layer's input is needed only for that layer's
//! weight gradient, so each such input is kept only when a weight reading it is trained. Prompt methods keep
//! none of them: about a third of what a ViT-B/16 step used to keep per image.

use super::hooks::Hooks;
use super::ViTConfig;

/// Which of block l's weight-only inputs the backward needs. The rest of a block's saved activations (its input,
/// the mid-block residual, qkv, the attention probabilities or log-sum-exp, the MLP's pre-activation and the two
/// LayerNorms' statistics) feed input gradients and are always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WeightInputs {
    /// LN1's output: the input of qkv (and of a method's qkv hook or attention branch that reads it).
    pub y1: bool,
    /// The attention context: the input of proj; the fused attention's backward reads it too.
    pub ctx: bool,
    /// LN2's output: the input of fc1 (and of a method's MLP branch that reads it).
    pub y2: bool,
    /// The GELU output: the input of fc2.
    pub h: bool,
}

impl WeightInputs {
    /// What block `l` must keep when `trained(name)` says which tensors get gradients.
    pub fn for_block(
        l: usize,
        trained: &dyn Fn(&str) -> bool,
        fused_attention: bool,
        hooks: &dyn Hooks,
    ) -> Self {
        let b = format!("blocks.{l}");
        let [hook_y1, hook_y2] = hooks.keeps_normed(l, trained);
        Self {
            y1: trained(&format!("{b}.attn.qkv.weight")) || hook_y1,
            ctx: trained(&format!("{b}.attn.proj.weight")) || fused_attention,
            y2: trained(&format!("{b}.mlp.fc1.weight")) || hook_y2,
            h: trained(&format!("{b}.mlp.fc2.weight")),
        }
    }
}

/// Bytes one image needs through a training step with `tokens` tokens per image, for choosing the micro-batch:
/// what every block saves for the backward, plus one backward's working set, with the method's `hooks` keeping
/// what they say they keep. The matmul attention keeps the probabilities and makes their gradient; the fused
/// kernel keeps a log-sum-exp per row.
pub(crate) fn train_bytes_per_image(
    c: &ViTConfig,
    tokens: usize,
    trained: &dyn Fn(&str) -> bool,
    fused_attention: bool,
    hooks: &dyn Hooks,
) -> usize {
    let adapter_width = hooks.saved_floats_per_token(c);
    let (t, d, hidden) = (tokens, c.dim, c.mlp_hidden);
    let scores = if fused_attention {
        c.heads * t
    } else {
        c.heads * t * t
    };
    let saved: usize = (0..c.depth)
        .map(|l| {
            let k = WeightInputs::for_block(l, trained, fused_attention, hooks);
            let kept_dim = [k.y1, k.ctx, k.y2].into_iter().filter(|&b| b).count();
            // x, xm and qkv; the scores; the MLP pre-activation (and its output); LayerNorm statistics; adapters.
            t * d * (5 + kept_dim)
                + scores
                + t * hidden * (1 + usize::from(k.h))
                + 4 * t
                + t * adapter_width
        })
        .sum();
    // The backward's gradients in flight: the MLP's, several of width D (qkv's three among them), the scores' two.
    let working = t * hidden + 9 * t * d + 2 * scores;
    let cols = if trained("patch_embed.proj.weight") {
        3 * c.patch * c.patch * t
    } else {
        0
    };
    (saved + working + 2 * t * d + cols) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hooks::NoHooks;

    #[test]
    fn prompt_methods_keep_no_weight_inputs_and_full_tuning_keeps_all() {
        let none = WeightInputs::for_block(3, &|_| false, false, &NoHooks);
        assert_eq!(
            none,
            WeightInputs {
                y1: false,
                ctx: false,
                y2: false,
                h: false
            }
        );
        assert!(WeightInputs::for_block(3, &|_| false, true, &NoHooks).ctx);
        let all = WeightInputs::for_block(3, &|n| n.starts_with("blocks.3."), false, &NoHooks);
        assert_eq!(
            all,
            WeightInputs {
                y1: true,
                ctx: true,
                y2: true,
                h: true
            }
        );
        let other_block =
            WeightInputs::for_block(2, &|n| n.starts_with("blocks.3."), false, &NoHooks);
        assert!(!other_block.y1 && !other_block.h);
    }
}
