"""Parse and validate a CDS Hooks service request envelope (no FHIR model parsing here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import orjson

from .errors import ApiError, Issue
from .knowledge import SCHEMA_DIR
from .resource_index import with_r4_entries

if TYPE_CHECKING:  # jsonschema is imported only when an envelope fails the compiled check
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

MAX_REPORTED_ISSUES = 10


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    encounter_id: str | None
    draft_orders: dict[str, Any]
    selections: tuple[str, ...] | None
    prefetch: dict[str, Any]
    fhir_server: str | None
    access_token: str | None
    raw: dict[str, Any]

    def __repr__(self) -> str:  # never print tokens or patient data by accident
        return f"HookRequest(hook={self.hook!r}, hookInstance={self.hook_instance!r})"


@cache
def _schema() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "hook-request.schema.json").read_text(encoding="utf-8"))


@cache
def _validator() -> Draft202012Validator:
    """The reference validator: it words the 400 for an envelope that fails the schema."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


@cache
def _compiled_validator() -> Any:
    """The same schema compiled (jsonschema-rs, about 2 us a call instead of 0.3-0.9 ms): it only
    answers "valid or not"; the reference validator runs whenever it says not, or cannot tell."""
    return jsonschema_rs.validator_for(_schema(), validate_formats=False)


def envelope_errors(data: dict[str, Any]) -> list[ValidationError]:
    """The schema errors of ``data``, in path order; empty when it conforms."""
    try:
        if _compiled_validator().is_valid(data):
            return []
    except Exception:  # a value it cannot convert (e.g. a huge integer): let the reference decide
        pass
    return sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))


def _json_path(error: ValidationError) -> str:
    path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path)
    return path.replace(".[", "[") or "(root)"


def _describe(error: ValidationError) -> Issue:
    """Say what is wrong and where, without echoing request content (it may hold PHI)."""
    where = _json_path(error)
    expected = error.validator_value
    if error.validator == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        missing = [name for name in expected if name not in present]
        if missing == ["selections"]:
            return Issue("context: order-select requests must carry context.selections", "required",
                         expression=("context.selections",))
        field_path = ", ".join(f"{where}.{name}" if where != "(root)" else name for name in missing)
        return Issue(f"missing required field(s): {field_path}", "required", expression=(where,))
    messages = {
        "type": f"must be of JSON type {expected}",
        "const": f"must be {expected!r}",
        "minLength": "must not be empty",
        "minItems": "must not be empty (order-select names at least one selected order)",
        "pattern": "does not have the expected format",
        "dependentRequired": "fhirAuthorization is present but fhirServer is missing",
    }
    message = messages.get(str(error.validator), f"fails the '{error.validator}' rule")
    return Issue(f"{where}: {message}", "invalid", expression=(where,))


UTF8_BOM = b"\xef\xbb\xbf"


