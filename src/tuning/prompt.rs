//! VPT prompts (Jia et al. 2022): p tokens after CLS, no position embedding; deep replaces the prompt outputs
//! before every later layer with that layer's own prompts. Init uniform ±√(6 / (3·P² + D)).

use std::collections::BTreeMap;

use super::{has_name, uniform, MethodOptions, MethodRecipe, MethodSpec, OptionKind, OptionSpec};
use crate::error::{Error, Result};
use crate::gpu::{GpuTensor, Recorder};
use crate::model::hooks::{Grads, Hooks};
use crate::model::{Backbone, Graph, HostTensor, ViTConfig};
use crate::onnx::{ExportCtx, OnnxGraph, OnnxHooks};
use crate::ops::dropout::dropout_rows;
use crate::ops::reduce::{batch_sum_tokens_into, write_tokens, zero_tokens};
use crate::rng::Rng;

pub fn shapes(deep: bool, o: &MethodOptions, c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::from([("prompt_embeddings".to_string(), vec![1, o.prompts, c.dim])]);
    if deep && c.depth > 1 {
        s.insert(
            "deep_prompt_embeddings".to_string(),
            vec![c.depth - 1, o.prompts, c.dim],
        );
    }
    s
}

pub fn init(
    deep: bool,
    o: &MethodOptions,
    c: &ViTConfig,
    rng: &mut Rng,
) -> BTreeMap<String, HostTensor> {
    let bound = (6.0 / (3 * c.patch * c.patch + c.dim) as f64).sqrt();
    shapes(deep, o, c)
        .into_iter()
        .map(|(k, shape)| (k, uniform(rng, &shape, bound)))
        .collect()
}

/// VPT, shallow (prompts at the input only) or deep (a new set before every block).
pub struct Vpt {
    pub deep: bool,
}

pub static SHALLOW: Vpt = Vpt { deep: false };
pub static DEEP: Vpt = Vpt { deep: true };

/// VPT's options: the prompt count and the prompts' dropout.
static OPTIONS: [OptionSpec; 2] = [
    OptionSpec {
        key: "prompts",
        label: "prompts",
        aliases: &[],
        help: "VPT prompt tokens",
        kind: OptionKind::Count {
            min: 1,
            max: 200,
            get: |o| o.prompts,
            set: |o, v| o.prompts = v,
        },
    },
    OptionSpec {
        key: "dropout",
        label: "prompt dropout",
        aliases: &["prompt-dropout"],
        help: "VPT prompt dropout, in training only",
        kind: super::options::DROPOUT,
    },
];

impl MethodSpec for Vpt {
    fn description(&self) -> &'static str {
        if self.deep {
            "VPT-deep: learned prompt tokens before every block (Jia et al., ECCV 2022)"
        } else {
            "VPT-shallow: learned prompt tokens after CLS at the input (Jia et al., ECCV 2022)"
        }
    }

    fn options(&self) -> &'static [OptionSpec] {
        &OPTIONS
    }

    fn recipe(&self) -> MethodRecipe {
        // VPT's SGD recipe, base lr 5 (scaled by batch/256).
        MethodRecipe {
            sgd: true,
            lr: 5.0,
            weight_decay: 1e-4,
        }
    }

    fn defaults(&self, o: &mut MethodOptions) {
        o.prompts = 10;
        // VPT-deep's prompts train with dropout 0.1, shallow's without (the paper's configs).
        o.dropout = if self.deep { 0.1 } else { 0.0 };
    }

    fn shapes(&self, o: &MethodOptions, b: &Backbone) -> BTreeMap<String, Vec<usize>> {
        shapes(self.deep, o, &b.config)
    }

    fn init(
        &self,
        o: &MethodOptions,
        b: &Backbone,
        rng: &mut Rng,
    ) -> Result<BTreeMap<String, HostTensor>> {
        Ok(init(self.deep, o, &b.config, rng))
    }

    fn check(&self, o: &MethodOptions, _b: &Backbone) -> Result<()> {
        if o.prompts == 0 {
            return Err(Error::Input(format!(
                "method {} needs --prompts of at least 1",
                if self.deep { "vpt-deep" } else { "vpt-shallow" }
            )));
        }
        Ok(())
    }

    fn read_options(&self, o: &mut MethodOptions, tensors: &BTreeMap<String, HostTensor>) {
        if let Some(p) = tensors.get("prompt_embeddings") {
            o.prompts = p.shape.get(1).copied().unwrap_or(0);
        }
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        let deep = has_name(tensors, |k| k == "deep_prompt_embeddings");
        has_name(tensors, |k| k == "prompt_embeddings") && deep == self.deep
    }

    fn describe(&self, o: &MethodOptions) -> String {
        format!("prompts {} dropout {}", o.prompts, o.dropout)
    }

    fn uses_prompts(&self) -> bool {
        true
    }

    fn hooks(&self, o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(self.settings(o))
    }

    fn onnx(&self, o: &MethodOptions) -> Option<Box<dyn OnnxHooks>> {
        Some(Box::new(self.settings(o)))
    }
}

impl Vpt {
    fn settings(&self, o: &MethodOptions) -> PromptHooks {
        PromptHooks {
            prompts: o.prompts,
            deep: self.deep,
            dropout: o.dropout,
        }
    }
}

/// In an exported graph the prompts are constants: written after CLS, and for deep VPT written over the prompt
/// rows before every later block.
impl OnnxHooks for PromptHooks {
    fn prompt_tokens(&self, cx: &ExportCtx, g: &mut OnnxGraph) -> Result<Option<String>> {
        Ok(Some(g.constant(
            "prompt_embeddings",
            cx.get("prompt_embeddings")?,
        )))
    }

    fn block_input(
        &self,
        cx: &ExportCtx,
        g: &mut OnnxGraph,
        l: usize,
        x: String,
    ) -> Result<String> {
        if !self.replaced_before(cx.config.depth, l) {
            return Ok(x);
        }
        let (p, d) = (self.prompts, cx.config.dim);
        let deep = cx.get("deep_prompt_embeddings")?;
        let own = HostTensor::new(
            vec![1, p, d],
            deep.data[(l - 1) * p * d..l * p * d].to_vec(),
        );
        let own = g.constant("deep_prompt_embeddings", &own);
        let own = g.batched(&own, &x, p, d);
        let rows = cx.layout.prompt_rows();
        let before = g.tokens(&x, 0, Some(rows.start));
        let after = g.tokens(&x, rows.end, None);
        Ok(g.concat(&[&before, &own, &after], 1))
    }
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

    /// Whether block l's input prompts are this layer's own (deep prompts replace them before blocks 1..) in a
    /// backbone `depth` blocks deep.
    fn replaced_before(&self, depth: usize, l: usize) -> bool {
        self.deep && l > 0 && depth > 1
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
        if self.replaced_before(g.config().depth, l) {
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
        if self.replaced_before(g.config().depth, l) {
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
