//! One file from the hub into the cache: written to `blobs/<etag>.incomplete`, resumed with `Range` after a cut
//! connection (or restarted where the server ignores `Range`), checked against the hub's SHA-256 and size, and only
//! then renamed to `blobs/<etag>` and linked from the snapshot. A half file never sits where a whole one is expected.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cache::RepoCache;
use super::http::{Answer, Client, FileHead};
use super::{HubError, Progress};
use crate::words::human_bytes;

/// How many times a cut connection is resumed before the download gives up (the partial file stays for next time).
const ATTEMPTS: usize = 4;

pub(crate) struct Fetch<'a> {
    pub client: &'a Client,
    pub cache: &'a RepoCache,
    pub repo: &'a str,
    pub progress: &'a mut dyn FnMut(&Progress),
    pub cancel: &'a AtomicBool,
}

impl Fetch<'_> {
    /// Downloads `file` described by `head` unless its blob is already there; returns the blob's path.
    pub fn blob(&mut self, file: &str, head: &FileHead) -> Result<std::path::PathBuf, HubError> {
        let blob = self.cache.blob(&head.etag);
        if blob.is_file() {
            return Ok(blob);
        }
        let dir = blob.parent().unwrap_or(&self.cache.dir).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(HubError::io("create", &dir))?;
        let part = dir.join(format!("{}.incomplete", head.etag));
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.attempt(file, head, &part) {
                Ok(()) => {
                    self.verify(file, head, &part)?;
                    std::fs::rename(&part, &blob).map_err(HubError::io("place", &blob))?;
                    return Ok(blob);
                }
                Err(Step::Retry(why)) => {
                    last_error = why;
                    if attempt < ATTEMPTS {
                        std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                    }
                }
                Err(Step::Fail(e)) => return Err(e),
            }
        }
        let got = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        Err(HubError::Incomplete {
            repo: self.repo.to_string(),
            file: file.to_string(),
            got,
            expected: head.size.unwrap_or(0),
            attempts: ATTEMPTS,
            reason: last_error,
        })
    }

    fn attempt(&mut self, file: &str, head: &FileHead, part: &Path) -> Result<(), Step> {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if head.size.is_some_and(|n| have == n && n > 0) {
            return Ok(());
        }
        let resp = match self.client.get_following(&head.url, Some(have)) {
            Answer::Ok(r) => r,
            Answer::Unreachable(why) => return Err(Step::Retry(why)),
        };
        let status = resp.status().as_u16();
        let resume = match status {
            206 => have > 0,
            200 => false,
            416 => {
                // The range starts at or past the end: the part is bad or too long; start again.
                std::fs::remove_file(part).ok();
                return Err(Step::Retry("the server refused the resume range".into()));
            }
            s if s >= 500 => return Err(Step::Retry(format!("HTTP {s}"))),
            s => {
                return Err(Step::Fail(HubError::Http {
                    url: head.url.clone(),
                    status: s,
                }))
            }
        };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(resume)
            .write(true)
            .truncate(!resume)
            .open(part)
            .map_err(|e| Step::Fail(HubError::io("write", part)(e)))?;
        if resume {
            out.seek(std::io::SeekFrom::End(0))
                .map_err(|e| Step::Fail(HubError::io("write", part)(e)))?;
        }
        let mut done = if resume { have } else { 0 };
        let started = Instant::now();
        let start_bytes = done;
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut last_report = Instant::now() - Duration::from_secs(1);
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Step::Fail(HubError::Cancelled));
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Step::Retry(e.to_string())),
            };
            if let Err(e) = out.write_all(&buf[..n]) {
                return Err(Step::Fail(self.write_failed(file, head, part, e)));
            }
            done += n as u64;
            if head.size.is_some_and(|total| done > total) {
                std::fs::remove_file(part).ok();
                return Err(Step::Retry(
                    "the server sent more bytes than the file has".into(),
                ));
            }
            if last_report.elapsed() >= Duration::from_millis(100) {
                last_report = Instant::now();
                self.report(file, done, head.size, started, start_bytes);
            }
        }
        if let Err(e) = out.flush().and_then(|_| out.sync_all()) {
            return Err(Step::Fail(self.write_failed(file, head, part, e)));
        }
        self.report(file, done, head.size, started, start_bytes);
        match head.size {
            Some(total) if done < total => Err(Step::Retry(format!(
                "the connection closed after {done} of {total} bytes"
            ))),
            _ => Ok(()),
        }
    }

    fn report(&mut self, file: &str, done: u64, total: Option<u64>, started: Instant, from: u64) {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        (self.progress)(&Progress {
            file: file.to_string(),
            done,
            total,
            bytes_per_s: (done - from.min(done)) as f64 / secs,
        });
    }

    fn write_failed(
        &self,
        file: &str,
        head: &FileHead,
        part: &Path,
        e: std::io::Error,
    ) -> HubError {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            std::fs::remove_file(part).ok();
            HubError::DiskFull {
                file: file.to_string(),
                size: head
                    .size
                    .map(human_bytes)
                    .unwrap_or_else(|| "size unknown".into()),
                dir: part.parent().unwrap_or(part).to_path_buf(),
            }
        } else {
            HubError::io("write", part)(e)
        }
    }

    /// The size the hub announced, and for LFS files (a 64-hex ETag) the SHA-256 of the content.
    fn verify(&self, file: &str, head: &FileHead, part: &Path) -> Result<(), HubError> {
        let size = std::fs::metadata(part)
            .map_err(HubError::io("read", part))?
            .len();
        if let Some(expected) = head.size.filter(|&n| n != size) {
            std::fs::remove_file(part).ok();
            return Err(HubError::Incomplete {
                repo: self.repo.to_string(),
                file: file.to_string(),
                got: size,
                expected,
                attempts: 1,
                reason: "the size differs from the hub's".into(),
            });
        }
        let is_sha256 = head.etag.len() == 64 && head.etag.bytes().all(|b| b.is_ascii_hexdigit());
        if is_sha256 {
            let got = sha256_file(part)?;
            if !got.eq_ignore_ascii_case(&head.etag) {
                std::fs::remove_file(part).ok();
                return Err(HubError::HashMismatch {
                    repo: self.repo.to_string(),
                    file: file.to_string(),
                    expected: head.etag.clone(),
                    got,
                });
            }
        }
        Ok(())
    }
}

enum Step {
    Retry(String),
    Fail(HubError),
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut f = std::fs::File::open(path).map_err(HubError::io("read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(HubError::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}
