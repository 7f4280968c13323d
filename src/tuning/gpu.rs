//! A tuning on the GPU: its method and options beside the tensors and hooks the graph reads ([`Attached`]).

use std::ops::{Deref, DerefMut};

use super::{Method, MethodOptions, Tuning};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::hooks::Attached;

pub struct GpuTuning {
    pub method: Method,
    pub options: MethodOptions,
    pub attached: Attached,
}

impl GpuTuning {
    pub fn upload(gpu: &Gpu, t: &Tuning) -> Result<Self> {
        Ok(Self {
            method: t.method,
            options: t.options.clone(),
            attached: Attached::upload(gpu, &t.tensors, t.num_classes, t.method.hooks(&t.options))?,
        })
    }

    /// Reads every tensor back as a tuning under the tuned file's names and shapes.
    pub fn download(&self, gpu: &Gpu) -> Result<Tuning> {
        Ok(Tuning {
            method: self.method,
            options: self.options.clone(),
            num_classes: self.attached.num_classes,
            tensors: self.attached.download(gpu)?,
        })
    }
}

impl Deref for GpuTuning {
    type Target = Attached;
    fn deref(&self) -> &Attached {
        &self.attached
    }
}

impl DerefMut for GpuTuning {
    fn deref_mut(&mut self) -> &mut Attached {
        &mut self.attached
    }
}
