//! The desktop app (eframe with the wgpu renderer): build classes from your images, tune on your GPU with live
//! curves, see where the prompts look, try new images, export the tuned file. All GPU work runs on a worker
//! thread; the UI only sends commands and shows replies.

mod backbone;
pub mod files;
pub mod project;
mod projects;
mod replies;
mod tabs;
mod thumbs;
pub mod worker;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::train::Evaluation;
use project::Project;
use worker::{Command, MemoryChoice, Worker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Project,
    Tune,
    Attention,
    Try,
    Export,
    /// `vitune selftest` on the app's adapter.
    Gpu,
}

/// Attention-view choices.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionChoice {
    pub image: Option<PathBuf>,
    pub mode: String,
    pub layer: usize,
    pub head: String,
    pub prompt: Option<usize>,
    pub alpha: f32,
    pub colormap: String,
}

/// What the Tune tab shows of the runs: the current run's curves and progress, its result, the search behind it,
/// the last comparison.
#[derive(Default)]
pub struct RunView {
    /// When the current run's first report came (for the time left).
    pub run_started: Option<std::time::Instant>,
    pub training: bool,
    /// (step index, loss, accuracy) of every training step.
    pub curve: Vec<(f64, f64, f64)>,
    /// (step at the end of each epoch, validation accuracy).
    pub val_curve: Vec<(f64, f64)>,
    pub progress: f32,
    pub evaluation: Option<Evaluation>,
    pub trained_classes: Option<Vec<String>>,
    /// Images decoded of all, while a run decodes its images (the Tune tab shows a bar).
    pub decoding: Option<(usize, usize)>,
    /// The search behind the last training run (Auto).
    pub selection: Option<crate::select::Selection>,
    /// The search under way, from its plan until the run ends (its `selection` then takes its place).
    pub search: Option<SearchSoFar>,
    /// Epochs of the search run so far, of all it plans (the bar: later rungs run longer).
    pub search_epochs: (usize, usize),
    /// The last "Compare methods" result, ranked, and whether one is running.
    pub comparison: Option<Vec<crate::select::CompareRow>>,
    pub comparing: bool,
    pub steps_seen: usize,
    /// After a run that diverged: the learning rate a one-click retry uses (the run's divided by 10).
    pub retry_lr: Option<f32>,
    /// A run was asked for and has not reported yet: the previous run's curves stay until it does, so a run that
    /// fails to start leaves them.
    pub run_pending: bool,
}

/// A search under way, as the Tune tab shows it.
pub struct SearchSoFar {
    /// Settings scored so far, of all the rungs' settings (a setting counts once at each rung it runs).
    pub scored: usize,
    pub total: usize,
    /// The recipe's optimizer (a setting without its own trains with it) and what the rungs rank by.
    pub optimizer: crate::records::OptimizerKind,
    pub rank_by: crate::records::RankBy,
    /// Each setting at the last rung it was scored at, in the order they came.
    pub trials: Vec<crate::select::Trial>,
}

/// What the Attention tab shows: the maps drawn, the grid, a map shown large.
#[derive(Default)]
pub struct MapsView {
    /// The backbone's map and the tuned model's.
    pub images: Option<(egui::TextureHandle, Option<egui::TextureHandle>)>,
    /// The tuned model's class and probability for the image the maps show.
    pub prediction: Option<(String, f32)>,
    /// The grid view: which images ("mistakes" or a class name), and each one's map and top class.
    pub grid_source: String,
    pub grid: Vec<ShownTile>,
    pub grid_pending: bool,
    /// A map shown large (title, texture), until its window is closed.
    pub zoomed: Option<(String, egui::TextureHandle)>,
    /// The maps were made with the model before the current one.
    pub stale: bool,
}

/// What the Try tab shows: the images tried, newest first.
#[derive(Default)]
pub struct TrialView {
    pub predictions: Vec<ShownPrediction>,
    /// Top-class probability below which Try says "unknown" (0: never).
    pub unknown_below: f32,
    /// The path field.
    pub path: String,
    /// The results were made with the model before the current one.
    pub stale: bool,
}

/// The grid view's source for the validation images the model got wrong.
pub const GRID_MISTAKES: &str = "validation mistakes";
/// Most maps the grid view draws at once.
pub const GRID_MAX: usize = 24;

/// A grid tile on screen: the image, its map's texture, the tuned model's top class.
pub type ShownTile = (PathBuf, egui::TextureHandle, Option<worker::Scored>);

