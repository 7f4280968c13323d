use std::sync::Arc;

use super::choices::{
    AttentionKernel, Choices, FamilyChoice, MatmulClass, MatmulKernel, RowKernel, TuneState, Tuned,
};
use super::pipelines::PipelineCache;
use super::pool::BufferPool;

/// Errors of the GPU runtime, each a sentence a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found: install a Vulkan, Metal or DX12 driver (on Linux without a GPU: \
         `apt-get install mesa-vulkan-drivers libvulkan1` for the lavapipe CPU driver)"
    )]
    NoAdapter,
    #[error("no GPU adapter matches WGPU_ADAPTER_NAME={0:?}; adapters found: {1}")]
    NoAdapterNamed(String, String),
    #[error("could not open the GPU device {0}: {1}")]
    RequestDevice(String, String),
    #[error(
        "a GPU buffer of {bytes} bytes exceeds this adapter's limit of {limit} bytes ({what})"
    )]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    #[error("GPU error: {0}")]
    Device(String),
    #[error(
        "the GPU ran out of memory ({0}); try a smaller --batch, a smaller VITUNE_MEMORY_MB (the training step's \
         activation budget in MiB, 1024 by default) or VITUNE_WEIGHTS=f16 (the frozen weights in half the memory)"
    )]
    OutOfMemory(String),
    #[error(
        "the GPU device was lost ({0}): its driver reset it or it was removed; what was saved before is intact, \
         run the command again (a smaller --batch makes each submission shorter)"
    )]
    Lost(String),
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
    #[error("{0}")]
    Unsupported(String),
}

/// What the device reported outside an error scope.
#[derive(Default)]
struct Faults {
    /// A lost device stays lost: every later operation reports it.
    lost: Option<String>,
    /// Reported once, by the next operation.
    pending: Option<FaultKind>,
}

enum FaultKind {
    OutOfMemory(String),
    Other(String),
}

/// `VITUNE_GPU_MEMORY_MB`: a cap on the tensors vitune allocates, as if the GPU had that much memory (for trying
/// a small GPU's limits on a large one, and for the out-of-memory tests).
fn memory_cap() -> Option<u64> {
    std::env::var("VITUNE_GPU_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|mb| mb << 20)
}

/// An opened device with its queue, limits, pipeline cache and buffer pool.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub(super) pipelines: PipelineCache,
    pub(super) pool: Arc<BufferPool>,
    /// The first fault the device reported outside an error scope (an allocation out of memory, a lost device).
    faults: Arc<std::sync::Mutex<Faults>>,
    dummy: std::sync::OnceLock<super::GpuTensor>,
    /// The kernel variants in use and who chose them (see `choices`).
    choices: std::sync::Mutex<Choices>,
    /// Frozen matmul weights are uploaded as f16 (see `f16_weights`).
    f16_weights: std::sync::atomic::AtomicBool,
    /// The side (8 or 16) of the cooperative matrices `matmul_coop` is built for, where the adapter has them.
    coop_side: Option<u32>,
}

