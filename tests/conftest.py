"""Shared fixtures: the real datasets (MNIST, Fashion-MNIST) and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

# A relative TUNELAB_DATA (the README's ../shared/data) must survive tests that chdir.
if os.environ.get("TUNELAB_DATA"):
    os.environ["TUNELAB_DATA"] = str(Path(os.environ["TUNELAB_DATA"]).resolve())


def _shared_data_dir() -> Path | None:
    """$TUNELAB_DATA if it exists, else ../shared/data beside the repository root."""
    env = os.environ.get("TUNELAB_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    repo_relative = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return repo_relative if repo_relative.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding mnist/ and fashion-mnist/ IDX .gz files (skips when absent)."""
    path = _shared_data_dir()
    if path is None or not (path / "mnist").is_dir():
        pytest.skip("shared data not found: set TUNELAB_DATA or provide ../shared/data")
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[str, Path, list[str]]]:
    """A real HTTP server on 127.0.0.1 (free port) serving a temp folder.

    Yields (base URL ending in '/', served folder, list of requested paths).
    """
    for var in ("no_proxy", "NO_PROXY"):  # a configured proxy must not intercept localhost
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    log: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": log})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served, log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
