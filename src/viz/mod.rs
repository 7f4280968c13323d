//! Attention maps (CLS→patch, prompt→patch, rollout, gradient-weighted rollout), colormaps and overlays.

mod colormap;
mod compute;
mod maps;
mod overlay;

pub use colormap::Colormap;
pub use compute::{heat_map, image_attention, ImageAttention, MapStyle};
pub use maps::{attention_map, attention_map_in, fuse_heads, rollout, HeadFusion, MapMode};
pub use overlay::{overlay, upsample_bilinear};
