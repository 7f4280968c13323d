use std::collections::HashMap;
use std::sync::Mutex;

/// Buffers recycled by size and usage: a forward or training step asks for the same storage, uniform and
/// read-back buffers every time, so after the first call nothing is allocated. Sizes are rounded up to 256 bytes
/// so near-equal requests share. The memory figures count storage buffers (tensors) only.
#[derive(Default)]
pub struct BufferPool {
    inner: Mutex<PoolInner>,
    /// Most bytes of storage buffers the pool may hold (in use and free), when capped.
    limit: Option<u64>,
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
    created: u64,
    in_use_bytes: u64,
    free_bytes: u64,
    peak_in_use_bytes: u64,
}

pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

pub fn rounded(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(256) * 256
}

impl BufferPool {
    /// A pool whose storage buffers may not exceed `limit` bytes in all.
    pub fn with_limit(limit: Option<u64>) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// A storage buffer (a tensor's) of at least `bytes`; out of memory past the pool's cap.
    pub fn take(&self, device: &wgpu::Device, bytes: u64) -> Result<wgpu::Buffer, super::GpuError> {
        if let Some(limit) = self.limit {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let size = rounded(bytes);
            let reusable = inner
                .free
                .get(&(size, STORAGE_USAGE.bits()))
                .is_some_and(|v| !v.is_empty());
            if !reusable && inner.in_use_bytes + inner.free_bytes + size > limit {
                return Err(super::GpuError::OutOfMemory(format!(
                    "a {size}-byte tensor would pass the {} MiB of VITUNE_GPU_MEMORY_MB",
                    limit >> 20
                )));
            }
        }
        Ok(self.take_with(device, bytes, STORAGE_USAGE))
    }

    /// A buffer of at least `bytes` with exactly `usage`.
    pub fn take_with(
        &self,
        device: &wgpu::Device,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let size = rounded(bytes);
        let storage = usage == STORAGE_USAGE;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if storage {
            inner.in_use_bytes += size;
            inner.peak_in_use_bytes = inner.peak_in_use_bytes.max(inner.in_use_bytes);
        }
        if let Some(buf) = inner
            .free
            .get_mut(&(size, usage.bits()))
            .and_then(|v| v.pop())
        {
            if storage {
                inner.free_bytes -= size;
            }
            return buf;
        }
        inner.created += 1;
        drop(inner);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pooled"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    pub fn give_back(&self, buf: wgpu::Buffer) {
        let size = buf.size();
        let usage = buf.usage();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if usage == STORAGE_USAGE {
            inner.in_use_bytes = inner.in_use_bytes.saturating_sub(size);
            inner.free_bytes += size;
        }
        inner
            .free
            .entry((size, usage.bits()))
            .or_default()
            .push(buf);
    }

    /// Device buffers this pool has created so far (a step that allocates nothing leaves it unchanged).
    pub fn created(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).created
    }

    /// (bytes in use, peak bytes in use since start or the last `reset_peak`).
    pub fn usage(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.in_use_bytes, inner.peak_in_use_bytes)
    }

    pub fn reset_peak(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.peak_in_use_bytes = inner.in_use_bytes;
    }
}
