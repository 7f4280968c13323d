//! LoRA on the attention projections: q += x·Aᵀ·Bᵀ·(α/r) (and v, optionally k); A kaiming-uniform, B zero.

use std::collections::BTreeMap;

use super::{has_name, kaiming_uniform, MethodOptions, MethodSpec, OptionKind, OptionSpec};
use crate::error::{Error, Result};
use crate::gpu::{GpuTensor, Recorder};
use crate::model::hooks::{Grads, Hooks, Saved};
use crate::model::{Backbone, Graph, HostTensor, ViTConfig};
use crate::ops::matmul::{linear, linear_input_grad, linear_weight_grad, Act, Layout, Matmul};
use crate::rng::Rng;

const SLOT: [&str; 3] = ["q", "k", "v"];

pub fn shapes(o: &MethodOptions, c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::new();
    for i in 0..c.depth {
        for slot in o.lora_slots() {
            let p = format!("blocks.{i}.attn.{}_lora", SLOT[slot]);
            s.insert(format!("{p}_A"), vec![o.rank, c.dim]);
            s.insert(format!("{p}_B"), vec![c.dim, o.rank]);
        }
    }
    s
}

pub fn init(o: &MethodOptions, c: &ViTConfig, rng: &mut Rng) -> BTreeMap<String, HostTensor> {
    shapes(o, c)
        .into_iter()
        .map(|(k, shape)| {
            let t = if k.ends_with("_A") {
                kaiming_uniform(rng, &shape)
            } else {
                HostTensor::zeros(&shape)
            };
            (k, t)
        })
        .collect()
}

/// The tensor names of LoRA's A and B for block `i` and slot (0 = q, 1 = k, 2 = v).
pub fn names(i: usize, slot: usize) -> (String, String) {
    let p = format!("blocks.{i}.attn.{}_lora", SLOT[slot]);
    (format!("{p}_A"), format!("{p}_B"))
}

/// LoRA's attachment at qkv: for each adapted slot, qkv[:, slot] += (α/r)·(y·Aᵀ)·Bᵀ with y LN1's output; keeps
/// u = y·Aᵀ for the backward.
pub struct LoraHooks {
    pub rank: usize,
    pub scale: f32,
    pub slots: Vec<usize>,
}

/// Column `slot` (0 = q, 1 = k, 2 = v) of qkv [rows, 3D], as a matmul operand: row-major, or transposed.
fn slot_layout(slot: usize, dim: usize, transposed: bool) -> Layout {
    let (rs, cs) = if transposed {
        (1, 3 * dim)
    } else {
        (3 * dim, 1)
    };
    Layout {
        off: slot * dim,
        rs,
        cs,
        b1: 0,
        b2: 0,
    }
}

impl Hooks for LoraHooks {
    fn keeps_normed(&self, l: usize, trained: &dyn Fn(&str) -> bool) -> [bool; 2] {
        [self.slots.iter().any(|&s| trained(&names(l, s).0)), false]
    }

    fn saved_floats_per_token(&self, _c: &ViTConfig) -> usize {
        self.rank * self.slots.len()
    }

    fn qkv(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        normed: &GpuTensor,
        qkv: &GpuTensor,
        _train: bool,
    ) -> Result<Saved> {
        let d = g.config().dim;
        let rows = qkv.numel() / (3 * d);
        let mut saved = Vec::new();
        for &slot in &self.slots {
            let (an, bn) = names(l, slot);
            let u = linear(rec, normed, g.w(&an)?, None, Act::None, None)?;
            let mut mm = Matmul::new(
                (rows, d, self.rank),
                (&u, Layout::row_major(self.rank, 0)),
                (g.w(&bn)?, Layout::transposed(self.rank, 0)),
                (qkv, slot_layout(slot, d, false)),
            );
            mm.alpha = self.scale;
            mm.accumulate = true;
            mm.record(rec);
            saved.push(u);
        }
        Ok(saved)
    }