/// A tried image: its path, ranked (class, probability) list and heat-map texture.
pub type ShownPrediction = (PathBuf, Vec<(String, f32)>, egui::TextureHandle);

pub struct VituneApp {
    pub project: Project,
    /// The backbone row: loading, download progress, the hub list, a failed load's reason.
    pub backbone: backbone::BackbonePanel,
    /// The adapter the worker runs on, and whether it is a CPU driver.
    pub adapter: Option<(String, bool)>,
    /// The kernel variants in use (one line) and the autotuner's table of checks and rates.
    pub kernels: Option<(String, String)>,
    /// The CPU-adapter notice was dismissed.
    pub cpu_notice_dismissed: bool,
    /// File choices: the platform's dialog, or vitune's own browser where that cannot open.
    pub files: files::Files,
    pub project_path: Option<PathBuf>,
    pub tab: Tab,
    pub selected_class: usize,
    pub backbone_info: Option<String>,
    /// Attention heads of the loaded backbone (0 until one is loaded).
    pub backbone_heads: usize,
    /// The memory switches as the worker last reported them.
    pub memory: MemoryChoice,
    pub errors: Vec<String>,
    /// The last ONNX export and its self-check, for the export tab.
    pub last_onnx_export: Option<String>,
    pub status: String,
    pub attention: AttentionChoice,
    /// What the Tune tab shows of the runs.
    pub run: RunView,
    /// What the Attention tab shows.
    pub maps: MapsView,
    /// What the Try tab shows.
    pub trial: TrialView,
    /// The method of the model the worker holds (trained or imported).
    pub model_method: Option<crate::tuning::Method>,
    /// The last selftest report, and whether one is running.
    pub selftest: Option<crate::selftest::Report>,
    pub selftesting: bool,
    thumbnails: thumbs::Thumbnails,
    worker: Worker,
    /// The summary of the run restored with the project, shown once its tuned model is back.
    restored_summary: Option<String>,
    /// The project as last written to (or read from) `project_path`: edits save themselves when it differs.
    saved: Option<Project>,
    /// The class deleted last, with its place, until Undo puts it back or another is deleted.
    pub deleted_class: Option<(usize, project::ClassEntry)>,
    /// The "add from a path" field: a file or folder typed or pasted, for systems without a file dialog.
    pub path_to_add: String,
}

impl VituneApp {
    /// A new app around `project`, its worker started and its backbone loading.
    pub fn new(ctx: &egui::Context, project: Project, project_path: Option<PathBuf>) -> Self {
        Self::with_hub(
            ctx,
            project,
            project_path,
            crate::hub::HubConfig::from_env(),
        )
    }

    /// As `new`, with the hub and its cache given (tests point it at a stand-in on 127.0.0.1).
    pub fn with_hub(
        ctx: &egui::Context,
        project: Project,
        project_path: Option<PathBuf>,
        hub: crate::hub::HubConfig,
    ) -> Self {
        let c = ctx.clone();
        let worker = worker::spawn(move || c.request_repaint());
        let saved = project_path.as_ref().map(|_| project.clone());
        let mut app = Self {
            backbone: backbone::BackbonePanel::new(hub),
            files: files::Files::new(),
            adapter: None,
            kernels: None,
            cpu_notice_dismissed: false,
            project,
            project_path,
            tab: Tab::Project,
            selected_class: 0,
            backbone_info: None,
            backbone_heads: 0,
            memory: MemoryChoice::default(),
            errors: Vec::new(),
            last_onnx_export: None,
            status: "loading the backbone...".into(),
            attention: AttentionChoice {
                image: None,
                mode: "cls".into(),
                layer: usize::MAX,
                head: "mean".into(),
                prompt: None,
                alpha: 0.5,
                colormap: "inferno".into(),
            },
            run: RunView::default(),
            maps: MapsView::default(),
            trial: TrialView::default(),
            model_method: None,
            selftest: None,
            selftesting: false,
            thumbnails: thumbs::Thumbnails::new(ctx),
            worker,
            restored_summary: None,
            path_to_add: String::new(),
            deleted_class: None,
            saved,
        };
        app.load_project_backbone();
        app.restored()
    }

    /// The first report of a new run replaces the previous run's curves and metrics.
    fn begin_run_display(&mut self) {
        if std::mem::take(&mut self.run.run_pending) {
            self.run.run_started = Some(std::time::Instant::now());
            self.run.curve.clear();
            self.run.val_curve.clear();
            self.run.evaluation = None;
            self.run.progress = 0.0;
            self.run.steps_seen = 0;
        }
    }

