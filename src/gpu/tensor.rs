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

/// Element type of a GPU tensor. Everything computes in f32; frozen weights may be stored as f16 (see
/// `Gpu::f16_weights`), which only the matmul's B operand reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// A tensor on the GPU: a row-major buffer, its shape and element type (f32 unless stated).
#[derive(Clone)]
pub struct GpuTensor {
    pooled: Arc<Pooled>,
    pub shape: Vec<usize>,
    pub dtype: DType,
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
        (self.numel() * self.dtype.size()) as u64
    }
}

impl Gpu {
    /// An uninitialised tensor (contents are whatever the pooled buffer held).
    pub fn empty(&self, shape: &[usize]) -> Result<GpuTensor, GpuError> {
        self.empty_typed(shape, DType::F32)
    }

    fn empty_typed(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor, GpuError> {
        let numel: usize = shape.iter().product();
        // Whole 4-byte words: buffer copies and writes work in them.
        let bytes = (numel.max(1) * dtype.size()).div_ceil(4) as u64 * 4;
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("tensor of shape {shape:?}"),
                bytes,
                limit,
            });
        }
        self.check_faults()?;
        let buf = self.pool.take(&self.device, bytes)?;
        Ok(GpuTensor {
            pooled: Arc::new(Pooled {
                buf: Some(buf),
                pool: self.pool.clone(),
            }),
            shape: shape.to_vec(),
            dtype,
        })
    }

    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<GpuTensor, GpuError> {
        self.upload_typed(shape, DType::F32, data, |d| bytemuck::cast_slice(d).into())
    }

    /// Uploads `data` rounded to f16 (round to nearest even), for frozen weights the matmul reads as f16.
    pub fn upload_f16(&self, shape: &[usize], data: &[f32]) -> Result<GpuTensor, GpuError> {
        if !self.has_shader_f16() {
            return Err(GpuError::Unsupported(format!(
                "f16 tensors need SHADER_F16, which {} does not have",
                self.info.name
            )));
        }
        self.upload_typed(shape, DType::F16, data, |d| {
            let mut halves: Vec<half::f16> = d.iter().map(|&v| half::f16::from_f32(v)).collect();
            // Whole 4-byte words, as buffer writes need.
            halves.resize(d.len().div_ceil(2) * 2, half::f16::ZERO);
            bytemuck::cast_slice(&halves).to_vec().into()
        })
    }

    /// A tensor of `shape` and `dtype` holding `data`, encoded by `bytes` (f32 is borrowed, never copied).
    fn upload_typed<'a>(
        &self,
        shape: &[usize],
        dtype: DType,
        data: &'a [f32],
        bytes: impl FnOnce(&'a [f32]) -> std::borrow::Cow<'a, [u8]>,
    ) -> Result<GpuTensor, GpuError> {
        let numel: usize = shape.iter().product();
        assert_eq!(
            numel,
            data.len(),
            "upload: shape {shape:?} vs {} values",
            data.len()
        );
        let t = self.empty_typed(shape, dtype)?;
        if !data.is_empty() {
            self.queue.write_buffer(t.buffer(), 0, &bytes(data));
        }
        Ok(t)
    }

    pub fn zeros(&self, shape: &[usize]) -> Result<GpuTensor, GpuError> {
        let numel: usize = shape.iter().product();
        self.upload(shape, &vec![0.0; numel])
    }

    /// Overwrites a tensor's contents from the host (queued before the next submit).
    pub fn write(&self, t: &GpuTensor, data: &[f32]) {
        assert_eq!(t.dtype, DType::F32, "write: {t:?} is not an f32 tensor");
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
