//! Rust launchers for the WGSL kernels, one module per op family, forward and backward side by side.

pub mod activation;
pub mod affine;
pub mod attention;
pub mod autotune;
pub mod conv;
pub mod dropout;
pub mod embed;
pub mod layernorm;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod reduce;
pub mod reference;
pub mod rope;
pub mod softmax;

/// Every shader source, by file name, for validation and for the pipeline cache.
pub mod shaders {
    macro_rules! shader {
        ($name:ident, $file:literal) => {
            pub const $name: &str = concat!(
                include_str!("../../shaders/common.wgsl"),
                "\n",
                include_str!(concat!("../../shaders/", $file))
            );
        };
    }
    shader!(MATMUL, "matmul.wgsl");
    shader!(LAYERNORM, "layernorm.wgsl");
    shader!(SOFTMAX, "softmax.wgsl");
    shader!(EMBED, "embed.wgsl");
    shader!(REDUCE, "reduce.wgsl");
    shader!(ACTIVATION, "activation.wgsl");
    shader!(LOSS, "loss.wgsl");
    shader!(OPTIM, "optim.wgsl");
    shader!(CONV, "conv.wgsl");
    shader!(DROPOUT, "dropout.wgsl");
    shader!(AFFINE, "affine.wgsl");
    shader!(ROPE, "rope.wgsl");

    /// The lines the fused attention shader starts with at head size 64: the head size, and the tile of keys
    /// (or queries) the workgroup-tiled kernels hold in workgroup memory (`attention_header`).
    pub const ATTENTION_HEADER_64: &str = "const HD: u32 = 64u;\nconst KT: u32 = 16u;\n";
    /// Fused attention at head size 64 (ViT-S/B/L); other head sizes come from `attention_source`.
    pub const ATTENTION: &str = concat!(
        "const HD: u32 = 64u;\nconst KT: u32 = 16u;\n",
        include_str!("../../shaders/common.wgsl"),
        "\n",
        include_str!("../../shaders/attention.wgsl")
    );

    /// The matmul shader with B stored as f16 (frozen weights), computing in f32; needs `SHADER_F16`.
    pub fn matmul_f16_source() -> String {
        let decl = "var<storage, read> b: array<f32>;";
        let load = "return b[i];";
        assert!(
            MATMUL.contains(decl) && MATMUL.contains(load),
            "matmul.wgsl: B's declaration or load_b changed"
        );
        format!(
            "enable f16;\n{}",
            MATMUL
                .replacen(decl, "var<storage, read> b: array<f16>;", 1)
                .replacen(load, "return f32(b[i]);", 1)
        )
    }

    /// matmul.wgsl with its f16-compute kernel (`matmul_half`), B stored as f32 or (`b_f16`) f16; needs
    /// `SHADER_F16`.
    pub fn matmul_half_source(b_f16: bool) -> String {
        format!(
            "{}\n{}",
            matmul_base_f16(b_f16),
            include_str!("../../shaders/matmul_half.wgsl")
        )
    }

    /// matmul.wgsl with its cooperative-matrix kernel (`matmul_coop`) for an adapter whose subgroups are all `sg`
    /// lanes wide, on `side`×`side` matrices (8 or 16), B stored as f32 or (`b_f16`) f16; needs `SHADER_F16`,
    /// `SUBGROUP` and `EXPERIMENTAL_COOPERATIVE_MATRIX`.
    pub fn matmul_coop_source(b_f16: bool, sg: u32, side: u32) -> String {
        assert!(
            side == 8 || side == 16,
            "cooperative matrices are 8x8 or 16x16"
        );
        let kernel = include_str!("../../shaders/matmul_coop.wgsl")
            .replace("coop_mat8x8", &format!("coop_mat{side}x{side}"));
        format!(
            "enable wgpu_cooperative_matrix;\n{}\nconst SG: u32 = {sg}u;\nconst CM: u32 = {side}u;\n{kernel}",
            matmul_base_f16(b_f16),
        )
    }

    /// matmul.wgsl behind `enable f16;`, with B as f16 when `b_f16`.
    fn matmul_base_f16(b_f16: bool) -> String {
        if b_f16 {
            matmul_f16_source()
        } else {
            format!("enable f16;\n{MATMUL}")
        }
    }

    /// The workgroup reductions of a shader (common.wgsl's `reduce_sum64` and `reduce_max64`) with subgroup sums:
    /// each subgroup's total lands in the slot of its first lane, every lane then adds the 64 slots. Two barriers
    /// instead of seven, right for any subgroup size and any grouping of lanes into subgroups; needs `SUBGROUP`.
    pub fn subgroup_source(source: &str) -> String {
        let (start, end) = ("// <reduce64>", "// </reduce64>");
        let (a, b) = (source.find(start), source.find(end));
        let (Some(a), Some(b)) = (a, b) else {
            panic!("common.wgsl's reduce64 markers changed")
        };
        format!("{}{REDUCE64_SUBGROUP}{}", &source[..a], &source[b..])
    }

    const REDUCE64_SUBGROUP: &str = "var<workgroup> red: array<f32, 64>;
fn reduce_sum64(v: f32, lane: u32) -> f32 {
    let s = subgroupAdd(v);
    red[lane] = select(0.0, s, lane == subgroupBroadcastFirst(lane));
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < 64u; i++) {
        total += red[i];
    }
    workgroupBarrier();
    return total;
}

