//! Strided batched matmul with fused epilogue: the workhorse of every linear layer and of attention.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use crate::gpu::{DType, GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{shaders, u};

pub static MATMUL: Kernel = Kernel {
    family: "matmul",
    source: shaders::MATMUL,
    entry: "matmul",
};
pub static MATMUL_REGISTER: Kernel = Kernel {
    family: "matmul",
    source: shaders::MATMUL,
    entry: "matmul_register",
};
pub static MATMUL_DIRECT: Kernel = Kernel {
    family: "matmul",
    source: shaders::MATMUL,
    entry: "matmul_direct",
};
pub static MATMUL_DIRECT_SMALL: Kernel = Kernel {
    family: "matmul",
    source: shaders::MATMUL,
    entry: "matmul_direct_small",
};
pub static MATMUL_DIRECT_NARROW: Kernel = Kernel {
    family: "matmul",
    source: shaders::MATMUL,
    entry: "matmul_direct_narrow",
};

/// The same five kernels reading B as f16 (frozen weights stored in half precision), accumulating in f32.
static MATMUL_F16_SOURCE: LazyLock<String> = LazyLock::new(shaders::matmul_f16_source);
static MATMUL_F16: LazyLock<[Kernel; 5]> = LazyLock::new(|| {
    let source: &'static str = MATMUL_F16_SOURCE.as_str();
    [
        "matmul",
        "matmul_register",
        "matmul_direct",
        "matmul_direct_small",
        "matmul_direct_narrow",
    ]
    .map(|entry| Kernel {
        family: "matmul",
        source,
        entry,
    })
});

/// The f16-compute kernel, B stored as f32 then as f16.
static MATMUL_HALF: LazyLock<[Kernel; 2]> = LazyLock::new(|| {
    [false, true].map(|b_f16| Kernel {
        family: "matmul",
        source: Box::leak(shaders::matmul_half_source(b_f16).into_boxed_str()),
        entry: "matmul_half",
    })
});

/// The cooperative-matrix kernel for subgroups of `sg` lanes and `side`×`side` matrices, B stored as f32 (`b_f16`
/// false) or f16: built once per shape and kept for the life of the process.
fn coop_kernel((sg, side): (u32, u32), b_f16: bool) -> &'static Kernel {
    static BY_SHAPE: Mutex<BTreeMap<(u32, u32, bool), &'static Kernel>> =
        Mutex::new(BTreeMap::new());
    let mut map = BY_SHAPE.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((sg, side, b_f16)).or_insert_with(|| {
        Box::leak(Box::new(Kernel {
            family: "matmul",
            source: Box::leak(shaders::matmul_coop_source(b_f16, sg, side).into_boxed_str()),
            entry: "matmul_coop",
        }))
    })
}

pub use crate::gpu::{MatmulClass, MatmulKernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch2: u32,
    a_off: u32,
    a_sm: u32,
    a_sk: u32,
    a_b1: u32,
    a_b2: u32,
    b_off: u32,
    b_sk: u32,
    b_sn: u32,
    b_b1: u32,
    b_b2: u32,
    c_off: u32,
    c_sm: u32,
    c_sn: u32,
    c_b1: u32,
    c_b2: u32,
    flags: u32,
    alpha: f32,
    bias_off: u32,
    _p0: u32,
    _p1: u32,
}

/// Where a matrix lives in its buffer: element (r, c) of batch (b1, b2) is at
/// `off + b1*b1_stride + b2*b2_stride + r*rs + c*cs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
    pub b1: usize,
    pub b2: usize,
}

impl Layout {
    /// A row-major [rows, cols] matrix, batches `batch_stride` apart (one batch level).
    pub fn row_major(cols: usize, batch_stride: usize) -> Self {
        Self {
            off: 0,
            rs: cols,
            cs: 1,
            b1: batch_stride,
            b2: 0,
        }
    }
    /// The transpose of a row-major [rows, cols] matrix.
    pub fn transposed(cols: usize, batch_stride: usize) -> Self {
        Self {
            off: 0,
            rs: 1,
            cs: cols,
            b1: batch_stride,
            b2: 0,
        }
    }
}

/// The activation a matmul's epilogue applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None,
    Gelu,
    Relu,
    QuickGelu,
}

