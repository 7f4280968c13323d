//! Image files that could take the machine down, and the formats phones and scanners write: a decompression bomb
//! is refused from its header, a large JPEG decodes at a reduced DCT scale, HEIC and AVIF are named with the way
//! out, TIFF reads; `vitune predict` goes on past a file it cannot read.

mod common;

use std::path::Path;

use vitune::decode::{load_rgb, load_rgb_within};

/// A one-colour 1-bit PNG of `side`×`side`: tiny on disk, `side`² × 3 bytes decoded.
fn bomb_png(path: &Path, side: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut enc = png::Encoder::new(file, side, side);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().expect("header");
    let mut stream = writer.stream_writer().expect("stream");
    let row = vec![0u8; (side as usize).div_ceil(8)];
    for _ in 0..side {
        std::io::Write::write_all(&mut stream, &row).expect("row");
    }
    stream.finish().expect("finish");
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    let dir = tempfile::tempdir().expect("tmp");
    let bomb = dir.path().join("bomb.png");
    bomb_png(&bomb, 20000);
    assert!(std::fs::metadata(&bomb).expect("meta").len() < 2_000_000);
    let err = load_rgb(&bomb)
        .expect_err("a 400-megapixel PNG decoded")
        .to_string();
    assert!(err.contains("bomb.png"), "{err}");
    assert!(err.contains("20000×20000"), "{err}");
    assert!(
        err.contains("above vitune's limit of 64 megapixels"),
        "{err}"
    );
    // Under the limit it decodes as before.
    let small = dir.path().join("small.png");
    bomb_png(&small, 300);
    assert_eq!(load_rgb(&small).expect("decodes").dimensions(), (300, 300));
}

#[test]
fn a_large_jpeg_decodes_at_a_reduced_scale() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("large.jpg");
    let img = image::RgbImage::from_fn(2000, 1500, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    img.save(&path).expect("save jpeg");
    // Full size when it fits the limit and nothing smaller is asked for.
    assert_eq!(
        load_rgb_within(&path, None, 4_000_000)
            .expect("full")
            .dimensions(),
        (2000, 1500)
    );
    // Above the limit: the largest DCT scale within it (1/2 here), never a refusal.
    assert_eq!(
        load_rgb_within(&path, None, 1_000_000)
            .expect("half")
            .dimensions(),
        (1000, 750)
    );
    // A working size of 300: the smallest scale whose shorter side is still 300 or more (1/4 gives 375; 1/8, 187).
    assert_eq!(
        load_rgb_within(&path, Some(300), 4_000_000)
            .expect("quarter")
            .dimensions(),
        (500, 375)
    );
    // The scaled image is the same picture: its mean colour stays within a few levels of the full decode's.
    let mean = |i: &image::RgbImage| {
        i.pixels().map(|p| p.0[2] as f64).sum::<f64>() / (i.width() * i.height()) as f64
    };
    let full = load_rgb_within(&path, None, 4_000_000).expect("full");
    let quarter = load_rgb_within(&path, Some(300), 4_000_000).expect("quarter");
    assert!((mean(&full) - mean(&quarter)).abs() < 3.0);
}

#[test]
fn heic_and_avif_are_named_with_the_way_out_and_tiff_reads() {
    let dir = tempfile::tempdir().expect("tmp");
    // The ISO-BMFF header an iPhone photo starts with (its brand says HEIC), then nothing decodable.
    let heic = dir.path().join("IMG_0001.HEIC");
    let mut bytes = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&heic, &bytes).expect("write");
    let err = load_rgb(&heic).expect_err("heic").to_string();
    assert!(err.contains("HEIC/HEIF"), "{err}");
    assert!(err.contains("export it as JPEG"), "{err}");
    let avif = dir.path().join("photo.avif");
    let mut bytes = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&avif, &bytes).expect("write");
    let err = load_rgb(&avif).expect_err("avif").to_string();
    assert!(err.contains("AVIF"), "{err}");
    let tiff = dir.path().join("scan.tif");
    image::RgbImage::from_pixel(40, 30, image::Rgb([10, 200, 30]))
        .save(&tiff)
        .expect("tiff");
    let img = load_rgb(&tiff).expect("tiff reads");
    assert_eq!(img.dimensions(), (40, 30));
    assert_eq!(img.get_pixel(5, 5).0, [10, 200, 30]);
}

#[test]
fn predict_goes_on_past_an_unreadable_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = |p: &Path| p.display().to_string();
    let good: Vec<_> = (0..2)
        .map(|i| {
            let p = dir.path().join(format!("good{i}.png"));
            image::RgbImage::from_pixel(40, 40, image::Rgb([i * 90, 60, 200]))
                .save(&p)
                .expect("png");
            p
        })
        .collect();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff not really a jpeg").expect("write");
    let backbone = common::fixture("timm_cls").join("model.safetensors");
    let (ok, out, err) = common::vitune(&[
        "predict",
        "--backbone",
        &s(&backbone),
        &s(&good[0]),
        &s(&bad),
        &s(&good[1]),
    ]);
    assert!(!ok, "one unreadable file should make the exit non-zero");
    assert!(
        out.contains("good0.png") && out.contains("good1.png"),
        "{out}"
    );
    assert!(err.contains("broken.jpg"), "{err}");
    assert!(err.contains("1 of 3 images could not be read"), "{err}");
    let (ok, out, _) = common::vitune(&[
        "predict",
        "--backbone",
        &s(&backbone),
        "--json",
        &s(&good[0]),
        &s(&bad),
    ]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v.as_array().expect("list").len(), 2);
    assert!(v[1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("broken.jpg")));
}
