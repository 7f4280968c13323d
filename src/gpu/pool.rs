use std::collections::HashMap;
use std::sync::Mutex;

/// Storage buffers recycled by size: a forward or training step asks for the same sizes every time, so after
/// the first call nothing is allocated. Sizes are rounded up to 256 bytes so near-equal requests share.
#[derive(Default)]
pub struct BufferPool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
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
    pub fn take(&self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let size = rounded(bytes);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.in_use_bytes += size;
        inner.peak_in_use_bytes = inner.peak_in_use_bytes.max(inner.in_use_bytes);
        if let Some(buf) = inner.free.get_mut(&size).and_then(|v| v.pop()) {
            inner.free_bytes -= size;
            return buf;
        }
        drop(inner);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pooled"),
            size,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        })
    }

    pub fn give_back(&self, buf: wgpu::Buffer) {
        let size = buf.size();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.in_use_bytes = inner.in_use_bytes.saturating_sub(size);
        inner.free_bytes += size;
        inner.free.entry(size).or_default().push(buf);
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

    pub fn trim(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.free.clear();
        inner.free_bytes = 0;
    }
}
