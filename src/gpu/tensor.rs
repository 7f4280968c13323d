use std::sync::Arc;

use super::pool::BufferPool;
use super::{Gpu, GpuError};

/// A buffer from the pool; it returns there when the last handle drops. Kernels recorded earlier keep
/// their own reference to the raw buffer, and wgpu orders later reuse after them.
struct Pooled {
    buf: Option<wgpu::Buffer>,
    pool: Arc<BufferPool>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.give_back(b);
        }
    }
}

/// An f32 tensor on the GPU: a row-major buffer and its shape.
#[derive(Clone)]
pub struct GpuTensor {
    pooled: Arc<Pooled>,
    pub shape: Vec<usize>,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor{:?}", self.shape)
    }
}

impl GpuTensor {
    pub fn buffer(&self) -> &wgpu::Buffer {
        // Invariant: `buf` is Some until drop.
        self.pooled
            .buf
            .as_ref()
            .expect("pooled buffer present until drop")
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> u64 {
        (self.numel() * 4) as u64
    }
}

impl Gpu {
    /// An uninitialised tensor (contents are whatever the pooled buffer held).
    pub fn empty(&self, shape: &[usize]) -> Result<GpuTensor, GpuError> {
        let numel: usize = shape.iter().product();
        let bytes = (numel.max(1) * 4) as u64;
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("tensor of shape {shape:?}"),
                bytes,
                limit,
            });
        }
        let buf = self.pool.take(&self.device, bytes);
        Ok(GpuTensor {
            pooled: Arc::new(Pooled {
                buf: Some(buf),
                pool: self.pool.clone(),
            }),
            shape: shape.to_vec(),
        })
    }

    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<GpuTensor, GpuError> {
        let numel: usize = shape.iter().product();
        assert_eq!(
            numel,
            data.len(),
            "upload: shape {shape:?} vs {} values",
            data.len()
        );
        let t = self.empty(shape)?;
        if !data.is_empty() {
            self.queue
                .write_buffer(t.buffer(), 0, bytemuck::cast_slice(data));
        }
        Ok(t)
    }

    pub fn zeros(&self, shape: &[usize]) -> Result<GpuTensor, GpuError> {
        let numel: usize = shape.iter().product();
        self.upload(shape, &vec![0.0; numel])
    }

    /// Overwrites a tensor's contents from the host (queued before the next submit).
    pub fn write(&self, t: &GpuTensor, data: &[f32]) {
        assert_eq!(
            t.numel(),
            data.len(),
            "write: shape {:?} vs {} values",
            t.shape,
            data.len()
        );
        self.queue
            .write_buffer(t.buffer(), 0, bytemuck::cast_slice(data));
    }

    pub fn reset_peak_memory(&self) {
        self.pool.reset_peak();
    }
}
