"""On-disk cache: content-addressed folders of ``.npy`` files + ``meta.json``.

Why this shape: folders are written under a temporary name and renamed into
place (atomic on one filesystem), so a killed process never leaves a
half-written entry that looks complete. Every file's size and SHA-256 are
recorded in ``meta.json`` and checked on read, so a truncated or altered file is
detected and the entry rebuilt, never trusted. Arrays are read memory-mapped.
Arrays are loaded with ``allow_pickle=False``: a cache folder is never a way to
run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV_VAR = "MADS_CACHE_DIR"
META_FILE = "meta.json"


def cache_root(override: str | Path | None = None) -> Path:
    """Cache root: explicit override > ``$MADS_CACHE_DIR`` > the user's cache directory."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mads-explorer"))


def artifact_dir(kind: str, key: str, root: str | Path | None = None) -> Path:
    """Folder of one cached artifact: ``<root>/<kind>/<key>``."""
    return cache_root(root) / kind / key


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def new_tmp_folder(folder: str | Path) -> Path:
    """A fresh temporary folder beside ``folder`` (same filesystem, so rename is atomic)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def commit_folder(tmp: str | Path, folder: str | Path, meta: Mapping[str, Any]) -> Path:
    """Checksum every ``.npy`` in ``tmp``, write ``meta.json``, rename ``tmp`` to ``folder``.

    An existing folder at the destination is replaced. Returns the folder.
    """
    tmp, folder = Path(tmp), Path(folder)
    try:
        files = {}
        for path in sorted(tmp.glob("*.npy")):
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())
            files[path.stem] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
        full_meta = {**dict(meta), "files": files}
        with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
            json.dump(full_meta, fh, sort_keys=True, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        if folder.exists():
            remove_entry(folder)
        os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def save_arrays(folder: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write ``arrays`` + ``meta`` as one folder, atomically (temp folder, then rename)."""
    tmp = new_tmp_folder(folder)
    try:
        for name, array in arrays.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"bad array name {name!r}")
            _write_npy(tmp / f"{name}.npy", array)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return commit_folder(tmp, folder, meta)


def read_meta(folder: str | Path) -> dict[str, Any] | None:
    """The folder's ``meta.json``, or None when missing or unreadable."""
    try:
        with open(Path(folder) / META_FILE, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("files"), dict) else None


# Folders whose checksums passed in this process, keyed by (path, file sizes + mtimes):
# the app reruns often and must not re-hash gigabytes each time; any write changes mtime.
_VERIFIED: dict[tuple[str, tuple[tuple[str, int, int], ...]], bool] = {}


def _stat_signature(folder: Path, names: list[str]) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for name in [*names, META_FILE]:
        path = folder / (name if name == META_FILE else f"{name}.npy")
        st = path.stat()
        sig.append((name, st.st_size, st.st_mtime_ns))
    return tuple(sig)


def verify_folder(folder: str | Path, full: bool = True) -> str | None:
    """Why the folder is not a valid entry (None when valid). ``full`` also checks SHA-256."""
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        return f"{folder / META_FILE}: missing or unreadable"
    problem = _verify_files(folder, meta, full)
    return problem


def _verify_files(folder: Path, meta: dict[str, Any], full: bool) -> str | None:
    names = sorted(meta["files"])
    try:
        signature = (str(folder.resolve()), _stat_signature(folder, names))
    except OSError:
        signature = None
    if full and signature is not None and _VERIFIED.get(signature):
        return None
    for name, info in meta["files"].items():
        path = folder / f"{name}.npy"
        if not path.is_file():
            return f"{path}: missing"
        if path.stat().st_size != info.get("size"):
            return f"{path}: size {path.stat().st_size} != recorded {info.get('size')} (truncated?)"
        if full and file_sha256(path) != info.get("sha256"):
            return f"{path}: checksum mismatch (altered or corrupt)"
    if full and signature is not None:
        _VERIFIED[signature] = True
    return None


def remove_entry(folder: str | Path) -> None:
    """Delete a cache folder (rename first so a reader never sees half of it)."""
    folder = Path(folder)
    if not folder.exists():
        return
    trash = folder.parent / f".bad-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def load_arrays(
    folder: str | Path, mmap: bool = True, verify: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Arrays + meta of a cache folder; None when missing. A corrupt folder is removed (None).

    ``verify`` checks every file's SHA-256 (reads each file once); sizes are
    always checked.
    """
    folder = Path(folder)
    if not folder.exists():
        return None
    problem = verify_folder(folder, full=verify)
    if problem is not None:
        remove_entry(folder)
        return None
    meta = read_meta(folder)
    assert meta is not None
    arrays = {}
    try:
        for name in meta["files"]:
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError):
        remove_entry(folder)
        return None
    return arrays, meta
