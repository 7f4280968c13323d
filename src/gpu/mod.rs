//! The GPU runtime: adapter choice, buffer pool, pipeline cache, command recording and readback.

pub mod choices;
mod context;
mod pipelines;
mod pool;
mod recorder;
mod tensor;

pub use choices::{AttentionKernel, MatmulClass, MatmulKernel, RowKernel, TuneState, Tuned};
pub use context::{Gpu, GpuError};
pub use pipelines::Kernel;
pub use recorder::{Arg, KernelTimes, ReadHandle, Recorder, Work};
pub use tensor::{DType, GpuTensor};
