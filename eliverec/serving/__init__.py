"""The ranking service (``eliverec serve``): FastAPI app, online feature state, A/B buckets, event log.

- :mod:`eliverec.serving.app`: ``create_app(settings)`` and ``serve(settings)``; endpoints ``POST /rank``,
  ``POST /events`` (event-producer token), ``GET /healthz``, ``GET /metrics`` and the admin-token ``/admin/*``.
- :mod:`eliverec.serving.state`: per-user / per-channel online state (same feature code as offline).
- :mod:`eliverec.serving.models`: champion and challenger by registry alias, hot reload.
- :mod:`eliverec.serving.buckets`: salted user buckets and the stored allocation.
- :mod:`eliverec.serving.eventlog`: served impressions and feedback into ``raw/<date>/``.
"""

from __future__ import annotations

import os
from typing import Any

TOKEN_ENV = "ELIVEREC_ADMIN_TOKEN"
PRODUCER_TOKEN_ENV = "ELIVEREC_PRODUCER_TOKEN"


def admin_token(settings: Any) -> str:
    """The admin token: ``$ELIVEREC_ADMIN_TOKEN`` when set, else ``serving.admin_token``."""
    return os.environ.get(TOKEN_ENV) or settings.serving.admin_token


def producer_token(settings: Any) -> str:
    """The event-producer token (``POST /events``): ``$ELIVEREC_PRODUCER_TOKEN`` when set, else
    ``serving.producer_token``."""
    return os.environ.get(PRODUCER_TOKEN_ENV) or settings.serving.producer_token


def base_url(settings: Any) -> str:
    """``http://<serving.host>:<serving.port>`` (0.0.0.0 is reached through loopback)."""
    host = "127.0.0.1" if settings.serving.host in ("0.0.0.0", "::") else settings.serving.host
    return f"http://{host}:{settings.serving.port}"
