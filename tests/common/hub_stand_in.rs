//! A stand-in for the Hugging Face hub on 127.0.0.1, answering as the hub does: `GET /api/models/{repo}/revision/
//! {rev}` (JSON `sha`, `siblings`), `HEAD`/`GET /{repo}/resolve/{rev}/{file}` with `X-Repo-Commit`, `ETag` and, for
//! LFS files, a redirect to a CDN path with `X-Linked-Etag` (the SHA-256) and `X-Linked-Size`; the CDN honours
//! `Range`. 401 with `X-Error-Code: GatedRepo` for a gated repo without the right token, 404 with `RepoNotFound`,
//! `RevisionNotFound` or `EntryNotFound`. It can cut the first download halfway, ignore `Range`, or corrupt a file.
//! Bounded: it stops after 400 requests or 180 seconds, and when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const TOKEN: &str = "hf_stand_in_token";

pub struct Repo {
    pub name: String,
    pub commit: String,
    /// (file name, bytes, stored in LFS)
    pub files: Vec<(String, Vec<u8>, bool)>,
    pub gated: bool,
}

impl Repo {
    /// A repo holding a test fixture's `model.safetensors` (LFS) and `config.json`.
    pub fn from_fixture(name: &str, fixture: &std::path::Path) -> Repo {
        let mut files = vec![(
            "model.safetensors".to_string(),
            std::fs::read(fixture.join("model.safetensors")).expect("fixture weights"),
            true,
        )];
        if let Ok(cfg) = std::fs::read(fixture.join("config.json")) {
            files.push(("config.json".into(), cfg, false));
        }
        files.push(("README.md".into(), b"# stand-in\n".to_vec(), false));
        Repo {
            name: name.to_string(),
            commit: format!("{:x}", Sha256::digest(name.as_bytes()))[..40].to_string(),
            files,
            gated: false,
        }
    }
}

#[derive(Default, Clone, Copy)]
pub struct Behaviour {
    /// The first CDN download sends this many bytes, then closes the connection.
    pub cut_first_get_at: Option<usize>,
    /// The CDN answers every `Range` request with the whole file (200).
    pub ignore_range: bool,
    /// The CDN serves the LFS files with one byte changed.
    pub corrupt: bool,
}

pub struct StandIn {
    pub endpoint: String,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    pub fn start(repos: Vec<Repo>, behaviour: Behaviour) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let served = AtomicUsize::new(0);
            let cdn_gets = AtomicUsize::new(0);
            let blobs: HashMap<String, Vec<u8>> = repos
                .iter()
                .flat_map(|r| r.files.iter())
                .filter(|f| f.2)
                .map(|(_, b, _)| (format!("{:x}", Sha256::digest(b)), b.clone()))
                .collect();
            while !stop2.load(Ordering::SeqCst)
                && start.elapsed() < Duration::from_secs(180)
                && served.load(Ordering::SeqCst) < 400
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false).ok();
                        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                        let ctx = Ctx {
                            repos: &repos,
                            blobs: &blobs,
                            behaviour,
                            cdn_gets: &cdn_gets,
                            log: &log2,
                        };
                        ctx.serve(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StandIn {
            endpoint,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Every request so far, as "METHOD PATH [range]".
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

struct Ctx<'a> {
    repos: &'a [Repo],
    blobs: &'a HashMap<String, Vec<u8>>,
    behaviour: Behaviour,
    cdn_gets: &'a AtomicUsize,
    log: &'a Mutex<Vec<String>>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close.
    cut_at: Option<usize>,
}

fn answer(status: u16) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        cut_at: None,
    }
}

