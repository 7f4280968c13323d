//! vitune: few-shot tuning of visual prompts and adapters on a frozen Vision Transformer, in WGSL on any
//! GPU that wgpu reaches.

pub mod app;
pub mod bench;
pub mod data;
pub mod decode;
pub mod demo;
pub mod error;
pub mod export;
pub mod gpu;
pub mod hub;
pub mod io;
pub mod job;
pub mod model;
pub mod onnx;
pub mod ops;
pub mod preprocess;
pub mod records;
pub mod rng;
pub mod select;
pub mod selftest;
pub mod train;
pub mod tuned;
pub mod tuning;
pub mod viz;
pub mod words;

pub use error::{Error, Result};
