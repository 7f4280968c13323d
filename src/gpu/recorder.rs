use std::collections::BTreeMap;
use std::sync::mpsc;

use super::pipelines::Kernel;
use super::{Gpu, GpuError, GpuTensor};

/// A buffer argument of a kernel, in binding order after the uniform parameters (binding 0).
pub type Arg<'a> = &'a GpuTensor;

struct Dispatch {
    kernel: &'static Kernel,
    params_offset: u64,
    params_size: u64,
    buffers: Vec<wgpu::Buffer>,
    groups: [u32; 3],
    work: Work,
    /// The row its time is reported under: the kernel's family unless the launcher names a finer class.
    label: &'static str,
}

/// Work a dispatch does: FLOPs its launcher declares, and bytes it moves (by default the size of every tensor
/// it binds, each read or written once; matmul, LayerNorm, softmax and dropout declare their own figures).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

/// Handle to a tensor read back when the recording finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadHandle(pub usize);

/// GPU time per kernel family, in seconds, from timestamp queries, and the work each family did.
#[derive(Debug, Clone, Default)]
pub struct KernelTimes {
    pub by_family: BTreeMap<&'static str, f64>,
    pub work: BTreeMap<&'static str, Work>,
    pub dispatches: usize,
}

impl KernelTimes {
    pub fn total(&self) -> f64 {
        self.by_family.values().sum()
    }
    pub fn add(&mut self, other: &KernelTimes) {
        for (k, v) in &other.by_family {
            *self.by_family.entry(k).or_default() += v;
        }
        for (k, w) in &other.work {
            let e = self.work.entry(k).or_default();
            e.flops += w.flops;
            e.bytes += w.bytes;
        }
        self.dispatches += other.dispatches;
    }
}

/// Collects a whole pass (forward, or a training step) of kernel dispatches, then records them into one
/// command encoder with one uniform upload and one submit, and reads back the requested tensors.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    uniforms: Vec<u8>,
    dispatches: Vec<Dispatch>,
    /// Tensors to copy back after the pass; held here so the pool cannot hand them out again meanwhile.
    reads: Vec<GpuTensor>,
    timing: bool,
    /// Whether the last `dispatch` was dropped for an empty grid: what is declared of it then applies to nothing.
    skipped_last: bool,
}

