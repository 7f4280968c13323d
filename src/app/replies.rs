//! The worker's replies applied to the app: `poll` takes each and hands it to its one handler.

use std::path::PathBuf;

use super::worker::{Reply, Trained};
use super::{duration_text, texture_image, ShownPrediction, VituneApp};
use crate::select::{CompareRow, SearchEvent};
use crate::train::{EpochStats, TrainEvent};
use crate::tuning::Method;

impl VituneApp {
    /// Applies the worker's replies; returns whether anything arrived.
    pub fn poll(&mut self, ctx: &egui::Context) -> bool {
        let mut any = false;
        while let Ok(r) = self.worker.replies.try_recv() {
            any = true;
            if !matches!(r, Reply::Decoding { .. }) {
                self.run.decoding = None;
            }
            self.apply(ctx, r);
        }
        any
    }

    fn apply(&mut self, ctx: &egui::Context, r: Reply) {
        match r {
            Reply::Decoding { done, total } => {
                self.run.decoding = (done < total).then_some((done, total));
                if done < total {
                    self.status = format!("decoding images: {done} of {total}");
                }
            }
            Reply::Memory(m) => {
                self.memory = m;
                self.status = "memory settings applied".into();
            }
            Reply::Backbone {
                spec,
                description,
                heads,
            } => self.backbone_loaded(spec, description, heads),
            Reply::BackboneFailed { spec, error } => self.backbone_failed(spec, error),
            Reply::Adapter { description, cpu } => self.adapter = Some((description, cpu)),
            Reply::Kernels { summary, table } => self.kernels = Some((summary, table)),
            Reply::Download(p) => {
                self.status = crate::hub::human_bytes(p.done) + " downloaded";
                self.backbone.download = Some(p);
            }
            Reply::Event(TrainEvent::Step {
                loss,
                accuracy,
                step,
                steps_per_epoch,
                epoch,
                images_per_s,
                ..
            }) => self.on_step(loss, accuracy, (epoch, step, steps_per_epoch), images_per_s),
            Reply::Event(TrainEvent::Search(e)) => self.on_search(e),
            Reply::Event(TrainEvent::Epoch(s)) => self.on_epoch(&s),
            Reply::Trained(t) => self.on_trained(t),
            Reply::Selftest(r) => {
                self.selftesting = false;
                self.status = if r.passed {
                    format!("selftest: all {} checks passed", r.checks.len())
                } else {
                    "selftest: some checks FAILED (GPU tab)".into()
                };
                self.selftest = Some(r);
            }
            Reply::Compared(rows) => self.on_compared(rows),
            Reply::Attention {
                image,
                before,
                after,
                prediction,
            } => {
                self.maps.prediction = prediction;
                let tex = |name: &str, img: &image::RgbImage| {
                    ctx.load_texture(name, texture_image(img), egui::TextureOptions::NEAREST)
                };
                let b = tex(&format!("before {}", image.display()), &before);
                let a = after
                    .as_ref()
                    .map(|i| tex(&format!("after {}", image.display()), i));
                self.maps.images = Some((b, a));
                self.maps.stale = false;
            }
            Reply::AttentionGrid(tiles) => {
                self.maps.grid_pending = false;
                self.maps.stale = false;
                self.maps.grid = tiles
                    .into_iter()
                    .map(|(path, img, pred)| {
                        let t = ctx.load_texture(
                            format!("grid {}", path.display()),
                            texture_image(&img),
                            egui::TextureOptions::LINEAR,
                        );
                        (path, t, pred)
                    })
                    .collect();
                self.status = format!("{} maps drawn", self.maps.grid.len());
            }
            Reply::Predictions(p) => {
                self.trial.stale = false;
                // Newest first; earlier results stay below until cleared.
                let mut shown: Vec<ShownPrediction> = p
                    .into_iter()
                    .map(|(path, ranked, img)| {
                        let t = ctx.load_texture(
                            path.display().to_string(),
                            texture_image(&img),
                            egui::TextureOptions::NEAREST,
                        );
                        (path, ranked, t)
                    })
                    .collect();
                shown.append(&mut self.trial.predictions);
                self.trial.predictions = shown;
            }
            // The model kept with the project is written quietly after each run.
            Reply::Exported(p) if self.is_kept_model(&p) => {}
            Reply::Exported(p) => self.status = format!("exported {}", p.display()),
            Reply::ExportedOnnx(r) => {
                let line = format!("exported {}: {}", r.path.display(), r.check.describe());
                self.status = line.clone();
                self.last_onnx_export = Some(line);
            }
            Reply::Imported {
                path,
                classes,
                method,
            } => self.on_imported(path, classes, method),
            Reply::Diverged { message, lr } => {
                self.run.training = false;
                self.run.run_pending = false;
                self.run.search = None;
                self.status =
                    "the run diverged: nothing was trained (see the message above)".into();
                self.errors.push(message);
                self.run.retry_lr = Some(lr / 10.0);
            }
            Reply::Error(e) => self.on_error(e),
        }
    }

    /// A training step: the curves, the bar and the time left.
    fn on_step(
        &mut self,
        loss: f64,
        accuracy: f64,
        (epoch, step, steps_per_epoch): (usize, usize, usize),
        images_per_s: f64,
    ) {
        self.begin_run_display();
        self.run.steps_seen += 1;
        self.run
            .curve
            .push((self.run.steps_seen as f64, loss, accuracy));
        let epochs = self.project.settings.epochs;
        let total = (epochs * steps_per_epoch).max(1);
        let done = epoch * steps_per_epoch + step + 1;
        // After a search the bar goes on from where the search left it: the search's epochs and this run's share
        // one scale.
        let search = self.run.search_epochs.1 * steps_per_epoch;
        self.run.progress = ((search + done) as f32 / (search + total) as f32).min(1.0);
        if self.run.search.is_none() {
            let left = total.saturating_sub(done) as f64 * self.project.settings.batch as f64
                / images_per_s.max(1e-9);
            self.status = format!(
                "epoch {} of {epochs} · loss {loss:.3} · {images_per_s:.0} images/s · about {} left",
                epoch + 1,
                duration_text(left)
            );
        }
    }

