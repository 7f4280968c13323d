//! Convpass (Jie & Deng 2022): beside attention and MLP, fed by the LayerNorm'd input, s·C(LN x) with
//! C = up ∘ QuickGELU ∘ conv3×3 ∘ QuickGELU ∘ down; down xavier-uniform, up zero, conv xavier or identity.

use std::collections::BTreeMap;

use super::{xavier_uniform, ConvInit, MethodOptions};
use crate::model::{HostTensor, ViTConfig};
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
