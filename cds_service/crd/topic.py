"""The card's source.topic: the CRD card type where CRD is spoken, or a per-client choice.

Epic keys override persistence on ``source.topic.code`` and documents it as alphanumeric,
at most 100 characters; the CRD code ``off-guideline`` has a hyphen. ``CARD_TOPIC_BY_ISS``
maps a verified client ``iss`` to the topic coding that client gets (README "Da Vinci CRD").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .settings import CARD_TYPE, CARD_TYPE_DISPLAY, CrdSettings

log = logging.getLogger(__name__)


def crd_topic(settings: CrdSettings) -> dict[str, str]:
    return {"system": settings.card_type_system, "code": CARD_TYPE, "display": CARD_TYPE_DISPLAY}


def _valid_coding(value: Any) -> bool:
    return (isinstance(value, Mapping)
            and all(isinstance(value.get(k), str) and value.get(k) for k in ("system", "code"))
            and all(isinstance(v, str) and v for v in value.values())
            and set(value) <= {"system", "code", "display"})


def card_topic(settings: CrdSettings, client_iss: str | None,
               topics_by_iss: Mapping[str, Any] | None) -> dict[str, str]:
    """The configured topic for this client, else the CRD card type of the version in use."""
    if client_iss and isinstance(topics_by_iss, Mapping) and client_iss in topics_by_iss:
        configured = topics_by_iss[client_iss]
        if _valid_coding(configured):
            return dict(configured)
        log.warning("CARD_TOPIC_BY_ISS entry for a client is not a {system, code[, display]} "
                    "coding; the CRD card type is used")
    return crd_topic(settings)


def topic_config_problems(topics_by_iss: Any) -> list[str]:
    """Problems with a CARD_TOPIC_BY_ISS value (for tests and operators)."""
    if not isinstance(topics_by_iss, Mapping):
        return ["CARD_TOPIC_BY_ISS must be a mapping of iss to a coding"]
    return [f"CARD_TOPIC_BY_ISS[{iss!r}] is not a {{system, code[, display]}} coding"
            for iss, coding in topics_by_iss.items() if not _valid_coding(coding)]