    /// The search's plan and each setting it scored.
    fn on_search(&mut self, e: SearchEvent) {
        match &e {
            SearchEvent::Planned {
                schedule,
                optimizer,
                rank_by,
                ..
            } => {
                self.begin_run_display();
                self.run.search = Some(super::SearchSoFar {
                    scored: 0,
                    total: schedule.rungs.iter().map(|r| r.candidates).sum(),
                    optimizer: *optimizer,
                    rank_by: *rank_by,
                    trials: Vec::new(),
                });
                let epochs = schedule.rungs.iter().map(|r| r.candidates * r.epochs);
                self.run.search_epochs = (0, epochs.sum());
            }
            SearchEvent::Trial { trial, .. } => {
                if let Some(s) = &mut self.run.search {
                    s.scored += 1;
                    // A setting that goes on to a later rung replaces its earlier score.
                    s.trials.retain(|t| t.candidate != trial.candidate);
                    s.trials.push(trial.clone());
                }
                let (ran, total) = &mut self.run.search_epochs;
                *ran += trial.epochs;
                let all = *total + self.project.settings.epochs;
                self.run.progress = *ran as f32 / all.max(1) as f32;
            }
            SearchEvent::Note(_) => {}
        }
        // One counter, the body's: settings scored of all the rungs' settings.
        self.status = match (&e, &self.run.search) {
            (SearchEvent::Trial { trial, .. }, Some(s)) => format!(
                "choosing the learning rate: {} of {} settings scored (the last: lr {:.2e}, wd {:.0e}, \
                 {:.1}%)",
                s.scored,
                s.total,
                trial.candidate.lr,
                trial.candidate.weight_decay,
                100.0 * trial.mean
            ),
            _ => e.status(),
        };
    }

    fn on_epoch(&mut self, s: &EpochStats) {
        if let Some(v) = s.val_accuracy {
            // At the step that ended the epoch, on the same axis as the step curves.
            self.run.val_curve.push((self.run.steps_seen as f64, v));
        }
        if self.run.search.is_none() {
            self.status = format!(
                "epoch {} of {} done · loss {:.3}{}",
                s.epoch + 1,
                self.project.settings.epochs,
                s.loss,
                s.val_accuracy
                    .map(|v| format!(" · validation {:.1}%", 100.0 * v))
                    .unwrap_or_default()
            );
        }
    }

    fn on_trained(&mut self, t: Trained) {
        self.run.training = false;
        if let Some(d) = &t.diverged {
            self.errors.push(format!(
                "{d}; \"Retry with lr\" in the Tune tab divides the learning rate by 10"
            ));
            self.run.retry_lr = Some(t.lr / 10.0);
        }
        self.model_method = Some(t.method);
        self.mark_views_stale();
        // A stopped run's bar stays where it stopped.
        if !t.stopped {
            self.run.progress = 1.0;
        }
        let why = if t.evaluation.is_some() {
            "best on validation"
        } else {
            "the last (no validation images)"
        };
        self.run.evaluation = t.evaluation;
        self.run.trained_classes = Some(t.classes);
        self.run.search = None;
        let chosen = t
            .selection
            .as_ref()
            .map(|s| format!("; {} chosen by the search", s.chosen.describe()))
            .unwrap_or_default();
        self.run.selection = t.selection;
        self.status = format!(
            "{}{} ({} trainable parameters; kept epoch {}, {why}{chosen})",
            if t.stopped { "stopped" } else { "trained" },
            if t.continued {
                " on from the previous model"
            } else {
                ""
            },
            t.parameters,
            t.best_epoch + 1
        );
        self.keep_results();
    }

    fn on_compared(&mut self, rows: Vec<CompareRow>) {
        self.run.comparing = false;
        // With Auto on, each method searched: the last method's search is over too.
        self.run.search = None;
        self.status = match rows.first() {
            Some(r) => format!(
                "compared {} methods: {} ranks first ({:.1}%)",
                rows.len(),
                r.label,
                100.0 * r.score
            ),
            None => "compared no methods".into(),
        };
        self.run.comparison = Some(rows);
    }

    fn on_imported(&mut self, path: PathBuf, classes: Vec<String>, method: Method) {
        self.model_method = Some(method);
        self.mark_views_stale();
        self.status = match self.restored_summary.take() {
            Some(s) if self.is_kept_model(&path) => format!("restored the last run: {s}"),
            _ => format!("imported {} ({} classes)", path.display(), classes.len()),
        };
        self.run.trained_classes = Some(classes);
    }

    /// An error: said in the messages; a run it ended is over, the model trained before it kept.
    fn on_error(&mut self, e: String) {
        if (self.run.training || self.run.comparing || self.selftesting)
            && !e.starts_with("skipped")
        {
            if self.run.training {
                self.status =
                    "the run ended with an error (above); any model trained before is kept".into();
            } else if self.run.comparing {
                self.status = "the comparison ended (see the message above)".into();
            }
            self.run.run_pending = false;
            self.run.training = false;
            self.run.comparing = false;
            self.selftesting = false;
            self.run.search = None;
        }
        if self.status.starts_with("exporting ") {
            self.status = "the export did not finish (see the message above)".into();
        }
        self.errors.push(e);
    }
}
