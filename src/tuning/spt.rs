//! SPT — Self-Prompt Tuning (Wang et al. 2024): prompts start as prototypes of the downstream tokens. The frozen
//! backbone runs on the training images; layer 0's prompts come from the patch embeddings (before the position
//! embedding), layer i's from block i−1's output tokens without CLS.

use serde::{Deserialize, Serialize};

use super::{Method, Tuning};
use crate::error::{Error, Result};
use crate::model::HostTensor;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SptKind {
    /// Each image's tokens split into p contiguous windows (PyTorch adaptive pooling bounds), averaged; p of the
    /// pooled vectors picked at random.
    Mean,
    /// The same with max pooling.
    Max,
    /// p random tokens.
    Random,
    /// k-means centroids (k-means++ seeding, fixed iterations).
    Kmeans,
}

impl SptKind {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "spt-mean" => Some(Self::Mean),
            "spt-max" => Some(Self::Max),
            "spt-random" => Some(Self::Random),
            "spt-kmeans" => Some(Self::Kmeans),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "spt-mean",
            Self::Max => "spt-max",
            Self::Random => "spt-random",
            Self::Kmeans => "spt-kmeans",
        }
    }
}

const KMEANS_ITERATIONS: usize = 20;

/// Windows of PyTorch's adaptive pooling: [floor(i·m/p), ceil((i+1)·m/p)).
fn window(i: usize, m: usize, p: usize) -> (usize, usize) {
    (i * m / p, ((i + 1) * m).div_ceil(p))
}

/// p prototypes [p·D] of `tokens` [N, m, D].
pub fn prototypes(tokens: &HostTensor, p: usize, kind: SptKind, rng: &mut Rng) -> Vec<f32> {
    let (n, m, d) = (tokens.shape[0], tokens.shape[1], tokens.shape[2]);
    let row = |img: usize, t: usize| &tokens.data[(img * m + t) * d..(img * m + t + 1) * d];
    let pick = |pool: &[Vec<f32>], rng: &mut Rng| -> Vec<f32> {
        let mut idx: Vec<usize> = (0..pool.len()).collect();
        rng.shuffle(&mut idx);
        (0..p)
            .flat_map(|i| pool[idx[i % idx.len()]].clone())
            .collect()
    };
    match kind {
        SptKind::Mean | SptKind::Max => {
            let mut pooled = Vec::with_capacity(n * p);
            for img in 0..n {
                for w in 0..p {
                    let (a, b) = window(w, m, p);
                    let mut v = vec![
                        if kind == SptKind::Max {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        };
                        d
                    ];
                    for t in a..b {
                        for (acc, x) in v.iter_mut().zip(row(img, t)) {
                            *acc = if kind == SptKind::Max {
                                acc.max(*x)
                            } else {
                                *acc + x
                            };
                        }
                    }
                    if kind == SptKind::Mean {
                        v.iter_mut().for_each(|x| *x /= (b - a) as f32);
                    }
                    pooled.push(v);
                }
            }
            pick(&pooled, rng)
        }
        SptKind::Random => {
            let all: Vec<Vec<f32>> = (0..n * m).map(|i| row(i / m, i % m).to_vec()).collect();
            pick(&all, rng)
        }
        SptKind::Kmeans => kmeans(&tokens.data, d, p, rng),
    }
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

/// k-means with k-means++ seeding over the rows of `data` (width d).
pub fn kmeans(data: &[f32], d: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let n = data.len() / d;
    let pt = |i: usize| &data[i * d..(i + 1) * d];
    let mut centres: Vec<Vec<f32>> = vec![pt(rng.below(n)).to_vec()];
    let mut best = vec![f64::INFINITY; n];
    while centres.len() < k {
        let last = centres.last().cloned().unwrap_or_default();
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(dist2(pt(i), &last));
        }
        let total: f64 = best.iter().sum();
        let next = if total <= 0.0 {
            rng.below(n)
        } else {
            let mut r = rng.uniform() * total;
            let mut chosen = n - 1;
            for (i, b) in best.iter().enumerate() {
                r -= b;
                if r <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        };
        centres.push(pt(next).to_vec());
    }
    for _ in 0..KMEANS_ITERATIONS {
        let mut sums = vec![vec![0.0f64; d]; k];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            let c = (0..k)
                .min_by(|&a, &b| dist2(pt(i), &centres[a]).total_cmp(&dist2(pt(i), &centres[b])))
                .unwrap_or(0);
            counts[c] += 1;
            for (s, x) in sums[c].iter_mut().zip(pt(i)) {
                *s += *x as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                centres[c] = sums[c]
                    .iter()
                    .map(|s| (s / counts[c] as f64) as f32)
                    .collect();
            }
        }
    }
    centres.into_iter().flatten().collect()
}

