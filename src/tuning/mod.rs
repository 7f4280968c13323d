//! The tuning methods. Each lives in one file that implements [`MethodSpec`]: its trainable tensors (names,
//! shapes, published init), its defaults and checks, its recipe, its one-line description, and the hooks that
//! attach it to the ViT graph (`model::hooks`). Registering a method is one enum variant and one arm of
//! [`Method::spec`]; everything else reads the spec.
//!
//! How to add a method, with SSF (`ssf.rs`) as the example:
//! 1. Write `src/tuning/<method>.rs`: `shapes` and `init` for its tensors under the names its tuned file uses
//!    (`blocks.{i}.mlp.fc1.ssf_scale`, ...), a `Hooks` implementation saying where it attaches (SSF's `affine`
//!    returns γ and β for each site; a branch method implements `branch` and `branch_backward`), and a
//!    `MethodSpec` implementation tying them together with a description and a recipe. For export, `merge` folds
//!    what the method changes into the backbone's weights (SSF: γ and β into the layer before), and `onnx`
//!    writes what cannot be folded as ONNX ops (prompts, branches).
//! 2. Add a variant to [`Method`], its name to [`Method::name`] and an arm to [`Method::spec`]; the compiler
//!    lists the few other exhaustive matches (the app's option panel).
//! 3. Add a case to `tools/make_grad_fixtures.py` (the method in plain PyTorch) and run it; the gradient test
//!    (tests/gradients.rs) then checks the method's loss and every gradient against autograd, and the
//!    "every method" tests (inference forward, tuned-file round trip, micro-batches, no dead tensor, ONNX export
//!    against vitune and autograd) cover it.

mod adapter;
mod bitfit;
pub mod convpass;
mod full;
mod gpu;
mod head;
mod linear;
pub mod lora;
pub mod options;
mod prompt;
pub mod spt;
mod ssf;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::hooks::{Hooks, NoHooks};
use crate::model::{Backbone, HostTensor, ViTConfig};
use crate::onnx::OnnxHooks;
use crate::rng::Rng;

pub use gpu::GpuTuning;
pub use options::{OptionKind, OptionSpec};

/// The registry: every method as one row — its variant, its name (the CLI's `--method`, the tuned and project
/// files), and its spec from its own file. Adding a method is its file and one row here.
macro_rules! methods {
    ($($(#[$doc:meta])* $variant:ident = $name:literal => $spec:expr,)*) => {
        /// A parameter-efficient tuning method, or a baseline.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Method {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl Method {
            /// Every method, in the registry's order (the pickers' and tables' order).
            pub const ALL: [Method; [$($name),*].len()] = [$(Method::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Method::$variant => $name,)*
                }
            }

            /// Everything about the method, from its own file.
            pub fn spec(self) -> &'static dyn MethodSpec {
                match self {
                    $(Method::$variant => $spec,)*
                }
            }
        }
    };
}

methods! {
    Linear = "linear" => &linear::LinearProbe,
    Bitfit = "bitfit" => &bitfit::BitFit,
    VptShallow = "vpt-shallow" => &prompt::SHALLOW,
    VptDeep = "vpt-deep" => &prompt::DEEP,
    Lora = "lora" => &lora::Lora,
    Adaptformer = "adaptformer" => &adapter::AdaptFormer,
    Convpass = "convpass" => &convpass::Convpass,
    Ssf = "ssf" => &ssf::Ssf,
    Full = "full" => &full::FullFineTuning,
}

impl Method {
    /// The method a new project and the demo start with: VPT-deep, the prompt method the app is built around.
    pub const DEFAULT: Method = Method::VptDeep;

    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                Error::UnknownMethod {
                    name: s.to_string(),
                    expected: names.join(", "),
                }
            })
    }

    pub fn uses_prompts(self) -> bool {
        self.spec().uses_prompts()
    }

    /// Whether it trains the head alone.
    pub fn head_only(self) -> bool {
        self.spec().head_only()
    }

    /// Whether the method's result is a plain ViT (its tensors fold into the backbone's), so that a merged timm
    /// checkpoint can hold it; prompt and branch methods need ONNX.
    pub fn merges_into_vit(self) -> bool {
        self.spec().onnx(&MethodOptions::defaults(self)).is_none()
    }

    /// One line: what the method trains, and its paper.
    pub fn description(self) -> &'static str {
        self.spec().description()
    }

    /// The papers' optimiser and learning rate for this method.
    pub fn recipe(self) -> MethodRecipe {
        self.spec().recipe()
    }

    /// How this method attaches to the graph, with `o`'s options.
    pub fn hooks(self, o: &MethodOptions) -> Box<dyn Hooks> {
        self.spec().hooks(o)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method's published optimiser: SGD with momentum (VPT's recipe: lr = base·batch/256) or AdamW (lr as is),