impl Answer {
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

impl Ctx<'_> {
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut first = String::new();
        if reader.read_line(&mut first).is_err() {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut parts = first.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let range = headers.get("range").cloned();
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!(
                "{method} {path}{}",
                range.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
            ));
        let authorised =
            headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {TOKEN}"));
        let a = self.route(method, path, range.as_deref(), authorised);
        let mut out = stream;
        let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", a.status);
        let has_len = a.headers.iter().any(|(k, _)| k == "Content-Length");
        for (k, v) in &a.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_len {
            head.push_str(&format!("Content-Length: {}\r\n", a.body.len()));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes()).ok();
        if method != "HEAD" {
            let n = a.cut_at.unwrap_or(a.body.len()).min(a.body.len());
            out.write_all(&a.body[..n]).ok();
        }
        out.flush().ok();
        // Drain what the client may still send, then close.
        let _ = reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(1)));
        let mut sink = [0u8; 64];
        let _ = reader.read(&mut sink);
    }

    fn route(&self, method: &str, path: &str, range: Option<&str>, authorised: bool) -> Answer {
        if let Some(sha) = path.strip_prefix("/cdn/") {
            return self.cdn(sha, range);
        }
        if let Some(rest) = path.strip_prefix("/api/models/") {
            let Some((repo, rev)) = rest.split_once("/revision/") else {
                return answer(404).header("X-Error-Code", "RepoNotFound");
            };
            let r = match self.repo(repo, authorised) {
                Ok(r) => r,
                Err(a) => return a,
            };
            if rev != "main" && rev != r.commit {
                return answer(404).header("X-Error-Code", "RevisionNotFound");
            }
            let siblings: Vec<String> = r
                .files
                .iter()
                .map(|f| format!("{{\"rfilename\":\"{}\"}}", f.0))
                .collect();
            let mut a = answer(200).header("Content-Type", "application/json");
            a.body = format!(
                "{{\"id\":\"{}\",\"sha\":\"{}\",\"siblings\":[{}]}}",
                r.name,
                r.commit,
                siblings.join(",")
            )
            .into_bytes();
            return a;
        }
        // /{org}/{name}/resolve/{rev}/{file}
        let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
        if segs.len() != 5 || segs[2] != "resolve" {
            return answer(404);
        }
        let repo = format!("{}/{}", segs[0], segs[1]);
        let r = match self.repo(&repo, authorised) {
            Ok(r) => r,
            Err(a) => return a,
        };
        if segs[3] != "main" && segs[3] != r.commit {
            return answer(404).header("X-Error-Code", "RevisionNotFound");
        }
        let Some((_, bytes, lfs)) = r.files.iter().find(|f| f.0 == segs[4]) else {
            return answer(404).header("X-Error-Code", "EntryNotFound");
        };
        if *lfs {
            let sha = format!("{:x}", Sha256::digest(bytes));
            return answer(302)
                .header("Location", format!("/cdn/{sha}"))
                .header("X-Repo-Commit", r.commit.clone())
                .header("X-Linked-Etag", format!("\"{sha}\""))
                .header("X-Linked-Size", bytes.len().to_string())
                .header("ETag", "\"0123456789abcdef0123456789abcdef01234567\"");
        }
        let git_id = format!("{:x}", Sha256::digest(bytes))[..40].to_string();
        let mut a = answer(200)
            .header("X-Repo-Commit", r.commit.clone())
            .header("ETag", format!("\"{git_id}\""));
        if method != "HEAD" {
            a.body = bytes.clone();
        } else {
            a = a.header("Content-Length", bytes.len().to_string());
        }
        a
    }

    fn repo(&self, name: &str, authorised: bool) -> Result<&Repo, Answer> {
        let r = self
            .repos
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| answer(404).header("X-Error-Code", "RepoNotFound"))?;
        if r.gated && !authorised {
            return Err(answer(401).header("X-Error-Code", "GatedRepo"));
        }
        Ok(r)
    }

    fn cdn(&self, sha: &str, range: Option<&str>) -> Answer {
        let Some(bytes) = self.blobs.get(sha) else {
            return answer(404);
        };
        let mut body = bytes.clone();
        if self.behaviour.corrupt {
            if let Some(b) = body.last_mut() {
                *b ^= 0xff;
            }
        }
        let first = self.cdn_gets.fetch_add(1, Ordering::SeqCst) == 0;
        let from = range
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|_| !self.behaviour.ignore_range);
        let mut a = match from {
            Some(n) if n < body.len() => {
                let total = body.len();
                let mut a =
                    answer(206).header("Content-Range", format!("bytes {n}-{}/{total}", total - 1));
                a.body = body.split_off(n);
                a
            }
            Some(_) => return answer(416),
            None => {
                let mut a = answer(200);
                a.body = body;
                a
            }
        }
        .header("Accept-Ranges", "bytes");
        if first {
            a.cut_at = self.behaviour.cut_first_get_at;
        }
        a
    }
}