    /// Whether `path` is the tuned model kept beside the project file.
    fn is_kept_model(&self, path: &Path) -> bool {
        self.project_path
            .as_deref()
            .is_some_and(|p| project::tuned_path(p) == path)
    }

    pub fn send(&mut self, cmd: Command) {
        if self.worker.commands.send(cmd).is_err() {
            self.errors.push(
                "the GPU worker stopped; restart vitune (your project is saved on exit)".into(),
            );
        }
    }

    /// Adds image files or folders to a class (what drag-and-drop and the file dialog do).
    pub fn add_images(&mut self, class: usize, paths: &[PathBuf]) {
        let n = self.project.add_images(class, paths);
        self.status = format!("added {n} images");
    }

    /// The file or folder typed in a path field (quotes trimmed), or `None` after saying why (nothing typed says
    /// nothing).
    fn typed_path(&mut self, field: &str) -> Option<PathBuf> {
        let typed = field.trim().trim_matches('"');
        if typed.is_empty() {
            return None;
        }
        let path = PathBuf::from(typed);
        if !path.exists() {
            self.errors
                .push(format!("no file or folder at {typed}: check the path"));
            return None;
        }
        Some(path)
    }

    /// Adds the file or folder typed in the path field to the selected class (a new class when there is none).
    pub fn add_typed_path(&mut self) {
        let Some(path) = self.typed_path(&self.path_to_add.clone()) else {
            return;
        };
        if self.project.classes.is_empty() {
            self.add_class();
        }
        let c = self.selected_class.min(self.project.classes.len() - 1);
        let n = self.project.add_images(c, std::slice::from_ref(&path));
        if n == 0 {
            self.errors.push(format!(
                "no new images at {} (png, jpg, webp, bmp, gif or tiff files, or a folder of them)",
                path.display()
            ));
        } else {
            self.status = format!("added {n} images to {}", self.project.classes[c].name);
            self.path_to_add.clear();
        }
    }

    /// Classifies the image, or the images of the folder, typed in the Try tab's path field.
    pub fn predict_typed_path(&mut self) {
        let Some(path) = self.typed_path(&self.trial.path.clone()) else {
            return;
        };
        let typed = path.display().to_string();
        let files = files::image_files_in(&[path]);
        if files.is_empty() {
            self.errors.push(format!(
                "no images at {typed} (png, jpg, webp, bmp, gif or tiff files, or a folder of them)"
            ));
            return;
        }
        self.trial.path.clear();
        self.predict(files);
    }

    /// Deletes class `index`; `undo_delete` puts it back.
    pub fn delete_class(&mut self, index: usize) {
        if index < self.project.classes.len() {
            let c = self.project.classes.remove(index);
            self.status = format!("deleted class {} ({} images)", c.name, c.images.len());
            self.deleted_class = Some((index, c));
            self.selected_class = self
                .selected_class
                .min(self.project.classes.len().saturating_sub(1));
        }
    }

    pub fn undo_delete(&mut self) {
        if let Some((index, c)) = self.deleted_class.take() {
            self.status = format!("class {} is back", c.name);
            let at = index.min(self.project.classes.len());
            self.project.classes.insert(at, c);
            self.selected_class = at;
        }
    }

    pub fn add_class(&mut self) {
        let name = self.project.fresh_class_name();
        self.project.classes.push(project::ClassEntry {
            name,
            images: Vec::new(),
        });
        self.selected_class = self.project.classes.len() - 1;
    }

    pub fn start_training(&mut self) {
        self.run.retry_lr = None;
        let p = self.project.clone();
        self.begin_run("training...", Command::Train(p));
    }

    /// Seconds left in the run, from the time it has taken for the part done (after a tenth of it).
    pub fn seconds_left(&self) -> Option<f64> {
        let started = self.run.run_started?;
        let p = self.run.progress as f64;
        (self.run.training && p > 0.1 && p < 1.0)
            .then(|| started.elapsed().as_secs_f64() * (1.0 - p) / p)
    }

    /// A new model (trained, continued or imported): what the views show was made with the one before.
    fn mark_views_stale(&mut self) {
        self.maps.stale = self.maps.images.is_some() || !self.maps.grid.is_empty();
        self.trial.stale = !self.trial.predictions.is_empty();
    }

    /// Trains again at learning rate `lr` (a diverged run's divided by 10), with the search off.
    pub fn retry_with_lr(&mut self, lr: f32) {
        self.project.settings.lr = Some(lr);
        self.project.settings.auto = false;
        self.start_training();
    }

