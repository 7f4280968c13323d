//! Backbones from the Hugging Face hub: `hf-hub:ORG/NAME[@REVISION]` names (timm's own prefix) wherever a backbone
//! path goes, downloaded with progress into the cache layout that Python's huggingface_hub keeps (so timm's and
//! transformers' downloads serve vitune and vitune's serve them), and the curated list of backbones vitune loads.
//!
//! The Rust client `hf-hub` was not used: its 0.5 line neither resumes nor checks the SHA-256 and reads
//! `HF_HUB_OFFLINE` not at all, and its 1.x line adds reqwest and a tokio runtime and still writes
//! without a hash check. The hub's protocol for one file is three requests, made here over ureq.

mod cache;
mod curated;
mod download;
mod error;
mod http;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use crate::words::human_bytes;
pub use cache::{is_commit, RepoCache};
pub use curated::{curated, CuratedModel};
pub use error::HubError;

use crate::model::{Backbone, LoadOptions};
use download::Fetch;
use http::{head_from, header, Answer, Client};

/// timm's prefix for a hub name.
pub const PREFIX: &str = "hf-hub:";

/// The files vitune takes beside the checkpoint, when the repo has them.
const SIDE_FILES: [&str; 2] = ["config.json", "preprocessor_config.json"];

/// A hub model repo at a revision (a branch, a tag or a commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubName {
    pub repo: String,
    pub revision: String,
}

impl HubName {
    /// `ORG/NAME[@REVISION]`, with or without `hf-hub:`; the revision defaults to `main`.
    pub fn parse(given: &str) -> Result<HubName, HubError> {
        let bad = |why| HubError::BadName {
            given: given.to_string(),
            why,
        };
        let s = given.strip_prefix(PREFIX).unwrap_or(given).trim();
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (s, "main"),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad("the repo must be ORG/NAME"));
        }
        let name_ok = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !p.starts_with('.')
                && !p.contains("..")
        };
        if !parts.iter().all(|p| name_ok(p)) {
            return Err(bad(
                "ORG and NAME hold letters, digits, '-', '_' and '.' only",
            ));
        }
        let rev_ok = !revision.is_empty()
            && !revision.contains("..")
            && !revision.starts_with('/')
            && revision
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !rev_ok {
            return Err(bad("the revision is a branch, tag or commit name"));
        }
        Ok(HubName {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The hub name when `spec` is one (`hf-hub:...`), else `None` (a path).
    pub fn from_spec(spec: &str) -> Option<Result<HubName, HubError>> {
        spec.starts_with(PREFIX).then(|| HubName::parse(spec))
    }
}

impl std::fmt::Display for HubName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}@{}", self.repo, self.revision)
    }
}

/// Where the hub is and how to talk to it, read from the same environment variables as Python's huggingface_hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub` (`HF_HOME`: else `$XDG_CACHE_HOME/huggingface`, else
    /// `~/.cache/huggingface`).
    pub cache: PathBuf,
    /// `HF_TOKEN`, else the file `HF_TOKEN_PATH` or `$HF_HOME/token`.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE` set to 1, true, yes or on: never ask the hub.
    pub offline: bool,
}

impl HubConfig {
    pub fn from_env() -> HubConfig {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> HubConfig {
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| home.join("token"));
                std::fs::read_to_string(file).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        HubConfig {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
            cache,
            token,
            offline,
        }
    }
}

/// A download's progress, reported about ten times a second.
#[derive(Clone, Debug)]
pub struct Progress {
    pub file: String,
    pub done: u64,
    pub total: Option<u64>,
    pub bytes_per_s: f64,
}

impl Progress {
    /// Seconds left at the current rate.
    pub fn seconds_left(&self) -> Option<f64> {
        let total = self.total?;
        (self.bytes_per_s > 0.0).then(|| total.saturating_sub(self.done) as f64 / self.bytes_per_s)
    }
}

/// A model in the cache: its folder at one commit and the checkpoint in it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub name: HubName,
    pub commit: String,
    pub dir: PathBuf,
    /// The safetensors checkpoint (a link into `blobs/`).
    pub weights: PathBuf,
    /// True when no request was made: the cache had it.
    pub from_cache: bool,
}

impl Snapshot {
    /// `hf-hub:ORG/NAME@<commit>`: what a tuned file records.
    pub fn pinned(&self) -> String {
        format!("{PREFIX}{}@{}", self.name.repo, self.commit)
    }
}

/// The checkpoint vitune reads among a repo's files: `model.safetensors`, else `open_clip_model.safetensors`, else
/// the only other `.safetensors` at the top level (sharded checkpoints are not read).
pub fn choose_weights(files: &[String]) -> Option<String> {
    for preferred in ["model.safetensors", "open_clip_model.safetensors"] {
        if files.iter().any(|f| f == preferred) {
            return Some(preferred.to_string());
        }
    }
    let others: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with(".safetensors") && !f.contains('/') && !f.contains("-of-"))
        .collect();
    (others.len() == 1).then(|| others[0].clone())
}

