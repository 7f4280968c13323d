//! The search's regret on the glyph testbed (`vitune bench regret`): for each method, shot count and seed, every
//! setting of the search's grid trained to the end on all the shots and scored on a fixed test set (the oracle),
//! beside the recipe's setting and what `--auto` chose. Regret = the oracle's test accuracy − `--auto`'s.

use std::sync::atomic::AtomicBool;

use super::{
    backbone, bench_options, glyph_recipe, glyph_samples, samples_job, test_accuracy, BenchInit,
    BenchMethod,
};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::job::{run_train, Init};
use crate::model::GpuViT;
use crate::select::grid::search_grid;
use crate::select::{apply_candidate, Candidate, SearchOptions};
use crate::train::Recipe;
use crate::tuning::spt::SptKind;

/// What `bench regret` runs.
#[derive(Debug, Clone)]
pub struct RegretOptions {
    pub shots: Vec<usize>,
    pub seeds: usize,
    pub epochs: usize,
    pub test_per_class: usize,
    /// `target` or `shifted`.
    pub split: String,
    pub search: SearchOptions,
    /// A file of the oracle's scores from earlier runs (the runs are seeded, so a setting trained again on the same
    /// adapter scores the same): read first, appended to; a comparison of search options then costs only the
    /// searches.
    pub oracle_cache: Option<std::path::PathBuf>,
}

/// The oracle's test accuracies by setting, kept in a text file of `key<TAB>accuracy` lines.
struct OracleCache {
    path: Option<std::path::PathBuf>,
    known: std::collections::HashMap<String, f64>,
}

impl OracleCache {
    fn open(path: Option<&std::path::Path>) -> Result<Self> {
        let mut known = std::collections::HashMap::new();
        if let Some(p) = path.filter(|p| p.exists()) {
            let text = std::fs::read_to_string(p).map_err(Error::io("read", p))?;
            for line in text.lines() {
                if let Some((k, v)) = line.rsplit_once('\t') {
                    if let Ok(v) = v.parse() {
                        known.insert(k.to_string(), v);
                    }
                }
            }
        }
        Ok(Self {
            path: path.map(|p| p.to_path_buf()),
            known,
        })
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.known.get(key).copied()
    }

    fn put(&mut self, key: String, acc: f64) -> Result<()> {
        if let Some(p) = &self.path {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(Error::io("open", p))?;
            writeln!(f, "{key}\t{acc}").map_err(Error::io("write", p))?;
        }
        self.known.insert(key, acc);
        Ok(())
    }
}

/// One method at one shot count, means over seeds.
#[derive(Debug, Clone)]
pub struct RegretRow {
    pub label: String,
    pub shots: usize,
    /// Test accuracy of the recipe's setting, of `--auto`'s run, and of the grid's best setting.
    pub recipe: f64,
    pub auto: f64,
    pub oracle: f64,
    /// Mean (oracle − auto) over seeds.
    pub regret: f64,
    /// Mean rank (1 = the oracle's) of the chosen setting among the grid's, by test accuracy.
    pub rank: f64,
    pub settings: usize,
    /// The search's planned cost, in default runs.
    pub cost: f64,
}

impl RegretRow {
    pub fn markdown(rows: &[RegretRow]) -> String {
        let mut s = String::from(
            "| method | shots | recipe | --auto | oracle (grid's best) | regret | rank of choice | settings | search cost (default runs) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let pct = |v: f64| {
            if v.is_nan() {
                "–".to_string()
            } else {
                format!("{:.1}", 100.0 * v)
            }
        };
        for r in rows {
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} |\n",
                r.label,
                r.shots,
                pct(r.recipe),
                100.0 * r.auto,
                100.0 * r.oracle,
                100.0 * r.regret,
                r.rank,
                r.settings,
                r.cost
            ));
        }
        if rows.iter().any(|r| r.recipe.is_nan()) {
            s.push_str(
                "\n`compare --auto (method)`: --auto is the test accuracy of the method whose search scored best, \
                 the oracle that of the method whose --auto run scored best on the test set, settings the number \
                 of methods, cost all their searches'.\n",
            );
        }
        s
    }
}

