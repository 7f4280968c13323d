//! The GPU runtime: adapter choice, buffer pool, pipeline cache, command recording and readback.

mod context;
mod pipelines;
mod pool;
mod recorder;
mod tensor;

pub use context::{AttentionKernel, Gpu, GpuError, MatmulKernel, RowKernel};
pub use pipelines::Kernel;
pub use recorder::{Arg, KernelTimes, ReadHandle, Recorder, Work};
pub use tensor::{DType, GpuTensor};
