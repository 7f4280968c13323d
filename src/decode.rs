//! Reading image files within a stated memory bound. Every decode in vitune (the CLI, the app's thumbnails,
//! training, Try, the maps) goes through [`load_rgb_within`]: the header is read first, and
//!
//! - a JPEG decodes at a reduced scale (the DCT's 1/2, 1/4 or 1/8) when that still gives the size asked for, or
//!   when its full size is above the pixel limit: a 20000×20000 scan or a 200-megapixel phone photo reads in a
//!   few tens of megabytes;
//! - any other image above the pixel limit (a PNG "decompression bomb" of 40000×40000 in 1.5 MB) is refused with
//!   one sentence naming the file, its size and the limit, before any large allocation;
//! - HEIC/HEIF (iPhone photos) and AVIF are named and refused with the way out.
//!
//! The limit, [`DEFAULT_MAX_MEGAPIXELS`] = 64 MP, is 2^26 pixels: decoded as RGBA that is 256 MiB, the most one
//! full-size decode may take. It admits every phone's full-resolution photo up to 50 MP and a 600-dpi A4 scan
//! (35 MP); PIL refuses above 179 MP, which at 4 bytes a pixel is 716 MB for one image. `VITUNE_MAX_MEGAPIXELS`
//! overrides it. Decodes whose full-size buffer is above 64 MiB take turns (one at a time), so parallel decoding
//! stays under one large image plus the small ones the other threads hold.

use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::Mutex;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// File extensions taken as images, wherever files are gathered from folders: the formats read, and HEIC/HEIF
/// and AVIF, which are gathered so that they are named and refused rather than passed over in silence.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif",
];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The most pixels an image decodes to at full size, in millions (overridden by `VITUNE_MAX_MEGAPIXELS`).
pub const DEFAULT_MAX_MEGAPIXELS: f64 = 64.0;

/// Above this many bytes of decoded buffer, a decode waits for the other large ones.
const LARGE_DECODE_BYTES: u64 = 64 << 20;

static LARGE_DECODE: Mutex<()> = Mutex::new(());

/// The pixel limit in force.
pub fn max_pixels() -> u64 {
    let mp = std::env::var("VITUNE_MAX_MEGAPIXELS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(DEFAULT_MAX_MEGAPIXELS);
    (mp * 1e6) as u64
}

/// Decodes an image file (PNG, JPEG, WebP, BMP, GIF, TIFF) at full size (a JPEG above the pixel limit at the
/// largest DCT scale within it), applies its EXIF orientation and converts it to RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    load_rgb_within(path, None, max_pixels())
}

/// As [`load_rgb`], for a use that needs the shorter side to be at least `min_side` (a JPEG then decodes at the
/// smallest DCT scale that still gives it), with `limit` pixels at most for a full-size decode.
pub fn load_rgb_within(path: &Path, min_side: Option<u32>, limit: u64) -> Result<RgbImage> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::Input(format!("cannot open image {}: {e}", path.display())))?;
    let mut head = [0u8; 32];
    let n = read_up_to(&mut file, &mut head).map_err(Error::io("read image", path))?;
    if let Some(refusal) = refused_format(&head[..n], path) {
        return Err(Error::Input(refusal));
    }
    file.rewind().map_err(Error::io("read image", path))?;
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(Error::io("read image", path))?;
    if reader.format() == Some(ImageFormat::Jpeg) {
        return decode_jpeg(path, min_side, limit);
    }
    let mut decoder = reader.into_decoder().map_err(|e| Error::NotAnImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (w, h) = decoder.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels > limit {
        return Err(too_large(path, w, h, limit));
    }
    // A header that lies about its size still cannot take more than the bound.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some((limit * 4).max(1 << 20));
    decoder.set_limits(limits).map_err(|e| Error::NotAnImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let _turn = large_turn(decoder.total_bytes());
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| Error::NotAnImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_rgb8())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Holds the turn for a decode whose buffer is large.
fn large_turn(bytes: u64) -> Option<std::sync::MutexGuard<'static, ()>> {
    (bytes > LARGE_DECODE_BYTES).then(|| LARGE_DECODE.lock().unwrap_or_else(|p| p.into_inner()))
}

fn too_large(path: &Path, w: u32, h: u32, limit: u64) -> Error {
    Error::Input(format!(
        "{} is {w}×{h} ({:.0} megapixels), above vitune's limit of {:.0} megapixels for this format: \
         scale it down (or save it as JPEG, which vitune reads at a reduced scale), or raise the limit with \
         VITUNE_MAX_MEGAPIXELS",
        path.display(),
        w as f64 * h as f64 / 1e6,
        limit as f64 / 1e6
    ))
}

