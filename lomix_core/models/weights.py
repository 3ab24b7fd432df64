"""Where a timm encoder's ImageNet weights come from, and a check that they can be had at all.

Three sources, in this order:

1. a local file named by ``$LOMIX_WEIGHTS``: the file itself, or, for a folder, ``<arch>.safetensors``
   (or ``.pth``, ``.pt``, ``.bin``) inside it; ``python -m lomix_core reproduce --weights PATH`` sets it;
2. the Hugging Face cache, where timm keeps what it downloaded once;
3. a download from huggingface.co, when it can be reached.

:func:`check_available` answers before any training starts, in a few seconds: a run that asks for
the paper's pretrained encoder must never fall back to random weights, and a series of notebooks
must not discover the problem an hour in. Offline, timm's own attempt retries for about a minute
per file before it gives up; the check opens one connection with a short timeout instead.
"""
from __future__ import annotations

import functools
import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

WEIGHTS_ENV = "LOMIX_WEIGHTS"
SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def local_file(arch: str) -> Path | None:
    """The file ``$LOMIX_WEIGHTS`` names for ``arch``, or None when it is not set."""
    value = os.environ.get(WEIGHTS_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        found = [path / f"{arch}{suffix}" for suffix in SUFFIXES if (path / f"{arch}{suffix}").is_file()]
        if not found:
            raise FileNotFoundError(f"${WEIGHTS_ENV}={path} is a folder without {arch}.safetensors (or .pth, .pt, "
                                    f".bin); expected the timm {arch} state_dict there, or a file path")
        return found[0]
    if not path.is_file():
        raise FileNotFoundError(f"${WEIGHTS_ENV}={path} does not exist; expected a timm {arch} state_dict file "
                                f"or a folder holding {arch}.safetensors")
    return path


def source(arch: str, weights: str | os.PathLike | None = None) -> str:
    """Which ImageNet weights a pretrained ``arch`` starts from, as a run's key and record name them:
    ``weights`` or ``$LOMIX_WEIGHTS``'s file by its sha256 (two different files never share a cached
    run), else timm's default Hugging Face repository."""
    path = Path(weights).expanduser() if weights is not None else local_file(arch)
    if path is None:
        return f"hub:{hub_id(arch)}"
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist; expected a timm {arch} state_dict file")
    stat = path.stat()
    return f"sha256:{_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_id(arch: str) -> str:
    """The Hugging Face repository timm downloads ``arch``'s default ImageNet weights from."""
    import timm

    return timm.models.get_pretrained_cfg(arch).hf_hub_id


def cached_file(arch: str) -> Path | None:
    """timm's weights for ``arch`` in the local Hugging Face cache, if it holds them."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id(arch), filename)
        if isinstance(found, str):
            return Path(found)
    return None


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether one connection to the Hugging Face Hub opens within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def how_to_provide(arch: str) -> str:
    return (f"pass --weights PATH (weights=PATH in Python) or set {WEIGHTS_ENV}=PATH, to a timm {arch} state_dict, "
            f"e.g. model.safetensors "
            f"from https://huggingface.co/{hub_id(arch)}, or the official PVT release's {arch}.pth; or run once "
            f"with internet so that timm caches it")


def check_available(arch: str, why: str = "") -> str:
    """Where ``arch``'s ImageNet weights will come from, in words; one line of error if nowhere.

    ``why`` (e.g. "the full profile") starts the error, so it says who needs the weights. When only
    the cache has them, ``HF_HUB_OFFLINE=1`` is set so that timm (here and in notebook kernels
    started from here) reads it without first retrying the network for a minute.
    """
    path = local_file(arch)
    if path is not None:
        return f"{path} (${WEIGHTS_ENV})"
    cached = cached_file(arch)
    if hub_reachable():
        return f"the Hugging Face cache ({cached})" if cached else f"huggingface.co/{hub_id(arch)} (download)"
    if cached:
        os.environ["HF_HUB_OFFLINE"] = "1"
        return f"the Hugging Face cache ({cached}), offline"
    who = f"{why} needs" if why else "this run needs"
    raise FileNotFoundError(f"{who} ImageNet weights for {arch}, and none are here: ${WEIGHTS_ENV} is not set, the "
                       f"Hugging Face cache has none and huggingface.co cannot be reached; {how_to_provide(arch)}")
