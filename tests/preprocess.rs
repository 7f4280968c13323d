//! Image decoding and the eval transform.

use std::path::Path;

use vitune::model::resample::resize_bicubic;
use vitune::preprocess::{load_rgb, Transform};

fn demo(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/demo")
        .join(name)
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 40x20 with orientation 6 (rotate 90° clockwise): shown 20 wide, 40 high, red band on top.
    let img = load_rgb(&demo("rotated_exif.jpg")).expect("decodes");
    assert_eq!((img.width(), img.height()), (20, 40));
    let top = img.get_pixel(10, 2).0;
    let bottom = img.get_pixel(10, 37).0;
    assert!(top[0] > 200 && top[1] < 60, "top should be red: {top:?}");
    assert!(bottom[0] < 200, "bottom should not be red: {bottom:?}");
}

#[test]
fn eval_transform_gives_normalised_crop_of_the_right_size() {
    let t = Transform {
        size: (32, 32),
        crop_pct: 0.9,
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let batch = t
        .batch(&[demo("circle.png"), demo("square.png")])
        .expect("loads");
    assert_eq!(batch.shape, vec![2, 3, 32, 32]);
    assert!(batch.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    // The red circle sits in the middle: the centre pixel's red channel is high, blue low.
    let centre = 16 * 32 + 16;
    assert!(batch.data[centre] > 0.5 && batch.data[2 * 1024 + centre] < -0.3);
}

#[test]
fn bicubic_resize_keeps_constants_and_identity() {
    let plane = vec![0.25f32; 7 * 5];
    for aa in [true, false] {
        let out = resize_bicubic(&plane, 1, (7, 5), (3, 11), aa);
        assert!(
            out.iter().all(|v| (v - 0.25).abs() < 1e-6),
            "antialias {aa}"
        );
    }
    let ramp: Vec<f32> = (0..12).map(|i| i as f32).collect();
    assert_eq!(resize_bicubic(&ramp, 1, (3, 4), (3, 4), true), ramp);
}
