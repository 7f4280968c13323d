use std::path::PathBuf;

/// What went wrong reaching, downloading or reading a hub model: each variant one sentence naming the repo or the
/// file and the way out.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "`{given}` is not a hub name: {why} (expected hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION)"
    )]
    BadName { given: String, why: &'static str },
    #[error("the hub has no model repo `{repo}` (or it is private: set HF_TOKEN if it is yours)")]
    RepoNotFound { repo: String },
    #[error("the hub model `{repo}` has no revision `{revision}`")]
    RevisionNotFound { repo: String, revision: String },
    #[error("the hub model `{repo}` has no file `{file}` at revision {revision}")]
    EntryNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error(
        "the hub model `{repo}` is gated or private (HTTP {status}): {}",
        if *with_token {
            format!("the token in HF_TOKEN (or the token file) does not give access: accept the model's licence on its hub page (https://huggingface.co/{repo}) with that account")
        } else {
            format!("accept the model's licence on its hub page (https://huggingface.co/{repo}), then set HF_TOKEN to an access token of that account")
        }
    )]
    Gated {
        repo: String,
        status: u16,
        with_token: bool,
    },
    #[error(
        "`{name}` is not in the hub cache ({}) and HF_HUB_OFFLINE is set: unset it to download, or copy the model into that cache",
        cache.display()
    )]
    Offline { name: String, cache: PathBuf },
    #[error(
        "cannot reach the hub at {endpoint} ({reason}) and `{name}` is not in the hub cache ({}): connect to the network, set HF_ENDPOINT to a mirror, or bring the model into that cache (HF_HUB_OFFLINE=1 then uses it without asking the hub)",
        cache.display()
    )]
    Unreachable {
        endpoint: String,
        reason: String,
        name: String,
        cache: PathBuf,
    },
    #[error("the hub answered HTTP {status} for {url}")]
    Http { url: String, status: u16 },
    #[error(
        "the download of `{file}` from `{repo}` does not match the hub's SHA-256 (expected {expected}, got {got}); the file was discarded: pull it again"
    )]
    HashMismatch {
        repo: String,
        file: String,
        expected: String,
        got: String,
    },
    #[error(
        "the download of `{file}` from `{repo}` stopped at {got} of {expected} bytes after {attempts} attempts: {reason}; pull it again to resume"
    )]
    Incomplete {
        repo: String,
        file: String,
        got: u64,
        expected: u64,
        attempts: usize,
        reason: String,
    },
    #[error(
        "the disk is full: cannot write `{file}` ({size}) into {}; the partial download was removed: free space or set HF_HUB_CACHE to another disk",
        dir.display()
    )]
    DiskFull {
        file: String,
        size: String,
        dir: PathBuf,
    },
    #[error("the hub model `{repo}` has no single safetensors checkpoint that vitune reads (its files: {files})")]
    NoWeights { repo: String, files: String },
    #[error("the hub's answer for {url} is not what the hub sends: {why}")]
    BadAnswer { url: String, why: String },
    #[error("cannot {action} {}: {reason}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error(
        "the download was cancelled (the part already downloaded is kept and resumes next time)"
    )]
    Cancelled,
}

impl HubError {
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |reason| HubError::Io {
            action,
            path,
            reason,
        }
    }
}