# 19 digits in a row: a number that may not fit in 64 bits, which orjson would read as a float
# (the standard library keeps it an exact int). Digits in strings count too: they only cost speed.
# Found by mapping every digit to "0" and anything else to " " (a regular expression for a run of
# digits took ten times as long).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19
# Fewer opening brackets than this, so no deeper nesting: orjson reads up to 1,024 levels, the
# standard library (and the service's own recursive walks after it) fewer, so a deep body is
# left to the standard library, which refuses it with a 400 as before.
_ORJSON_MAX_BRACKETS = 512


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode the body as a UTF-8 JSON object or raise a 4xx ApiError saying why not.

    Only UTF-8 is accepted (RFC 8259 section 8.1); a leading UTF-8 byte order mark is
    skipped. UTF-16 and UTF-32 bodies get a 415: ``json.loads`` would auto-detect them, but
    the raw-bytes scan of the fast path reads UTF-8 only, and the two must never disagree.

    orjson reads the body (a fifth of the standard library's time) when it gives the very value
    ``json.loads`` would; anything it refuses (NaN, a lone surrogate, an infinity, invalid
    UTF-8) or might read differently (a number beyond 64 bits, nesting deeper than the standard
    library reads) goes to the standard library, whose answer and error messages are the service's.
    """
    if body.startswith(UTF8_BOM):
        body = body[len(UTF8_BOM):]
    if not body.strip():
        raise ApiError.single(400, "Request body is empty; expected a CDS Hooks request (JSON).")
    # A NUL byte never occurs in UTF-8 JSON (control characters must be escaped), but it is in
    # every UTF-16 or UTF-32 encoding of JSON text.
    if b"\x00" in body:
        raise ApiError.single(415, "Request body must be JSON encoded as UTF-8 (RFC 8259 section "
                                   "8.1); it looks like UTF-16 or UTF-32.", code="not-supported")
    if (body.count(b"[") + body.count(b"{") < _ORJSON_MAX_BRACKETS
            and _LONG_DIGIT_RUN not in body.translate(_DIGITS_AS_ZERO)):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # worded (or read after all) by the standard library below
        else:
            if not isinstance(data, dict):
                raise ApiError.single(400, f"Request body must be a JSON object, not {type(data).__name__}.")
            return data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError.single(415, f"Request body must be JSON encoded as UTF-8 (RFC 8259 section "
                                   f"8.1); byte {exc.start} is not UTF-8.", code="not-supported") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError.single(400, f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError.single(400, "Request body is nested too deeply.") from None
    except ValueError as exc:  # e.g. an integer longer than Python's int-parsing digit limit
        raise ApiError.single(400, f"Request body holds a value that cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError.single(400, f"Request body must be a JSON object, not {type(data).__name__}.")
    return data


def check_draft_order_count(data: dict[str, Any], max_draft_orders: int) -> None:
    """413 when ``context.draftOrders`` holds more entries than the service takes in one call.

    Checked on the parsed JSON before schema validation or any screening work.
    """
    context = data.get("context")
    draft_orders = context.get("draftOrders") if isinstance(context, dict) else None
    entries = draft_orders.get("entry") if isinstance(draft_orders, dict) else None
    if isinstance(entries, list) and len(entries) > max_draft_orders:
        raise ApiError.single(
            413, f"context.draftOrders has {len(entries)} entries; this service takes at most "
                 f"{max_draft_orders} in one call (setting MAX_DRAFT_ORDERS). Send the orders in "
                 "smaller groups.", expression=("context.draftOrders.entry",))


def _with_r4_draft_orders(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``context.draftOrders`` entries read as R4 entries (one object for the
    array, a resource for its entry: :func:`.resource_index.with_r4_entries`), before the
    schema check, so such a Bundle is read, not refused; the input is never changed."""
    context = data.get("context")
    draft_orders = context.get("draftOrders") if isinstance(context, dict) else None
    if not isinstance(draft_orders, dict):
        return data
    lifted = with_r4_entries(draft_orders)
    if lifted is draft_orders:
        return data
    return {**data, "context": {**context, "draftOrders": lifted}}


def validate_envelope(data: dict[str, Any], *, expected_hook: str) -> HookRequest:
    data = _with_r4_draft_orders(data)
    errors = envelope_errors(data)
    if errors:
        issues = [_describe(e) for e in errors[:MAX_REPORTED_ISSUES]]
        raise ApiError(400, issues)
    if data["hook"] != expected_hook:
        raise ApiError.single(
            400,
            f"This service handles the '{expected_hook}' hook; the request is for '{data['hook']}'.",
            expression=("hook",),
        )
    context = data["context"]
    selections = context.get("selections")
    auth = data.get("fhirAuthorization") or {}
    return HookRequest(
        hook=data["hook"],
        hook_instance=data["hookInstance"],
        patient_id=context["patientId"],
        user_id=context["userId"],
        encounter_id=context.get("encounterId"),
        draft_orders=context["draftOrders"],
        selections=tuple(selections) if selections is not None else None,
        prefetch=data.get("prefetch") or {},
        fhir_server=data.get("fhirServer"),
        access_token=auth.get("access_token"),
        raw=data,
    )
