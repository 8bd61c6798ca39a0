"""The CRD version and hook configuration a request asks for (pure; never an error)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPORTED_VERSIONS = ("2.0",)
DEFAULT_VERSION = "2.0"

# Card-type code systems by CRD version (davinci-crd.md §1.5; CodeSystem-temp.json in the
# 2.0.1 package). Only the versions in SUPPORTED_VERSIONS are produced.
CARD_TYPE_SYSTEMS = {
    "2.0": "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp",
}

# The configuration options this service honours (discovery `davinci-crd.configuration-options`).
COVERAGE_INFO = "coverage-info"
CARD_TYPE = "off-guideline"  # the card type our cards carry (CodeSystem-temp `_cardType`)
CARD_TYPE_DISPLAY = "Off Guideline"
MAX_CARDS = "max-cards"
MAX_CARDS_DEFAULT = 10

CONFIGURATION_OPTIONS = (
    {
        "code": COVERAGE_INFO,
        "type": "boolean",
        "name": "Coverage information",
        "description": "Return a coverage-information system action (ext-coverage-information "
                       "on the MedicationRequest) for each IV ketamine or IV lidocaine order.",
        "default": True,
    },
    {
        "code": CARD_TYPE,
        "type": "boolean",
        "name": "Off-guideline cards",
        "description": "Return cards with the payer policy statement, the evidence and deep "
                       "links when an order's indication is one the policy calls "
                       "experimental/investigational, or is not documented.",
        "default": True,
    },
    {
        "code": MAX_CARDS,
        "type": "integer",
        "name": "Maximum cards",
        "description": "The most cards returned for one hook call.",
        "default": MAX_CARDS_DEFAULT,
    },
)


@dataclass(frozen=True)
class CrdSettings:
    version: str = DEFAULT_VERSION
    coverage_info: bool = True
    cards: bool = True
    max_cards: int = MAX_CARDS_DEFAULT
    ignored: tuple[str, ...] = ()  # settings that were not honoured, for the log (names only)

    @property
    def card_type_system(self) -> str:
        return CARD_TYPE_SYSTEMS[self.version]


def _sensible(code: str, value: Any) -> bool:
    if code in (COVERAGE_INFO, CARD_TYPE):
        return isinstance(value, bool)
    if code == MAX_CARDS:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return False


def read_settings(raw_request: dict[str, Any]) -> CrdSettings:
    """Read ``extension.davinci-crd.*`` of a hook request.

    Configuration is never required (dev-15); unknown or nonsensical settings are ignored
    (dev-6, dev-17); an unsupported requestedVersion falls back to the default version.
    """
    extension = raw_request.get("extension")
    if not isinstance(extension, dict):
        return CrdSettings()
    ignored: list[str] = []
    version = DEFAULT_VERSION
    requested = extension.get("davinci-crd.requestedVersion")
    if requested is not None:
        if isinstance(requested, str) and requested.strip() in SUPPORTED_VERSIONS:
            version = requested.strip()
        else:
            ignored.append("davinci-crd.requestedVersion")
    configuration = extension.get("davinci-crd.configuration")
    values: dict[str, Any] = {}
    if isinstance(configuration, dict):
        for code, value in configuration.items():
            if _sensible(code, value):
                values[code] = value
            else:
                ignored.append(str(code)[:50])
    elif configuration is not None:
        ignored.append("davinci-crd.configuration")
    return CrdSettings(
        version=version,
        coverage_info=values.get(COVERAGE_INFO, True),
        cards=values.get(CARD_TYPE, True),
        max_cards=values.get(MAX_CARDS, MAX_CARDS_DEFAULT),
        ignored=tuple(ignored),
    )
