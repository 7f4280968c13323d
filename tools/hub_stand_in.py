#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub on 127.0.0.1, for trying vitune's hub code by hand and against Python's
huggingface_hub (tools/hub_interop.sh). It serves one fixture folder (model.safetensors + config.json) under
any ORG/NAME: the metadata API, HEAD/GET resolve with X-Repo-Commit and ETag, LFS files through an absolute
redirect to a CDN path (as the hub does), optionally slowed down (--bytes-per-s) to watch a progress bar.
It stops by itself after --seconds. Never needed to build or test vitune (tests/common/hub_stand_in.rs is the
tests' own)."""
import argparse, hashlib, json, os, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

ap = argparse.ArgumentParser()
ap.add_argument("fixture")
ap.add_argument("--port", type=int, default=18765)
ap.add_argument("--seconds", type=int, default=300)
ap.add_argument("--bytes-per-s", type=int, default=0)
a = ap.parse_args()
files = {f: open(os.path.join(a.fixture, f), "rb").read() for f in ["model.safetensors", "config.json"]}
sha = {f: hashlib.sha256(b).hexdigest() for f, b in files.items()}


class Hub(BaseHTTPRequestHandler):
    def answer(self, code, headers, body=b""):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command == "HEAD":
            return
        step = 16384
        for i in range(0, len(body), step):
            self.wfile.write(body[i:i + step])
            if a.bytes_per_s:
                time.sleep(step / a.bytes_per_s)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        p = self.path.split("?")[0].strip("/").split("/")
        if p[:2] == ["api", "models"] and len(p) >= 5:
            repo = "/".join(p[2:4])
            commit = hashlib.sha1(repo.encode()).hexdigest()
            body = json.dumps({"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}).encode()
            return self.answer(200, {"Content-Type": "application/json"}, body)
        if p[0] == "cdn":
            f = next(k for k in sha if sha[k] == p[1])
            return self.answer(200, {"Accept-Ranges": "bytes"}, files[f])
        if len(p) >= 5 and p[2] == "resolve":
            repo, f = "/".join(p[:2]), "/".join(p[4:])
            commit = hashlib.sha1(repo.encode()).hexdigest()
            if f not in files:
                return self.answer(404, {"X-Error-Code": "EntryNotFound"})
            if f.endswith(".safetensors"):
                return self.answer(302, {
                    "Location": f"http://localhost:{a.port}/cdn/{sha[f]}", "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{sha[f]}"', "X-Linked-Size": str(len(files[f])), "ETag": '"lfs-pointer"'})
            return self.answer(200, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(files[f]).hexdigest()}"'},
                               files[f])
        self.answer(404, {"X-Error-Code": "RepoNotFound"})


srv = ThreadingHTTPServer(("127.0.0.1", a.port), Hub)
threading.Timer(a.seconds, srv.shutdown).start()
srv.serve_forever()
