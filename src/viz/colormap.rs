//! Perceptual colormaps (matplotlib's inferno and viridis, sampled at 9 points and interpolated) and jet.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Colormap {
    Inferno,
    Viridis,
    Jet,
}

const INFERNO: [[f32; 3]; 9] = [
    [0.001, 0.000, 0.014],
    [0.122, 0.047, 0.283],
    [0.335, 0.060, 0.428],
    [0.534, 0.134, 0.416],
    [0.729, 0.213, 0.332],
    [0.893, 0.341, 0.200],
    [0.978, 0.541, 0.037],
    [0.973, 0.776, 0.173],
    [0.988, 0.998, 0.645],
];

const VIRIDIS: [[f32; 3]; 9] = [
    [0.267, 0.005, 0.329],
    [0.283, 0.141, 0.458],
    [0.254, 0.265, 0.530],
    [0.207, 0.372, 0.553],
    [0.164, 0.471, 0.558],
    [0.128, 0.567, 0.551],
    [0.135, 0.659, 0.518],
    [0.478, 0.821, 0.3185],
    [0.993, 0.906, 0.144],
];

impl Colormap {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "inferno" => Some(Self::Inferno),
            "viridis" => Some(Self::Viridis),
            "jet" => Some(Self::Jet),
            _ => None,
        }
    }

    pub const ALL: [Colormap; 3] = [Colormap::Inferno, Colormap::Viridis, Colormap::Jet];

    pub fn name(self) -> &'static str {
        match self {
            Self::Inferno => "inferno",
            Self::Viridis => "viridis",
            Self::Jet => "jet",
        }
    }

    /// RGB in 0..1 for v in 0..1.
    pub fn rgb(self, v: f32) -> [f32; 3] {
        let v = v.clamp(0.0, 1.0);
        match self {
            Self::Jet => {
                let f = |x: f32| (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0);
                [f(3.0), f(2.0), f(1.0)]
            }
            Self::Inferno => lerp_table(&INFERNO, v),
            Self::Viridis => lerp_table(&VIRIDIS, v),
        }
    }
}

fn lerp_table(t: &[[f32; 3]; 9], v: f32) -> [f32; 3] {
    let x = v * 8.0;
    let i = (x.floor() as usize).min(7);
    let f = x - i as f32;
    let mut out = [0.0; 3];
    for c in 0..3 {
        out[c] = t[i][c] * (1.0 - f) + t[i + 1][c] * f;
    }
    out
}
