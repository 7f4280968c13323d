//! Reading and writing named f32 tensors as safetensors files (the CLI's tensor in/out contract).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::HostTensor;

/// Reads every tensor of a safetensors file as f32 (F32, F16, BF16, and I64/I32 for labels).
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    read_tensors_with_metadata(path).map(|(t, _)| t)
}

/// The string map of a safetensors file's `__metadata__`.
pub type Metadata = std::collections::HashMap<String, String>;

/// Like `read_tensors`, with the file's `__metadata__` when it has one.
pub fn read_tensors_with_metadata(
    path: &Path,
) -> Result<(BTreeMap<String, HostTensor>, Option<Metadata>)> {
    let bytes = std::fs::read(path).map_err(crate::Error::io("read", path))?;
    tensors_and_metadata(&bytes, path)
}

/// Every tensor of safetensors bytes (named `path` in messages) as f32, as `read_tensors` reads a file.
pub fn tensors_from_bytes(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    tensors_and_metadata(bytes, path).map(|(t, _)| t)
}

fn tensors_and_metadata(
    bytes: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, HostTensor>, Option<Metadata>)> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
        Error::Input(format!(
            "{} is not a valid safetensors file (or is truncated): {e}",
            path.display()
        ))
    })?;
    let metadata = meta.metadata().clone();
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::Input(format!(
            "{} is not a valid safetensors file (or is truncated): {e}",
            path.display()
        ))
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let b = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::I64 => b
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            Dtype::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            other => {
                return Err(Error::Input(format!(
                "tensor `{name}` in {} has dtype {other:?}; expected F32, F16, BF16, I64 or I32",
                path.display()
            )))
            }
        };
        out.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok((out, metadata))
}

/// Writes f32 tensors (and optional string metadata) atomically: a temporary file beside the target, then a rename.
pub fn write_tensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                bytemuck::cast_slice(&t.data).to_vec(),
                t.shape.clone(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, b, s)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Input(format!("tensor `{k}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = safetensors::serialize(views, metadata)
        .map_err(|e| Error::Input(format!("cannot serialise tensors: {e}")))?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(crate::Error::io("write", path))
}

/// The tensor `name` of a map read from `path`, or an error naming both.
pub fn take(map: &mut BTreeMap<String, HostTensor>, name: &str, path: &Path) -> Result<HostTensor> {
    map.remove(name)
        .ok_or_else(|| Error::Input(format!("{} has no tensor `{name}`", path.display())))
}
