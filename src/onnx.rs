//! An ONNX graph under construction, on the ONNX message types of a maintained crate (tract-onnx's prost
//! bindings of onnx.proto), and the hooks through which a tuning method adds what it cannot fold into weights.

use std::collections::BTreeMap;

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

use crate::error::Result;
use crate::model::hooks::{Branch, TokenLayout};
use crate::model::{HostTensor, ViTConfig};

/// The opset the exported graphs use: 17 brings `LayerNormalization`.
pub const OPSET: i64 = 17;

/// What a method's export hooks see: its tuned tensors and where the tokens lie.
pub struct ExportCtx<'a> {
    pub tensors: &'a BTreeMap<String, HostTensor>,
    pub config: &'a ViTConfig,
    pub layout: TokenLayout,
    /// The patch grid (rows, columns) at the export's input size.
    pub grid: (usize, usize),
}

impl ExportCtx<'_> {
    pub fn get(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).ok_or_else(|| {
            crate::Error::Internal(format!("the tuned tensors lack `{name}` at export"))
        })
    }
}

/// Where a method that changes the graph's structure (prompts, bypass branches) writes itself into the exported
/// graph. Everything that folds into the backbone's weights goes through `MethodSpec::merge` instead.
/// Every hook defaults to nothing.
pub trait OnnxHooks {
    /// Constant prompt tokens [1, p, D], placed after CLS.
    fn prompt_tokens(&self, _cx: &ExportCtx, _g: &mut OnnxGraph) -> Result<Option<String>> {
        Ok(None)
    }

    /// The input of block `l` [N, T, D].
    fn block_input(
        &self,
        _cx: &ExportCtx,
        _g: &mut OnnxGraph,
        _l: usize,
        x: String,
    ) -> Result<String> {
        Ok(x)
    }

    /// The sub-block's output `out` with the method's branch beside it added; `input` is what the branch reads
    /// (the method's `Hooks::branch_input`).
    fn branch(
        &self,
        _cx: &ExportCtx,
        _g: &mut OnnxGraph,
        _l: usize,
        _branch: Branch,
        _input: &str,
        out: String,
    ) -> Result<String> {
        Ok(out)
    }
}

/// Nodes and initializers in the order written; value names are unique.
#[derive(Default)]
pub struct OnnxGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    count: usize,
    /// The name prefix of the module being written (`blocks.3.attn`), for readable node names.
    scope: String,
}

/// An integer attribute.
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

