"""Is the Hugging Face hub reachable? Answered in seconds: HF's own clients retry for minutes."""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the HF hub answers at all. HF_HUB_OFFLINE=1 (or HF_DATASETS_OFFLINE=1) means no.

    Any HTTP answer, even an error status, means yes; urllib honours the usual proxy
    variables, as the HF clients do.
    """
    if _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s)
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # URLError, timeouts, refused connections, bad endpoint
        return False
    return True
