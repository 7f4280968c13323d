//! Convpass (Jie & Deng 2022): beside attention and MLP, fed by the LayerNorm'd input, s·C(LN x) with
//! C = up ∘ QuickGELU ∘ conv3×3 ∘ QuickGELU ∘ down; down xavier-uniform, up zero, conv xavier or identity.

use std::collections::BTreeMap;

use super::{
    has_name, xavier_uniform, ConvInit, MethodOptions, MethodSpec, OptionKind, OptionSpec,
};
use crate::error::{Error, Result};
use crate::gpu::{GpuTensor, Recorder};
use crate::model::hooks::{Branch, Grads, Hooks, Saved};
use crate::model::{Backbone, Graph, HostTensor, ViTConfig};
use crate::onnx::{ints, ExportCtx, OnnxGraph, OnnxHooks};
use crate::ops::activation::{activation, activation_backward};
use crate::ops::conv::{conv_tokens, conv_tokens_input_grad, conv_tokens_weight_grad};
use crate::ops::dropout::{dropout_rows, Band};
use crate::ops::matmul::{linear_keeping_pre_act, Act, Layout, Matmul};
use crate::ops::reduce::column_sum_into;
use crate::rng::Rng;

/// The two bypasses of a block, in the order attention, MLP.
pub const BRANCHES: [&str; 2] = ["adapter_attn", "adapter_mlp"];

pub fn shapes(o: &MethodOptions, c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    let h = o.convpass_dim;
    let mut s = BTreeMap::new();
    for i in 0..c.depth {
        for b in BRANCHES {
            let p = format!("blocks.{i}.{b}");
            s.insert(format!("{p}.adapter_down.weight"), vec![h, c.dim]);
            s.insert(format!("{p}.adapter_down.bias"), vec![h]);
            s.insert(format!("{p}.adapter_conv.weight"), vec![h, h, 3, 3]);
            s.insert(format!("{p}.adapter_conv.bias"), vec![h]);
            s.insert(format!("{p}.adapter_up.weight"), vec![c.dim, h]);
            s.insert(format!("{p}.adapter_up.bias"), vec![c.dim]);
        }
    }
    s
}

pub fn init(o: &MethodOptions, c: &ViTConfig, rng: &mut Rng) -> BTreeMap<String, HostTensor> {
    let h = o.convpass_dim;
    shapes(o, c)
        .into_iter()
        .map(|(k, shape)| {
            let t = if k.ends_with("adapter_down.weight") {
                xavier_uniform(rng, &shape)
            } else if k.ends_with("adapter_conv.weight") {
                match o.conv_init {
                    ConvInit::Xavier => xavier_uniform(rng, &shape),
                    ConvInit::Identity => {
                        let mut t = HostTensor::zeros(&shape);
                        for j in 0..h {
                            t.data[((j * h + j) * 3 + 1) * 3 + 1] = 1.0;
                        }
                        t
                    }
                }
            } else {
                HostTensor::zeros(&shape)
            };
            (k, t)
        })
        .collect()
}

/// Convpass's attachment: a branch beside attention and beside the MLP, each reading its LayerNorm's output:
/// out += s·up(QuickGELU(conv(QuickGELU(down(y))))) over the patch grid (CLS and prompts convolved alone), with
/// dropout on the conv's activations in training. Keeps the four hidden tensors of each branch.
pub struct ConvpassHooks {
    pub width: usize,
    pub scale: f32,
    pub dropout: f32,
}

/// Dropout tags of Convpass's branches, above the prompts' (one per layer).
const DROPOUT_TAG: u32 = 1 << 16;

fn module(l: usize, branch: Branch) -> String {
    let b = match branch {
        Branch::Attention => BRANCHES[0],
        Branch::Mlp => BRANCHES[1],
    };
    format!("blocks.{l}.{b}")
}

impl ConvpassHooks {
    /// Dropout on every row of a branch's hidden activations `e` [n·T, width]; `out` [n, T, D] is the tensor the
    /// branch adds into.
    fn drop(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        e: &GpuTensor,
        out: &GpuTensor,
        l: usize,
        b: Branch,
    ) {
        if let Some(d) = g.dropout(self.dropout) {
            let images = out.shape[0];
            let tokens = out.numel() / out.shape.last().copied().unwrap_or(1) / images.max(1);
            let band = Band {
                images,
                tokens,
                start: 0,
                count: tokens,
                dim: self.width,
            };
            let tag = DROPOUT_TAG + 2 * l as u32 + u32::from(b == Branch::Mlp);
            dropout_rows(rec, e, band, &d, tag);
        }
    }
}

