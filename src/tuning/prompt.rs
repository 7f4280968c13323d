//! VPT prompts (Jia et al. 2022): p tokens after CLS, no position embedding; deep replaces the prompt outputs
//! before every later layer with that layer's own prompts. Init uniform ±√(6 / (3·P² + D)).

use std::collections::BTreeMap;

use super::{uniform, Method, MethodOptions};
use crate::error::Result;
use crate::gpu::{GpuTensor, Recorder};
use crate::model::hooks::{Grads, Hooks};
use crate::model::{Graph, HostTensor, ViTConfig};
use crate::ops::dropout::dropout_rows;
use crate::ops::reduce::{batch_sum_tokens_into, write_tokens, zero_tokens};
use crate::rng::Rng;

pub fn shapes(method: Method, o: &MethodOptions, c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::from([("prompt_embeddings".to_string(), vec![1, o.prompts, c.dim])]);
    if method == Method::VptDeep && c.depth > 1 {
        s.insert(
            "deep_prompt_embeddings".to_string(),
            vec![c.depth - 1, o.prompts, c.dim],
        );
    }
    s
}

pub fn init(
    method: Method,
    o: &MethodOptions,
    c: &ViTConfig,
    rng: &mut Rng,
) -> BTreeMap<String, HostTensor> {
    let bound = (6.0 / (3 * c.patch * c.patch + c.dim) as f64).sqrt();
    shapes(method, o, c)
        .into_iter()
        .map(|(k, shape)| (k, uniform(rng, &shape, bound)))
        .collect()
}

/// VPT's attachment: prompts written after CLS at token assembly and, for deep, before every later block; the
/// prompts' dropout (a tag per layer) in the training forward and replayed in the backward.
pub struct PromptHooks {
    pub prompts: usize,
    pub deep: bool,
    pub dropout: f32,
}

impl PromptHooks {
    /// Dropout on the prompt rows of `x` entering layer `l`.
    fn drop_prompts(&self, g: &Graph, rec: &mut Recorder, x: &GpuTensor, l: usize) {
        if let Some(d) = g.dropout(self.dropout) {
            dropout_rows(rec, x, g.prompt_band(x), &d, l as u32);
        }
    }

    /// Whether block l's input prompts are this layer's own (deep prompts replace them before blocks 1..).
    fn replaced_before(&self, g: &Graph, l: usize) -> bool {
        self.deep && l > 0 && g.config().depth > 1
    }
}

impl Hooks for PromptHooks {
    fn prompts(&self) -> usize {
        self.prompts
    }

    fn prompt_tokens<'a>(&self, g: &Graph<'a>) -> Result<Option<&'a GpuTensor>> {
        g.w("prompt_embeddings").map(Some)
    }

    fn tokens(&self, g: &Graph, rec: &mut Recorder, x: &GpuTensor, train: bool) -> Result<()> {
        if train {
            self.drop_prompts(g, rec, x, 0);
        }
        Ok(())
    }

    fn block_input(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        x: &GpuTensor,
        train: bool,
    ) -> Result<()> {
        if self.replaced_before(g, l) {
            let rows = g.layout().prompt_rows();
            let deep = g.w("deep_prompt_embeddings")?;
            write_tokens(rec, x, rows.start, rows.len(), deep, (l - 1) * self.prompts);
            if train {
                self.drop_prompts(g, rec, x, l);
            }
        }
        Ok(())
    }

    fn block_input_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        dx: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        if self.replaced_before(g, l) {
            let rows = g.layout().prompt_rows();
            self.drop_prompts(g, rec, dx, l);
            if let Some(gd) = grads.get("deep_prompt_embeddings") {
                batch_sum_tokens_into(rec, dx, rows.start, rows.len(), gd, (l - 1) * self.prompts);
            }
            // The previous layer's prompt outputs were replaced: no gradient flows into them.
            zero_tokens(rec, dx, rows.start, rows.len());
        }
        Ok(())
    }

    fn tokens_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        dx: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        if let Some(gp) = grads.get("prompt_embeddings") {
            let rows = g.layout().prompt_rows();
            self.drop_prompts(g, rec, dx, 0);
            batch_sum_tokens_into(rec, dx, rows.start, rows.len(), gp, 0);
        }
        Ok(())
    }
}
