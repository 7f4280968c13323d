//! VPT prompts (Jia et al. 2022): p tokens after CLS, no position embedding; deep replaces the prompt outputs
//! before every later layer with that layer's own prompts. Init uniform ±√(6 / (3·P² + D)).

use std::collections::BTreeMap;

use super::{uniform, Method, MethodOptions};
use crate::model::{HostTensor, ViTConfig};
use crate::rng::Rng;

pub fn shapes(method: Method, o: &MethodOptions, c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::from([("prompt_embeddings".to_string(), vec![1, o.prompts, c.dim])]);
    if method == Method::VptDeep && c.depth > 1 {
        s.insert(
            "deep_prompt_embeddings".to_string(),
            vec![c.depth - 1, o.prompts, c.dim],
        );
    }
    s
}

pub fn init(
    method: Method,
    o: &MethodOptions,
    c: &ViTConfig,
    rng: &mut Rng,
) -> BTreeMap<String, HostTensor> {
    let bound = (6.0 / (3 * c.patch * c.patch + c.dim) as f64).sqrt();
    shapes(method, o, c)
        .into_iter()
        .map(|(k, shape)| (k, uniform(rng, &shape, bound)))
        .collect()
}
