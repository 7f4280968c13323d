//! The Vision Transformer: configuration, checkpoint loading (timm and Hugging Face layouts) and the GPU graph.

mod config;
mod load;
pub mod random;
pub mod resample;
mod tensor;
mod vit;

pub use config::{Pooling, ViTConfig, WeightFormat};
pub use load::{class_names, load_backbone, Backbone, LoadOptions, ModelError};
pub use tensor::HostTensor;
pub use vit::{ForwardOptions, ForwardOutput, GpuViT};
