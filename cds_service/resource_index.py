"""Find FHIR resources carried in a hook request: draft orders, contained resources, prefetch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

Resource = dict[str, Any]


def dicts_in(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array; nothing for anything else (malformed input is not trusted)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def strings_in(value: Any) -> list[str]:
    """The strings of a JSON array; nothing for anything else."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def reference_key(reference: str) -> str | None:
    """``Type/id`` for a relative or absolute literal reference (``_history`` dropped)."""
    ref = reference.strip()
    if not ref or ref.startswith("#") or ref.startswith("urn:"):
        return None
    parts = [p for p in ref.split("?")[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def resource_key(resource: Resource) -> str | None:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str):
        return f"{rtype}/{rid}"
    return None


def _entry_items(bundle: dict[str, Any]) -> list[Any]:
    """What ``entry`` holds, as a list: one object where R4 has the array is a one-entry Bundle."""
    entries = bundle.get("entry")
    return [entries] if isinstance(entries, dict) else entries if isinstance(entries, list) else []


def bundle_entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a Bundle as R4 writes them, read liberally where the meaning is clear:
    ``entry`` as one object is a one-entry Bundle, and an entry that is itself a resource (it
    has a ``resourceType``, which no Bundle.entry element is named) is the entry of that
    resource. Anything else that is not an object is left out (malformed input is not trusted)."""
    found = dicts_in(_entry_items(bundle))
    for entry in found:
        if "resource" not in entry:  # rare: only then is a new list made
            return [_as_entry(e) for e in found]
    return found


def unreadable_entries(bundle: dict[str, Any]) -> int:
    """How many entries of ``bundle`` hold no resource the service can read."""
    return sum(1 for item in _entry_items(bundle)
               if not isinstance(item, dict) or not isinstance(_as_entry(item).get("resource"), dict))


def _is_bare_resource(entry: Any) -> bool:
    return isinstance(entry, dict) and "resource" not in entry and isinstance(entry.get("resourceType"), str)


def _as_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"resource": entry} if _is_bare_resource(entry) else entry


def with_r4_entries(bundle: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` with its entries as :func:`bundle_entries` reads them, other items kept (for
    the envelope check to report); the same object when nothing changes, never modified."""
    entries = bundle.get("entry")
    if not isinstance(entries, dict | list) or (isinstance(entries, list)
                                                 and not any(_is_bare_resource(e) for e in entries)):
        return bundle  # the common case; or no array to read (the envelope check reports it)
    return {**bundle, "entry": [_as_entry(e) if isinstance(e, dict) else e for e in _entry_items(bundle)]}


def _entry_pairs(bundle: dict[str, Any]) -> Iterator[tuple[str | None, Resource]]:
    """(fullUrl or None, resource) of each entry of ``bundle`` that holds a resource."""
    for entry in bundle_entries(bundle):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            full_url = entry.get("fullUrl")
            yield (full_url if isinstance(full_url, str) else None), resource


def bundle_resources(bundle: Any) -> Iterator[Resource]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return
    for _, resource in _entry_pairs(bundle):
        yield resource


def bundle_reports_error(bundle: dict) -> bool:
    """A searchset whose entries include an OperationOutcome with an error or fatal issue: the
    search failed (in part), so what it returned is not all there is."""
    for entry in bundle_entries(bundle):
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            for issue in dicts_in(resource.get("issue")):
                if isinstance(issue, dict) and issue.get("severity") in ("error", "fatal"):
                    return True
    return False


def next_link(bundle: Resource) -> str | None:
    """The ``next`` page URL of a searchset Bundle, if it has one."""
    for link in dicts_in(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def prefetch_entries(value: Any) -> Iterator[tuple[str | None, Resource]]:
    """(fullUrl or None, resource) in one prefetch value: a resource, a Bundle's entries, or
    nothing (null, an OperationOutcome)."""
    if not isinstance(value, dict):
        return
    rtype = value.get("resourceType")
    if rtype == "Bundle":
        yield from ((url, r) for url, r in _entry_pairs(value) if r.get("resourceType") != "OperationOutcome")
    elif isinstance(rtype, str) and rtype != "OperationOutcome":
        yield None, value


def prefetch_resources(value: Any) -> Iterator[Resource]:
    """Resources in one prefetch value (:func:`prefetch_entries` without the fullUrls)."""
    for _, resource in prefetch_entries(value):
        yield resource


class ResourceIndex:
    """Resources addressable by ``Type/id``, ``urn:uuid`` fullUrl, or ``#id`` within a container."""

    def __init__(self) -> None:
        self._by_key: dict[str, Resource] = {}
        self._by_full_url: dict[str, Resource] = {}

    def add(self, resource: Resource, full_url: str | None = None) -> None:
        key = resource_key(resource)
        if key and key not in self._by_key:
            self._by_key[key] = resource
        if full_url:
            self._by_full_url.setdefault(full_url, resource)

    def add_all(self, resources: Iterable[Resource]) -> None:
        for resource in resources:
            self.add(resource)

    def resolve(self, reference: str, container: Resource | None = None) -> Resource | None:
        if reference.startswith("#"):
            if container is None:
                return None
            wanted = reference[1:]
            for contained in dicts_in(container.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == wanted:
                    return contained
            return None
        if reference in self._by_full_url:
            return self._by_full_url[reference]
        key = reference_key(reference)
        return self._by_key.get(key) if key else None



def draft_order_entries(draft_orders: dict[str, Any]) -> Iterator[tuple[str | None, Resource]]:
    return _entry_pairs(draft_orders)