/// with its weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodRecipe {
    pub sgd: bool,
    /// SGD's base lr (scaled by batch/256), or AdamW's lr.
    pub lr: f32,
    pub weight_decay: f32,
}

impl MethodRecipe {
    /// The adapters' AdamW recipe (lr 5e-3, wd 1e-4).
    pub const ADAMW_ADAPTER: Self = Self {
        sgd: false,
        lr: 5e-3,
        weight_decay: 1e-4,
    };
}

/// A tuning method: its file implements this, and nothing outside the file knows more about it.
pub trait MethodSpec: Sync {
    /// One line for pickers and `--help`: what the method trains, and its paper.
    fn description(&self) -> &'static str;

    /// The paper's optimiser and learning rate.
    fn recipe(&self) -> MethodRecipe {
        MethodRecipe::ADAMW_ADAPTER
    }

    /// Sets this method's defaults (the papers' values) in the shared options.
    fn defaults(&self, _o: &mut MethodOptions) {}

    /// Name → shape of the trainable tensors beside the head.
    fn shapes(&self, o: &MethodOptions, b: &Backbone) -> BTreeMap<String, Vec<usize>>;

    /// The published initialisation of those tensors.
    fn init(
        &self,
        o: &MethodOptions,
        b: &Backbone,
        rng: &mut Rng,
    ) -> Result<BTreeMap<String, HostTensor>>;

    /// Refuses options, or a backbone, the method cannot use, with a sentence saying why.
    fn check(&self, _o: &MethodOptions, _b: &Backbone) -> Result<()> {
        Ok(())
    }

    /// Reads the options that tensor shapes tell (prompt count, rank, widths) from given tensors.
    fn read_options(&self, _o: &mut MethodOptions, _tensors: &BTreeMap<String, HostTensor>) {}

    /// Whether the tensors of a plain safetensors file (no metadata) are this method's, by their names.
    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool;

    /// The options that matter, for printing and for the tuned file's metadata.
    fn describe(&self, _o: &MethodOptions) -> String {
        String::new()
    }

    /// The options it offers (their keys, help, values and fields); none by default.
    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }

    fn uses_prompts(&self) -> bool {
        false
    }

    /// Whether it trains the head alone (a probe on frozen features: searched and trained on cached features).
    fn head_only(&self) -> bool {
        false
    }

    /// Whether a comparison includes it when no methods are named (full fine-tuning, the slow baseline, not).
    fn compared_by_default(&self) -> bool {
        true
    }

    /// How the method attaches to the graph.
    fn hooks(&self, _o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(NoHooks)
    }

    /// For export: folds what the method changes into the backbone's own weights (timm names, LayerScale not
    /// folded) — LoRA's B·A into qkv, SSF's scale and shift into the layer before it. The head and tensors under
    /// the backbone's names (BitFit, full fine-tuning) are in place already.
    fn merge(
        &self,
        _o: &MethodOptions,
        _c: &ViTConfig,
        _tuned: &BTreeMap<String, HostTensor>,
        _weights: &mut BTreeMap<String, HostTensor>,
    ) -> Result<()> {
        Ok(())
    }

    /// For export: what the method adds to the graph beyond merged weights (prompts, bypass branches); `None`
    /// when the merged weights are a plain ViT.
    fn onnx(&self, _o: &MethodOptions) -> Option<Box<dyn OnnxHooks>> {
        None
    }
}

/// Whether any tensor name satisfies `f`.
pub(crate) fn has_name(tensors: &BTreeMap<String, HostTensor>, f: impl Fn(&str) -> bool) -> bool {
    tensors.keys().any(|k| f(k))
}

/// How Convpass's 3×3 convolution starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvInit {
    Xavier,
    Identity,
}

/// The options every method reads its own from: the CLI's flags, the project file's and the tuned file's
/// metadata. Each method's file turns these into its own typed settings (its hooks) and says which apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodOptions {
    /// VPT prompt tokens p.
    pub prompts: usize,
    /// LoRA rank r and alpha (the update is scaled by alpha / r).
    pub rank: usize,
    pub alpha: f32,
    /// LoRA targets among q, k, v.
    pub lora_targets: String,
    /// AdaptFormer bottleneck.
    pub bottleneck: usize,
    /// AdaptFormer / Convpass output scale s.
    pub scale: f32,
    /// Convpass hidden width.
    pub convpass_dim: usize,
    pub conv_init: ConvInit,
    /// Training-time dropout where the method has one (VPT's prompts, Convpass's bypass). Off in evaluation and
    /// in `vitune grad`.
    #[serde(default)]
    pub dropout: f32,
}

