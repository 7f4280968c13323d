//! Accuracy, per-class accuracy and the confusion matrix.

use serde::{Deserialize, Serialize};

/// Evaluation of predictions against labels over `classes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub classes: Vec<String>,
    pub accuracy: f64,
    /// Accuracy of each class (NaN-free: 0 for a class without images).
    pub per_class: Vec<f64>,
    /// confusion[true][predicted] counts.
    pub confusion: Vec<Vec<usize>>,
    pub images: usize,
    /// The top-1 probability of each image the model classified correctly (for the "unknown" threshold).
    #[serde(default)]
    pub correct_confidences: Vec<f32>,
    /// The images it got wrong, most confident first (where their paths are known).
    #[serde(default)]
    pub mistakes: Vec<Mistake>,
}

/// An image the model got wrong: its class, the predicted one and that prediction's probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mistake {
    pub path: std::path::PathBuf,
    pub truth: usize,
    pub predicted: usize,
    pub confidence: f32,
}

/// Probabilities from one row of logits.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Index of the largest value of each row of `logits` [n, c].
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
        .collect()
}

impl Evaluation {
    /// The evaluation of `logits` [n, classes] against `labels`, in one pass: accuracy and confusion, the top-1
    /// probability of each correct prediction (for the "unknown" threshold), and the images of `paths` it gets
    /// wrong, most confident first (a confident mistake is the likeliest mislabelled image).
    pub fn from_logits(
        classes: Vec<String>,
        logits: &[f32],
        labels: &[usize],
        paths: &[std::path::PathBuf],
    ) -> Self {
        let c = classes.len().max(1);
        let predicted = argmax_rows(logits, c);
        let mut e = Self::new(classes, &predicted, labels);
        for (i, (row, &truth)) in logits.chunks(c).zip(labels).enumerate() {
            let p = predicted[i];
            let confidence = softmax(row)[p];
            if p == truth {
                e.correct_confidences.push(confidence);
            } else if let Some(path) = paths.get(i) {
                e.mistakes.push(Mistake {
                    path: path.clone(),
                    truth,
                    predicted: p,
                    confidence,
                });
            }
        }
        e.mistakes
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        e
    }

    /// The confidence below which a prediction may be called "unknown" while keeping `keep` (e.g. 0.95) of the
    /// correct predictions on these images; `None` without any.
    pub fn suggested_threshold(&self, keep: f64) -> Option<f32> {
        let mut c = self.correct_confidences.clone();
        if c.is_empty() {
            return None;
        }
        c.sort_by(f32::total_cmp);
        let drop = ((1.0 - keep) * c.len() as f64).floor() as usize;
        c.get(drop.min(c.len() - 1)).copied()
    }

    pub fn new(classes: Vec<String>, predicted: &[usize], labels: &[usize]) -> Self {
        let c = classes.len();
        let mut confusion = vec![vec![0usize; c]; c];
        for (&p, &l) in predicted.iter().zip(labels) {
            if l < c && p < c {
                confusion[l][p] += 1;
            }
        }
        let per_class = confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: usize = row.iter().sum();
                if n == 0 {
                    0.0
                } else {
                    row[i] as f64 / n as f64
                }
            })
            .collect();
        let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
        let images = labels.len();
        Self {
            correct_confidences: Vec::new(),
            mistakes: Vec::new(),
            classes,
            accuracy: if images == 0 {
                0.0
            } else {
                correct as f64 / images as f64
            },
            per_class,
            confusion,
            images,
        }
    }

    /// A plain-text report: accuracy, per-class accuracy and the confusion matrix.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "accuracy {:.2}% on {} images",
            100.0 * self.accuracy,
            self.images
        );
        let width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 24);
        let _ = writeln!(s, "\nper class:");
        for (c, a) in self.classes.iter().zip(&self.per_class) {
            let n: usize = self.confusion[self.classes.iter().position(|x| x == c).unwrap_or(0)]
                .iter()
                .sum();
            let _ = writeln!(s, "  {c:<width$} {:6.2}%  ({n} images)", 100.0 * a);
        }
        let _ = writeln!(
            s,
            "\nconfusion (rows: true class, columns: predicted, in class order):"
        );
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:4}")).collect();
            let _ = writeln!(s, "  {c:<width$} {}", cells.join(""));
        }
        if !self.mistakes.is_empty() {
            let shown = self.mistakes.len().min(10);
            let _ = writeln!(
                s,
                "\nmistakes, most confident first ({shown} of {}; `--json` lists all):",
                self.mistakes.len()
            );
            for m in &self.mistakes[..shown] {
                let name = |i: usize| self.classes.get(i).map(String::as_str).unwrap_or("?");
                let _ = writeln!(
                    s,
                    "  {}: {} taken for {} ({:.0}%)",
                    m.path.display(),
                    name(m.truth),
                    name(m.predicted),
                    100.0 * m.confidence
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suggested "unknown" threshold keeps 95% of the correct predictions above it.
    #[test]
    fn the_unknown_threshold_keeps_most_correct_predictions() {
        let classes = vec!["a".to_string(), "b".to_string()];
        // 20 images of class a, correct with growing confidence; one wrong.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..20 {
            logits.extend([0.1 * i as f32 + 0.05, 0.0]);
            labels.push(0);
        }
        logits.extend([0.0, 1.0]);
        labels.push(0);
        let paths: Vec<std::path::PathBuf> =
            (0..21).map(|i| format!("img{i}.png").into()).collect();
        let e = Evaluation::from_logits(classes, &logits, &labels, &paths);
        // The one wrong image, with the probability of the class it was taken for.
        assert_eq!(e.mistakes.len(), 1);
        let m = &e.mistakes[0];
        assert_eq!(
            (m.path.to_str(), m.truth, m.predicted),
            (Some("img20.png"), 0, 1)
        );
        assert!((m.confidence - softmax(&[0.0, 1.0])[1]).abs() < 1e-6);
        assert!(
            e.table().contains("img20.png: a taken for b (73%)"),
            "{}",
            e.table()
        );
        assert_eq!(e.correct_confidences.len(), 20);
        let t = e.suggested_threshold(0.95).expect("a threshold");
        let kept = e.correct_confidences.iter().filter(|&&c| c >= t).count();
        assert_eq!(kept, 19, "95% of 20 correct images stay above {t}");
        assert!(Evaluation::new(vec![], &[], &[])
            .suggested_threshold(0.95)
            .is_none());
    }
}