    fn qkv_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        saved: &Saved,
        dqkv: &GpuTensor,
        normed: Option<&GpuTensor>,
        dnormed: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        let d = g.config().dim;
        let rows = dnormed.numel() / d;
        let r = self.rank;
        for (&slot, u) in self.slots.iter().zip(saved) {
            let (an, bn) = names(l, slot);
            if let Some(gb) = grads.get(&bn) {
                let mut mm = Matmul::new(
                    (d, r, rows),
                    (dqkv, slot_layout(slot, d, true)),
                    (u, Layout::row_major(r, 0)),
                    (gb, Layout::row_major(r, 0)),
                );
                mm.alpha = self.scale;
                mm.accumulate = true;
                mm.record(rec);
            }
            let du = rec.gpu().empty(&u.shape)?;
            let mut mm = Matmul::new(
                (rows, r, d),
                (dqkv, slot_layout(slot, d, false)),
                (g.w(&bn)?, Layout::row_major(r, 0)),
                (&du, Layout::row_major(r, 0)),
            );
            mm.alpha = self.scale;
            mm.record(rec);
            if let Some(ga) = grads.get(&an) {
                let y = normed.ok_or_else(|| {
                    Error::Internal(format!("the forward kept no LN1 output for `{an}`"))
                })?;
                linear_weight_grad(rec, &du, y, ga, 1.0);
            }
            linear_input_grad(rec, &du, g.w(&an)?, 1.0, Some(dnormed), &dnormed.shape)?;
        }
        Ok(())
    }
}

pub struct Lora;

/// LoRA's options: rank, alpha and the adapted projections.
static OPTIONS: [OptionSpec; 3] = [
    OptionSpec {
        key: "rank",
        label: "rank",
        aliases: &[],
        help: "LoRA rank r",
        kind: OptionKind::Count {
            min: 1,
            max: 256,
            get: |o| o.rank,
            set: |o, v| o.rank = v,
        },
    },
    OptionSpec {
        key: "alpha",
        label: "alpha",
        aliases: &[],
        help: "LoRA alpha (the update is scaled by alpha / r)",
        kind: OptionKind::Real {
            min: 0.01,
            max: 1024.0,
            open: false,
            log: true,
            get: |o| o.alpha,
            set: |o, v| o.alpha = v,
        },
    },
    OptionSpec {
        key: "lora-targets",
        label: "targets",
        aliases: &[],
        help: "LoRA targets among q, k, v",
        kind: OptionKind::Letters {
            alphabet: "qkv",
            get: |o| o.lora_targets.clone(),
            set: |o, v| o.lora_targets = v.to_string(),
        },
    },
];

impl MethodSpec for Lora {
    fn description(&self) -> &'static str {
        "LoRA: low-rank updates of the query and value projections (Hu et al., ICLR 2022)"
    }

    fn options(&self) -> &'static [OptionSpec] {
        &OPTIONS
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
        if o.rank == 0 || o.lora_slots().is_empty() {
            return Err(Error::Input(
                "LoRA needs --rank ≥ 1 and targets among q, k, v".into(),
            ));
        }
        Ok(())
    }

    fn read_options(&self, o: &mut MethodOptions, tensors: &BTreeMap<String, HostTensor>) {
        if let Some(a) = tensors.keys().find(|k| k.ends_with("_lora_A")) {
            o.rank = tensors[a].shape[0];
            o.lora_targets = SLOT
                .iter()
                .filter(|s| tensors.contains_key(&format!("blocks.0.attn.{s}_lora_A")))
                .copied()
                .collect();
        }
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        has_name(tensors, |k| k.contains("_lora_"))
    }

    fn describe(&self, o: &MethodOptions) -> String {
        format!(
            "rank {} alpha {} targets {}",
            o.rank, o.alpha, o.lora_targets
        )
    }

    fn merge(
        &self,
        o: &MethodOptions,
        c: &ViTConfig,
        tuned: &BTreeMap<String, HostTensor>,
        weights: &mut BTreeMap<String, HostTensor>,
    ) -> Result<()> {
        // W_slot += (α/r)·B·A, the update the qkv hook adds to the slot's columns.
        let scale = o.alpha / o.rank.max(1) as f32;
        let d = c.dim;
        for l in 0..c.depth {
            let qkv = format!("blocks.{l}.attn.qkv.weight");
            for slot in o.lora_slots() {
                let (an, bn) = names(l, slot);
                let missing = |n: &str| Error::Internal(format!("LoRA's merge lacks `{n}`"));
                let a = tuned.get(&an).ok_or_else(|| missing(&an))?;
                let b = tuned.get(&bn).ok_or_else(|| missing(&bn))?;
                let w = weights.get_mut(&qkv).ok_or_else(|| missing(&qkv))?;
                let r = a.shape[0];
                for i in 0..d {
                    let row = &mut w.data[(slot * d + i) * d..(slot * d + i + 1) * d];
                    for k in 0..r {
                        let bik = scale * b.data[i * r + k];
                        for (wj, aj) in row.iter_mut().zip(&a.data[k * d..(k + 1) * d]) {
                            *wj += bik * aj;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn hooks(&self, o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(LoraHooks {
            rank: o.rank,
            scale: o.alpha / o.rank.max(1) as f32,
            slots: o.lora_slots(),
        })
    }
}
