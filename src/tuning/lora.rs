//! LoRA on the attention projections: q += x·Aᵀ·Bᵀ·(α/r) (and v, optionally k); A kaiming-uniform, B zero.

use std::collections::BTreeMap;

use super::{kaiming_uniform, MethodOptions};
use crate::model::{HostTensor, ViTConfig};
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
