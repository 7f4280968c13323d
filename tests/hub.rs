//! Backbones from the hub, against a stand-in for it on 127.0.0.1 (tests/common/hub_stand_in.rs): a download into
//! Python's cache layout, a cache hit with no request, resume and clean restart after a cut connection, a hash
//! mismatch, 404s, a gated repo with and without a token, offline, an unreachable hub, a refused family, and a
//! trained file that records the hub name and commit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::hub_stand_in::{Behaviour, Repo, StandIn, TOKEN};

const REPO: &str = "timm/vit_tiny_stand_in.test";

/// Runs vitune with the hub at `endpoint` and the cache in `cache`; no token unless given.
fn vitune_hub(
    endpoint: &str,
    cache: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitune"));
    cmd.args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", cache.join("home"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("vitune runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tiny_repo() -> Repo {
    Repo::from_fixture(REPO, &common::fixture("timm_cls"))
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--timm--vit_tiny_stand_in.test")
}

/// `vitune info hf-hub:REPO` with `HF_HUB_OFFLINE=1`: what the cache alone gives.
fn offline_info(hub: &StandIn, cache: &Path) -> (bool, String, String) {
    vitune_hub(
        &hub.endpoint,
        cache,
        &[("HF_HUB_OFFLINE", "1")],
        &["info", &format!("hf-hub:{REPO}")],
    )
}

fn downloads(hub: &StandIn) -> usize {
    hub.requests()
        .iter()
        .filter(|r| r.starts_with("GET /cdn/"))
        .count()
}

#[test]
fn pull_writes_python_cache_layout_and_a_cached_model_needs_no_request() {
    let repo = tiny_repo();
    let commit = repo.commit.clone();
    let weights = repo.files[0].1.clone();
    let hub = StandIn::start(vec![repo], Behaviour::default());
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("hub");

    let (ok, out, err) = vitune_hub(&hub.endpoint, &cache, &[], &["pull", REPO]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&commit), "{out}");
    assert!(out.contains("--backbone hf-hub:"), "{out}");
    assert!(
        err.contains("model.safetensors"),
        "no progress shown: {err}"
    );

    // huggingface_hub's layout: refs/main holds the commit, the snapshot links into blobs/<sha256>.
    let rd = repo_dir(&cache);
    let refs = std::fs::read_to_string(rd.join("refs/main")).expect("refs/main");
    assert_eq!(refs.trim(), commit);
    let link = rd.join("snapshots").join(&commit).join("model.safetensors");
    let meta = std::fs::symlink_metadata(&link).expect("snapshot entry");
    assert!(
        meta.file_type().is_symlink(),
        "snapshot entries link into blobs/"
    );
    let target = std::fs::read_link(&link).expect("link");
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&weights));
    assert_eq!(target, Path::new("../../blobs").join(&sha));
    assert_eq!(std::fs::read(&link).expect("read"), weights);
    assert!(rd
        .join("snapshots")
        .join(&commit)
        .join("config.json")
        .is_file());
    let leftovers: Vec<_> = std::fs::read_dir(rd.join("blobs"))
        .expect("blobs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");

    // A cached model: no request at all, online or offline.
    let before = hub.requests().len();
    let spec = format!("hf-hub:{REPO}");
    let (ok, out, err) = vitune_hub(&hub.endpoint, &cache, &[], &["info", &spec]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("from          hf-hub:{REPO}@{commit}")),
        "{out}"
    );
    let (ok, _, err) = vitune_hub(
        &hub.endpoint,
        &cache,
        &[("HF_HUB_OFFLINE", "1")],
        &["info", &spec],
    );
    assert!(ok, "{err}");
    assert_eq!(
        hub.requests().len(),
        before,
        "a cached model asked the hub: {:?}",
        hub.requests()
    );

    // The same name in `models`' JSON (not curated: the curated list is unchanged) and a commit name.
    let (ok, out, err) = vitune_hub(
        &hub.endpoint,
        &cache,
        &[],
        &["info", &format!("hf-hub:{REPO}@{commit}")],
    );
    assert!(ok, "{err}");
    assert!(out.contains("family"), "{out}");
}