    /// Sends a training command: the previous run's display stays until the new one reports.
    fn begin_run(&mut self, status: &str, cmd: Command) {
        self.run.run_pending = true;
        self.run.search_epochs = (0, 0);
        self.run.training = true;
        self.status = status.into();
        self.worker
            .stop
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.send(cmd);
    }

    /// Trains on from the current model (after moving or disabling the images it got wrong): same method and
    /// classes, the setting the last search chose, no new search.
    pub fn continue_training(&mut self) {
        let p = self.project.clone();
        self.begin_run(
            "training on from the current model...",
            Command::Continue(p),
        );
    }

    /// Moves the image at `path` into class `to` (from wherever it is) and takes it off the mistakes list.
    pub fn move_image(&mut self, path: &Path, to: usize) {
        match self.project.move_image(path, to) {
            Ok(()) => {
                let name = self.project.classes[to].name.clone();
                self.status = format!(
                    "moved {} to `{name}`; \"Continue training\" learns from it",
                    file_label(path)
                );
                self.drop_mistake(path);
            }
            Err(e) => self.errors.push(e.to_string()),
        }
    }

    /// Leaves the image at `path` out of training and validation, and takes it off the mistakes list.
    pub fn disable_image(&mut self, path: &Path) {
        if self.project.set_enabled(path, false) {
            self.status = format!("{} is no longer used", file_label(path));
            self.drop_mistake(path);
        } else {
            self.errors
                .push(format!("{} is not in the project", path.display()));
        }
    }

    fn drop_mistake(&mut self, path: &Path) {
        if let Some(e) = &mut self.run.evaluation {
            e.mistakes.retain(|m| m.path != path);
        }
    }

    /// Scores every method on the project's images (each with its own search when Auto is on); the ranked
    /// table arrives as `comparison`, each method's tuned file in a folder beside the project.
    pub fn start_compare(&mut self) {
        self.run.comparing = true;
        self.run.comparison = None;
        self.status = "comparing methods...".into();
        self.worker
            .stop
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let dir = self.compare_dir();
        self.send(Command::Compare(self.project.clone(), dir));
    }

    /// Where "Compare methods" writes each method's tuned file.
    fn compare_dir(&self) -> PathBuf {
        match &self.project_path {
            Some(p) => p.with_extension("compare"),
            None => std::env::temp_dir().join(format!("vitune-compare-{}", std::process::id())),
        }
    }

    /// Keeps a compared method: its tuned file becomes the app's model, and the project's method follows.
    pub fn keep_compared(&mut self, row: &crate::select::CompareRow) {
        let s = &mut self.project.settings;
        if s.method != row.method {
            s.method = row.method;
            s.options = crate::tuning::MethodOptions::defaults(row.method);
        }
        if let Some(path) = &row.tuned {
            self.send(Command::Import(path.clone()));
        }
    }

    /// Runs `vitune selftest` (with its speed figures unless `quick`) on the worker's adapter.
    pub fn start_selftest(&mut self, quick: bool) {
        self.selftesting = true;
        self.status = "running the selftest...".into();
        self.send(Command::Selftest { quick });
    }

    pub fn stop_training(&mut self) {
        self.worker
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.status = "stopping after this step...".into();
    }

    pub fn export_to(&mut self, path: PathBuf) {
        self.send(Command::Export(path));
    }

    /// Exports the tuning merged into a timm checkpoint (plain-ViT methods; others get an error saying to use ONNX).
    pub fn export_timm_to(&mut self, path: PathBuf) {
        self.send(Command::ExportTimm(path));
    }

    /// Exports the tuning as an ONNX model; the self-check's verdict comes back in the status and the export tab.
    pub fn export_onnx_to(&mut self, path: PathBuf) {
        self.status = format!("exporting {} and checking it...", path.display());
        self.last_onnx_export = None;
        self.send(Command::ExportOnnx(path));
    }

    pub fn import_from(&mut self, path: PathBuf) {
        self.send(Command::Import(path));
    }

    pub fn request_attention(&mut self) {
        let Some(image) = self.attention.image.clone() else {
            return;
        };
        let request = self.attention_request();
        self.send(Command::Attention { image, request });
    }

    /// The attention view's settings as a request.
    fn attention_request(&self) -> crate::job::AttentionRequest {
        let a = &self.attention;
        crate::job::AttentionRequest {
            mode: a.mode.clone(),
            layer: (a.layer != usize::MAX).then_some(a.layer),
            head: a.head.clone(),
            prompt: a.prompt,
            class: None,
            discard: 0.9,
            colormap: a.colormap.clone(),
            alpha: a.alpha,
        }
    }