/// HEIC/HEIF and AVIF, named by their ISO-BMFF brand, with the way out.
fn refused_format(head: &[u8], path: &Path) -> Option<String> {
    if head.len() < 12 || &head[4..8] != b"ftyp" {
        return None;
    }
    let brand = &head[8..12];
    let heif = [
        &b"heic"[..],
        b"heix",
        b"hevc",
        b"hevx",
        b"heim",
        b"heis",
        b"hevm",
        b"hevs",
        b"mif1",
        b"msf1",
    ];
    if brand == b"avif" || brand == b"avis" {
        return Some(format!(
            "{} is an AVIF image, which vitune does not read: convert it to PNG or JPEG (for example with \
             `avifdec`, or any image editor's export)",
            path.display()
        ));
    }
    if heif.contains(&brand) {
        return Some(format!(
            "{} is a HEIC/HEIF photo (the iPhone's default format), which vitune does not read: export it as \
             JPEG (Photos' Export, or on the iPhone Settings > Camera > Formats > Most Compatible), or convert it \
             with `heif-convert`",
            path.display()
        ));
    }
    None
}

/// A JPEG at the smallest DCT scale (1, 1/2, 1/4, 1/8) whose shorter side is still `min_side` or more (full
/// size when `None`), and at least that scale which fits `limit` pixels.
fn decode_jpeg(path: &Path, min_side: Option<u32>, limit: u64) -> Result<RgbImage> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{} is not a decodable image: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(Error::io("read image", path))?;
    let mut d = jpeg_decoder::Decoder::new(BufReader::new(file));
    d.read_info().map_err(|e| bad(&e))?;
    let info = d.info().ok_or_else(|| bad(&"no header"))?;
    let (w, h) = (info.width as u32, info.height as u32);
    let fits = |denom: u32| (w.div_ceil(denom) as u64) * (h.div_ceil(denom) as u64) <= limit;
    let denom = [8u32, 4, 2, 1]
        .into_iter()
        .find(|&k| match min_side {
            Some(side) => w.min(h) / k >= side,
            None => false,
        })
        .unwrap_or(1);
    let denom = [denom, 2, 4, 8]
        .into_iter()
        .filter(|&k| k >= denom)
        .find(|&k| fits(k))
        .ok_or_else(|| too_large(path, w, h, limit * 64))?;
    // A progressive JPEG keeps its coefficients at full size while it decodes, whatever the output scale.
    if info.coding_process == jpeg_decoder::CodingProcess::DctProgressive
        && w as u64 * h as u64 > limit
    {
        return Err(Error::Input(format!(
            "{} is a progressive JPEG of {w}×{h} ({:.0} megapixels), above vitune's limit of {:.0} megapixels \
             for progressive JPEGs (they decode at full size): save it as a baseline JPEG or scale it down, or \
             raise the limit with VITUNE_MAX_MEGAPIXELS",
            path.display(),
            w as f64 * h as f64 / 1e6,
            limit as f64 / 1e6
        )));
    }
    if denom > 1 {
        let (rw, rh) = (w.div_ceil(denom), h.div_ceil(denom));
        d.scale(
            rw.min(u16::MAX as u32) as u16,
            rh.min(u16::MAX as u32) as u16,
        )
        .map_err(|e| bad(&e))?;
    }
    let out_bytes = (w.div_ceil(denom) as u64) * (h.div_ceil(denom) as u64) * 4;
    let _turn = large_turn(out_bytes);
    let pixels = d.decode().map_err(|e| bad(&e))?;
    let info = d.info().ok_or_else(|| bad(&"no header"))?;
    let (ow, oh) = (info.width as u32, info.height as u32);
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|v| [v[0], v[0], v[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                // Adobe's CMYK JPEGs store the inks inverted.
                let k = p[3] as u32;
                [
                    (p[0] as u32 * k / 255) as u8,
                    (p[1] as u32 * k / 255) as u8,
                    (p[2] as u32 * k / 255) as u8,
                ]
            })
            .collect(),
    };
    let img = RgbImage::from_raw(ow, oh, rgb).ok_or_else(|| bad(&"a short pixel buffer"))?;
    let orientation = d
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk);
    let mut img = DynamicImage::ImageRgb8(img);
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_rgb8())
}
