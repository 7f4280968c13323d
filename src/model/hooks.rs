//! Where a tuning method attaches to the ViT graph. The graph calls these hooks at fixed points of the forward and,
//! in reverse order, of the backward; it names no method. Each method (src/tuning/<method>.rs) implements the
//! hooks it needs; every hook defaults to doing nothing.
//!
//! The hook points, in forward order:
//! - token assembly: prompt tokens placed after CLS ([`Hooks::prompt_tokens`], then [`Hooks::tokens`]);
//! - the input of every block ([`Hooks::block_input`]: deep prompts);
//! - qkv ([`Hooks::qkv`]: a low-rank update);
//! - a branch beside attention and beside the MLP, reading the LayerNorm's output or the residual stream
//!   ([`Hooks::branch`]: bypass adapters);
//! - a per-channel affine after a linear layer or LayerNorm ([`Hooks::affine`]: scale and shift), which the graph folds into
//!   that layer's epilogue or parameters.
//!
//! State a hook keeps for its backward is a list of tensors it reads back in its own order.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::graph::Graph;
use super::ViTConfig;
use crate::error::Result;
use crate::gpu::{GpuTensor, Recorder};

/// What a forward hook keeps for its backward.
pub type Saved = Vec<GpuTensor>;

/// The gradients a backward accumulates, by tensor name (a tensor without an entry is not trained). It records
/// which ones the backward reached, so that a trained tensor no hook computes a gradient for is an error rather
/// than a silent zero.
pub struct Grads<'m> {
    map: &'m BTreeMap<String, GpuTensor>,
    reached: RefCell<BTreeSet<&'m str>>,
}

impl<'m> Grads<'m> {
    pub fn new(map: &'m BTreeMap<String, GpuTensor>) -> Self {
        Self {
            map,
            reached: RefCell::new(BTreeSet::new()),
        }
    }

    /// The gradient of `name` if it is trained; the backward then counts it as reached.
    pub fn get(&self, name: &str) -> Option<&'m GpuTensor> {
        let (k, v) = self.map.get_key_value(name)?;
        self.reached.borrow_mut().insert(k.as_str());
        Some(v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &'m String> {
        self.map.keys()
    }

    /// Trained tensors the backward has not reached.
    pub fn unreached(&self) -> Vec<&'m str> {
        let reached = self.reached.borrow();
        self.map
            .keys()
            .map(String::as_str)
            .filter(|k| !reached.contains(k))
            .collect()
    }
}

/// Where the tokens of a sequence lie: the prefix tokens with a position embedding (CLS, DeiT's distillation token;
/// none without a class token), the backbone's register tokens (DINOv2 with registers), then the method's prompts
/// (after every prefix token), then the image's patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLayout {
    /// CLS and the distillation token: 0, 1 or 2, at rows 0.. .
    pub prefix: usize,
    pub registers: usize,
    pub prompts: usize,
    pub patches: usize,
}

impl TokenLayout {
    /// Row of the class token, when there is one.
    pub fn cls(&self) -> Option<usize> {
        (self.prefix > 0).then_some(0)
    }

    pub fn prefix_rows(&self) -> Range<usize> {
        0..self.prefix
    }

    pub fn register_rows(&self) -> Range<usize> {
        self.prefix..self.prefix + self.registers
    }

    pub fn prompt_rows(&self) -> Range<usize> {
        let r = self.register_rows().end;
        r..r + self.prompts
    }

    pub fn patch_rows(&self) -> Range<usize> {
        self.patch_start()..self.total()
    }

    /// Tokens before the first patch (prefix tokens, registers and prompts).
    pub fn patch_start(&self) -> usize {
        self.prefix + self.registers + self.prompts
    }

    /// The first token an average pools (timm skips every prefix token and the registers; prompts are pooled).
    pub fn pool_start(&self) -> usize {
        self.prefix + self.registers
    }

    pub fn total(&self) -> usize {
        self.patch_start() + self.patches
    }
}

/// The two residual branches of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Beside attention: xm = x + attn(LN1 x) [+ branch].
    Attention,
    /// Beside the MLP: xo = xm + mlp(LN2 xm) [+ branch].
    Mlp,
}

