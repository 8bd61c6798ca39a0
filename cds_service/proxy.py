"""Trust ``X-Forwarded-*`` headers only from reverse proxies the operator configured.

Without configuration (every ``PROXY_FIX_X_*`` count 0) the headers are ignored: the request's
scheme, host and client address are what the service itself saw. Each count is the number of
proxies in front of the service that set that header (werkzeug's ``ProxyFix``).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import ConfigError

PROXY_KEYS = {"x_for": "PROXY_FIX_X_FOR", "x_proto": "PROXY_FIX_X_PROTO", "x_host": "PROXY_FIX_X_HOST",
              "x_port": "PROXY_FIX_X_PORT", "x_prefix": "PROXY_FIX_X_PREFIX"}


def proxy_counts(config: dict) -> dict[str, int]:
    counts = {}
    for arg, key in PROXY_KEYS.items():
        value = config.get(key, 0)
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a whole number of proxies (0 = off), not {value!r}") from None
        if count < 0 or isinstance(value, bool):
            raise ConfigError(f"{key} must be a whole number of proxies (0 = off), not {value!r}")
        counts[arg] = count
    return counts


def init_proxy(app: Flask) -> None:
    counts = proxy_counts(app.config)
    if any(counts.values()):
        app.wsgi_app = ProxyFix(app.wsgi_app, **counts)  # type: ignore[method-assign]