/// A float tensor's value info with the given dimensions (`None` = the symbolic batch `N`).
pub fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(*v as i64),
                None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl OnnxGraph {
    /// Names nodes written until the next call after `scope`.
    pub fn scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.count += 1;
        if self.scope.is_empty() {
            format!("{hint}_{}", self.count)
        } else {
            format!("{}.{hint}_{}", self.scope, self.count)
        }
    }

    /// A float initializer holding `t`.
    pub fn constant(&mut self, name: &str, t: &HostTensor) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: t.shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: bytemuck::cast_slice(&t.data).to_vec(),
            ..Default::default()
        });
        name
    }

    /// A 1-D int64 initializer (shapes, axes, indices); `scalar` makes it 0-d (one value).
    pub fn int64s(&mut self, v: &[i64], scalar: bool) -> String {
        let name = self.fresh("i64");
        let dims = if scalar { vec![] } else { vec![v.len() as i64] };
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: DataType::Int64 as i32,
            int64_data: v.to_vec(),
            ..Default::default()
        });
        name
    }

    pub fn scalar(&mut self, v: f32) -> String {
        self.constant("scalar", &HostTensor::new(vec![], vec![v]))
    }

    /// One node with one output; returns the output's name (`output` if given, else a fresh one).
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: Option<&str>,
    ) -> String {
        let out = output.map(str::to_string).unwrap_or_else(|| self.fresh(op));
        let name = self.fresh(&format!("{op}_node"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    pub fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node(op, inputs, Vec::new(), None)
    }

    /// x·Wᵀ (+ b) for a PyTorch [out, in] weight, over the last axis of x.
    pub fn linear(&mut self, x: &str, w: &HostTensor, b: Option<&HostTensor>) -> String {
        let wt = self.constant("weight_t", &transposed(w));
        let y = self.op("MatMul", &[x, &wt]);
        match b {
            Some(b) => {
                let b = self.constant("bias", b);
                self.op("Add", &[&y, &b])
            }
            None => y,
        }
    }

    pub fn layer_norm(&mut self, x: &str, w: &HostTensor, b: &HostTensor, eps: f32) -> String {
        let w = self.constant("weight", w);
        let b = self.constant("bias", b);
        self.node(
            "LayerNormalization",
            &[x, &w, &b],
            vec![int("axis", -1), float("epsilon", eps)],
            None,
        )
    }

    /// Exact GELU, 0.5·x·(1 + erf(x/√2)) (opset 17 has no Gelu op).
    pub fn gelu(&mut self, x: &str) -> String {
        let r = self.scalar(std::f32::consts::FRAC_1_SQRT_2);
        let s = self.op("Mul", &[x, &r]);
        let e = self.op("Erf", &[&s]);
        let one = self.scalar(1.0);
        let e1 = self.op("Add", &[&e, &one]);
        let half = self.scalar(0.5);
        let hx = self.op("Mul", &[x, &half]);
        self.op("Mul", &[&hx, &e1])
    }

    /// QuickGELU, x·σ(1.702·x).
    pub fn quick_gelu(&mut self, x: &str) -> String {
        let k = self.scalar(1.702);
        let s = self.op("Mul", &[x, &k]);
        let g = self.op("Sigmoid", &[&s]);
        self.op("Mul", &[x, &g])
    }

    pub fn scale(&mut self, x: &str, s: f32) -> String {
        let s = self.scalar(s);
        self.op("Mul", &[x, &s])
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.int64s(shape, false);
        self.op("Reshape", &[x, &s])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![ints("perm", perm)], None)
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, vec![int("axis", axis)], None)
    }

    /// Tokens `start..end` (`None`: to the last) of x [N, T, D].
    pub fn tokens(&mut self, x: &str, start: usize, end: Option<usize>) -> String {
        let starts = self.int64s(&[start as i64], false);
        let ends = self.int64s(&[end.map(|e| e as i64).unwrap_or(i64::MAX)], false);
        let axes = self.int64s(&[1], false);
        self.op("Slice", &[x, &starts, &ends, &axes])
    }

    /// Channels `start..end` of x's last axis.
    pub fn channels(&mut self, x: &str, start: usize, end: usize) -> String {
        let starts = self.int64s(&[start as i64], false);
        let ends = self.int64s(&[end as i64], false);
        let axes = self.int64s(&[-1], false);
        self.op("Slice", &[x, &starts, &ends, &axes])
    }

    /// SwiGLU over the last axis: silu(g)·x for [g | x].
    pub fn swiglu(&mut self, u: &str, hidden: usize) -> String {
        let gate = self.channels(u, 0, hidden);
        let x = self.channels(u, hidden, 2 * hidden);
        let s = self.op("Sigmoid", &[&gate]);
        let silu = self.op("Mul", &[&gate, &s]);
        self.op("Mul", &[&silu, &x])
    }

    /// A constant [1, k, D] repeated over the batch of `like` [N, T, D].
    pub fn batched(&mut self, t: &str, like: &str, k: usize, d: usize) -> String {
        let shape = self.op("Shape", &[like]);
        let n = {
            let s = self.int64s(&[0], false);
            let e = self.int64s(&[1], false);
            self.op("Slice", &[&shape, &s, &e])
        };
        let kd = self.int64s(&[k as i64, d as i64], false);
        let target = self.concat(&[&n, &kd], 0);
        self.op("Expand", &[t, &target])
    }

    /// The finished graph, with its inputs and outputs.
    pub fn finish(
        self,
        name: &str,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
    ) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }
}

/// A 2-D tensor transposed.
pub fn transposed(w: &HostTensor) -> HostTensor {
    assert_eq!(w.shape.len(), 2, "a linear weight is 2-D");
    let (r, c) = (w.shape[0], w.shape[1]);
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = w.data[i * c + j];
        }
    }
    HostTensor::new(vec![c, r], out)
}
