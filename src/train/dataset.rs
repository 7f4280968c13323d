//! Data sets as class folders, K-shot sampling with a seed, and parallel decoding off the GPU thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::rng::Rng;

fn is_image(p: &Path) -> bool {
    crate::decode::is_image_file(p)
}

/// A folder with one sub-folder per class (the folder name is the class name) of images.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub classes: Vec<String>,
    /// (image path, class index), sorted by class then file name.
    pub items: Vec<(PathBuf, usize)>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(crate::Error::io("read folder", dir))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

impl Dataset {
    /// Reads the class folders of `root`. A class folder without images is an error naming it.
    pub fn from_folder(root: &Path) -> Result<Self> {
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let name = dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            let images: Vec<PathBuf> = sorted_entries(&dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            if images.is_empty() {
                return Err(Error::Input(format!(
                    "class `{name}` ({}) has no images (expected PNG, JPEG, WebP, BMP or GIF files)",
                    dir.display()
                )));
            }
            let idx = classes.len();
            classes.push(name);
            items.extend(images.into_iter().map(|p| (p, idx)));
        }
        if classes.is_empty() {
            return Err(Error::Input(format!(
                "{} has no class folders: expected one sub-folder of images per class",
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            items,
        })
    }

    /// Maps this set's classes onto `classes` (a training set's), failing on a class the model does not know.
    pub fn relabel(&mut self, classes: &[String]) -> Result<()> {
        let map: Vec<usize> = self
            .classes
            .iter()
            .map(|c| {
                classes.iter().position(|k| k == c).ok_or_else(|| {
                    Error::Input(format!(
                        "class `{c}` in {} is not one of the model's classes ({})",
                        self.root.display(),
                        classes.join(", ")
                    ))
                })
            })
            .collect::<Result<_>>()?;
        for item in &mut self.items {
            item.1 = map[item.1];
        }
        self.classes = classes.to_vec();
        Ok(())
    }

    /// K images per class drawn with `seed` (all of a class when it has fewer), and the rest, disjoint.
    pub fn k_shot(&self, k: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let labels: Vec<usize> = self.items.iter().map(|i| i.1).collect();
        k_shot(&labels, self.classes.len(), k, seed)
    }

    /// Training images with at most `shots` per class (all when unset).
    pub fn shot_count(&self, shots: Option<usize>) -> usize {
        (0..self.classes.len())
            .map(|c| {
                let n = self.items.iter().filter(|i| i.1 == c).count();
                shots.map_or(n, |k| n.min(k))
            })
            .sum()
    }
}

/// Indices of K items per class (of `classes`, by `labels`) drawn with `seed`, all of a class when it has fewer,
/// and the rest; both in ascending order. The CLI's folders and the app's projects split the same way.
pub fn k_shot(labels: &[usize], classes: usize, k: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let mut train = Vec::new();
    let mut rest = Vec::new();
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        rng.shuffle(&mut idx);
        let take = k.min(idx.len());
        train.extend_from_slice(&idx[..take]);
        rest.extend_from_slice(&idx[take..]);
    }
    train.sort_unstable();
    rest.sort_unstable();
    (train, rest)
}

/// The shorter side images are kept at for a model input of `size`: twice the input, which leaves
/// augmentation's crops their detail and keeps a 12-megapixel photo at ~0.8 MB instead of 36 MB for ViT-B/16.
pub fn working_side(size: (usize, usize)) -> u32 {
    (2 * size.0.max(size.1)) as u32
}

/// `img` with its shorter side brought down to `max_side` (antialiased), or as it is when already smaller.
fn shrink(img: image::RgbImage, max_side: u32) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h);
    if short <= max_side {
        return img;
    }
    let scale = max_side as f64 / short as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
}