/// Replaces `tuning`'s prompts with prototypes of `tokens` (as `ForwardOutput::tokens` gives them: layer 0's
/// patch embeddings [N,m,D], then block outputs [N,T,D] whose CLS row is dropped here).
pub fn apply(tuning: &mut Tuning, tokens: &[HostTensor], kind: SptKind, seed: u64) -> Result<()> {
    if !tuning.method.uses_prompts() {
        return Err(Error::Input(format!(
            "--init {} needs a prompt method (vpt-shallow or vpt-deep)",
            kind.name()
        )));
    }
    let p = tuning.options.prompts;
    let mut rng = Rng::new(seed ^ 0x5F7);
    let layer_tokens = |l: usize| -> Result<HostTensor> {
        let t = tokens
            .get(l)
            .ok_or_else(|| Error::Input(format!("no tokens for layer {l}")))?;
        if l == 0 {
            return Ok(t.clone());
        }
        // Only the patch tokens feed prompts: CLS and any register tokens are dropped.
        let (n, tt, d) = (t.shape[0], t.shape[1], t.shape[2]);
        let m = tokens[0].shape[1];
        let prefix = tt.saturating_sub(m);
        let mut data = Vec::with_capacity(n * m * d);
        for img in 0..n {
            data.extend_from_slice(&t.data[(img * tt + prefix) * d..(img + 1) * tt * d]);
        }
        Ok(HostTensor::new(vec![n, tt - prefix, d], data))
    };
    let first = prototypes(&layer_tokens(0)?, p, kind, &mut rng);
    if let Some(t) = tuning.tensors.get_mut("prompt_embeddings") {
        t.data = first;
    }
    if tuning.method == Method::VptDeep {
        if let Some(deep) = tuning.tensors.get("deep_prompt_embeddings").cloned() {
            let layers = deep.shape[0];
            let mut data = Vec::with_capacity(deep.numel());
            for l in 1..=layers {
                data.extend(prototypes(&layer_tokens(l)?, p, kind, &mut rng));
            }
            tuning.tensors.insert(
                "deep_prompt_embeddings".into(),
                HostTensor::new(deep.shape, data),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens [n, m, d] with distinct random values.
    fn tokens(n: usize, m: usize, d: usize, seed: u64) -> HostTensor {
        HostTensor::new(vec![n, m, d], Rng::new(seed).normal_vec(n * m * d, 1.0))
    }

    fn rows(v: &[f32], d: usize) -> Vec<&[f32]> {
        v.chunks(d).collect()
    }

    #[test]
    fn max_prototypes_are_window_maxima() {
        let (n, m, d, p) = (2, 7, 5, 3);
        let t = tokens(n, m, d, 1);
        let protos = prototypes(&t, p, SptKind::Max, &mut Rng::new(4));
        let mut maxima = Vec::new();
        for img in 0..n {
            for w in 0..p {
                let (a, b) = window(w, m, p);
                maxima.push(
                    (0..d)
                        .map(|k| {
                            (a..b)
                                .map(|tok| t.data[(img * m + tok) * d + k])
                                .fold(f32::NEG_INFINITY, f32::max)
                        })
                        .collect::<Vec<f32>>(),
                );
            }
        }
        let protos = rows(&protos, d);
        assert_eq!(protos.len(), p);
        for (i, proto) in protos.iter().enumerate() {
            assert!(
                maxima.iter().any(|m| m.as_slice() == *proto),
                "prototype {i} is no window's maximum"
            );
        }
        // p distinct windows (there are n·p to pick from).
        for i in 0..p {
            for j in 0..i {
                assert_ne!(protos[i], protos[j]);
            }
        }
    }

    #[test]
    fn random_prototypes_are_tokens() {
        let (n, m, d, p) = (3, 4, 6, 5);
        let t = tokens(n, m, d, 2);
        let protos = prototypes(&t, p, SptKind::Random, &mut Rng::new(9));
        let all = rows(&t.data, d);
        for (i, proto) in rows(&protos, d).into_iter().enumerate() {
            assert!(all.contains(&proto), "prototype {i} is not a token");
        }
    }

    #[test]
    fn kmeans_prototypes_find_separated_clusters() {
        // Three tight clusters far apart: the centroids are the cluster means, in some order.
        let (d, per, k) = (4, 20, 3);
        let centres = [
            [10.0f32, 0.0, 0.0, 0.0],
            [0.0, -10.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 10.0],
        ];
        let mut rng = Rng::new(3);
        let mut data = Vec::new();
        for c in &centres {
            for _ in 0..per {
                data.extend(c.iter().map(|x| x + 0.1 * rng.normal() as f32));
            }
        }
        let means: Vec<Vec<f32>> = (0..k)
            .map(|c| {
                (0..d)
                    .map(|j| {
                        (0..per).map(|i| data[(c * per + i) * d + j]).sum::<f32>() / per as f32
                    })
                    .collect()
            })
            .collect();
        let t = HostTensor::new(vec![1, k * per, d], data);
        let protos = prototypes(&t, k, SptKind::Kmeans, &mut Rng::new(5));
        for mean in &means {
            let closest = rows(&protos, d)
                .into_iter()
                .map(|p| dist2(p, mean))
                .fold(f64::INFINITY, f64::min);
            assert!(closest < 1e-8, "no centroid at cluster mean {mean:?}");
        }
    }

    #[test]
    fn deep_prototypes_skip_each_layers_cls_token() {
        // Layer 0 gives the patch embeddings [n, m, d]; deeper layers [n, 1+m, d] with a CLS row that must not
        // feed any prompt: here the CLS rows hold 1000 and no token else comes near it.
        let (n, m, d, p, depth) = (2, 4, 3, 2, 3);
        let mut layers = vec![tokens(n, m, d, 6)];
        for l in 1..depth {
            let mut t = tokens(n, 1 + m, d, 6 + l as u64);
            for img in 0..n {
                t.data[img * (1 + m) * d..(img * (1 + m) + 1) * d].fill(1000.0);
            }
            layers.push(t);
        }
        for kind in [
            SptKind::Mean,
            SptKind::Max,
            SptKind::Random,
            SptKind::Kmeans,
        ] {
            let mut options = crate::tuning::MethodOptions::defaults(Method::VptDeep);
            options.prompts = p;
            let mut t = Tuning {
                method: Method::VptDeep,
                options,
                num_classes: 2,
                tensors: [
                    (
                        "prompt_embeddings".to_string(),
                        HostTensor::zeros(&[1, p, d]),
                    ),
                    (
                        "deep_prompt_embeddings".to_string(),
                        HostTensor::zeros(&[depth - 1, p, d]),
                    ),
                ]
                .into_iter()
                .collect(),
            };
            apply(&mut t, &layers, kind, 1).expect("spt");
            let deep = &t.tensors["deep_prompt_embeddings"];
            assert_eq!(deep.shape, vec![depth - 1, p, d]);
            assert!(
                deep.data
                    .iter()
                    .chain(&t.tensors["prompt_embeddings"].data)
                    .all(|x| x.abs() < 100.0),
                "{}: a CLS row fed a prompt",
                kind.name()
            );
        }
    }
}
