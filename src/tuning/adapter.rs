//! AdaptFormer: block output += s·up(ReLU(down(y))), y the residual stream entering the MLP sub-block;
//! down kaiming-uniform, up and biases zero.

use std::collections::BTreeMap;

use super::{kaiming_uniform, MethodOptions};
use crate::model::{HostTensor, ViTConfig};
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
