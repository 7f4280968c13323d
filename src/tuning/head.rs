//! The new classification head every method trains: weight trunc-normal(std 0.02), bias zero.

use std::collections::BTreeMap;

use crate::model::HostTensor;
use crate::rng::Rng;

pub fn shapes(dim: usize, classes: usize) -> BTreeMap<String, Vec<usize>> {
    BTreeMap::from([
        ("head.weight".to_string(), vec![classes, dim]),
        ("head.bias".to_string(), vec![classes]),
    ])
}

/// timm's `trunc_normal_(std=0.02)` (bounds ±2, so in effect a plain normal at this std).
pub fn init(dim: usize, classes: usize, rng: &mut Rng) -> BTreeMap<String, HostTensor> {
    let w = (0..classes * dim)
        .map(|_| loop {
            let v = rng.normal() * 0.02;
            if v.abs() <= 2.0 {
                break v as f32;
            }
        })
        .collect();
    BTreeMap::from([
        (
            "head.weight".to_string(),
            HostTensor::new(vec![classes, dim], w),
        ),
        ("head.bias".to_string(), HostTensor::zeros(&[classes])),
    ])
}