impl<'g> Recorder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            uniforms: Vec::new(),
            dispatches: Vec::new(),
            reads: Vec::new(),
            timing: false,
            skipped_last: false,
        }
    }

    /// Record per-dispatch timestamps (only where the adapter has timestamp queries; else ignored).
    pub fn with_timing(mut self, on: bool) -> Self {
        self.timing = on && self.gpu.has_timestamps();
        self
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Queues one dispatch of `kernel` with uniform `params` at binding 0 and `args` at bindings 1…
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: &'static Kernel,
        params: &P,
        args: &[Arg<'_>],
        groups: [u32; 3],
    ) {
        self.skipped_last = groups.contains(&0);
        if self.skipped_last {
            return;
        }
        let align = self.gpu.limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        let offset = self.uniforms.len().div_ceil(align) * align;
        self.uniforms.resize(offset, 0);
        self.uniforms.extend_from_slice(bytemuck::bytes_of(params));
        let size = self.uniforms.len() - offset;
        let padded = size.div_ceil(16) * 16;
        self.uniforms.resize(offset + padded, 0);
        self.dispatches.push(Dispatch {
            kernel,
            params_offset: offset as u64,
            params_size: padded as u64,
            buffers: args.iter().map(|t| t.buffer().clone()).collect(),
            groups,
            label: kernel.family,
            work: Work {
                flops: 0.0,
                bytes: args.iter().map(|t| t.bytes() as f64).sum(),
            },
        });
    }

    /// Declares the work of the dispatch just queued (for the FLOP and byte floors of `vitune bench`).
    pub fn declare_work(&mut self, work: Work) {
        if self.skipped_last {
            return;
        }
        if let Some(d) = self.dispatches.last_mut() {
            d.work = work;
        }
    }

    /// Reports the dispatch just queued under `label` instead of its kernel's family (e.g. a matmul's layout).
    pub fn label_last(&mut self, label: &'static str) {
        if self.skipped_last {
            return;
        }
        if let Some(d) = self.dispatches.last_mut() {
            d.label = label;
        }
    }

    /// Asks for `t` to be copied back to the host when the recording finishes.
    pub fn read(&mut self, t: &GpuTensor) -> ReadHandle {
        assert_eq!(
            t.dtype,
            super::DType::F32,
            "read-backs are f32; f16 weights are never read back"
        );
        self.reads.push(t.clone());
        ReadHandle(self.reads.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    /// Records everything into one encoder, submits once, waits, and returns the read-backs (in the order of
    /// their handles) and the per-family kernel times when timing was asked for.
    pub fn finish(self) -> Result<(Vec<Vec<f32>>, Option<KernelTimes>), GpuError> {
        let gpu = self.gpu;
        let device = &gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom_scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);

        let uniform = gpu.pool.take_with(
            device,
            self.uniforms.len().max(16) as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        if !self.uniforms.is_empty() {
            gpu.queue.write_buffer(&uniform, 0, &self.uniforms);
        }

        let mut bind_groups = Vec::with_capacity(self.dispatches.len());
        let mut pipelines = Vec::with_capacity(self.dispatches.len());
        for d in &self.dispatches {
            let (pipeline, layout) = gpu.pipelines.get(device, d.kernel);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: d.params_offset,
                    size: wgpu::BufferSize::new(d.params_size),
                }),
            }];
            for (i, b) in d.buffers.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                });
            }
            bind_groups.push(device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(d.kernel.entry),
                layout: &layout,
                entries: &entries,
            }));
            pipelines.push(pipeline);
        }

        let n = self.dispatches.len();
        let query = if self.timing && n > 0 {
            let count = (2 * n).min(4096) as u32;
            Some(device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel times"),
                ty: wgpu::QueryType::Timestamp,
                count,
            }))
        } else {
            None
        };

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("vitune"),
        });
        match &query {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("vitune"),
                    timestamp_writes: None,
                });
                for (i, d) in self.dispatches.iter().enumerate() {
                    pass.set_pipeline(&pipelines[i]);
                    pass.set_bind_group(0, &bind_groups[i], &[]);
                    pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                }
            }
            Some(qs) => {
                for (i, d) in self.dispatches.iter().enumerate() {
                    let timed = 2 * i + 1 < qs.count() as usize;
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(d.kernel.entry),
                        timestamp_writes: timed.then_some(wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    pass.set_pipeline(&pipelines[i]);
                    pass.set_bind_group(0, &bind_groups[i], &[]);
                    pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                }
            }
        }

        let mut staging = Vec::with_capacity(self.reads.len());
        for t in &self.reads {
            let bytes = t.bytes();
            let s = gpu.pool.take_with(
                device,
                bytes.max(4),
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            if bytes > 0 {
                encoder.copy_buffer_to_buffer(t.buffer(), 0, &s, 0, bytes);
            }
            staging.push(s);
        }
        let query_read = query.as_ref().map(|qs| {
            let bytes = qs.count() as u64 * 8;
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            encoder.resolve_query_set(qs, 0..qs.count(), &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
            read
        });

        gpu.queue.submit(Some(encoder.finish()));
        if let Some(e) = pollster::block_on(oom_scope.pop()) {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Device(e.to_string()));
        }
        if self.reads.is_empty() && query_read.is_none() {
            // Nothing to map: wait for the submit here, so that "finished" means the work is done.
            gpu.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| GpuError::Readback(e.to_string()))?;
        }

        let outs = staging
            .iter()
            .zip(&self.reads)
            .map(|(s, t)| read_f32(gpu, s, t.bytes()))
            .collect::<Result<Vec<_>, _>>();
        // A device lost during the submit fails its read-backs too; the loss is the error to report.
        gpu.check_faults()?;
        let outs = outs?;
        // The submit has completed and every staging buffer is unmapped: both kinds go back to the pool.
        for s in staging {
            gpu.pool.give_back(s);
        }
        gpu.pool.give_back(uniform);

        let times = match (query_read, &query) {
            (Some(read), Some(qs)) => {
                let raw = read_bytes(gpu, &read, qs.count() as u64 * 8)?;
                let ticks: &[u64] = bytemuck::cast_slice(&raw);
                let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
                let mut times = KernelTimes {
                    dispatches: n,
                    ..Default::default()
                };
                for (i, d) in self.dispatches.iter().enumerate() {
                    if 2 * i + 1 >= ticks.len() {
                        break;
                    }
                    let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
                    *times.by_family.entry(d.label).or_default() += dt;
                    let w = times.work.entry(d.label).or_default();
                    w.flops += d.work.flops;
                    w.bytes += d.work.bytes;
                }
                Some(times)
            }
            _ => None,
        };
        Ok((outs, times))
    }
}

fn read_bytes(gpu: &Gpu, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let slice = buf.slice(0..bytes);
    let (tx, rx) = mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        // The receiver waits below until this runs; it cannot be gone.
        tx.send(r).ok();
    });
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    rx.recv()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let data = slice
        .get_mapped_range()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .to_vec();
    buf.unmap();
    Ok(data)
}

fn read_f32(gpu: &Gpu, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, GpuError> {
    let raw = read_bytes(gpu, buf, bytes)?;
    Ok(bytemuck::pod_collect_to_vec(&raw))
}

impl Gpu {
    /// Reads one tensor back (its own submit; for tests and one-off use, not inside a step).
    pub fn download(&self, t: &GpuTensor) -> Result<Vec<f32>, GpuError> {
        let mut rec = Recorder::new(self);
        rec.read(t);
        let (mut outs, _) = rec.finish()?;
        Ok(outs.remove(0))
    }
}