/// What a side branch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchInput {
    /// The LayerNorm's output (LN1 x or LN2 xm).
    Normed,
    /// The residual stream entering the sub-block (x or xm).
    Residual,
}

/// A layer output a method may rescale per channel (y ← γ⊙y + β).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Site {
    PatchEmbed,
    Norm1(usize),
    Qkv(usize),
    Proj(usize),
    Norm2(usize),
    Fc1(usize),
    Fc2(usize),
    /// The final LayerNorm (`norm`, or `fc_norm` on average-pooled backbones).
    FinalNorm,
}

impl Site {
    /// The backbone module whose output this is (timm names).
    pub fn module(self, final_norm: &str) -> String {
        match self {
            Site::PatchEmbed => "patch_embed".into(),
            Site::Norm1(l) => format!("blocks.{l}.norm1"),
            Site::Qkv(l) => format!("blocks.{l}.attn.qkv"),
            Site::Proj(l) => format!("blocks.{l}.attn.proj"),
            Site::Norm2(l) => format!("blocks.{l}.norm2"),
            Site::Fc1(l) => format!("blocks.{l}.mlp.fc1"),
            Site::Fc2(l) => format!("blocks.{l}.mlp.fc2"),
            Site::FinalNorm => final_norm.into(),
        }
    }

    /// Every site of a backbone `depth` blocks deep, in forward order.
    pub fn all(depth: usize) -> Vec<Site> {
        let mut v = vec![Site::PatchEmbed];
        for l in 0..depth {
            v.extend([
                Site::Norm1(l),
                Site::Qkv(l),
                Site::Proj(l),
                Site::Norm2(l),
                Site::Fc1(l),
                Site::Fc2(l),
            ]);
        }
        v.push(Site::FinalNorm);
        v
    }
}

/// A per-channel scale γ and shift β.
pub struct Affine<'a> {
    pub scale: &'a GpuTensor,
    pub shift: &'a GpuTensor,
    /// The names of γ and β, which their gradients go under.
    pub names: [String; 2],
}

/// A tuning method's attachment to the graph. `train` is true in a training forward (keep what the backward
/// needs, apply dropout); the backward hooks run only after a training forward.
#[allow(unused_variables, clippy::too_many_arguments)]
pub trait Hooks: Send + Sync {
    /// Prompt tokens placed after CLS: the token layout.
    fn prompts(&self) -> usize {
        0
    }

    /// Refuses a graph the method cannot run on.
    fn check(&self, g: &Graph) -> Result<()> {
        Ok(())
    }

    /// Which of block l's LayerNorm outputs (LN1, LN2) the backward reads beyond the backbone's own needs, when
    /// `trained(name)` says which tensors get gradients.
    fn keeps_normed(&self, l: usize, trained: &dyn Fn(&str) -> bool) -> [bool; 2] {
        [false, false]
    }

    /// Floats per token the forward hooks keep in each block (for the memory budget).
    fn saved_floats_per_token(&self, c: &ViTConfig) -> usize {
        0
    }

