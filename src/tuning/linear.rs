//! The linear probe: only a new head on the frozen backbone's pooled features.

use std::collections::BTreeMap;

use super::{MethodOptions, MethodRecipe, MethodSpec};
use crate::error::Result;
use crate::model::{Backbone, HostTensor};
use crate::rng::Rng;

pub struct LinearProbe;

impl MethodSpec for LinearProbe {
    fn description(&self) -> &'static str {
        "linear probe: a new head on the frozen features (the baseline of every paper's table)"
    }

    fn head_only(&self) -> bool {
        true
    }

    fn recipe(&self) -> MethodRecipe {
        // VPT's linear-probe recipe: SGD, base lr 10 (scaled by batch/256).
        MethodRecipe {
            sgd: true,
            lr: 10.0,
            weight_decay: 1e-4,
        }
    }

    fn shapes(&self, _o: &MethodOptions, _b: &Backbone) -> BTreeMap<String, Vec<usize>> {
        BTreeMap::new()
    }

    fn init(
        &self,
        _o: &MethodOptions,
        _b: &Backbone,
        _rng: &mut Rng,
    ) -> Result<BTreeMap<String, HostTensor>> {
        Ok(BTreeMap::new())
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        tensors.keys().all(|k| k.starts_with("head."))
    }
}