impl MethodOptions {
    /// The shared defaults, then `method`'s own.
    pub fn defaults(method: Method) -> Self {
        let mut o = Self {
            prompts: 0,
            rank: 8,
            alpha: 8.0,
            lora_targets: "qv".into(),
            bottleneck: 64,
            scale: 1.0,
            convpass_dim: 8,
            conv_init: ConvInit::Xavier,
            dropout: 0.0,
        };
        method.spec().defaults(&mut o);
        o
    }

    /// Options that matter for `method`, for printing and for the tuned file's metadata.
    pub fn describe(&self, method: Method) -> String {
        method.spec().describe(self)
    }

    /// Indices (0 = q, 1 = k, 2 = v) that LoRA adapts.
    pub fn lora_slots(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .lora_targets
            .chars()
            .filter_map(|c| "qkv".find(c))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A method's trainable tensors (host side), under the tuned file's names.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub method: Method,
    pub options: MethodOptions,
    pub num_classes: usize,
    pub tensors: BTreeMap<String, HostTensor>,
}

/// Expected name → shape of every trainable tensor of `method`.
pub fn expected_shapes(
    method: Method,
    options: &MethodOptions,
    backbone: &Backbone,
    num_classes: usize,
) -> BTreeMap<String, Vec<usize>> {
    let mut s = head::shapes(backbone.config.pooled_dim(), num_classes);
    s.extend(method.spec().shapes(options, backbone));
    s
}

impl Tuning {
    /// The method's published initialisation; a new head for `num_classes` classes.
    pub fn init(
        method: Method,
        options: MethodOptions,
        backbone: &Backbone,
        num_classes: usize,
        seed: u64,
    ) -> Result<Self> {
        check_supported(method, &options, backbone, num_classes)?;
        let mut rng = Rng::new(seed);
        let mut tensors = head::init(backbone.config.pooled_dim(), num_classes, &mut rng);
        tensors.extend(method.spec().init(&options, backbone, &mut rng)?);
        Ok(Self {
            method,
            options,
            num_classes,
            tensors,
        })
    }

    /// Starts from given tensors (a tuned file, or one made elsewhere): the class count comes from
    /// `head.weight`, options that shapes tell (prompts, rank, bottleneck, convpass width) are read from them, and
    /// every shape is checked.
    pub fn from_tensors(
        method: Method,
        mut options: MethodOptions,
        backbone: &Backbone,
        tensors: BTreeMap<String, HostTensor>,
    ) -> Result<Self> {
        let head = tensors
            .get("head.weight")
            .ok_or_else(|| Error::Input("the tuned tensors have no `head.weight`".into()))?;
        let num_classes = head.shape[0];
        method.spec().read_options(&mut options, &tensors);
        check_supported(method, &options, backbone, num_classes)?;
        let expected = expected_shapes(method, &options, backbone, num_classes);
        for (name, shape) in &expected {
            let t = tensors.get(name).ok_or_else(|| {
                Error::Input(format!("the tuned tensors lack `{name}` (method {method})"))
            })?;
            if &t.shape != shape {
                return Err(Error::Input(format!(
                    "tuned tensor `{name}` has shape {:?}; this backbone and method expect {shape:?}",
                    t.shape
                )));
            }
        }
        let tensors = tensors
            .into_iter()
            .filter(|(k, _)| expected.contains_key(k))
            .collect();
        Ok(Self {
            method,
            options,
            num_classes,
            tensors,
        })
    }

    /// Trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.numel()).sum()
    }
}

fn check_supported(
    method: Method,
    options: &MethodOptions,
    backbone: &Backbone,
    num_classes: usize,
) -> Result<()> {
    if num_classes == 0 {
        return Err(Error::Input("a tuned head needs at least one class".into()));
    }
    method.spec().check(options, backbone)?;
    if !(0.0..1.0).contains(&options.dropout) {
        return Err(Error::Input(format!(
            "--dropout must be in [0, 1), got {}",
            options.dropout
        )));
    }
    Ok(())
}

/// Uniform(−bound, bound) values.
pub(crate) fn uniform(rng: &mut Rng, shape: &[usize], bound: f64) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.range(-bound, bound) as f32).collect(),
    )
}

/// PyTorch's default `kaiming_uniform_(a=√5)` for a [out, in] weight: bound 1/√in.
pub(crate) fn kaiming_uniform(rng: &mut Rng, shape: &[usize]) -> HostTensor {
    let fan_in: usize = shape[1..].iter().product();
    uniform(rng, shape, 1.0 / (fan_in as f64).sqrt())
}

/// Xavier-uniform for a [out, in, ...] weight: bound √(6 / (fan_in + fan_out)).
pub(crate) fn xavier_uniform(rng: &mut Rng, shape: &[usize]) -> HostTensor {
    let rf: usize = shape[2..].iter().product();
    let fan_in = shape[1] * rf;
    let fan_out = shape[0] * rf;
    uniform(rng, shape, (6.0 / (fan_in + fan_out) as f64).sqrt())
}