fn reduce_max64(v: f32, lane: u32) -> f32 {
    let s = subgroupMax(v);
    red[lane] = select(-3.4e38, s, lane == subgroupBroadcastFirst(lane));
    workgroupBarrier();
    var total = -3.4e38;
    for (var i = 0u; i < 64u; i++) {
        total = max(total, red[i]);
    }
    workgroupBarrier();
    return total;
}
";

    /// The constants the fused attention shader starts with for head size `hd`: HD, and KT, the largest power of
    /// two up to 32 whose four tiles (two of KT × HD, two of KT) fit WebGPU's guaranteed 16 KiB of workgroup memory.
    pub fn attention_header(hd: usize) -> String {
        assert!(
            (1..=1023).contains(&hd),
            "head size {hd}: the fused attention kernels take 1 to 1023"
        );
        let mut kt = 32;
        while kt * (hd + 1) > 2048 {
            kt /= 2;
        }
        format!("const HD: u32 = {hd}u;\nconst KT: u32 = {kt}u;\n")
    }

    /// The fused attention shader for head size `hd`.
    pub fn attention_source(hd: usize) -> String {
        // Without this the replacement would silently keep HD = 64 (and read out of bounds).
        assert!(
            ATTENTION.starts_with(ATTENTION_HEADER_64)
                && attention_header(64) == ATTENTION_HEADER_64,
            "attention.wgsl's header changed"
        );
        ATTENTION.replacen(ATTENTION_HEADER_64, &attention_header(hd), 1)
    }

    /// (file name, full source) of every shader.
    pub const ALL: &[(&str, &str)] = &[
        ("matmul.wgsl", MATMUL),
        ("layernorm.wgsl", LAYERNORM),
        ("softmax.wgsl", SOFTMAX),
        ("embed.wgsl", EMBED),
        ("reduce.wgsl", REDUCE),
        ("activation.wgsl", ACTIVATION),
        ("loss.wgsl", LOSS),
        ("optim.wgsl", OPTIM),
        ("conv.wgsl", CONV),
        ("dropout.wgsl", DROPOUT),
        ("affine.wgsl", AFFINE),
        ("rope.wgsl", ROPE),
        ("attention.wgsl", ATTENTION),
    ];
}

/// Workgroup grid for `total` element-wise threads in 256-wide groups, kept under the 65535-per-dimension limit.
pub(crate) fn elementwise_groups(total: usize) -> [u32; 3] {
    rows_groups(total.div_ceil(256))
}

/// Workgroup grid with one workgroup per row, folded into two dimensions when there are many rows.
pub(crate) fn rows_groups(rows: usize) -> [u32; 3] {
    if rows == 0 {
        return [0, 1, 1];
    }
    let x = rows.min(32768);
    [x as u32, rows.div_ceil(x) as u32, 1]
}

/// The variant of a row-wise kernel pair (workgroup per row, invocation per row) the GPU uses, with its grid; the
/// subgroup variant is the workgroup kernel built from `shaders::subgroup_source`.
pub(crate) fn row_launch(
    gpu: &crate::gpu::Gpu,
    pair: [&'static crate::gpu::Kernel; 2],
    rows: usize,
) -> (&'static crate::gpu::Kernel, [u32; 3]) {
    match gpu.row_kernel() {
        crate::gpu::RowKernel::Workgroup => (pair[0], rows_groups(rows)),
        crate::gpu::RowKernel::Subgroup => (subgroup_kernel(pair[0]), rows_groups(rows)),
        crate::gpu::RowKernel::Serial => (pair[1], elementwise_groups(rows)),
    }
}

/// A workgroup kernel's subgroup variant, built once per (source, entry) and kept for the process.
pub fn subgroup_kernel(k: &'static crate::gpu::Kernel) -> &'static crate::gpu::Kernel {
    type Built = std::collections::HashMap<(usize, &'static str), &'static crate::gpu::Kernel>;
    static BUILT: std::sync::Mutex<Option<Built>> = std::sync::Mutex::new(None);
    static SOURCES: std::sync::Mutex<Option<std::collections::HashMap<usize, &'static str>>> =
        std::sync::Mutex::new(None);
    let key = (k.source.as_ptr() as usize, k.entry);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let kernel: &&'static crate::gpu::Kernel = built
        .get_or_insert_with(Default::default)
        .entry(key)
        .or_insert_with(|| {
            let mut sources = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
            // Leaked once per shader file (a handful), so kernels can keep `&'static str` sources.
            let source: &'static str = sources
                .get_or_insert_with(Default::default)
                .entry(key.0)
                .or_insert_with(|| Box::leak(shaders::subgroup_source(k.source).into_boxed_str()));
            Box::leak(Box::new(crate::gpu::Kernel {
                family: k.family,
                source,
                entry: k.entry,
            }))
        });
    kernel
}

/// u32 conversion for kernel parameters; tensor sizes are bounded by the binding limit (< 4 GiB).
pub(crate) fn u(v: usize) -> u32 {
    debug_assert!(
        v <= u32::MAX as usize,
        "kernel parameter {v} does not fit u32"
    );
    v as u32
}
