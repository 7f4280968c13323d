//! The huggingface_hub cache layout, shared with Python (timm, transformers):
//! `models--ORG--NAME/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/<revision>}`.

use std::path::{Path, PathBuf};

use super::HubError;

/// One repo's folder in the cache.
#[derive(Clone, Debug)]
pub struct RepoCache {
    pub dir: PathBuf,
}

impl RepoCache {
    pub fn new(cache: &Path, repo: &str) -> RepoCache {
        RepoCache {
            dir: cache.join(format!("models--{}", repo.replace('/', "--"))),
        }
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// The commit a branch or tag points to, as the last download recorded it; a 40-hex revision is its own commit.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(HubError::io("create", parent))?;
        }
        std::fs::write(&path, commit).map_err(HubError::io("write", &path))
    }

    /// Files of a snapshot whose target exists (a dangling link counts as absent).
    pub fn files(&self, commit: &str) -> Vec<String> {
        let dir = self.snapshot(commit);
        let mut out = Vec::new();
        walk(&dir, &dir, &mut out);
        out.sort();
        out
    }

    /// Records that `file` does not exist at `commit` (huggingface_hub's `.no_exist/<commit>/<file>`), so a cache
    /// hit needs no request to learn it again.
    pub fn mark_absent(&self, commit: &str, file: &str) {
        let path = self.dir.join(".no_exist").join(commit).join(file);
        if let Some(parent) = path.parent() {
            if std::fs::create_dir_all(parent).is_ok() {
                std::fs::write(&path, b"").ok();
            }
        }
    }

    pub fn known_absent(&self, commit: &str, file: &str) -> bool {
        self.dir.join(".no_exist").join(commit).join(file).exists()
    }

    /// Places a downloaded blob at `snapshots/<commit>/<file>`: a relative symbolic link as huggingface_hub makes
    /// it, a copy where the file system has no links.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        let target = self.snapshot(commit).join(file);
        let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(HubError::io("create", &parent))?;
        if std::fs::symlink_metadata(&target).is_ok() {
            std::fs::remove_file(&target).map_err(HubError::io("replace", &target))?;
        }
        let blob = self.blob(etag);
        let depth = file.matches('/').count() + 2;
        let relative: PathBuf = std::iter::repeat_n("..", depth)
            .collect::<PathBuf>()
            .join("blobs")
            .join(etag);
        if symlink(&relative, &target).is_err() {
            std::fs::copy(&blob, &target).map_err(HubError::io("copy into", &target))?;
        }
        Ok(target)
    }
}

#[cfg(unix)]
fn symlink(original: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(original, link)
}

#[cfg(windows)]
fn symlink(original: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(original, link)
}

#[cfg(not(any(unix, windows)))]
fn symlink(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("no symbolic links here"))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
