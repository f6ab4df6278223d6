"""The ranking service (``eliverec serve``): FastAPI app, online feature state, A/B buckets, event log.

- :mod:`eliverec.serving.app`: ``create_app(settings)`` and ``serve(settings)``; endpoints ``POST /rank``,
  ``POST /events``, ``GET /healthz``, ``GET /metrics`` and the token-protected ``/admin/*``.
- :mod:`eliverec.serving.state`: per-user / per-channel online state (same feature code as offline).
- :mod:`eliverec.serving.models`: champion and challenger by registry alias, hot reload.
- :mod:`eliverec.serving.buckets`: salted user buckets and the stored allocation.
- :mod:`eliverec.serving.eventlog`: served impressions and feedback into ``raw/<date>/``.
"""

from __future__ import annotations

import os
from typing import Any

TOKEN_ENV = "ELIVEREC_ADMIN_TOKEN"


def admin_token(settings: Any) -> str:
    """The admin token: ``$ELIVEREC_ADMIN_TOKEN`` when set, else ``serving.admin_token``."""
    return os.environ.get(TOKEN_ENV) or settings.serving.admin_token


def base_url(settings: Any) -> str:
    """``http://<serving.host>:<serving.port>`` (0.0.0.0 is reached through loopback)."""
    host = "127.0.0.1" if settings.serving.host in ("0.0.0.0", "::") else settings.serving.host
    return f"http://{host}:{settings.serving.port}"
