//! The tuning methods: which tensors each trains, their names (the tuned file's contract), their published
//! initialisation, and their options. The GPU graph reads these tensors by name.

mod adapter;
mod bitfit;
pub mod convpass;
mod full;
mod head;
pub mod lora;
mod prompt;
pub mod spt;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::hooks::{Hooks, NoHooks};
use crate::model::{Backbone, HostTensor};
use crate::rng::Rng;

/// A parameter-efficient tuning method, or a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Linear,
    Bitfit,
    VptShallow,
    VptDeep,
    Lora,
    Adaptformer,
    Convpass,
    Full,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Linear,
        Method::Bitfit,
        Method::VptShallow,
        Method::VptDeep,
        Method::Lora,
        Method::Adaptformer,
        Method::Convpass,
        Method::Full,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Linear => "linear",
            Method::Bitfit => "bitfit",
            Method::VptShallow => "vpt-shallow",
            Method::VptDeep => "vpt-deep",
            Method::Lora => "lora",
            Method::Adaptformer => "adaptformer",
            Method::Convpass => "convpass",
            Method::Full => "full",
        }
    }

    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                Error::Input(format!(
                    "unknown method `{s}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }

    pub fn uses_prompts(self) -> bool {
        matches!(self, Method::VptShallow | Method::VptDeep)
    }

    /// How this method attaches to the graph, with `o`'s options.
    pub fn hooks(self, o: &MethodOptions) -> Box<dyn Hooks> {
        match self {
            Method::Linear | Method::Bitfit => Box::new(NoHooks),
            Method::Full => Box::new(full::FullHooks),
            Method::VptShallow | Method::VptDeep => Box::new(prompt::PromptHooks {
                prompts: o.prompts,
                deep: self == Method::VptDeep,
                dropout: o.dropout,
            }),
            Method::Lora => Box::new(lora::LoraHooks {
                rank: o.rank,
                scale: o.alpha / o.rank.max(1) as f32,
                slots: o.lora_slots(),
            }),
            Method::Adaptformer => Box::new(adapter::AdaptFormerHooks {
                bottleneck: o.bottleneck,
                scale: o.scale,
            }),
            Method::Convpass => Box::new(convpass::ConvpassHooks {
                width: o.convpass_dim,
                scale: o.scale,
                dropout: o.dropout,
            }),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How Convpass's 3×3 convolution starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvInit {
    Xavier,
    Identity,
}

/// Every method's options, with the papers' defaults.
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
    /// Training-time dropout: on the prompt tokens for VPT (VPT-deep 0.1, shallow 0 as in the paper), inside the
    /// bypass for Convpass (0.1); unused by the other methods. Off in evaluation and in `vitune grad`.
    #[serde(default)]
    pub dropout: f32,
}

impl MethodOptions {
    pub fn defaults(method: Method) -> Self {
        Self {
            prompts: match method {
                Method::VptShallow | Method::VptDeep => 10,
                _ => 0,
            },
            rank: 8,
            alpha: 8.0,
            lora_targets: "qv".into(),
            bottleneck: 64,
            scale: if method == Method::Adaptformer {
                0.1
            } else {
                1.0
            },
            convpass_dim: 8,
            conv_init: ConvInit::Xavier,
            dropout: match method {
                Method::VptDeep | Method::Convpass => 0.1,
                _ => 0.0,
            },
        }
    }

    /// Whether `method` has a dropout this option sets.
    pub fn has_dropout(method: Method) -> bool {
        matches!(
            method,
            Method::VptShallow | Method::VptDeep | Method::Convpass
        )
    }

    /// Options that matter for `method`, for printing and for the tuned file's metadata.
    pub fn describe(&self, method: Method) -> String {
        match method {
            Method::VptShallow | Method::VptDeep => {
                format!("prompts {} dropout {}", self.prompts, self.dropout)
            }
            Method::Lora => format!(
                "rank {} alpha {} targets {}",
                self.rank, self.alpha, self.lora_targets
            ),
            Method::Adaptformer => format!("bottleneck {} scale {}", self.bottleneck, self.scale),
            Method::Convpass => format!(
                "convpass-dim {} scale {} conv-init {:?} dropout {}",
                self.convpass_dim, self.scale, self.conv_init, self.dropout
            ),
            _ => String::new(),
        }
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
    let c = &backbone.config;
    let mut s = head::shapes(c.dim, num_classes);
    match method {
        Method::Linear => {}
        Method::Bitfit => s.extend(bitfit::shapes(backbone)),
        Method::VptShallow | Method::VptDeep => s.extend(prompt::shapes(method, options, c)),
        Method::Lora => s.extend(lora::shapes(options, c)),
        Method::Adaptformer => s.extend(adapter::shapes(options, c)),
        Method::Convpass => s.extend(convpass::shapes(options, c)),
        Method::Full => s.extend(full::shapes(backbone)),
    }
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
        let c = &backbone.config;
        let mut tensors = head::init(c.dim, num_classes, &mut rng);
        match method {
            Method::Linear => {}
            Method::Bitfit => tensors.extend(bitfit::init(backbone)?),
            Method::VptShallow | Method::VptDeep => {
                tensors.extend(prompt::init(method, &options, c, &mut rng))
            }
            Method::Lora => tensors.extend(lora::init(&options, c, &mut rng)),
            Method::Adaptformer => tensors.extend(adapter::init(&options, c, &mut rng)),
            Method::Convpass => tensors.extend(convpass::init(&options, c, &mut rng)),
            Method::Full => tensors.extend(full::init(backbone)),
        }
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
        match method {
            Method::VptShallow | Method::VptDeep => {
                if let Some(p) = tensors.get("prompt_embeddings") {
                    options.prompts = p.shape.get(1).copied().unwrap_or(0);
                }
            }
            Method::Lora => {
                if let Some(a) = tensors.keys().find(|k| k.ends_with("_lora_A")) {
                    options.rank = tensors[a].shape[0];
                    let slots: String = ["q", "k", "v"]
                        .iter()
                        .filter(|s| tensors.contains_key(&format!("blocks.0.attn.{s}_lora_A")))
                        .copied()
                        .collect();
                    options.lora_targets = slots;
                }
            }
            Method::Adaptformer => {
                if let Some(w) = tensors.get("blocks.0.adaptmlp.down_proj.weight") {
                    options.bottleneck = w.shape[0];
                }
            }
            Method::Convpass => {
                if let Some(w) = tensors.get("blocks.0.adapter_attn.adapter_down.weight") {
                    options.convpass_dim = w.shape[0];
                }
            }
            _ => {}
        }
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
    if backbone.config.layer_scale && matches!(method, Method::Bitfit | Method::Full) {
        return Err(Error::Input(format!(
            "method {method} on a LayerScale backbone is not supported yet (its biases sit inside the scale)"
        )));
    }
    if method.uses_prompts() && options.prompts == 0 {
        return Err(Error::Input(format!(
            "method {method} needs --prompts of at least 1"
        )));
    }
    if method == Method::Lora && (options.rank == 0 || options.lora_slots().is_empty()) {
        return Err(Error::Input(
            "LoRA needs --rank ≥ 1 and targets among q, k, v".into(),
        ));
    }
    if method == Method::Adaptformer && options.bottleneck == 0 {
        return Err(Error::Input("AdaptFormer needs --bottleneck ≥ 1".into()));
    }
    if method == Method::Convpass && options.convpass_dim == 0 {
        return Err(Error::Input("Convpass needs --convpass-dim ≥ 1".into()));
    }
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