/// C(m,n) = act(alpha · (Σ_k A(m,k)·B(k,n) + bias[n])) (+ R(m,n)) (+ C(m,n) when accumulating).
pub struct Matmul<'t> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch1: usize,
    pub batch2: usize,
    pub a: (&'t GpuTensor, Layout),
    pub b: (&'t GpuTensor, Layout),
    pub c: (&'t GpuTensor, Layout),
    pub alpha: f32,
    pub bias: Option<(&'t GpuTensor, usize)>,
    pub act: Act,
    pub residual: Option<&'t GpuTensor>,
    pub accumulate: bool,
    /// Also writes alpha·(A·B + bias), the value before `scale_shift` and `act`, here (laid out as C); not with
    /// accumulation, nor with a residual unless there is a `scale_shift` (whose backward needs its input).
    pub pre_act: Option<&'t GpuTensor>,
    /// A per-column affine (γ, β) applied after alpha and the bias, before `act` and the residual.
    pub scale_shift: Option<(&'t GpuTensor, &'t GpuTensor)>,
    /// The kernel to use; the adapter's default when unset.
    pub kernel: Option<MatmulKernel>,
}

impl<'t> Matmul<'t> {
    pub fn new(
        (m, n, k): (usize, usize, usize),
        a: (&'t GpuTensor, Layout),
        b: (&'t GpuTensor, Layout),
        c: (&'t GpuTensor, Layout),
    ) -> Self {
        Self {
            m,
            n,
            k,
            batch1: 1,
            batch2: 1,
            a,
            b,
            c,
            alpha: 1.0,
            bias: None,
            act: Act::None,
            residual: None,
            accumulate: false,
            pre_act: None,
            scale_shift: None,
            kernel: None,
        }
    }

    pub fn record(&self, rec: &mut Recorder) {
        let variants: [&'static Kernel; 5] = match self.b.0.dtype {
            DType::F32 => [
                &MATMUL,
                &MATMUL_REGISTER,
                &MATMUL_DIRECT,
                &MATMUL_DIRECT_SMALL,
                &MATMUL_DIRECT_NARROW,
            ],
            DType::F16 => {
                let k: &'static [Kernel; 5] = &MATMUL_F16;
                [&k[0], &k[1], &k[2], &k[3], &k[4]]
            }
        };
        let chosen = self
            .kernel
            .unwrap_or_else(|| rec.gpu().matmul_kernel_for(MatmulClass::of(self.m, self.n)));
        let b_f16 = self.b.0.dtype == DType::F16;
        // A variant the adapter cannot run (forced in a test, say) falls back to the tiled kernel.
        let chosen = if rec.gpu().supports_matmul(chosen) {
            chosen
        } else {
            MatmulKernel::Tiled
        };
        let (kernel, rows, cols) = match chosen {
            MatmulKernel::Tiled => (variants[0], 64, 64),
            MatmulKernel::Half => (&MATMUL_HALF[b_f16 as usize], 64, 64),
            MatmulKernel::Coop => match rec.gpu().coop_shape() {
                Some((sg, side)) => {
                    let tile = 4 * side as usize;
                    (coop_kernel((sg, side), b_f16), tile, tile)
                }
                None => (variants[0], 64, 64),
            },
            MatmulKernel::Register => (variants[1], 128, 128),
            // 32x32 tiles for products at most 32 columns wide; else 64-row tiles unless most of the last tile
            // would be clamped rows.
            MatmulKernel::Direct if self.n <= 32 => (variants[4], 32, 32),
            MatmulKernel::Direct if self.m >= 96 => (variants[2], 64, 64),
            MatmulKernel::Direct => (variants[3], 32, 64),
        };
        self.record_with(rec, kernel, (rows, cols));
    }

    /// Records this product with the given kernel entry (of matmul.wgsl's interface) and its output tile of
    /// (rows, columns) per workgroup: `record` after its choice, and the autotuner's trials of other kernels.
    pub fn record_with(
        &self,
        rec: &mut Recorder,
        kernel: &'static Kernel,
        (rows, cols): (usize, usize),
    ) {
        let dummy = rec.gpu().dummy();
        let (at, al) = self.a;
        let (bt, bl) = self.b;
        let (ct, cl) = self.c;
        let flags = (self.bias.is_some() as u32)
            | (((self.act == Act::Gelu) as u32) << 1)
            | ((self.residual.is_some() as u32) << 2)
            | ((self.accumulate as u32) << 3)
            | (((self.act == Act::Relu) as u32) << 4)
            | (((self.act == Act::QuickGelu) as u32) << 5)
            | ((self.pre_act.is_some() as u32) << 6)
            | ((self.scale_shift.is_some() as u32) << 7);
        assert!(
            self.pre_act.is_none()
                || (!self.accumulate && (self.residual.is_none() || self.scale_shift.is_some())),
            "matmul: the pre-activation copy is for act(x·W + b) or an affine's input only"
        );
        let params = Params {
            m: u(self.m),
            n: u(self.n),
            k: u(self.k),
            batch2: u(self.batch2.max(1)),
            a_off: u(al.off),
            a_sm: u(al.rs),
            a_sk: u(al.cs),
            a_b1: u(al.b1),
            a_b2: u(al.b2),
            b_off: u(bl.off),
            b_sk: u(bl.rs),
            b_sn: u(bl.cs),
            b_b1: u(bl.b1),
            b_b2: u(bl.b2),
            c_off: u(cl.off),
            c_sm: u(cl.rs),
            c_sn: u(cl.cs),
            c_b1: u(cl.b1),
            c_b2: u(cl.b2),
            flags,
            alpha: self.alpha,
            bias_off: u(self.bias.map(|b| b.1).unwrap_or(0)),
            _p0: 0,
            _p1: 0,
        };
        let bias = self.bias.map(|b| b.0).unwrap_or(dummy);
        let res = self.residual.unwrap_or(dummy);
        assert!(
            at.dtype == DType::F32 && ct.dtype == DType::F32,
            "matmul: only B may be stored as f16"
        );
        let groups = [
            u(self.n.div_ceil(cols)),
            u(self.m.div_ceil(rows)),
            u(self.batch1 * self.batch2.max(1)),
        ];
        // Without a pre-activation output C itself fills the binding (never written there: the flag is off), so
        // matmuls share no writable placeholder that would order them after one another.
        let pre = self.pre_act.unwrap_or(ct);
        assert!(
            pre.dtype == DType::F32,
            "matmul: the pre-activation output is f32"
        );
        let (col_scale, col_shift) = self.scale_shift.unwrap_or((dummy, dummy));
        rec.dispatch(
            kernel,
            &params,
            &[at, bt, bias, res, ct, pre, col_scale, col_shift],
            groups,
        );
        let batch = (self.batch1 * self.batch2.max(1)) as f64;
        let (m, n, k) = (self.m as f64, self.n as f64, self.k as f64);
        let shared_b = bl.b1 == 0 && bl.b2 == 0;
        let c_passes = 1.0
            + (self.accumulate || self.residual.is_some()) as u8 as f64
            + self.pre_act.is_some() as u8 as f64;
        let b_elems = if shared_b { k * n } else { batch * k * n };
        let elems = batch * (m * k + m * n * c_passes);
        rec.declare_work(crate::gpu::Work {
            flops: 2.0 * batch * m * n * k,
            bytes: 4.0 * elems + bt.dtype.size() as f64 * b_elems,
        });
        rec.label_last(layout_class(al, bl, batch > 1.0));
    }
}

/// The profile row of a matmul, by how its operands lie in memory (BLAS's names: A is N when each row's k run
/// is contiguous, T when its m run is; B is N when n is contiguous, T when k is) and whether it is batched
/// (attention's per-head products).
fn layout_class(a: Layout, b: Layout, batched: bool) -> &'static str {
    const NAMES: [&str; 8] = [
        "matmul NT",
        "matmul NN",
        "matmul TT",
        "matmul TN",
        "matmul NT b",
        "matmul NN b",
        "matmul TT b",
        "matmul TN b",
    ];
    let a_t = a.cs != 1 && a.rs == 1;
    let b_n = b.cs == 1 && b.rs != 1;
    NAMES[usize::from(b_n) + 2 * usize::from(a_t) + 4 * usize::from(batched)]
}

/// y[rows, N] = act(x[rows, K] · Wᵀ + b), with W in PyTorch's [N, K] layout; optional residual.
pub fn linear(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    act: Act,
    residual: Option<&GpuTensor>,
) -> Result<GpuTensor, GpuError> {
    linear_with(rec, (x, w, b), act, residual, None, None)
}

/// y = act(γ⊙(x·Wᵀ + b) + β) (+ residual) in one matmul, the per-column affine in its epilogue; with
/// `keep_input`, also z = x·Wᵀ + b, the affine's input, which its backward reads.
pub fn linear_scaled(
    rec: &mut Recorder,
    (x, w, b): (&GpuTensor, &GpuTensor, Option<&GpuTensor>),
    affine: (&GpuTensor, &GpuTensor),
    act: Act,
    residual: Option<&GpuTensor>,
    keep_input: bool,
) -> Result<(Option<GpuTensor>, GpuTensor), GpuError> {
    let pre = if keep_input {
        Some(rec.gpu().empty(&linear_shape(x, w))?)
    } else {
        None
    };
    let y = linear_with(rec, (x, w, b), act, residual, pre.as_ref(), Some(affine))?;
    Ok((pre, y))
}

/// (x·Wᵀ + b, act(x·Wᵀ + b)) from one matmul: what a training forward keeps for act's backward, and the output.
pub fn linear_keeping_pre_act(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    act: Act,
) -> Result<(GpuTensor, GpuTensor), GpuError> {
    let pre = rec.gpu().empty(&linear_shape(x, w))?;
    let y = linear_with(rec, (x, w, b), act, None, Some(&pre), None)?;
    Ok((pre, y))
}

/// x's shape with its last axis W's output width.
fn linear_shape(x: &GpuTensor, w: &GpuTensor) -> Vec<usize> {
    let mut shape = x.shape.clone();
    if let Some(last) = shape.last_mut() {
        *last = w.shape[0];
    }
    shape
}

fn linear_with(
    rec: &mut Recorder,
    (x, w, b): (&GpuTensor, &GpuTensor, Option<&GpuTensor>),
    act: Act,
    residual: Option<&GpuTensor>,
    pre_act: Option<&GpuTensor>,
    scale_shift: Option<(&GpuTensor, &GpuTensor)>,
) -> Result<GpuTensor, GpuError> {
    let k = *x.shape.last().unwrap_or(&0);
    let rows = x.numel() / k.max(1);
    let n = w.shape[0];
    debug_assert_eq!(
        w.shape[1], k,
        "linear: weight {:?} vs input {:?}",
        w.shape, x.shape
    );
    let y = rec.gpu().empty(&linear_shape(x, w))?;
    let mut mm = Matmul::new(
        (rows, n, k),
        (x, Layout::row_major(k, 0)),
        (w, Layout::transposed(k, 0)),
        (&y, Layout::row_major(n, 0)),
    );
    mm.bias = b.map(|b| (b, 0));
    mm.act = act;
    mm.residual = residual;
    mm.pre_act = pre_act;
    mm.scale_shift = scale_shift;
    mm.record(rec);
    Ok(y)
}

/// Rows and width of a tensor seen as a matrix over its last dimension.
fn rows_cols(t: &GpuTensor) -> (usize, usize) {
    let cols = *t.shape.last().unwrap_or(&1);
    (t.numel() / cols.max(1), cols)
}

/// dx[rows, K] = scale · dy[rows, N] · W[N, K]; written into `into` (accumulating) when given, else a new tensor
/// shaped like `shape`.
pub fn linear_input_grad(
    rec: &mut Recorder,
    dy: &GpuTensor,
    w: &GpuTensor,
    scale: f32,
    into: Option<&GpuTensor>,
    shape: &[usize],
) -> Result<GpuTensor, GpuError> {
    let (rows, n) = rows_cols(dy);
    let k = w.shape[1];
    let dx = match into {
        Some(t) => t.clone(),
        None => rec.gpu().empty(shape)?,
    };
    let mut mm = Matmul::new(
        (rows, k, n),
        (dy, Layout::row_major(n, 0)),
        (w, Layout::row_major(k, 0)),
        (&dx, Layout::row_major(k, 0)),
    );
    mm.alpha = scale;
    mm.accumulate = into.is_some();
    mm.record(rec);
    Ok(dx)
}

/// dW[N, K] += scale · dy[rows, N]ᵀ · x[rows, K].
pub fn linear_weight_grad(
    rec: &mut Recorder,
    dy: &GpuTensor,
    x: &GpuTensor,
    dw: &GpuTensor,
    scale: f32,
) {
    let (rows, n) = rows_cols(dy);
    let (_, k) = rows_cols(x);
    let mut mm = Matmul::new(
        (n, k, rows),
        (dy, Layout::transposed(n, 0)),
        (x, Layout::row_major(k, 0)),
        (dw, Layout::row_major(k, 0)),
    );
    mm.alpha = scale;
    mm.accumulate = true;
    mm.record(rec);
}
