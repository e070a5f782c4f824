"""The Hugging Face hub as a source of models and data: can a hub id be had now, before anything waits on it.

transformers and datasets retry an unreachable hub for minutes per source before they fail. `unavailable` answers
at once instead: with `HF_HUB_OFFLINE=1` from the local cache alone (no network call), otherwise from one request
with a short timeout (made once per process). `train`, `grid` and the data loaders ask it before loading.

Stdlib at import; huggingface_hub (a dependency of transformers and datasets) is imported when asked.
"""

from __future__ import annotations

import functools
import os

PROBE_TIMEOUT_S = 5.0  # one request, no retries: a hub that does not answer in this time counts as unreachable
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of a boolean environment variable


def offline() -> bool:
    """Whether the hub is switched off (`HF_HUB_OFFLINE`, or transformers' older `TRANSFORMERS_OFFLINE`)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or any(
        (os.environ.get(name) or "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.cache
def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` did not answer one request within `PROBE_TIMEOUT_S` (None: it answered)."""
    from huggingface_hub.utils import get_session

    try:
        response = get_session().head(endpoint, timeout=PROBE_TIMEOUT_S, allow_redirects=False)
    except Exception as exc:  # DNS, refused, timeout, proxy, TLS: all mean the same here
        return (
            f"the Hugging Face hub ({endpoint}) cannot be reached (one try, {PROBE_TIMEOUT_S:g} s timeout): "
            f"{_root_cause(exc)}"
        )
    if response.status_code >= 500:
        return f"the Hugging Face hub ({endpoint}) answered HTTP {response.status_code}"
    return None


def _root_cause(exc: BaseException) -> str:
    """The innermost error (requests wraps urllib3's, which wraps the socket's): its type and message."""
    for _ in range(8):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in exc.args if isinstance(a, BaseException)), None) or exc.__cause__
        if inner is None:
            break
        exc = inner
    message = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def unavailable(repo_id: str, repo_type: str = "model") -> str | None:
    """Why the hub repo `repo_id` cannot be loaded now, in a clause for an error message; None when it can.

    Offline (`HF_HUB_OFFLINE=1`), a model is looked up in the local cache (no network call); a dataset is left to
    `datasets`, which reads its own cache and fails at once when offline. Online, one request to the hub's
    endpoint decides (once per process): when it fails, loading would only retry.

    Args:
        repo_id: the hub id, e.g. `bert-base-chinese` or `clue/tnews`.
        repo_type: "model" or "dataset".
    """
    from huggingface_hub import constants, try_to_load_from_cache

    if offline():
        if repo_type == "model" and not _cached(repo_id, try_to_load_from_cache):
            return "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
        return None
    reason = _unreachable(constants.ENDPOINT)
    if reason is None:
        return None
    return f"{reason}; with a copy in the local cache, set HF_HUB_OFFLINE=1"


def _cached(repo_id: str, lookup) -> bool:
    """Whether the local cache holds the model's config.json (`lookup`: huggingface_hub.try_to_load_from_cache)."""
    try:
        return isinstance(lookup(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id: no cache holds it
        return False