impl Hooks for ConvpassHooks {
    fn keeps_normed(&self, l: usize, trained: &dyn Fn(&str) -> bool) -> [bool; 2] {
        [Branch::Attention, Branch::Mlp]
            .map(|b| trained(&format!("{}.adapter_down.weight", module(l, b))))
    }

    fn saved_floats_per_token(&self, _c: &ViTConfig) -> usize {
        8 * self.width
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
        let b = module(l, branch);
        let (dw, db) = g.pair(&format!("{b}.adapter_down"))?;
        let (cw, cb) = g.pair(&format!("{b}.adapter_conv"))?;
        let (uw, ub) = g.pair(&format!("{b}.adapter_up"))?;
        let (dpre, d) = linear_keeping_pre_act(rec, input, dw, Some(db), Act::QuickGelu)?;
        let cpre = conv_tokens(rec, &d, cw, cb, g.layout().patch_start(), g.grid())?;
        let e = activation(rec, &cpre, Act::QuickGelu)?;
        if train {
            self.drop(g, rec, &e, out, l, branch);
        }
        let dim = g.config().dim;
        let mut mm = Matmul::new(
            (out.numel() / dim, dim, self.width),
            (&e, Layout::row_major(self.width, 0)),
            (uw, Layout::transposed(self.width, 0)),
            (out, Layout::row_major(dim, 0)),
        );
        mm.bias = Some((ub, 0));
        mm.alpha = self.scale;
        mm.accumulate = true;
        mm.record(rec);
        Ok(if train {
            vec![dpre, d, cpre, e]
        } else {
            Vec::new()
        })
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
        let [dpre, d, cpre, e] = saved.as_slice() else {
            return Err(Error::Internal(
                "Convpass's forward kept no activations".into(),
            ));
        };
        let b = module(l, branch);
        let start = g.layout().patch_start();
        let up = format!("{b}.adapter_up");
        let de = g.scaled_linear_backward(rec, &up, (dout, self.scale), Some(e), grads, None)?;
        self.drop(g, rec, &de, dout, l, branch);
        activation_backward(rec, cpre, &de, Act::QuickGelu);
        if let Some(gw) = grads.get(&format!("{b}.adapter_conv.weight")) {
            conv_tokens_weight_grad(rec, &de, d, gw, start, g.grid());
        }
        if let Some(gb) = grads.get(&format!("{b}.adapter_conv.bias")) {
            column_sum_into(rec, &de, gb, 1.0);
        }
        let (cw, _) = g.pair(&format!("{b}.adapter_conv"))?;
        let dd = conv_tokens_input_grad(rec, &de, cw, start, g.grid())?;
        activation_backward(rec, dpre, &dd, Act::QuickGelu);
        let down = format!("{b}.adapter_down");
        g.scaled_linear_backward(rec, &down, (&dd, 1.0), input, grads, Some(dinput))?;
        Ok(())
    }
}

pub struct Convpass;

/// Convpass's options: the bypass's width, scale, convolution init and dropout.
static OPTIONS: [OptionSpec; 4] = [
    OptionSpec {
        key: "convpass-dim",
        label: "convpass dim",
        aliases: &[],
        help: "Convpass hidden width",
        kind: OptionKind::Count {
            min: 1,
            max: 256,
            get: |o| o.convpass_dim,
            set: |o, v| o.convpass_dim = v,
        },
    },
    OptionSpec {
        key: "scale",
        label: "scale",
        aliases: &[],
        help: "Convpass's scale of the bypass's output",
        kind: OptionKind::Real {
            min: 0.001,
            max: 1000.0,
            open: false,
            log: true,
            get: |o| o.scale,
            set: |o, v| o.scale = v,
        },
    },
    OptionSpec {
        key: "conv-init",
        label: "conv init",
        aliases: &[],
        help: "Convpass's 3x3 convolution initialisation",
        kind: OptionKind::Choice {
            choices: &["xavier", "identity"],
            get: |o| match o.conv_init {
                ConvInit::Xavier => "xavier",
                ConvInit::Identity => "identity",
            },
            set: |o, v| {
                o.conv_init = if v == "identity" {
                    ConvInit::Identity
                } else {
                    ConvInit::Xavier
                }
            },
        },
    },
    OptionSpec {
        key: "dropout",
        label: "dropout",
        aliases: &[],
        help: "the Convpass bypass's dropout, in training only",
        kind: super::options::DROPOUT,
    },
];

