//! The Vision Transformer: configuration, checkpoint loading (timm and Hugging Face layouts) and the GPU graph.

mod config;
mod graph;
pub mod hooks;
/// The graph for the training step (crate-internal).
pub(crate) mod graph_api {
    pub(crate) use super::graph::Graph;
    pub(crate) use super::saved::train_bytes_per_image;
}
mod load;
pub mod random;
pub mod resample;
mod saved;
mod tensor;
mod vit;

pub use config::{EvaNames, MlpAct, Pooling, Rope, RopeKind, ViTConfig, WeightFormat};
pub use graph::{download_named, Graph};
pub use load::{
    class_names, class_names_from, load_backbone, load_backbone_bytes, Backbone, LoadOptions,
    ModelError,
};
pub use tensor::HostTensor;
pub use vit::{ForwardOptions, ForwardOutput, GpuViT, POS_EMBED_ANTIALIAS};
