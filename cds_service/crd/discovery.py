"""The CRD extensions each service declares in discovery (dev-1, dev-2, dev-4)."""

from __future__ import annotations

import copy

from .settings import CONFIGURATION_OPTIONS, SUPPORTED_VERSIONS


def discovery_extension() -> dict:
    return {
        "davinci-crd.version": list(SUPPORTED_VERSIONS),
        "davinci-crd.configuration-options": copy.deepcopy(list(CONFIGURATION_OPTIONS)),
    }
