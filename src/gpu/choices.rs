//! Which variant each kernel family runs on this adapter. In rising precedence: the adapter type's rule (CPU
//! adapters the barrier-free variants, GPUs the workgroup ones), the autotuner's choice (`ops::autotune`: every
//! variant checked against a CPU reference on this adapter, the fastest that passed), and the user's
//! (`VITUNE_MATMUL`, `VITUNE_ROWS`, `VITUNE_ATTENTION`, or a `set_*` call), which the autotuner never overrides.

use serde::{Deserialize, Serialize};

/// The matmul variants: 64×64 tiles through workgroup memory, 4×4 per invocation (`tiled`); a barrier-free
/// variant that reads straight from the buffers, 8×8 outputs per invocation, 4×8 under 96 rows, 4×4 when at most
/// 32 columns wide (`direct`: CPU adapters such as lavapipe, where barriers cost more than they save); 128×128
/// register tiles, 8×8 per invocation, vec4 reads of workgroup memory (`register`: GPUs with many registers).
/// Two more take f16 inputs and accumulate in f32, so they differ from the others by ~1e-3 relative and are
/// chosen only when the user allows it (`VITUNE_PRECISION=mixed`) or forces them: the tiled kernel with f16 tiles
/// and f16 products (`half`, `SHADER_F16`), and cooperative matrices, four subgroups per tile (`coop`: 16x16x16
/// where the adapter reports it with f16 → f32, as tensor cores do, else 8x8x8; one subgroup size needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    Tiled,
    Direct,
    Register,
    Half,
    Coop,
}

impl MatmulKernel {
    /// Whether this variant rounds its inputs to f16 (checked against `HALF_TOLERANCE`, not the f32 one).
    pub fn half_inputs(self) -> bool {
        matches!(self, Self::Half | Self::Coop)
    }
}

/// The row-wise kernels (LayerNorm, softmax and their backwards): one 64-lane workgroup per row with a
/// workgroup-memory tree reduction (`workgroup`); the same with subgroup sums and two barriers instead of seven
/// (`subgroup`, where the adapter has `SUBGROUP`); or one invocation per row and no barriers (`serial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKernel {
    Workgroup,
    Serial,
    Subgroup,
}

/// How attention runs when no attention maps are asked for: the fused flash-style kernel (online softmax, only a
/// log-sum-exp per row is kept), one invocation per row reading keys from the buffer (`fused`) or workgroup-tiled
/// with each step's keys in workgroup memory (`tiled`, for GPUs); or batched matmuls and a softmax that store the
/// [T, T] probabilities (`matmul`). Maps and their gradients always take the matmul path, since they are the
/// probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    Fused,
    Matmul,
    Tiled,
}

impl AttentionKernel {
    /// Whether this is a fused (flash-style) variant: the forward keeps a log-sum-exp per row, not probabilities.
    pub fn is_fused(self) -> bool {
        self != Self::Matmul
    }
}

/// A matmul's shape class, each tuned on its own: most products (`large`), under 96 rows (attention per head at
/// small token counts), at most 32 columns wide (narrow projections, the head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulClass {
    Large,
    Small,
    Narrow,
}

macro_rules! names {
    ($ty:ident { $($v:ident = $n:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];
            pub fn name(self) -> &'static str {
                match self { $($ty::$v => $n),+ }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == s)
            }
        }
    };
}
names!(MatmulKernel { Tiled = "tiled", Direct = "direct", Register = "register", Half = "half", Coop = "coop" });
names!(RowKernel { Workgroup = "workgroup", Serial = "serial", Subgroup = "subgroup" });
names!(AttentionKernel { Fused = "fused", Matmul = "matmul", Tiled = "tiled" });
names!(MatmulClass { Large = "large", Small = "small", Narrow = "narrow" });

impl MatmulClass {
    pub fn of(m: usize, n: usize) -> Self {
        if n <= 32 {
            Self::Narrow
        } else if m < 96 {
            Self::Small
        } else {
            Self::Large
        }
    }
}

/// One variant's trial by the autotuner: its check against the CPU reference, and its rate when it passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub variant: String,
    /// Largest relative error against the CPU reference at the check's awkward sizes (None: it failed to run).
    pub worst: Option<f64>,
    pub tolerance: f64,
    pub passed: bool,
    /// Work per second on the family's timing shape (see `FamilyChoice::unit`), for variants that passed.
    pub rate: Option<f64>,
}

/// The autotuner's choice for one family and shape class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyChoice {
    pub family: String,
    pub class: String,
    /// The fastest variant that passed its check (empty when none did: the adapter's rule stays).
    pub chosen: String,
    /// What `Trial::rate` counts: "GFLOP/s" or "Melem/s".
    pub unit: String,
    pub trials: Vec<Trial>,
}

impl FamilyChoice {
    /// The variants that failed their check on this adapter.
    pub fn rejected(&self) -> impl Iterator<Item = &Trial> {
        self.trials.iter().filter(|t| !t.passed)
    }
}

/// Everything the autotuner chose on one adapter, as cached (see `ops::autotune`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// Adapter, driver, vitune version and shader-source hash: a cached choice is reused only when all match.
    pub key: String,
    pub choices: Vec<FamilyChoice>,
    /// How long tuning took when it ran.
    pub seconds: f64,
}

