//! The few requests vitune makes of the hub, through ureq (one TLS stack, rustls; no async runtime). Proxies come
//! from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) through ureq itself.

use std::time::Duration;

use ureq::http::{HeaderMap, StatusCode};

use super::HubConfig;

pub(crate) struct Client {
    agent: ureq::Agent,
    token: Option<String>,
    endpoint: String,
}

/// What a `HEAD` of `resolve/{commit}/{file}` tells before the download.
#[derive(Debug)]
pub(crate) struct FileHead {
    pub commit: Option<String>,
    /// The hub's ETag without quotes: the SHA-256 of the content for LFS files, a git object id otherwise.
    pub etag: String,
    pub size: Option<u64>,
    /// Where the bytes are (a CDN address for LFS files; the resolve address itself otherwise).
    pub url: String,
}

pub(crate) enum Answer {
    Ok(ureq::http::Response<ureq::Body>),
    /// The server could not be reached at all (name, connection, TLS, time-out).
    Unreachable(String),
}

impl Client {
    pub fn new(cfg: &HubConfig) -> Client {
        let endpoint = cfg.endpoint.trim_end_matches('/').to_string();
        let mut builder = ureq::Agent::config_builder();
        // A hub on this machine (a mirror, a test's stand-in) is never reached through a proxy.
        if is_loopback(&endpoint) {
            builder = builder.proxy(None);
        }
        let config = builder
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("vitune/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            token: cfg.token.clone(),
            endpoint,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A request to `url`; the token goes only to the hub's own host, never to the CDN a file redirects to.
    pub fn send(&self, method: &str, url: &str, range_from: Option<u64>) -> Answer {
        let mut req = match method {
            "HEAD" => self.agent.head(url),
            _ => self.agent.get(url),
        }
        .header("Accept-Encoding", "identity");
        if let (Some(token), true) = (&self.token, url.starts_with(&self.endpoint)) {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(from) = range_from.filter(|&n| n > 0) {
            req = req.header("Range", format!("bytes={from}-"));
        }
        match req.call() {
            Ok(resp) => Answer::Ok(resp),
            Err(e) => Answer::Unreachable(e.to_string()),
        }
    }

    /// A `GET` that follows redirects (up to 5), relative or absolute.
    pub fn get_following(&self, url: &str, range_from: Option<u64>) -> Answer {
        let mut url = url.to_string();
        for _ in 0..6 {
            let resp = match self.send("GET", &url, range_from) {
                Answer::Ok(r) => r,
                other => return other,
            };
            if resp.status().is_redirection() {
                match location(resp.headers(), &url) {
                    Some(next) => {
                        url = next;
                        continue;
                    }
                    None => return Answer::Ok(resp),
                }
            }
            return Answer::Ok(resp);
        }
        Answer::Unreachable(format!("too many redirects from {url}"))
    }

    pub fn repo_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{repo}/resolve/{}/{file}",
            self.endpoint,
            percent_encode(revision)
        )
    }

    pub fn api_url(&self, repo: &str, revision: &str) -> String {
        format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            percent_encode(revision)
        )
    }
}

/// Reads the `HEAD` answer the hub gives for a file: a redirect that carries the file's metadata points to where the
/// bytes are (the CDN); one without (a renamed repo) is followed; the ETag and size of the file itself come from
/// `X-Linked-*` when present.
pub(crate) fn head_from(
    client: &Client,
    url: &str,
) -> Result<Result<FileHead, (StatusCode, HeaderMap)>, String> {
    let mut url = url.to_string();
    for _ in 0..6 {
        let resp = match client.send("HEAD", &url, None) {
            Answer::Ok(r) => r,
            Answer::Unreachable(why) => return Err(why),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_redirection() {
            let Some(next) = location(&headers, &url) else {
                return Ok(Err((status, headers)));
            };
            // The hub's answer for a file names its commit and ETag even when the bytes are elsewhere (the CDN);
            // a redirect without them is a renamed repo, followed.
            let described = header(&headers, "x-repo-commit").is_some()
                || header(&headers, "x-linked-etag").is_some();
            if described {
                return Ok(read_head(&headers, next).ok_or((status, headers.clone())));
            }
            url = next;
            continue;
        }
        if !status.is_success() {
            return Ok(Err((status, headers)));
        }
        return Ok(read_head(&headers, url).ok_or((status, headers.clone())));
    }
    Err(format!("too many redirects from {url}"))
}

fn read_head(h: &HeaderMap, url: String) -> Option<FileHead> {
    let etag = header(h, "x-linked-etag").or_else(|| header(h, "etag"))?;
    let etag = etag.trim_start_matches("W/").trim_matches('"').to_string();
    if etag.is_empty() || etag.contains(['/', '\\', '.']) {
        return None;
    }
    let size = header(h, "x-linked-size")
        .or_else(|| header(h, "content-length"))
        .and_then(|s| s.parse().ok());
    Some(FileHead {
        commit: header(h, "x-repo-commit").map(str::to_string),
        etag,
        size,
        url,
    })
}

pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn location(h: &HeaderMap, from: &str) -> Option<String> {
    let loc = header(h, "location")?;
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return Some(loc.to_string());
    }
    if loc.starts_with('/') {
        // scheme://host[:port] of `from`
        let after = from.find("://")? + 3;
        let end = from[after..].find('/').map_or(from.len(), |i| after + i);
        return Some(format!("{}{loc}", &from[..end]));
    }
    None
}

/// Whether `url`'s host is this machine (127.0.0.0/8, localhost, [::1]).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// Percent-encodes a revision for a path segment (branch names may hold `/`).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_locations() {
        let mut h = HeaderMap::new();
        h.insert("location", "/api/x".parse().unwrap());
        assert_eq!(
            location(&h, "http://127.0.0.1:9/a/b").as_deref(),
            Some("http://127.0.0.1:9/api/x")
        );
        h.insert("location", "https://cdn.example/y".parse().unwrap());
        assert_eq!(
            location(&h, "http://127.0.0.1:9/a").as_deref(),
            Some("https://cdn.example/y")
        );
        assert_eq!(percent_encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:9/"));
        assert!(!is_loopback("https://huggingface.co"));
    }
}