/// The model as the cache has it, with no request: `None` when the revision is unknown to the cache or its
/// snapshot has no checkpoint. `complete` is false when `config.json` is neither there nor known to be absent.
pub fn find_cached(cfg: &HubConfig, name: &HubName) -> Option<(Snapshot, bool)> {
    let repo = RepoCache::new(&cfg.cache, &name.repo);
    let commit = repo.commit_of(&name.revision)?;
    let files = repo.files(&commit);
    let weights = choose_weights(&files)?;
    let complete =
        files.iter().any(|f| f == "config.json") || repo.known_absent(&commit, "config.json");
    let dir = repo.snapshot(&commit);
    Some((
        Snapshot {
            name: name.clone(),
            weights: dir.join(weights),
            dir,
            commit,
            from_cache: true,
        },
        complete,
    ))
}

/// The model on disk: from the cache when it is there (no request), else downloaded (unless offline). A model
/// cached without its `config.json` asks for that file alone when online.
pub fn resolve(
    cfg: &HubConfig,
    name: &HubName,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Snapshot, HubError> {
    let cached = find_cached(cfg, name);
    match &cached {
        Some((snap, true)) => return Ok(snap.clone()),
        Some((snap, false)) if cfg.offline => return Ok(snap.clone()),
        None if cfg.offline => {
            return Err(HubError::Offline {
                name: name.to_string(),
                cache: cfg.cache.clone(),
            })
        }
        _ => {}
    }
    match pull(cfg, name, progress, cancel) {
        Err(HubError::Unreachable { .. }) if cached.is_some() => {
            Ok(cached.map(|(s, _)| s).expect("checked above"))
        }
        other => other,
    }
}

/// Asks the hub for the revision's commit and files, and downloads the checkpoint and its side files that the
/// cache lacks. Always makes the metadata request (this is `vitune pull`: it also updates a branch's ref).
pub fn pull(
    cfg: &HubConfig,
    name: &HubName,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Snapshot, HubError> {
    if cfg.offline {
        return find_cached(cfg, name)
            .map(|(s, _)| s)
            .ok_or_else(|| HubError::Offline {
                name: name.to_string(),
                cache: cfg.cache.clone(),
            });
    }
    let client = Client::new(cfg);
    let (commit, files) = repo_info(cfg, &client, name)?;
    let weights = choose_weights(&files).ok_or_else(|| HubError::NoWeights {
        repo: name.repo.clone(),
        files: if files.is_empty() {
            "none".into()
        } else {
            files.join(", ")
        },
    })?;
    let repo = RepoCache::new(&cfg.cache, &name.repo);
    let mut wanted = vec![weights.clone()];
    for side in SIDE_FILES {
        if files.iter().any(|f| f == side) {
            wanted.push(side.to_string());
        } else {
            repo.mark_absent(&commit, side);
        }
    }
    // Small files first: a gated repo or a wrong name fails before the big download starts.
    wanted.reverse();
    let have = repo.files(&commit);
    let mut fetch = Fetch {
        client: &client,
        cache: &repo,
        repo: &name.repo,
        progress,
        cancel,
    };
    for file in &wanted {
        if have.contains(file) {
            continue;
        }
        let url = client.repo_url(&name.repo, &commit, file);
        let head = match head_from(&client, &url) {
            Ok(Ok(h)) => h,
            Ok(Err((status, headers))) => {
                return Err(status_error(
                    cfg,
                    name,
                    file,
                    &url,
                    status.as_u16(),
                    header(&headers, "x-error-code"),
                ))
            }
            Err(why) => return Err(unreachable(cfg, &client, name, why)),
        };
        if let Some(c) = head.commit.as_deref().filter(|c| *c != commit) {
            return Err(HubError::BadAnswer {
                url,
                why: format!("it names commit {c}, the revision is {commit}"),
            });
        }
        fetch.blob(file, &head)?;
        repo.link(&commit, file, &head.etag)?;
    }
    repo.write_ref(&name.revision, &commit)?;
    let dir = repo.snapshot(&commit);
    Ok(Snapshot {
        name: name.clone(),
        weights: dir.join(&weights),
        dir,
        commit,
        from_cache: false,
    })
}

/// `GET /api/models/{repo}/revision/{rev}`: the commit and the file names.
fn repo_info(
    cfg: &HubConfig,
    client: &Client,
    name: &HubName,
) -> Result<(String, Vec<String>), HubError> {
    let url = client.api_url(&name.repo, &name.revision);
    let resp = match client.get_following(&url, None) {
        Answer::Ok(r) => r,
        Answer::Unreachable(why) => return Err(unreachable(cfg, client, name, why)),
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let code = header(resp.headers(), "x-error-code").map(str::to_string);
        return Err(status_error(cfg, name, "", &url, status, code.as_deref()));
    }
    let text = resp
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| unreachable(cfg, client, name, e.to_string()))?;
    let bad = |why: &str| HubError::BadAnswer {
        url: url.clone(),
        why: why.to_string(),
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad("not JSON"))?;
    let commit = json
        .get("sha")
        .and_then(|s| s.as_str())
        .filter(|s| is_commit(s))
        .ok_or_else(|| bad("no 40-hex `sha`"))?
        .to_string();
    let files = json
        .get("siblings")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("rfilename")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((commit, files))
}

fn status_error(
    cfg: &HubConfig,
    name: &HubName,
    file: &str,
    url: &str,
    status: u16,
    code: Option<&str>,
) -> HubError {
    match (status, code) {
        (401 | 403, Some("RepoNotFound")) | (404, Some("RepoNotFound")) => HubError::RepoNotFound {
            repo: name.repo.clone(),
        },
        (401 | 403, _) => HubError::Gated {
            repo: name.repo.clone(),
            status,
            with_token: cfg.token.is_some(),
        },
        (404, Some("RevisionNotFound")) => HubError::RevisionNotFound {
            repo: name.repo.clone(),
            revision: name.revision.clone(),
        },
        (404, _) if file.is_empty() => HubError::RepoNotFound {
            repo: name.repo.clone(),
        },
        (404, _) => HubError::EntryNotFound {
            repo: name.repo.clone(),
            revision: name.revision.clone(),
            file: file.to_string(),
        },
        _ => HubError::Http {
            url: url.to_string(),
            status,
        },
    }
}

fn unreachable(cfg: &HubConfig, client: &Client, name: &HubName, reason: String) -> HubError {
    HubError::Unreachable {
        endpoint: client.endpoint().to_string(),
        reason,
        name: name.to_string(),
        cache: cfg.cache.clone(),
    }
}

/// A backbone named by a path or by `hf-hub:ORG/NAME[@REVISION]`: a hub name is found in the cache or downloaded
/// (see [`resolve`]), then loaded like a file; the backbone remembers the hub name and commit it came from. A hub
/// model of a family vitune refuses is named with the loader's reason (the download stays in the cache: it serves
/// Python as well).
pub fn load_backbone(
    spec: &Path,
    opts: &LoadOptions,
    cfg: &HubConfig,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> crate::Result<Backbone> {
    let Some(name) = spec.to_str().and_then(HubName::from_spec) else {
        return Ok(crate::model::load_backbone(spec, opts)?);
    };
    let snap = resolve(cfg, &name?, progress, cancel)?;
    load_snapshot(&snap, opts)
}

/// Loads a cached snapshot's checkpoint, recording where it came from.
pub fn load_snapshot(snap: &Snapshot, opts: &LoadOptions) -> crate::Result<Backbone> {
    let mut b = crate::model::load_backbone(&snap.weights, opts).map_err(|e| {
        crate::Error::Input(format!(
            "{} is not a backbone vitune loads: {e}",
            snap.pinned()
        ))
    })?;
    b.source = Some(snap.pinned());
    Ok(b)
}

/// The size on disk of a cached snapshot's files.
pub fn snapshot_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_timm_writes_them() {
        let n = HubName::parse("hf-hub:timm/vit_small_patch14_reg4_dinov2.lvd142m").unwrap();
        assert_eq!(n.repo, "timm/vit_small_patch14_reg4_dinov2.lvd142m");
        assert_eq!(n.revision, "main");
        let n = HubName::parse("facebook/dinov2-small@refs/pr/3").unwrap();
        assert_eq!(n.revision, "refs/pr/3");
        for bad in [
            "hf-hub:",
            "hf-hub:timm",
            "a/b/c",
            "a/../b",
            "a/b@",
            "a/b@x y",
            "a/b@../x",
        ] {
            assert!(
                matches!(HubName::parse(bad), Err(HubError::BadName { .. })),
                "{bad}"
            );
        }
        assert!(HubName::from_spec("models/vit.safetensors").is_none());
    }

    #[test]
    fn environment_as_huggingface_hub_reads_it() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = HubConfig::from_vars(vars(&[("HF_HOME", "/h"), ("HF_HUB_OFFLINE", "1")]));
        assert_eq!(c.cache, PathBuf::from("/h/hub"));
        assert!(c.offline);
        assert_eq!(c.endpoint, "https://huggingface.co");
        let c = HubConfig::from_vars(vars(&[
            ("HF_HOME", "/h"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_ENDPOINT", "http://127.0.0.1:1"),
            ("HF_TOKEN", " t \n"),
            ("HF_HUB_OFFLINE", "0"),
        ]));
        assert_eq!(c.cache, PathBuf::from("/c"));
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(!c.offline);
        assert_eq!(c.endpoint, "http://127.0.0.1:1");
        let c = HubConfig::from_vars(vars(&[("XDG_CACHE_HOME", "/x")]));
        assert_eq!(c.cache, PathBuf::from("/x/huggingface/hub"));
    }

    #[test]
    fn the_checkpoint_is_chosen_as_documented() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            choose_weights(&f(&[
                "config.json",
                "model.safetensors",
                "pytorch_model.bin"
            ]))
            .as_deref(),
            Some("model.safetensors")
        );
        assert_eq!(
            choose_weights(&f(&[
                "open_clip_model.safetensors",
                "open_clip_pytorch_model.bin"
            ]))
            .as_deref(),
            Some("open_clip_model.safetensors")
        );
        assert_eq!(
            choose_weights(&f(&[
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ])),
            None
        );
        assert_eq!(choose_weights(&f(&["pytorch_model.bin"])), None);
    }
}
