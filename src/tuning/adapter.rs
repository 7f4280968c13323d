//! AdaptFormer: block output += s·up(ReLU(down(y))), y the residual stream entering the MLP sub-block;
//! down kaiming-uniform, up and biases zero.

use std::collections::BTreeMap;

use super::{has_name, kaiming_uniform, MethodOptions, MethodSpec, OptionKind, OptionSpec};
use crate::error::{Error, Result};
use crate::gpu::{GpuTensor, Recorder};
use crate::model::hooks::{Branch, BranchInput, Grads, Hooks, Saved};
use crate::model::{Backbone, Graph, HostTensor, ViTConfig};
use crate::onnx::{ExportCtx, OnnxGraph, OnnxHooks};
use crate::ops::activation::activation_backward;
use crate::ops::matmul::{linear, linear_keeping_pre_act, Act, Layout, Matmul};
use crate::rng::Rng;

pub fn shapes(o: &MethodOptions, c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::new();
    for i in 0..c.depth {
        let p = format!("blocks.{i}.adaptmlp");
        s.insert(format!("{p}.down_proj.weight"), vec![o.bottleneck, c.dim]);
        s.insert(format!("{p}.down_proj.bias"), vec![o.bottleneck]);
        s.insert(format!("{p}.up_proj.weight"), vec![c.dim, o.bottleneck]);
        s.insert(format!("{p}.up_proj.bias"), vec![c.dim]);
    }
    s
}

pub fn init(o: &MethodOptions, c: &ViTConfig, rng: &mut Rng) -> BTreeMap<String, HostTensor> {
    shapes(o, c)
        .into_iter()
        .map(|(k, shape)| {
            let t = if k.ends_with("down_proj.weight") {
                kaiming_uniform(rng, &shape)
            } else {
                HostTensor::zeros(&shape)
            };
            (k, t)
        })
        .collect()
}

/// AdaptFormer's attachment: a branch beside the MLP reading the residual stream xm,
/// xo += s·(up(ReLU(down(xm)))); keeps ReLU's input and output for the backward.
pub struct AdaptFormerHooks {
    pub bottleneck: usize,
    pub scale: f32,
}

fn prefix(l: usize) -> String {
    format!("blocks.{l}.adaptmlp")
}

impl Hooks for AdaptFormerHooks {
    fn saved_floats_per_token(&self, _c: &ViTConfig) -> usize {
        2 * self.bottleneck
    }

    fn branch_input(&self, _branch: Branch) -> BranchInput {
        BranchInput::Residual
    }

    fn branch(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        branch: Branch,
        input: &GpuTensor,
        out: &GpuTensor,
        train: bool,
    ) -> Result<Saved> {
        if branch != Branch::Mlp {
            return Ok(Vec::new());
        }
        let a = prefix(l);
        let (dw, db) = g.pair(&format!("{a}.down_proj"))?;
        let (pre, act) = if train {
            let (pre, act) = linear_keeping_pre_act(rec, input, dw, Some(db), Act::Relu)?;
            (Some(pre), act)
        } else {
            (None, linear(rec, input, dw, Some(db), Act::Relu, None)?)
        };
        let (uw, ub) = g.pair(&format!("{a}.up_proj"))?;
        let d = g.config().dim;
        let mut mm = Matmul::new(
            (out.numel() / d, d, self.bottleneck),
            (&act, Layout::row_major(self.bottleneck, 0)),
            (uw, Layout::transposed(self.bottleneck, 0)),
            (out, Layout::row_major(d, 0)),
        );
        mm.bias = Some((ub, 0));
        mm.alpha = self.scale;
        mm.accumulate = true;
        mm.record(rec);
        Ok(pre.map(|p| vec![p, act]).unwrap_or_default())
    }