/// Decoded images with labels. Images that fail to decode are reported by path and left out.
#[derive(Clone, Default)]
pub struct Samples {
    pub images: Vec<Arc<image::RgbImage>>,
    pub labels: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Decodes `items` on worker threads, each image kept with its shorter side at most `max_side` (see
    /// [`working_side`]); returns the samples and one message per unreadable image.
    pub fn decode(items: &[(PathBuf, usize)], max_side: u32) -> (Self, Vec<String>) {
        Self::decode_with_progress(items, max_side, &mut |_, _| {})
    }

    /// `decode`, telling `progress(done, total)` at most every tenth of a second while the decoding threads work,
    /// and once at the end (from the calling thread, which the threads wake as they finish images).
    pub fn decode_with_progress(
        items: &[(PathBuf, usize)],
        max_side: u32,
        progress: &mut dyn FnMut(usize, usize),
    ) -> (Self, Vec<String>) {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(8);
        let chunk = items.len().div_ceil(threads).max(1);
        let limit = crate::decode::max_pixels();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let caller = std::thread::current();
        let results: Vec<Vec<(PathBuf, usize, Result<image::RgbImage>)>> =
            std::thread::scope(|s| {
                let handles: Vec<_> = items
                    .chunks(chunk)
                    .map(|part| {
                        let (done, caller) = (&done, caller.clone());
                        s.spawn(move || {
                            part.iter()
                                .map(|(p, l)| {
                                    let img =
                                        crate::decode::load_rgb_within(p, Some(max_side), limit)
                                            .map(|i| shrink(i, max_side));
                                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    caller.unpark();
                                    (p.clone(), *l, img)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let every = std::time::Duration::from_millis(100);
                let mut told = std::time::Instant::now() - every;
                // (A thread that panicked finishes early: its images are missing, not waited for.)
                while done.load(std::sync::atomic::Ordering::Relaxed) < items.len()
                    && !handles.iter().all(|h| h.is_finished())
                {
                    if told.elapsed() >= every {
                        progress(done.load(std::sync::atomic::Ordering::Relaxed), items.len());
                        told = std::time::Instant::now();
                    }
                    std::thread::park_timeout(every);
                }
                progress(items.len(), items.len());
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
        let mut out = Samples::default();
        let mut problems = Vec::new();
        for (path, label, r) in results.into_iter().flatten() {
            match r {
                Ok(img) => {
                    out.images.push(Arc::new(img));
                    out.labels.push(label);
                    out.paths.push(path);
                }
                Err(e) => problems.push(format!("skipped {}: {e}", path.display())),
            }
        }
        (out, problems)
    }

    /// In-memory samples (e.g. generated images).
    pub fn from_images(images: Vec<image::RgbImage>, labels: Vec<usize>) -> Self {
        let paths = (0..images.len())
            .map(|i| PathBuf::from(format!("#{i}")))
            .collect();
        Self {
            images: images.into_iter().map(Arc::new).collect(),
            labels,
            paths,
        }
    }

    pub fn subset(&self, idx: &[usize]) -> Self {
        Self {
            images: idx.iter().map(|&i| self.images[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            paths: idx.iter().map(|&i| self.paths[i].clone()).collect(),
        }
    }

    /// `shots` images per class drawn with `seed` (every image when unset) and the rest, drawn as a folder's
    /// shots are ([`k_shot`]); the rest is `None` when empty.
    pub fn k_shot_split(
        &self,
        classes: usize,
        shots: Option<usize>,
        seed: u64,
    ) -> (Self, Option<Self>) {
        let Some(k) = shots else {
            return (self.clone(), None);
        };
        let (tr, rest) = k_shot(&self.labels, classes, k, seed);
        (
            self.subset(&tr),
            (!rest.is_empty()).then(|| self.subset(&rest)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo larger than the working size keeps its aspect and loses only resolution; a small image is untouched.
    #[test]
    fn photos_are_kept_at_the_working_size() {
        let side = working_side((224, 224));
        assert_eq!(side, 448);
        let photo = image::RgbImage::from_fn(4000, 3000, |x, y| {
            image::Rgb([(x / 16) as u8, (y / 12) as u8, 128])
        });
        let kept = shrink(photo, side);
        assert_eq!(kept.dimensions(), (597, 448));
        // A smooth ramp survives the antialiased downscale: the middle pixel is about the middle value.
        let mid = kept.get_pixel(298, 224).0;
        assert!(
            (mid[0] as i32 - 125).abs() <= 2 && (mid[1] as i32 - 125).abs() <= 2,
            "{mid:?}"
        );
        let small = image::RgbImage::new(32, 40);
        assert_eq!(shrink(small, side).dimensions(), (32, 40));
    }

    /// Decoding reports its progress up to every image, never backwards; unreadable files are named and left out.
    #[test]
    fn decoding_reports_progress_and_names_unreadable_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut items = Vec::new();
        for i in 0..12 {
            let p = dir.path().join(format!("{i}.png"));
            image::RgbImage::from_pixel(40, 30, image::Rgb([i as u8 * 20, 0, 0]))
                .save(&p)
                .expect("save");
            items.push((p, i % 2));
        }
        let broken = dir.path().join("broken.png");
        std::fs::write(&broken, b"not a png").expect("write");
        items.push((broken, 0));
        let mut seen = Vec::new();
        let (s, problems) =
            Samples::decode_with_progress(&items, 64, &mut |d, t| seen.push((d, t)));
        assert_eq!(s.len(), 12);
        assert!(
            problems.len() == 1 && problems[0].contains("broken.png"),
            "{problems:?}"
        );
        assert_eq!(seen.last(), Some(&(13, 13)));
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    }
}
