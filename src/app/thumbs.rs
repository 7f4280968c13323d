//! Thumbnails decoded off the UI thread: a 12-megapixel photo takes a good fraction of a second to decode, and a
//! project of hundreds must not freeze the window. Files are queued the first time they are shown; until decoded
//! they have no texture, and a file that does not decode is marked unreadable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Side of a thumbnail in pixels.
const SIDE: u32 = 64;

/// A thumbnail's size: the picture's own proportions, its longer side `SIDE`.
fn thumbnail_size((w, h): (u32, u32)) -> (u32, u32) {
    let scale = SIDE as f32 / w.max(h).max(1) as f32;
    let tw = ((w as f32 * scale).round() as u32).max(1);
    let th = ((h as f32 * scale).round() as u32).max(1);
    (tw, th)
}

enum Thumb {
    Loading,
    Ready(egui::TextureHandle),
    /// Why it does not decode.
    Unreadable(String),
}

pub struct Thumbnails {
    state: HashMap<PathBuf, Thumb>,
    queue: Sender<PathBuf>,
    done: Receiver<(PathBuf, Result<image::RgbImage, String>)>,
    /// Files found unreadable since the app last asked, with the reason.
    newly_unreadable: Vec<(PathBuf, String)>,
}

impl Thumbnails {
    /// Starts the decoding threads (they end with the cache); each decoded file asks `ctx` for a repaint.
    pub fn new(ctx: &egui::Context) -> Self {
        let (queue, jobs) = channel::<PathBuf>();
        let jobs = Arc::new(Mutex::new(jobs));
        let (finished, done) = channel();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 4);
        for _ in 0..threads {
            let (jobs, finished, ctx) = (jobs.clone(), finished.clone(), ctx.clone());
            let spawned = std::thread::Builder::new()
                .name("thumbnails".into())
                .spawn(move || loop {
                    let next = jobs.lock().ok().and_then(|r| r.recv().ok());
                    let Some(path) = next else {
                        return;
                    };
                    // A decoder that panics on a strange file marks it unreadable rather than leaving it loading.
                    let small = std::panic::catch_unwind(|| {
                        crate::decode::load_rgb_within(
                            &path,
                            Some(SIDE),
                            crate::decode::max_pixels(),
                        )
                        .map(|img| {
                            let (tw, th) = thumbnail_size(img.dimensions());
                            image::imageops::thumbnail(&img, tw, th)
                        })
                        .map_err(|e| e.to_string())
                    })
                    .unwrap_or_else(|_| {
                        Err(format!("{} made the image decoder fail", path.display()))
                    });
                    if finished.send((path, small)).is_err() {
                        return;
                    }
                    ctx.request_repaint();
                });
            // Without any thread the queue's receiver is dropped, and every file reads as unreadable with the
            // reason "the thumbnail threads stopped": nothing waits in silence.
            if let Err(e) = spawned {
                log::warn!("a thumbnail thread did not start: {e}");
            }
        }
        Self {
            state: HashMap::new(),
            queue,
            done,
            newly_unreadable: Vec::new(),
        }
    }

    /// Takes in what the threads decoded.
    fn receive(&mut self, ctx: &egui::Context) {
        while let Ok((path, img)) = self.done.try_recv() {
            let thumb = match img {
                Ok(i) => Thumb::Ready(ctx.load_texture(
                    path.display().to_string(),
                    super::texture_image(&i),
                    egui::TextureOptions::NEAREST,
                )),
                Err(why) => {
                    self.newly_unreadable.push((path.clone(), why.clone()));
                    Thumb::Unreadable(why)
                }
            };
            self.state.insert(path, thumb);
        }
    }

    fn ensure(&mut self, ctx: &egui::Context, path: &Path) {
        self.receive(ctx);
        if !self.state.contains_key(path) {
            let queued = self.queue.send(path.to_path_buf()).is_ok();
            let thumb = if queued {
                Thumb::Loading
            } else {
                Thumb::Unreadable("the thumbnail threads stopped".into())
            };
            self.state.insert(path.to_path_buf(), thumb);
        }
    }

    /// The thumbnail's texture once decoded (queued the first time it is asked for).
    pub fn get(&mut self, ctx: &egui::Context, path: &Path) -> Option<egui::TextureHandle> {
        self.ensure(ctx, path);
        match self.state.get(path) {
            Some(Thumb::Ready(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// Why the file does not decode, once it was tried.
    pub fn unreadable(&mut self, ctx: &egui::Context, path: &Path) -> Option<String> {
        self.ensure(ctx, path);
        match self.state.get(path) {
            Some(Thumb::Unreadable(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// The files found unreadable since the last call, with their reasons.
    pub fn take_newly_unreadable(&mut self, ctx: &egui::Context) -> Vec<(PathBuf, String)> {
        self.receive(ctx);
        std::mem::take(&mut self.newly_unreadable)
    }

    /// Files still being decoded.
    pub fn loading(&self) -> usize {
        self.state
            .values()
            .filter(|t| matches!(t, Thumb::Loading))
            .count()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thumbnails_keep_the_pictures_proportions() {
        assert_eq!(super::thumbnail_size((4000, 3000)), (64, 48));
        assert_eq!(super::thumbnail_size((3000, 4000)), (48, 64));
        assert_eq!(super::thumbnail_size((1, 60000)), (1, 64));
        assert_eq!(super::thumbnail_size((32, 32)), (64, 64));
    }
}
