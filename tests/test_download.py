"""SIB-200 downloads against a real local HTTP server (no mocks).

The server serves a temp folder laid out like raw.githubusercontent.com:
`<commit>/data/annotated/<code>/<file>`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import shared_data_options

from kmexp.data import SIB200
from kmexp.data.sib200 import SIB200_COMMIT, download_file
from kmexp.errors import ConfigError, DataError

CODE = "fra_Latn"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture
def served(tmp_path):
    """A running server on 127.0.0.1; yields (base_url, the folder it serves)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port():
    """A port with a bound socket that is not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _language_dir(root: Path, code: str = CODE) -> Path:
    return root / SIB200_COMMIT / "data" / "annotated" / code


def _files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _sib200(base_url: str, cache: Path, code: str = CODE) -> SIB200:
    return SIB200(root=None, code=code, cache_dir=str(cache), base_url=base_url,
                  commit=SIB200_COMMIT, timeout_s=5.0, **shared_data_options())


def test_checksum_mismatch_is_refused_and_nothing_is_cached(served, tmp_path):
    base_url, root = served
    folder = _language_dir(root)
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("index_id\tcategory\ttext\n1\tsports\tnot the real file\n")
    cache = tmp_path / "cache"

    with pytest.raises(DataError) as err:
        _sib200(base_url, cache).load()

    message = str(err.value)
    url = f"{base_url}/{SIB200_COMMIT}/data/annotated/{CODE}/train.tsv"
    assert url in message
    assert "sha256 mismatch" in message
    assert "\n" not in message
    assert _files_in(cache) == []
    assert not (cache / SIB200_COMMIT).exists()  # folders it created are gone too


def test_download_file_writes_only_verified_bytes(served, tmp_path):
    base_url, root = served
    payload = "etiqueta\ttexto\n".encode()
    (root / "good.txt").write_bytes(payload)
    dest = tmp_path / "cache" / "sub" / "good.txt"

    with pytest.raises(DataError, match="expected 0{64}"):
        download_file(f"{base_url}/good.txt", dest, "0" * 64, timeout_s=5.0)
    assert _files_in(tmp_path / "cache") == []

    good = hashlib.sha256(payload).hexdigest()
    assert download_file(f"{base_url}/good.txt", dest, good, timeout_s=5.0) == dest
    assert dest.read_bytes() == payload
    assert _files_in(tmp_path / "cache") == [dest]  # no temporary file left beside it


def test_missing_remote_file_names_url_and_status(served, tmp_path):
    base_url, _ = served  # serves an empty folder: every file is a 404
    with pytest.raises(DataError, match=r"HTTP 404.*KMEXP_DATA_DIR"):
        _sib200(base_url, tmp_path / "cache").load()
    assert _files_in(tmp_path / "cache") == []


def test_good_download_loads_the_language(served, tmp_path):
    data_dir = os.environ.get("KMEXP_DATA_DIR")
    if not data_dir:
        pytest.skip("KMEXP_DATA_DIR is not set: no local SIB-200 copy to serve")
    base_url, root = served
    # Serve the shared copy in place (a link, read at test time; nothing is copied).
    _language_dir(root).parent.mkdir(parents=True)
    _language_dir(root).symlink_to(Path(data_dir, CODE).resolve(), target_is_directory=True)
    cache = tmp_path / "cache"

    splits = _sib200(base_url, cache).load()

    assert (len(splits.train.texts), len(splits.dev.texts), len(splits.test.texts)) == (701, 99, 204)
    assert len(splits.labels) == 7
    cached = cache / SIB200_COMMIT / CODE
    assert sorted(p.name for p in _files_in(cache)) == ["dev.tsv", "test.tsv", "train.tsv"]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (cached / name).read_bytes() == Path(data_dir, CODE, name).read_bytes()
    assert set(splits.info["files"]) == {str(cached / n) for n in ("train.tsv", "dev.tsv", "test.tsv")}

    # A second load is served from the cache: it works with no server at all.
    again = _sib200("http://127.0.0.1:9", cache).load()
    assert again.train.texts == splits.train.texts


def test_no_server_names_kmexp_data_dir_and_url(closed_port, tmp_path):
    base_url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(DataError) as err:
        _sib200(base_url, tmp_path / "cache").load()

    message = str(err.value)
    assert "KMEXP_DATA_DIR" in message
    assert f"{base_url}/{SIB200_COMMIT}/data/annotated/{CODE}/train.tsv" in message
    assert "\n" not in message
    assert _files_in(tmp_path / "cache") == []


def test_a_commit_without_shipped_sums_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.commit"):
        SIB200(root=None, code=CODE, cache_dir=str(tmp_path), base_url="http://127.0.0.1:9",
               commit="0" * 40, timeout_s=5.0, **shared_data_options())