    /// The prompt tokens [1, p, D] the token assembly writes after CLS.
    fn prompt_tokens<'a>(&self, g: &Graph<'a>) -> Result<Option<&'a GpuTensor>> {
        Ok(None)
    }

    /// After token assembly: x [n, T, D].
    fn tokens(&self, g: &Graph, rec: &mut Recorder, x: &GpuTensor, train: bool) -> Result<()> {
        Ok(())
    }

    /// Before block l: x [n, T, D] is the block's input, which the hook may change in place.
    fn block_input(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        x: &GpuTensor,
        train: bool,
    ) -> Result<()> {
        Ok(())
    }

    /// After block l's qkv projection of `normed` (LN1's output): may add into `qkv` [n·T, 3D].
    fn qkv(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        normed: &GpuTensor,
        qkv: &GpuTensor,
        train: bool,
    ) -> Result<Saved> {
        Ok(Vec::new())
    }

    /// What the side branch beside `branch` reads.
    fn branch_input(&self, branch: Branch) -> BranchInput {
        BranchInput::Normed
    }

    /// A side branch: may add f(input) into `out`, the sub-block's output (xm or xo).
    fn branch(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        branch: Branch,
        input: &GpuTensor,
        out: &GpuTensor,
        train: bool,
    ) -> Result<Saved> {
        Ok(Vec::new())
    }

    /// The per-channel affine after `site`, if the method has one there.
    fn affine<'a>(&self, g: &Graph<'a>, site: Site) -> Result<Option<Affine<'a>>> {
        Ok(None)
    }

    // The backward, in reverse order of the forward.

    /// Backward of `branch`: `dout` is the gradient of the sub-block's output; adds into `dinput`. `input` is
    /// the branch's input when the forward kept it (it keeps it when `keeps_normed` or the branch asks).
    fn branch_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        branch: Branch,
        saved: &Saved,
        dout: &GpuTensor,
        input: Option<&GpuTensor>,
        dinput: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        Ok(())
    }

    /// Backward of `qkv`: `dqkv` is the gradient of qkv; adds into `dnormed`, LN1's output gradient.
    fn qkv_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        saved: &Saved,
        dqkv: &GpuTensor,
        normed: Option<&GpuTensor>,
        dnormed: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        Ok(())
    }

    /// Backward of `block_input`: dx is the gradient of block l's input, which the hook may change in place.
    fn block_input_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        l: usize,
        dx: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        Ok(())
    }

    /// Backward of the token assembly's prompts: dx [n, T, D] is the gradient of the assembled tokens.
    fn tokens_backward(
        &self,
        g: &Graph,
        rec: &mut Recorder,
        dx: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        Ok(())
    }
}

/// The hooks of a tuning that attaches nothing (a linear probe, bias tuning, full fine-tuning: tensors that
/// replace the backbone's own by name).
pub struct NoHooks;

impl Hooks for NoHooks {}

/// A tuning's tensors on the GPU and the hooks that attach its method: what the graph reads of a tuning, named by
/// the tuned file (for bitfit and full fine-tuning they replace the backbone's own tensors of the same name).
pub struct Attached {
    pub num_classes: usize,
    pub params: BTreeMap<String, GpuTensor>,
    /// The tuned file's shape of each tensor (the patch-embedding weight is kept as a matrix on the GPU).
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub hooks: Box<dyn Hooks>,
}

/// GPU shape of a tuned tensor: the patch-embedding convolution weight is the matrix of its im2col matmul.
fn gpu_shape(name: &str, shape: &[usize]) -> Vec<usize> {
    if name == "patch_embed.proj.weight" && shape.len() == 4 {
        vec![shape[0], shape[1] * shape[2] * shape[3]]
    } else {
        shape.to_vec()
    }
}

impl Attached {
    /// Uploads `tensors` (host shapes as in the tuned file) to be attached by `hooks`.
    pub fn upload(
        gpu: &crate::gpu::Gpu,
        tensors: &BTreeMap<String, super::HostTensor>,
        num_classes: usize,
        hooks: Box<dyn Hooks>,
    ) -> Result<Self> {
        let mut params = BTreeMap::new();
        let mut shapes = BTreeMap::new();
        for (k, v) in tensors {
            params.insert(k.clone(), gpu.upload(&gpu_shape(k, &v.shape), &v.data)?);
            shapes.insert(k.clone(), v.shape.clone());
        }
        Ok(Self {
            num_classes,
            params,
            shapes,
            hooks,
        })
    }

    /// Zero-filled tensors shaped like every parameter (gradients, optimizer state).
    pub fn zeros_like(&self, gpu: &crate::gpu::Gpu) -> Result<BTreeMap<String, GpuTensor>> {
        self.params
            .iter()
            .map(|(k, v)| Ok((k.clone(), gpu.zeros(&v.shape)?)))
            .collect()
    }

    /// Reads every parameter back under the tuned file's names and shapes.
    pub fn download(&self, gpu: &crate::gpu::Gpu) -> Result<BTreeMap<String, super::HostTensor>> {
        super::download_named(gpu, &self.params, &self.shapes)
    }

    pub fn prompts(&self) -> usize {
        self.hooks.prompts()
    }
}