    /// The grid view's images: the validation mistakes, or a class's enabled images (at most `GRID_MAX`).
    pub fn grid_images(&self, source: &str) -> Vec<PathBuf> {
        let paths: Vec<PathBuf> = if source == GRID_MISTAKES {
            self.run
                .evaluation
                .as_ref()
                .map(|e| e.mistakes.iter().map(|m| m.path.clone()).collect())
                .unwrap_or_default()
        } else {
            self.project
                .classes
                .iter()
                .filter(|c| c.name == source)
                .flat_map(|c| {
                    c.images
                        .iter()
                        .filter(|i| i.enabled)
                        .map(|i| i.path.clone())
                })
                .collect()
        };
        paths.into_iter().take(GRID_MAX).collect()
    }

    /// Draws the maps of the grid's images with the attention view's settings.
    pub fn request_grid(&mut self) {
        let images = self.grid_images(&self.maps.grid_source.clone());
        if images.is_empty() {
            self.errors
                .push(format!("`{}` has no images to map", self.maps.grid_source));
            return;
        }
        self.maps.grid_pending = true;
        self.status = format!("drawing {} maps...", images.len());
        let request = self.attention_request();
        self.worker
            .stop
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.send(Command::AttentionGrid { images, request });
    }

    pub fn predict(&mut self, paths: Vec<PathBuf>) {
        if !paths.is_empty() {
            self.send(Command::Predict(paths));
        }
    }

    /// A thumbnail's texture once decoded off the UI thread (None until then, and for a file that does not
    /// decode).
    pub fn thumbnail(&mut self, ctx: &egui::Context, path: &Path) -> Option<egui::TextureHandle> {
        self.thumbnails.get(ctx, path)
    }

    /// Why an image file does not decode, once it was tried.
    pub fn unreadable(&mut self, ctx: &egui::Context, path: &Path) -> Option<String> {
        self.thumbnails.unreadable(ctx, path)
    }

    /// Files that turned out unreadable are said at once, by name and reason, and left unused (a person can tick
    /// "use" again; it is not undone).
    fn take_unreadable(&mut self, ctx: &egui::Context) {
        for (path, why) in self.thumbnails.take_newly_unreadable(ctx) {
            for class in &mut self.project.classes {
                for item in class.images.iter_mut().filter(|i| i.path == path) {
                    item.enabled = false;
                }
            }
            self.errors.push(format!("not used: {why}"));
        }
    }

    /// Thumbnails still decoding.
    pub fn thumbnails_loading(&self) -> usize {
        self.thumbnails.loading()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        self.take_unreadable(&ctx);
        tabs::app_ui(self, ui);
        files::file_browser_ui(self, &ctx);
        self.autosave();
    }
}

fn texture_image(img: &image::RgbImage) -> egui::ColorImage {
    egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

impl eframe::App for VituneApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        VituneApp::ui(self, ui);
    }

    fn on_exit(&mut self) {
        self.autosave();
    }
}

/// Opens the app: `project` if given, else the last project, else the demo project.
pub fn run(project: Option<PathBuf>) -> Result<()> {
    let (proj, path) = match project.or_else(project::recall_last) {
        Some(p) => (Project::load(&p)?, Some(p)),
        None => {
            let (p, path) = projects::demo_project()?;
            (p, Some(path))
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1100.0, 760.0])
            .with_title("vitune"),
        ..Default::default()
    };
    eframe::run_native(
        "vitune",
        options,
        Box::new(move |cc| Ok(Box::new(VituneApp::new(&cc.egui_ctx, proj, path)))),
    )
    .map_err(|e| crate::Error::Input(format!("cannot open the window: {e}")))
}

/// A file's name for messages and lists ("the image" when it has none).
pub fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "the image".into())
}

/// "12 s", "3 min", "1 h 5 min".
fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// What Try says of one image's ranked classes: the top class, or "unknown" when its probability is below
/// `unknown_below`.
pub fn verdict(ranked: &[(String, f32)], unknown_below: f32) -> String {
    match ranked.first() {
        Some((name, p)) if *p < unknown_below => {
            format!("unknown (closest: {name}, {:.1}%)", 100.0 * p)
        }
        Some((name, p)) => format!("{name} ({:.1}%)", 100.0 * p),
        None => "no classes".into(),
    }
}
