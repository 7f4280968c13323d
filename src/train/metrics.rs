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
        s
    }
}