#[test]
fn a_cut_connection_resumes_with_range() {
    let repo = tiny_repo();
    let half = repo.files[0].1.len() / 2;
    let hub = StandIn::start(
        vec![repo],
        Behaviour {
            cut_first_get_at: Some(half),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("hub");
    let (ok, out, err) = vitune_hub(&hub.endpoint, &cache, &[], &["pull", REPO]);
    assert!(ok, "{out}\n{err}");
    let resumed = hub
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /cdn/") && r.ends_with(&format!("bytes={half}-")));
    assert!(resumed, "no resume from byte {half}: {:?}", hub.requests());
    let (ok, _, err) = offline_info(&hub, &cache);
    assert!(ok, "{err}");
}

#[test]
fn a_server_that_ignores_range_gives_a_clean_restart() {
    let repo = tiny_repo();
    let half = repo.files[0].1.len() / 3;
    let hub = StandIn::start(
        vec![repo],
        Behaviour {
            cut_first_get_at: Some(half),
            ignore_range: true,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("hub");
    let (ok, out, err) = vitune_hub(&hub.endpoint, &cache, &[], &["pull", REPO]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(downloads(&hub), 2, "{:?}", hub.requests());
    // The whole file, not the first third twice: the SHA-256 check passed and `info` loads it.
    let (ok, _, err) = offline_info(&hub, &cache);
    assert!(ok, "{err}");
}

#[test]
fn a_hash_mismatch_discards_the_file() {
    let hub = StandIn::start(
        vec![tiny_repo()],
        Behaviour {
            corrupt: true,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("hub");
    let (ok, _, err) = vitune_hub(&hub.endpoint, &cache, &[], &["pull", REPO]);
    assert!(!ok);
    assert!(err.contains("does not match the hub's SHA-256"), "{err}");
    assert!(err.contains("discarded"), "{err}");
    let blobs: Vec<_> = std::fs::read_dir(repo_dir(&cache).join("blobs"))
        .expect("blobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // config.json (fetched first) stays; no weights, whole or partial.
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let (ok, _, err) = offline_info(&hub, &cache);
    assert!(!ok);
    assert!(err.contains("HF_HUB_OFFLINE is set"), "{err}");
}

#[test]
fn unknown_names_gated_repos_offline_and_no_network_each_say_what_to_do() {
    let mut gated = Repo::from_fixture("org/gated-model", &common::fixture("timm_cls"));
    gated.gated = true;
    let hub = StandIn::start(vec![tiny_repo(), gated], Behaviour::default());
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("hub");
    let run = |env: &[(&str, &str)], args: &[&str]| vitune_hub(&hub.endpoint, &cache, env, args);

    let (ok, _, err) = run(&[], &["pull", "org/no-such-model"]);
    assert!(!ok);
    assert!(
        err.contains("has no model repo `org/no-such-model`"),
        "{err}"
    );
    let (ok, _, err) = run(&[], &["pull", &format!("{REPO}@v9")]);
    assert!(!ok);
    assert!(err.contains("has no revision `v9`"), "{err}");
    let (ok, _, err) = run(&[], &["pull", "not a name"]);
    assert!(!ok);
    assert!(err.contains("is not a hub name"), "{err}");

    let (ok, _, err) = run(&[], &["pull", "org/gated-model"]);
    assert!(!ok);
    assert!(err.contains("gated or private"), "{err}");
    assert!(err.contains("set HF_TOKEN"), "{err}");
    let (ok, _, err) = run(&[("HF_TOKEN", "hf_wrong")], &["pull", "org/gated-model"]);
    assert!(!ok);
    assert!(err.contains("does not give access"), "{err}");
    let (ok, out, err) = run(&[("HF_TOKEN", TOKEN)], &["pull", "org/gated-model"]);
    assert!(ok, "{out}\n{err}");
    // The token file under HF_HOME serves as well.
    std::fs::create_dir_all(cache.join("home")).expect("home");
    std::fs::write(cache.join("home/token"), TOKEN).expect("token");
    std::fs::remove_dir_all(cache.join("models--org--gated-model")).expect("rm");
    let (ok, out, err) = run(&[], &["pull", "org/gated-model"]);
    assert!(ok, "{out}\n{err}");

    let (ok, _, err) = run(
        &[("HF_HUB_OFFLINE", "1")],
        &["info", &format!("hf-hub:{REPO}")],
    );
    assert!(!ok);
    assert!(err.contains("HF_HUB_OFFLINE is set"), "{err}");

    // A port nothing listens on: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let (ok, _, err) = vitune_hub(&closed, &cache, &[], &["info", &format!("hf-hub:{REPO}")]);
    assert!(!ok);
    assert!(err.contains("cannot reach the hub"), "{err}");
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn a_refused_family_is_named_after_the_download() {
    let dir = tempfile::tempdir().expect("tmp");
    // A safetensors file that is no ViT.
    let fake = dir.path().join("fake");
    std::fs::create_dir_all(&fake).expect("mkdir");
    let header = br#"{"conv1.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(fake.join("model.safetensors"), bytes).expect("write");
    let hub = StandIn::start(
        vec![Repo::from_fixture("org/resnet", &fake)],
        Behaviour::default(),
    );
    let cache = dir.path().join("hub");
    let (ok, _, err) = vitune_hub(&hub.endpoint, &cache, &[], &["pull", "org/resnet"]);
    assert!(!ok);
    assert!(err.contains("is not a backbone vitune loads"), "{err}");
}

#[test]
fn a_model_trained_on_a_hub_backbone_records_its_name_and_commit() {
    let repo = tiny_repo();
    let commit = repo.commit.clone();
    let hub = StandIn::start(vec![repo], Behaviour::default());
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let s = |p: &Path| p.display().to_string();
    let data = common::demo_data(d, "target", 2);
    let cache = d.join("hub");
    let out = d.join("tuned.safetensors");
    let spec = format!("hf-hub:{REPO}");
    let (ok, _, err) = vitune_hub(
        &hub.endpoint,
        &cache,
        &[],
        &[
            "train",
            "--backbone",
            &spec,
            "--data",
            &s(&data),
            "--method",
            "linear",
            "--shots",
            "1",
            "--epochs",
            "1",
            "--out",
            &s(&out),
        ],
    );
    assert!(ok, "{err}");
    let meta = vitune::tuned::read_meta(&out).expect("tuned file");
    assert_eq!(
        meta.backbone_source.as_deref(),
        Some(format!("hf-hub:{REPO}@{commit}").as_str())
    );
    let (ok, out_text, err) =
        vitune_hub(&hub.endpoint, &cache, &[], &["info", "--tuned", &s(&out)]);
    assert!(ok, "{err}");
    assert!(out_text.contains(&commit), "{out_text}");
}

#[test]
fn models_lists_the_curated_backbones_and_which_are_cached() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ok, out, err) = vitune_hub(
        "http://127.0.0.1:9",
        &dir.path().join("hub"),
        &[],
        &["models", "--json"],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["repo"].as_str())
        .collect();
    for want in [
        "timm/vit_small_patch14_reg4_dinov2.lvd142m",
        "timm/vit_base_patch14_dinov2.lvd142m",
        "timm/vit_base_patch16_clip_224.openai",
        "timm/vit_base_patch16_siglip_224.webli",
        "timm/deit_small_patch16_224.fb_in1k",
        "timm/vit_base_patch16_224.augreg_in21k",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for m in v.as_array().expect("list") {
        assert_eq!(m["cached"], false);
        assert!(m["licence"].as_str().is_some_and(|l| !l.is_empty()));
        assert!(m["parameters_millions"].as_f64().is_some_and(|p| p > 1.0));
    }
}
