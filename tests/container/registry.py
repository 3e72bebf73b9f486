"""A tiny read-only Docker Registry (HTTP API v2) for the container tests, on 127.0.0.1.

It serves images taken from ``docker save`` tarballs, so that ``docker pull`` (through
``twcmaster-ctl setup`` and compose) can be exercised without any outside registry. The
engine treats registries on 127.0.0.0/8 as insecure, so plain HTTP is enough.

Only what a pull needs:

* ``GET /v2/``: 200 (no authentication);
* ``GET``/``HEAD /v2/<name>/manifests/<tag or digest>``: an image manifest, schema 2
  (``application/vnd.docker.distribution.manifest.v2+json``) with its
  ``Docker-Content-Digest``;
* ``GET``/``HEAD /v2/<name>/blobs/<digest>``: the image config and the layers. The layers are
  served as saved: uncompressed tar (``application/vnd.docker.image.rootfs.diff.tar``), so a
  layer's digest is its diff id.

Everything else answers 404 (or 405 for writes). Test-only: never part of what ships.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
CHUNK = 1 << 20

_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class _Blob:
    size: int
    path: Path | None = None  # on disk, or
    data: bytes | None = None  # in memory


@dataclass
class _Content:
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, _Blob] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registry:
    """``with Registry(folder) as registry: registry.add_saved(tarball, "name", "tag")``;
    then ``registry.ref("name", "tag")`` is what to pull. ``requests`` lists what was asked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.content = _Content()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- content --------------------------------------------------------------------

    def add_saved(
        self, tarball: Path, name: str, tag: str, *, labels: dict[str, str] | None = None
    ) -> str:
        """Serves the (first) image of a ``docker save`` tarball as ``name:tag``. ``labels``
        are added to its config (so it becomes a different image, with its own id).
        Returns the manifest's digest."""
        unpacked = self.folder / f"saved-{len(self.content.manifests)}"
        unpacked.mkdir(parents=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
        # Both save formats (legacy and OCI layout) have manifest.json: Config and Layers are
        # paths inside the tarball.
        saved = json.loads((unpacked / "manifest.json").read_text())[0]
        config = json.loads((unpacked / saved["Config"]).read_bytes())
        if labels:
            config.setdefault("config", {})
            config["config"]["Labels"] = {**(config["config"].get("Labels") or {}), **labels}
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        config_digest = _sha256_bytes(config_bytes)
        layers = []
        for member in saved["Layers"]:
            path = unpacked / member
            digest = _sha256_file(path)
            size = path.stat().st_size
            self.content.blobs[digest] = _Blob(size, path=path)
            layers.append({"mediaType": LAYER_TAR, "size": size, "digest": digest})
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if diff_ids != [layer["digest"] for layer in layers]:
            raise ValueError(f"{tarball}: the layers do not match the config's diff_ids")
        self.content.blobs[config_digest] = _Blob(len(config_bytes), data=config_bytes)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {
                    "mediaType": CONFIG_V1,
                    "size": len(config_bytes),
                    "digest": config_digest,
                },
                "layers": layers,
            },
            indent=3,
        ).encode()
        manifest_digest = _sha256_bytes(manifest)
        self.content.manifests[(name, tag)] = (manifest_digest, manifest)
        self.content.manifests[(name, manifest_digest)] = (manifest_digest, manifest)
        self.config_digest = config_digest
        return manifest_digest

    # -- serving --------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.server_address[1]

    def ref(self, name: str, tag: str) -> str:
        return f"127.0.0.1:{self.port}/{name}:{tag}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        with self.content.lock:
            return list(self.content.requests)

    def start(self) -> Registry:
        handler = type("Handler", (_Handler,), {"content": self.content})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="test-registry", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self.thread is not None:
            self.thread.join(10)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    content: _Content
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass  # quiet; `requests` keeps what was asked

    def _record(self, status: int) -> None:
        with self.content.lock:
            self.content.requests.append((self.command, self.path, status))

    def _answer(
        self,
        status: int,
        *,
        body: bytes = b"",
        blob: _Blob | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        length = blob.size if blob is not None else len(body)
        self.send_header("Content-Length", str(length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if blob is None:
            self.wfile.write(body)
        elif blob.data is not None:
            self.wfile.write(blob.data)
        else:
            assert blob.path is not None
            with blob.path.open("rb") as file:
                shutil.copyfileobj(file, self.wfile, CHUNK)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._answer(status, body=body, headers={"Content-Type": "application/json"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            self._answer(200, body=b"{}", headers={"Content-Type": "application/json"})
            return
        if match := _MANIFEST_PATH.match(path):
            found = self.content.manifests.get((match["name"], match["ref"]))
            if found is None:
                self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                return
            digest, manifest = found
            self._answer(
                200,
                body=manifest,
                headers={"Content-Type": MANIFEST_V2, "Docker-Content-Digest": digest},
            )
            return
        if match := _BLOB_PATH.match(path):
            blob = self.content.blobs.get(match["digest"])
            if blob is None:
                self._error(404, "BLOB_UNKNOWN", "blob unknown")
                return
            self._answer(
                200,
                blob=blob,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Docker-Content-Digest": match["digest"],
                },
            )
            return
        self._error(404, "NOT_FOUND", "not found")

    do_HEAD = do_GET  # the same headers, no body (see _answer)

    def _read_only(self) -> None:
        self._error(405, "UNSUPPORTED", "this registry is read-only")

    do_POST = do_PUT = do_PATCH = do_DELETE = _read_only
