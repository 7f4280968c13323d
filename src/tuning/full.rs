//! Full fine-tuning: every backbone tensor (timm names) plus the new head.

use std::collections::BTreeMap;

use crate::model::{Backbone, HostTensor};

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
