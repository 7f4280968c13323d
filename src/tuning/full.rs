//! Full fine-tuning: every backbone tensor (timm names) plus the new head.

use std::collections::BTreeMap;

use super::{has_name, MethodOptions, MethodRecipe, MethodSpec};
use crate::error::{Error, Result};
use crate::model::hooks::Hooks;
use crate::model::{Backbone, Graph, HostTensor};
use crate::rng::Rng;

fn is_backbone(name: &str) -> bool {
    !name.starts_with("head.")
}

pub fn shapes(b: &Backbone) -> BTreeMap<String, Vec<usize>> {
    b.tensors
        .iter()
        .filter(|(k, _)| is_backbone(k))
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect()
}

pub fn init(b: &Backbone) -> BTreeMap<String, HostTensor> {
    b.tensors
        .iter()
        .filter(|(k, _)| is_backbone(k))
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect()
}

/// Full fine-tuning trains the position embedding as the checkpoint stores it, so it runs at that size only.
pub struct FullHooks;

impl Hooks for FullHooks {
    fn check(&self, g: &Graph) -> Result<()> {
        if g.at_native_size() {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "full fine-tuning runs at the checkpoint's own input size {:?}",
                g.config().image_size
            )))
        }
    }
}

pub struct FullFineTuning;

impl MethodSpec for FullFineTuning {
    fn description(&self) -> &'static str {
        "full fine-tuning: every backbone tensor and the head (the upper baseline)"
    }

    fn compared_by_default(&self) -> bool {
        false
    }

    fn recipe(&self) -> MethodRecipe {
        MethodRecipe {
            sgd: false,
            lr: 1e-4,
            weight_decay: 1e-4,
        }
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
        Ok(init(b))
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        has_name(tensors, |k| k.ends_with("attn.qkv.weight"))
    }

    fn hooks(&self, _o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(FullHooks)
    }
}