/// Index of the environment variable `var`'s value among `values`; None when unset, or (with a warning naming
/// the accepted values) when set to anything else.
fn env_choice(var: &str, values: &[&str]) -> Option<usize> {
    let v = std::env::var(var).ok()?;
    let found = values.iter().position(|x| *x == v);
    if found.is_none() {
        eprintln!(
            "warning: {var}={v:?} ignored; expected one of {}",
            values.join(", ")
        );
    }
    found
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// Opens the best adapter: `WGPU_ADAPTER_NAME` (substring, case-insensitive) if set, else a discrete GPU,
    /// then an integrated one, then anything else, with a CPU adapter (lavapipe) last and a warning.
    /// `WGPU_BACKEND` restricts the backends searched.
    pub fn new() -> Result<Self, GpuError> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter);
        }
        let names = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
            let w = wanted.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&w));
            if adapters.is_empty() {
                return Err(GpuError::NoAdapterNamed(wanted, names));
            }
        }
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            // Among equals prefer Vulkan/Metal/DX12 over GL.
            (
                type_rank(i.device_type),
                (i.backend == wgpu::Backend::Gl) as u32,
            )
        });
        let adapter = adapters.remove(0);
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            eprintln!(
                "warning: using the CPU adapter {} ({:?}); no GPU was found, so everything runs slowly",
                info.name, info.backend
            );
        }
        Self::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Self, GpuError> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let mut wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let coop_side = coop_matmul_side(&adapter, &info, &limits);
        if coop_side.is_some() {
            wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let features = adapter.features() & wanted;
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: wgpu marks cooperative matrices experimental (its implementation may still have bugs);
            // vitune uses them only in `matmul_coop`, which the autotuner checks against the CPU reference on
            // this adapter before it is ever chosen.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("vitune"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice(info.name.clone(), e.to_string()))?;
        let faults = Arc::new(std::sync::Mutex::new(Faults::default()));
        {
            // wgpu's default handler panics; a fault becomes the next operation's error instead.
            let on_error = faults.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut f = on_error.lock().unwrap_or_else(|p| p.into_inner());
                f.pending.get_or_insert(match e {
                    wgpu::Error::OutOfMemory { .. } => FaultKind::OutOfMemory(e.to_string()),
                    other => FaultKind::Other(other.to_string()),
                });
            }));
            let on_lost = faults.clone();
            device.set_device_lost_callback(move |reason, message| {
                if reason != wgpu::DeviceLostReason::Destroyed {
                    let mut f = on_lost.lock().unwrap_or_else(|p| p.into_inner());
                    f.lost.get_or_insert(format!("{reason:?}: {message}"));
                }
            });
        }
        let choices = std::sync::Mutex::new(Choices::new(&info, features));
        Ok(Self {
            device,
            queue,
            info,
            limits,
            features,
            pipelines: PipelineCache::default(),
            pool: Arc::new(BufferPool::with_limit(memory_cap())),
            faults,
            dummy: std::sync::OnceLock::new(),
            choices,
            f16_weights: std::sync::atomic::AtomicBool::new(false),
            coop_side: coop_side
                .filter(|_| features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)),
        })
        .inspect(|gpu| {
            if env_choice("VITUNE_WEIGHTS", &["f32", "f16"]) == Some(1) {
                if let Err(e) = gpu.set_f16_weights(true) {
                    eprintln!("warning: VITUNE_WEIGHTS=f16 ignored: {e}");
                }
            }
        })
    }

    fn choices(&self) -> std::sync::MutexGuard<'_, Choices> {
        self.choices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The matmul kernel for products of the large class (see `matmul_kernel_for`).
    pub fn matmul_kernel(&self) -> MatmulKernel {
        self.matmul_kernel_for(MatmulClass::Large)
    }

    /// The matmul kernel for a shape class: the user's (`VITUNE_MATMUL`), else the autotuner's, else the adapter
    /// type's rule.
    pub fn matmul_kernel_for(&self, class: MatmulClass) -> MatmulKernel {
        self.choices().matmul_for(class)
    }

    /// The variants in use, one line: matmul per shape class, rows, attention.
    pub fn kernel_summary(&self) -> String {
        let c = self.choices();
        let by = match c.state {
            _ if c.pinned_matmul || c.pinned_rows || c.pinned_attention => "partly set by the user",
            TuneState::Done if c.tuned.is_some() => "autotuned",
            _ => "the adapter type's rule",
        };
        format!(
            "matmul {}/{}/{} (large/small/narrow), rows {}, attention {} ({by})",
            c.matmul_for(MatmulClass::Large).name(),
            c.matmul_for(MatmulClass::Small).name(),
            c.matmul_for(MatmulClass::Narrow).name(),
            c.rows.name(),
            c.attention.name()
        )
    }

    /// The row-kernel variant in use (see `RowKernel`).
    pub fn row_kernel(&self) -> RowKernel {
        self.choices().rows
    }

    /// Chooses the row-kernel variant (tests run each); the autotuner leaves it from then on. The subgroup
    /// variant is refused where the adapter has no `SUBGROUP`.
    pub fn set_row_kernel(&self, k: RowKernel) {
        if k == RowKernel::Subgroup && !self.has_subgroups() {
            return;
        }
        let mut c = self.choices();
        c.rows = k;
        c.pinned_rows = true;
    }

    /// The attention kernel used when no maps are asked for: the user's (`VITUNE_ATTENTION`), else the
    /// autotuner's, else the matmul path (on lavapipe the fused kernel is slower: level on the demo at head size
    /// 32, a ViT-Ti step at head size 64 1.9x as long, its per-row arrays spilling).
    pub fn attention_kernel(&self) -> AttentionKernel {
        self.choices().attention
    }

    /// Chooses the attention kernel (tests and benchmarks run both); the autotuner leaves it from then on.
    pub fn set_attention_kernel(&self, k: AttentionKernel) {
        let mut c = self.choices();
        c.attention = k;
        c.pinned_attention = true;
    }

    /// Where the autotuner stands; `begin_tuning` moves it from `NotYet` to `Running` for exactly one caller.
    pub fn tune_state(&self) -> TuneState {
        self.choices().state
    }

    /// True for the one caller that should tune now (the state was `NotYet`); false while another tunes or when
    /// done.
    pub fn begin_tuning(&self) -> bool {
        let mut c = self.choices();
        if c.state != TuneState::NotYet {
            return false;
        }
        c.state = TuneState::Running;
        true
    }

    /// Takes one family's tuned choice now, where the user pinned nothing (the autotuner, between families).
    pub fn apply_choice(&self, choice: &FamilyChoice) {
        self.choices().apply_one(choice);
    }

    /// Ends a tuning begun by `begin_tuning`: its choices (when any) take effect where the user pinned nothing.
    pub fn finish_tuning(&self, tuned: Option<Tuned>) {
        let mut c = self.choices();
        match tuned {
            Some(t) => c.apply(t),
            None => c.state = TuneState::Done,
        }
    }

    /// What the autotuner chose on this device, if it ran or was read from the cache.
    pub fn tuned(&self) -> Option<Tuned> {
        self.choices().tuned.clone()
    }

    /// Runs `f` with the row-kernel variant `rows`, then restores the one in use (the autotuner's trials; not a
    /// pin).
    pub fn with_row_kernel<R>(&self, rows: RowKernel, f: impl FnOnce() -> R) -> R {
        let saved = std::mem::replace(&mut self.choices().rows, rows);
        let r = f();
        self.choices().rows = saved;
        r
    }

    /// Whether backbones uploaded from now on store their frozen matmul weights (patch embedding, qkv, proj, fc1,
    /// fc2) as f16, halving their memory; every kernel still computes and accumulates in f32. Off by default
    /// (`VITUNE_WEIGHTS=f16` turns it on); needs the adapter's `SHADER_F16`.
    pub fn f16_weights(&self) -> bool {
        self.f16_weights.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns f16 weight storage on or off; refused where the adapter has no `SHADER_F16`.
    pub fn set_f16_weights(&self, on: bool) -> Result<(), GpuError> {
        if on && !self.has_shader_f16() {
            return Err(GpuError::Unsupported(format!(
                "f16 weights need SHADER_F16, which {} does not have",
                self.info.name
            )));
        }
        self.f16_weights
            .store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// One line naming the adapter, for logs and benchmark records.
    /// Whether the adapter is a CPU driver (lavapipe, SwiftShader, WARP): everything runs, slowly.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// The largest buffer a single kernel binding may see.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    pub fn has_shader_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Whether this device runs matmul variant `k` (see `choices::matmul_supported`).
    pub fn supports_matmul(&self, k: MatmulKernel) -> bool {
        super::choices::matmul_supported(self.features, k)
    }

    /// The subgroup size and matrix side (8 or 16) the cooperative-matrix matmul is built for, where this device
    /// runs it.
    pub fn coop_shape(&self) -> Option<(u32, u32)> {
        // Set only where the device was given cooperative matrices (with f16 and subgroups, which they need).
        self.coop_side
            .map(|side| (self.info.subgroup_min_size, side))
    }

    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Bytes currently held by the buffer pool (in use or free), for memory reports.
    pub fn pool_bytes(&self) -> (u64, u64) {
        self.pool.usage()
    }

    /// Device buffers created through the pool so far: tensors, uniform parameters and read-back staging.
    pub fn buffers_created(&self) -> u64 {
        self.pool.created()
    }
}

impl Gpu {
    /// The device's fault since the last check, if any, as an error: a lost device, or an error it raised outside
    /// an error scope (an allocation that ran out of memory).
    pub fn check_faults(&self) -> Result<(), GpuError> {
        let mut f = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lost) = &f.lost {
            return Err(GpuError::Lost(lost.clone()));
        }
        match f.pending.take() {
            Some(FaultKind::OutOfMemory(m)) => Err(GpuError::OutOfMemory(m)),
            Some(FaultKind::Other(m)) => Err(GpuError::Device(m)),
            None => Ok(()),
        }
    }

    /// A small buffer bound where a kernel's optional input is absent.
    pub fn dummy(&self) -> &super::GpuTensor {
        self.dummy.get_or_init(|| {
            // The pool never fails for 16 bytes unless the device is lost, and then every later call fails too.
            self.empty(&[4]).expect("allocating a 16-byte buffer")
        })
    }
}

/// The matrix side `matmul_coop` is built for on this adapter: 16 where it reports a 16×16×16 configuration with f16
/// A and B and an f32 accumulator (tensor cores) and 24 KiB of workgroup memory, else 8 for an 8×8×8 one; None
/// without either, without subgroups and f16, or with more than one subgroup size (the kernel's workgroup is four
/// subgroups).
fn coop_matmul_side(
    adapter: &wgpu::Adapter,
    info: &wgpu::AdapterInfo,
    limits: &wgpu::Limits,
) -> Option<u32> {
    let needs = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP;
    if !adapter.features().contains(needs)
        || info.subgroup_min_size != info.subgroup_max_size
        || !(1..=64).contains(&info.subgroup_min_size)
    {
        return None;
    }
    let props = adapter.cooperative_matrix_properties();
    let has = |side: u32| {
        props.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (side, side, side)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    };
    if has(16) && limits.max_compute_workgroup_storage_size >= 24 << 10 {
        Some(16)
    } else if has(8) {
        Some(8)
    } else {
        None
    }
}