impl Tuned {
    /// One line per family and class: the choice, each variant's rate, the rejected variants.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.choices {
            let rates: Vec<String> = c
                .trials
                .iter()
                .map(|t| match (t.passed, t.rate, t.worst) {
                    (true, Some(r), _) => format!("{} {r:.1}", t.variant),
                    (false, _, Some(w)) => format!("{} REJECTED (error {w:.1e})", t.variant),
                    (false, _, None) => format!("{} REJECTED (did not run)", t.variant),
                    (true, None, _) => format!("{} untimed", t.variant),
                })
                .collect();
            s.push_str(&format!(
                "{:<10} {:<7} -> {:<10} {} ({})\n",
                c.family,
                c.class,
                if c.chosen.is_empty() {
                    "(rule)"
                } else {
                    &c.chosen
                },
                rates.join(", "),
                c.unit
            ));
        }
        s
    }
}

/// Where the autotuner stands on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneState {
    NotYet,
    Running,
    Done,
}

/// The variants in use and who chose them.
#[derive(Debug, Clone)]
pub(super) struct Choices {
    pub matmul: [MatmulKernel; 3],
    pub rows: RowKernel,
    pub attention: AttentionKernel,
    /// Chosen by the user (environment or a `set_*` call): the autotuner leaves them.
    pub pinned_matmul: bool,
    pub pinned_rows: bool,
    pub pinned_attention: bool,
    pub state: TuneState,
    pub tuned: Option<Tuned>,
}

fn class_index(c: MatmulClass) -> usize {
    match c {
        MatmulClass::Large => 0,
        MatmulClass::Small => 1,
        MatmulClass::Narrow => 2,
    }
}

impl Choices {
    /// The adapter type's rule, then the environment's forced variants.
    pub fn new(info: &wgpu::AdapterInfo, features: wgpu::Features) -> Self {
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let mut c = Self {
            matmul: [if cpu {
                MatmulKernel::Direct
            } else {
                MatmulKernel::Tiled
            }; 3],
            rows: if cpu {
                RowKernel::Serial
            } else {
                RowKernel::Workgroup
            },
            attention: AttentionKernel::Matmul,
            pinned_matmul: false,
            pinned_rows: false,
            pinned_attention: false,
            state: TuneState::NotYet,
            tuned: None,
        };
        if let Some(k) = env_variant("VITUNE_MATMUL", MatmulKernel::ALL, MatmulKernel::name) {
            if matmul_supported(features, k) {
                c.matmul = [k; 3];
                c.pinned_matmul = true;
            } else {
                eprintln!(
                    "warning: VITUNE_MATMUL={} ignored: {} lacks what it needs",
                    k.name(),
                    info.name
                );
            }
        }
        if let Some(k) = env_variant("VITUNE_ROWS", RowKernel::ALL, RowKernel::name) {
            if k == RowKernel::Subgroup && !features.contains(wgpu::Features::SUBGROUP) {
                eprintln!(
                    "warning: VITUNE_ROWS=subgroup ignored: {} has no SUBGROUP",
                    info.name
                );
            } else {
                c.rows = k;
                c.pinned_rows = true;
            }
        }
        if let Some(k) = env_variant(
            "VITUNE_ATTENTION",
            AttentionKernel::ALL,
            AttentionKernel::name,
        ) {
            c.attention = k;
            c.pinned_attention = true;
        }
        c
    }

    pub fn matmul_for(&self, class: MatmulClass) -> MatmulKernel {
        self.matmul[class_index(class)]
    }

    /// Takes the autotuner's choices for every family the user has not pinned.
    pub fn apply(&mut self, tuned: Tuned) {
        for c in &tuned.choices {
            self.apply_one(c);
        }
        self.tuned = Some(tuned);
        self.state = TuneState::Done;
    }

    /// Takes one family's choice unless the user pinned that family.
    pub fn apply_one(&mut self, c: &FamilyChoice) {
        {
            match c.family.as_str() {
                "matmul" if !self.pinned_matmul => {
                    if let (Some(class), Some(k)) = (
                        MatmulClass::from_name(&c.class),
                        MatmulKernel::from_name(&c.chosen),
                    ) {
                        self.matmul[class_index(class)] = k;
                    }
                }
                "rows" if !self.pinned_rows => {
                    if let Some(k) = RowKernel::from_name(&c.chosen) {
                        self.rows = k;
                    }
                }
                "attention" if !self.pinned_attention => {
                    if let Some(k) = AttentionKernel::from_name(&c.chosen) {
                        self.attention = k;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether a device with `features` runs matmul variant `k`: `half` needs SHADER_F16; `coop` the cooperative
/// matrices that `Gpu` requests only where the adapter has an f16 → f32 8x8x8 or 16x16x16 configuration and one
/// subgroup size.
pub fn matmul_supported(features: wgpu::Features, k: MatmulKernel) -> bool {
    match k {
        MatmulKernel::Half => features.contains(wgpu::Features::SHADER_F16),
        MatmulKernel::Coop => features.contains(
            wgpu::Features::SHADER_F16
                | wgpu::Features::SUBGROUP
                | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
        ),
        MatmulKernel::Tiled | MatmulKernel::Direct | MatmulKernel::Register => true,
    }
}

/// The variant the environment variable `var` names; None when unset, or (with a warning naming the accepted
/// values) when set to anything else.
fn env_variant<T: Copy>(var: &str, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
    let v = std::env::var(var).ok()?;
    let found = all.iter().copied().find(|k| name(*k) == v);
    if found.is_none() {
        let names: Vec<&str> = all.iter().map(|k| name(*k)).collect();
        eprintln!(
            "warning: {var}={v:?} ignored; expected one of {}",
            names.join(", ")
        );
    }
    found
}