    fn branch_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        branch: Branch,
        saved: &Saved,
        dout: &GpuTensor,
        input: Option<&GpuTensor>,
        dinput: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        if branch != Branch::Mlp {
            return Ok(());
        }
        let [pre, act] = saved.as_slice() else {
            return Err(Error::Internal(
                "AdaptFormer's forward kept no activations".into(),
            ));
        };
        let a = prefix(l);
        let up = format!("{a}.up_proj");
        let da = g.scaled_linear_backward(rec, &up, (dout, self.scale), Some(act), grads, None)?;
        activation_backward(rec, pre, &da, Act::Relu);
        let down = format!("{a}.down_proj");
        g.scaled_linear_backward(rec, &down, (&da, 1.0), input, grads, Some(dinput))?;
        Ok(())
    }
}

pub struct AdaptFormer;

/// AdaptFormer's options: the bottleneck width and the branch's scale.
static OPTIONS: [OptionSpec; 2] = [
    OptionSpec {
        key: "bottleneck",
        label: "bottleneck",
        aliases: &[],
        help: "AdaptFormer bottleneck width",
        kind: OptionKind::Count {
            min: 1,
            max: 1024,
            get: |o| o.bottleneck,
            set: |o, v| o.bottleneck = v,
        },
    },
    OptionSpec {
        key: "scale",
        label: "scale",
        aliases: &[],
        help: "AdaptFormer's scale of the bottleneck's output",
        kind: OptionKind::Real {
            min: 0.001,
            max: 100.0,
            open: false,
            log: true,
            get: |o| o.scale,
            set: |o, v| o.scale = v,
        },
    },
];

impl MethodSpec for AdaptFormer {
    fn description(&self) -> &'static str {
        "AdaptFormer: a scaled bottleneck beside every MLP (Chen et al., NeurIPS 2022)"
    }

    fn options(&self) -> &'static [OptionSpec] {
        &OPTIONS
    }

    fn defaults(&self, o: &mut MethodOptions) {
        o.scale = 0.1;
    }

    fn shapes(&self, o: &MethodOptions, b: &Backbone) -> BTreeMap<String, Vec<usize>> {
        shapes(o, &b.config)
    }

    fn init(
        &self,
        o: &MethodOptions,
        b: &Backbone,
        rng: &mut Rng,
    ) -> Result<BTreeMap<String, HostTensor>> {
        Ok(init(o, &b.config, rng))
    }

    fn check(&self, o: &MethodOptions, _b: &Backbone) -> Result<()> {
        if o.bottleneck == 0 {
            return Err(Error::Input("AdaptFormer needs --bottleneck ≥ 1".into()));
        }
        Ok(())
    }

    fn read_options(&self, o: &mut MethodOptions, tensors: &BTreeMap<String, HostTensor>) {
        if let Some(w) = tensors.get("blocks.0.adaptmlp.down_proj.weight") {
            o.bottleneck = w.shape[0];
        }
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        has_name(tensors, |k| k.contains(".adaptmlp."))
    }

    fn describe(&self, o: &MethodOptions) -> String {
        format!("bottleneck {} scale {}", o.bottleneck, o.scale)
    }

    fn hooks(&self, o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(settings(o))
    }

    fn onnx(&self, o: &MethodOptions) -> Option<Box<dyn OnnxHooks>> {
        Some(Box::new(settings(o)))
    }
}

fn settings(o: &MethodOptions) -> AdaptFormerHooks {
    AdaptFormerHooks {
        bottleneck: o.bottleneck,
        scale: o.scale,
    }
}

impl OnnxHooks for AdaptFormerHooks {
    fn branch(
        &self,
        cx: &ExportCtx,
        g: &mut OnnxGraph,
        l: usize,
        branch: Branch,
        input: &str,
        out: String,
    ) -> Result<String> {
        if branch != Branch::Mlp {
            return Ok(out);
        }
        let a = prefix(l);
        let t = |p: &str| cx.get(&format!("{a}.{p}"));
        let h = g.linear(input, t("down_proj.weight")?, Some(t("down_proj.bias")?));
        let h = g.op("Relu", &[&h]);
        let u = g.linear(&h, t("up_proj.weight")?, Some(t("up_proj.bias")?));
        let u = g.scale(&u, self.scale);
        Ok(g.op("Add", &[&out, &u]))
    }
}
