//! BitFit (bias tuning): every bias of the backbone — patch embedding, qkv, proj, fc1, fc2 and every LayerNorm
//! bias — plus the head, starting from the checkpoint's values.

use std::collections::BTreeMap;

use super::{has_name, MethodOptions, MethodSpec};
use crate::error::Result;
use crate::model::{Backbone, HostTensor};
use crate::rng::Rng;

pub fn names(b: &Backbone) -> Vec<String> {
    let mut v = vec!["patch_embed.proj.bias".to_string()];
    for i in 0..b.config.depth {
        for m in [
            "norm1",
            "attn.qkv",
            "attn.proj",
            "norm2",
            "mlp.fc1",
            "mlp.fc2",
        ] {
            v.push(format!("blocks.{i}.{m}.bias"));
        }
    }
    if b.config.pre_norm {
        v.push("norm_pre.bias".into());
    }
    v.push(format!("{}.bias", b.config.final_norm()));
    if b.config.pooling == crate::model::Pooling::Map {
        for m in ["q", "kv", "proj", "norm", "mlp.fc1", "mlp.fc2"] {
            v.push(format!("attn_pool.{m}.bias"));
        }
    }
    // Absent biases are zeros the checkpoint does not have: nothing to tune.
    v.retain(|n| !b.config.absent_biases.contains(n));
    v
}

pub fn shapes(b: &Backbone) -> BTreeMap<String, Vec<usize>> {
    names(b)
        .into_iter()
        .filter_map(|n| b.tensors.get(&n).map(|t| (n, t.shape.clone())))
        .collect()
}

pub fn init(b: &Backbone) -> Result<BTreeMap<String, HostTensor>> {
    names(b)
        .into_iter()
        .map(|n| Ok((n.clone(), b.get(&n)?.clone())))
        .collect()
}

pub struct BitFit;

impl MethodSpec for BitFit {
    fn description(&self) -> &'static str {
        "BitFit: every bias of the backbone and the head (Zaken et al., ACL 2022)"
    }

    fn shapes(&self, _o: &MethodOptions, b: &Backbone) -> BTreeMap<String, Vec<usize>> {
        shapes(b)
    }

    fn init(
        &self,
        _o: &MethodOptions,
        b: &Backbone,
        _rng: &mut Rng,
    ) -> Result<BTreeMap<String, HostTensor>> {
        init(b)
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        // The LayerNorms' biases: every ViT has them (a linear bias may be absent); full fine-tuning has the
        // LayerNorms' weights too.
        has_name(tensors, |k| k.ends_with("norm1.bias"))
            && !has_name(tensors, |k| k.ends_with("norm1.weight"))
    }
}
