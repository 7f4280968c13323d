//! The frozen backbone on the GPU at one input size, shared by every run of a job (a search's trials and the
//! final run), with the pooled features of images it has already seen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::dataset::Samples;
use super::trainer::batch_pixels;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::{Backbone, ForwardOptions, GpuViT, HostTensor};
use crate::preprocess::Transform;

/// Pooled features by image allocation; each entry keeps its image alive so the address stays its own.
type FeatureCache = HashMap<usize, (Arc<image::RgbImage>, Vec<f32>)>;

pub struct Session<'a> {
    pub gpu: &'a Gpu,
    pub backbone: &'a Backbone,
    pub vit: &'a GpuViT,
    pub transform: &'a Transform,
    /// Pooled features by image (keyed by the image's allocation, which the entry keeps alive): the linear
    /// probe without augmentation trains on features, and a search trains it many times on the same images.
    features: RefCell<FeatureCache>,
}

impl<'a> Session<'a> {
    pub fn new(
        gpu: &'a Gpu,
        backbone: &'a Backbone,
        vit: &'a GpuViT,
        transform: &'a Transform,
    ) -> Self {
        Self {
            gpu,
            backbone,
            vit,
            transform,
            features: RefCell::default(),
        }
    }

    /// The backbone's pooled features [n, D'] (D' = `pooled_dim`: 2D for DeiT distilled) of `samples` under the eval transform, computing only those of
    /// images not seen before.
    pub fn pooled_features(&self, samples: &Samples) -> Result<HostTensor> {
        let key = |i: usize| Arc::as_ptr(&samples.images[i]) as usize;
        let missing: Vec<usize> = {
            let cache = self.features.borrow();
            let mut seen = std::collections::HashSet::new();
            (0..samples.len())
                .filter(|&i| !cache.contains_key(&key(i)) && seen.insert(key(i)))
                .collect()
        };
        let d = self.vit.config.pooled_dim();
        for ids in missing.chunks(64) {
            let px = batch_pixels(samples, ids, self.transform, None);
            let pooled = self
                .vit
                .forward(self.gpu, &px, &ForwardOptions::default())?
                .pooled;
            let mut cache = self.features.borrow_mut();
            for (j, &i) in ids.iter().enumerate() {
                let row = pooled.data[j * d..(j + 1) * d].to_vec();
                cache.insert(key(i), (samples.images[i].clone(), row));
            }
        }
        let cache = self.features.borrow();
        let mut data = Vec::with_capacity(samples.len() * d);
        for i in 0..samples.len() {
            if let Some((_, row)) = cache.get(&key(i)) {
                data.extend_from_slice(row);
            }
        }
        Ok(HostTensor::new(vec![samples.len(), d], data))
    }
}
