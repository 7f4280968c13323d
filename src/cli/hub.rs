//! `vitune pull` and `vitune models`, and the download progress every command shows for an `hf-hub:` backbone.

use std::io::{IsTerminal, Write};
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::Args;

use vitune::hub::{self, HubConfig, HubName, Progress};
use vitune::model::LoadOptions;
use vitune::words::{duration_words, human_bytes};

#[derive(Args)]
pub struct PullArgs {
    /// The hub model: ORG/NAME or ORG/NAME@REVISION (a branch, tag or commit), `hf-hub:` optional;
    /// `vitune models` lists backbones that load.
    pub name: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ModelsArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Downloads what vitune needs of a hub model into the shared cache (always asking the hub for the revision's
/// commit), then checks that it loads.
pub fn pull(a: PullArgs) -> Result<()> {
    let name = HubName::parse(&a.name)?;
    let cfg = HubConfig::from_env();
    let cancel = AtomicBool::new(false);
    let mut bar = ProgressBar::default();
    let snap = hub::pull(&cfg, &name, &mut |p| bar.show(p), &cancel)?;
    bar.finish();
    let loaded = hub::load_snapshot(&snap, &LoadOptions::default());
    if a.json {
        let v = serde_json::json!({
            "name": snap.pinned(),
            "commit": snap.commit,
            "folder": snap.dir,
            "weights": snap.weights,
            "files": hub::RepoCache::new(&cfg.cache, &name.repo).files(&snap.commit),
            "family": loaded.as_ref().ok().map(|b| b.config.family()),
            "error": loaded.as_ref().err().map(|e| e.to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{} is in the cache: {}", snap.pinned(), snap.dir.display());
        if let Ok(b) = &loaded {
            println!(
                "family {}, {} parameters, input {}x{}; use it as --backbone {}",
                b.config.family(),
                b.parameter_count(),
                b.config.image_size.0,
                b.config.image_size.1,
                name
            );
        }
    }
    loaded?;
    Ok(())
}

pub fn models(a: ModelsArgs) -> Result<()> {
    let cfg = HubConfig::from_env();
    let rows: Vec<_> = hub::curated()
        .iter()
        .map(|m| (m, m.cached_bytes(&cfg)))
        .collect();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(m, cached)| {
                serde_json::json!({
                    "name": m.spec(),
                    "repo": m.repo,
                    "revision": m.revision,
                    "title": m.title,
                    "family": m.family,
                    "parameters_millions": m.params_m,
                    "download_bytes_approx": m.download_bytes(),
                    "input": m.input,
                    "licence": m.licence,
                    "pick": m.pick,
                    "cached": cached.is_some(),
                    "cached_bytes": cached,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("Backbones vitune loads (cache: {}):", cfg.cache.display());
    for (m, cached) in &rows {
        let state = match cached {
            Some(n) => format!("in the cache, {}", human_bytes(*n)),
            None => format!("download ≈ {}", human_bytes(m.download_bytes())),
        };
        println!();
        println!("  {}", m.spec());
        println!(
            "    {} · {} · {:.1}M parameters · {} px · {} · {}",
            m.title, m.family, m.params_m, m.input, m.licence, state
        );
        println!("    {}", m.pick);
    }
    println!();
    println!("Use one as `--backbone hf-hub:ORG/NAME` (downloaded on first use), or `vitune pull ORG/NAME` first.");
    Ok(())
}

/// The download bar on stderr: one line redrawn on a terminal; elsewhere a line at each tenth, each ending in a
/// newline.
#[derive(Default)]
pub struct ProgressBar {
    drawn: bool,
    last_tenth: Option<(String, u64)>,
}

impl ProgressBar {
    pub fn show(&mut self, p: &Progress) {
        let line = progress_line(p);
        let mut err = std::io::stderr();
        if err.is_terminal() {
            write!(err, "\r{line:<100}").ok();
            err.flush().ok();
            self.drawn = true;
        } else {
            let tenth = p.total.map_or(0, |t| p.done * 10 / t.max(1));
            let key = (p.file.clone(), tenth);
            if self.last_tenth.as_ref() != Some(&key) {
                writeln!(err, "{line}").ok();
                self.last_tenth = Some(key);
            }
        }
    }

    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

pub fn progress_line(p: &Progress) -> String {
    let rate = format!("{}/s", human_bytes(p.bytes_per_s as u64));
    match p.total {
        Some(total) => {
            let frac = p.done as f64 / total.max(1) as f64;
            let filled = (frac * 24.0).round() as usize;
            let left = p
                .seconds_left()
                .map(|s| format!(", {} left", duration_words(s)))
                .unwrap_or_default();
            format!(
                "  {} [{}{}] {} of {}, {rate}{left}",
                p.file,
                "#".repeat(filled.min(24)),
                " ".repeat(24 - filled.min(24)),
                human_bytes(p.done),
                human_bytes(total)
            )
        }
        None => format!("  {} {}, {rate}", p.file, human_bytes(p.done)),
    }
}