/// Measures the search's regret for each of `methods` (see the module's documentation).
pub fn search_regret(
    gpu: &Gpu,
    methods: &[BenchMethod],
    o: &RegretOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<RegretRow>> {
    if let Some(m) = methods.iter().find(|m| m.init == BenchInit::Pvp) {
        return Err(Error::Input(format!(
            "bench regret does not pre-train PVP prompts: `{}` is measured by bench fewshot",
            m.label
        )));
    }
    let backbone = backbone()?;
    let size = backbone.config.image_size.0 as u32;
    let (classes, test) = super::glyph_samples(&o.split, o.test_per_class, 999_983, size)?;
    let vit = GpuViT::new(gpu, &backbone, None)?;
    let transform = crate::job::eval_transform(&backbone, None);
    let stop = AtomicBool::new(false);
    let score =
        |t: &crate::tuning::Tuning| test_accuracy(gpu, &vit, &transform, t, &test, classes.len());
    let mut cache = OracleCache::open(o.oracle_cache.as_deref())?;
    let mut rows = Vec::new();
    // Each `--auto` run: (shots, seed, its search's score, its test accuracy, its cost), by method.
    let mut picks: Vec<(usize, u64, f64, f64, f64)> = Vec::new();
    for m in methods {
        for &k in &o.shots {
            let (mut recipe_acc, mut auto_acc, mut oracle_acc, mut regret, mut rank, mut cost) =
                (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            let mut settings = 0;
            for seed in 0..o.seeds as u64 {
                let (_, train) = glyph_samples(&o.split, k, 17 + seed * 7919, size)?;
                let init = match m.init {
                    BenchInit::Spt => Init::Spt(SptKind::Mean),
                    _ => Init::Method,
                };
                let config = glyph_recipe(m.method, o.epochs, train.len(), seed);
                let job = samples_job(
                    &classes,
                    &train,
                    m.method,
                    bench_options(m.method),
                    init,
                    config,
                );
                let base = job.recipe();
                let optim = &base.config.optim;
                let default = Candidate {
                    lr: optim.lr,
                    weight_decay: optim.weight_decay,
                    prompts: None,
                    optimizer: None,
                    warm_head: false,
                };
                let grid = search_grid(
                    optim.kind,
                    optim.lr,
                    optim.weight_decay,
                    base.config.batch,
                    None,
                    o.search.prompt_adamw && m.method.uses_prompts(),
                    o.search.warm_head && m.method != crate::tuning::Method::Linear,
                );
                settings = grid.len();
                // The oracle: every setting to the end on all the shots, scored on the test set.
                let mut scored: Vec<(Candidate, f64)> = Vec::new();
                for c in &grid {
                    let key = format!(
                        "{}|{}|{} test/class|{} epochs|{}|{k} shots|seed {seed}|{}",
                        gpu.describe(),
                        o.split,
                        o.test_per_class,
                        o.epochs,
                        m.label,
                        c.describe()
                    );
                    if let Some(acc) = cache.get(&key) {
                        scored.push((*c, acc));
                        continue;
                    }
                    let mut r: Recipe = base.clone();
                    apply_candidate(&mut r, c, base.config.epochs, train.len());
                    let mut j =
                        samples_job(&classes, &train, r.method, r.options, r.init, r.config);
                    j.auto = None;
                    j.warm_head = r.warm_head;
                    // A setting that diverges before any epoch is kept gives no model: scored 0, as the search does.
                    let acc = match run_train(gpu, &backbone, &j, &stop, &mut |_| {}, &mut |_| {}) {
                        Ok(out) => score(&out.outcome.best)?,
                        Err(Error::Diverged { .. }) => 0.0,
                        Err(e) => return Err(e),
                    };
                    cache.put(key, acc)?;
                    scored.push((*c, acc));
                }
                let at = |c: &Candidate| {
                    scored
                        .iter()
                        .find(|(s, _)| {
                            (s.lr, s.weight_decay, s.optimizer, s.warm_head)
                                == (c.lr, c.weight_decay, c.optimizer, c.warm_head)
                        })
                        .map(|(_, a)| *a)
                };
                let best = scored.iter().map(|(_, a)| *a).fold(0.0, f64::max);
                // `--auto`: its search on the shots, then its own final run, scored on the same test set.
                let mut auto_job = job;
                auto_job.auto = Some(o.search.clone());
                // A final run that diverges before any epoch is kept scores 0, as a grid setting does (its
                // choice and cost are then unknown: NaN and 0).
                let mut chose = String::from("-");
                let (acc, chosen_rank, planned, search_score) =
                    match run_train(gpu, &backbone, &auto_job, &stop, &mut |_| {}, &mut |_| {}) {
                        Ok(out) => {
                            let acc = score(&out.outcome.best)?;
                            match &out.selection {
                                Some(sel) => {
                                    chose = sel.chosen.describe();
                                    let chosen = at(&sel.chosen).unwrap_or(acc);
                                    let above = scored.iter().filter(|(_, a)| *a > chosen).count();
                                    (acc, above as f64 + 1.0, sel.schedule.cost, sel.score)
                                }
                                None => (acc, f64::NAN, 0.0, f64::NEG_INFINITY),
                            }
                        }
                        Err(Error::Diverged { .. }) => (0.0, f64::NAN, 0.0, f64::NEG_INFINITY),
                        Err(e) => return Err(e),
                    };
                picks.push((k, seed, search_score, acc, planned));
                // The oracle's three best settings, and the search's choice, for the record.
                let mut ranked = scored.clone();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                let top: Vec<String> = ranked
                    .iter()
                    .take(3)
                    .map(|(c, a)| format!("{} {:.1}", c.describe(), 100.0 * a))
                    .collect();
                log(&format!(
                    "    oracle's best: {}; --auto chose {chose}",
                    top.join("; ")
                ));
                let recipe = at(&default).unwrap_or(f64::NAN);
                log(&format!(
                    "{:<16} {k}-shot seed {seed}: recipe {:.1}  --auto {:.1}  oracle {:.1}  rank {chosen_rank}  cost {planned:.1}",
                    m.label,
                    100.0 * recipe,
                    100.0 * acc,
                    100.0 * best
                ));
                let n = o.seeds as f64;
                recipe_acc += recipe / n;
                auto_acc += acc / n;
                oracle_acc += best / n;
                regret += (best - acc) / n;
                rank += chosen_rank / n;
                cost += planned / n;
            }
            rows.push(RegretRow {
                label: m.label.to_string(),
                shots: k,
                recipe: recipe_acc,
                auto: auto_acc,
                oracle: oracle_acc,
                regret,
                rank,
                settings,
                cost,
            });
        }
    }
    if methods.len() > 1 {
        for &k in &o.shots {
            rows.push(method_choice(&picks, k, o.seeds, methods.len()));
        }
    }
    Ok(rows)
}

/// `compare --auto`'s method choice at `shots`: on each seed the method whose search scored best (as `compare`
/// ranks them) against the method whose `--auto` run scored best on the test set. `picks` holds every `--auto`
/// run as (shots, seed, search score, test accuracy, cost), in method order.
fn method_choice(
    picks: &[(usize, u64, f64, f64, f64)],
    shots: usize,
    seeds: usize,
    methods: usize,
) -> RegretRow {
    let n = seeds as f64;
    let mut row = RegretRow {
        label: "compare --auto (method)".into(),
        shots,
        recipe: f64::NAN,
        auto: 0.0,
        oracle: 0.0,
        regret: 0.0,
        rank: 0.0,
        settings: methods,
        cost: 0.0,
    };
    for seed in 0..seeds as u64 {
        let runs: Vec<_> = picks
            .iter()
            .filter(|p| p.0 == shots && p.1 == seed)
            .collect();
        // The first of equal search scores, as a stable sort of compare's rows keeps it.
        let chosen = runs.iter().fold(
            None::<&&(usize, u64, f64, f64, f64)>,
            |best, r| match best {
                Some(b) if b.2 >= r.2 => Some(b),
                _ => Some(r),
            },
        );
        let best = runs.iter().map(|r| r.3).fold(0.0, f64::max);
        let acc = chosen.map_or(0.0, |c| c.3);
        row.auto += acc / n;
        row.oracle += best / n;
        row.regret += (best - acc) / n;
        row.rank += (runs.iter().filter(|r| r.3 > acc).count() as f64 + 1.0) / n;
        row.cost += runs.iter().map(|r| r.4).sum::<f64>() / n;
    }
    row
}

#[cfg(test)]
mod tests {
    use super::{method_choice, OracleCache};

    #[test]
    fn the_oracle_cache_keeps_scores_between_runs() {
        let dir = std::env::temp_dir().join(format!("vitune-oracle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("oracle.tsv");
        let _ = std::fs::remove_file(&path);
        let mut c = OracleCache::open(Some(&path)).unwrap();
        assert_eq!(c.get("a|lr 1e-3"), None);
        c.put("a|lr 1e-3".into(), 0.425).unwrap();
        c.put("b|lr 1e-2".into(), 0.0).unwrap();
        let again = OracleCache::open(Some(&path)).unwrap();
        assert_eq!(again.get("a|lr 1e-3"), Some(0.425));
        assert_eq!(again.get("b|lr 1e-2"), Some(0.0));
        assert_eq!(again.get("c"), None);
        // Without a file nothing is written, and what was put is still known for this run.
        let mut none = OracleCache::open(None).unwrap();
        none.put("x".into(), 0.5).unwrap();
        assert_eq!(none.get("x"), Some(0.5));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn method_choice_takes_the_best_search_score_and_measures_against_the_best_test_accuracy() {
        // Seed 0: the second method's search scores best and it is also best on test: no regret. Seed 1: the
        // first's search scores best (0.9) but the third is 0.2 better on test. Another shot count is ignored.
        let picks = [
            (4, 0, 0.5, 0.40, 1.0),
            (4, 0, 0.7, 0.60, 2.0),
            (4, 0, 0.6, 0.50, 3.0),
            (4, 1, 0.9, 0.30, 1.0),
            (4, 1, 0.4, 0.45, 2.0),
            (4, 1, 0.8, 0.50, 3.0),
            (2, 0, 1.0, 0.99, 9.0),
        ];
        let r = method_choice(&picks, 4, 2, 3);
        assert!((r.auto - 0.45).abs() < 1e-12, "{r:?}");
        assert!((r.oracle - 0.55).abs() < 1e-12, "{r:?}");
        assert!((r.regret - 0.10).abs() < 1e-12, "{r:?}");
        // Rank 1 on seed 0, 3 on seed 1.
        assert!((r.rank - 2.0).abs() < 1e-12, "{r:?}");
        assert!((r.cost - 6.0).abs() < 1e-12, "{r:?}");
        assert!(r.recipe.is_nan());
    }
}