impl MethodSpec for Convpass {
    fn description(&self) -> &'static str {
        "Convpass: convolutional bypasses beside attention and MLP (Jie & Deng, 2022)"
    }

    fn options(&self) -> &'static [OptionSpec] {
        &OPTIONS
    }

    fn defaults(&self, o: &mut MethodOptions) {
        o.dropout = 0.1;
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
        if o.convpass_dim == 0 {
            return Err(Error::Input("Convpass needs --convpass-dim ≥ 1".into()));
        }
        Ok(())
    }

    fn read_options(&self, o: &mut MethodOptions, tensors: &BTreeMap<String, HostTensor>) {
        if let Some(w) = tensors.get("blocks.0.adapter_attn.adapter_down.weight") {
            o.convpass_dim = w.shape[0];
        }
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        has_name(tensors, |k| k.contains(".adapter_attn."))
    }

    fn describe(&self, o: &MethodOptions) -> String {
        format!(
            "convpass-dim {} scale {} conv-init {:?} dropout {}",
            o.convpass_dim, o.scale, o.conv_init, o.dropout
        )
    }

    fn hooks(&self, o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(settings(o))
    }

    fn onnx(&self, o: &MethodOptions) -> Option<Box<dyn OnnxHooks>> {
        Some(Box::new(settings(o)))
    }
}

fn settings(o: &MethodOptions) -> ConvpassHooks {
    ConvpassHooks {
        width: o.convpass_dim,
        scale: o.scale,
        dropout: o.dropout,
    }
}

/// The bypass as ONNX ops: the 3×3 convolution runs over the patch grid, and each token before the patches
/// (CLS, prompts) is convolved alone, as a 1×1 image — which only the kernel's centre tap sees.
impl OnnxHooks for ConvpassHooks {
    fn branch(
        &self,
        cx: &ExportCtx,
        g: &mut OnnxGraph,
        l: usize,
        branch: Branch,
        input: &str,
        out: String,
    ) -> Result<String> {
        let b = module(l, branch);
        let t = |p: &str| cx.get(&format!("{b}.{p}"));
        let h = self.width;
        let down = g.linear(
            input,
            t("adapter_down.weight")?,
            Some(t("adapter_down.bias")?),
        );
        let d = g.quick_gelu(&down);
        let (cw, cb) = (t("adapter_conv.weight")?, t("adapter_conv.bias")?);
        let start = cx.layout.patch_start();
        let centre = HostTensor::new(
            vec![h, h],
            (0..h * h).map(|oi| cw.data[oi * 9 + 4]).collect(),
        );
        // Without a class token or prompts there is nothing before the patches.
        let prefix = (start > 0).then(|| {
            let p = g.tokens(&d, 0, Some(start));
            g.linear(&p, &centre, Some(cb))
        });
        let (gh, gw) = (cx.grid.0 as i64, cx.grid.1 as i64);
        let patches = g.tokens(&d, start, None);
        let planes = g.transpose(&patches, &[0, 2, 1]);
        let planes = g.reshape(&planes, &[0, h as i64, gh, gw]);
        let (w, bias) = (
            g.constant("adapter_conv.weight", cw),
            g.constant("adapter_conv.bias", cb),
        );
        let conv = g.node(
            "Conv",
            &[&planes, &w, &bias],
            vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
            None,
        );
        let conv = g.reshape(&conv, &[0, h as i64, -1]);
        let conv = g.transpose(&conv, &[0, 2, 1]);
        let c = match &prefix {
            Some(p) => g.concat(&[p, &conv], 1),
            None => conv,
        };
        let e = g.quick_gelu(&c);
        let up = g.linear(&e, t("adapter_up.weight")?, Some(t("adapter_up.bias")?));
        let up = g.scale(&up, self.scale);
        Ok(g.op("Add", &[&out, &up]))
    }
}
