//! BitFit (bias tuning): every bias of the backbone — patch embedding, qkv, proj, fc1, fc2 and every LayerNorm
//! bias — plus the head, starting from the checkpoint's values.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::model::{Backbone, HostTensor, Pooling};

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
    v.push(match b.config.pooling {
        Pooling::Token => "norm.bias".to_string(),
        Pooling::Avg => "fc_norm.bias".to_string(),
    });
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
