"""Read and search the EHR's FHIR server (``fhirServer``) within a per-hook-call deadline.

All network I/O of the service lives here. One pooled :class:`requests.Session` and one small
thread pool are shared by the whole process; each hook call gets its own :class:`FhirClient`
carrying the base URL, the (never logged) access token and the call's deadline. ``requests`` is
imported at the first fetch, not at start-up (~0.1 s; most hook calls fetch nothing).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .resource_index import Resource, bundle_reports_error, bundle_resources, next_link

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

UNAUTHENTICATED_MODES = ("loopback", "always", "never")
_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE_REFERENCE = re.compile(rf"^([A-Z][A-Za-z]+)/({_FHIR_ID})(?:/_history/{_FHIR_ID})?$")
_ACCEPT = "application/fhir+json, application/json;q=0.9"


@dataclass(frozen=True)
class FhirSettings:
    """Limits for FHIR-server access; see docs/data-access.md for the reasoning behind defaults."""

    request_timeout: float = 0.8  # seconds, connect and each read of one HTTP request
    total_deadline: float = 1.5  # seconds, all FHIR access of one hook call
    max_pages: int = 5  # pages of one search, the first included
    page_size: int = 50  # _count sent with searches
    allow_unauthenticated: str = "loopback"  # loopback | always | never
    max_workers: int = 8  # threads of the process-wide fetch pool
    max_response_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.allow_unauthenticated not in UNAUTHENTICATED_MODES:
            raise ValueError(f"FHIR_ALLOW_UNAUTHENTICATED must be one of {UNAUTHENTICATED_MODES}, "
                             f"not {self.allow_unauthenticated!r}")
        if self.request_timeout <= 0 or self.total_deadline <= 0 or self.max_pages < 1:
            raise ValueError("FHIR timeouts must be positive and FHIR_MAX_PAGES at least 1")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FhirSettings:
        return cls(
            request_timeout=float(config.get("FHIR_REQUEST_TIMEOUT", cls.request_timeout)),
            total_deadline=float(config.get("FHIR_TOTAL_DEADLINE", cls.total_deadline)),
            max_pages=int(config.get("FHIR_MAX_PAGES", cls.max_pages)),
            page_size=int(config.get("FHIR_PAGE_SIZE", cls.page_size)),
            allow_unauthenticated=str(config.get("FHIR_ALLOW_UNAUTHENTICATED", cls.allow_unauthenticated)),
            max_workers=int(config.get("FHIR_MAX_WORKERS", cls.max_workers)),
        )


class FetchError(Exception):
    """A read or search that gave no usable data; ``str(exc)`` is safe to show in a card."""


@dataclass
class SearchResult:
    resources: list[Resource]
    complete: bool = True
    note: str = ""  # why the result is incomplete
    pages: int = 1


@dataclass
class _Shared:
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: requests.Session | None = None
    executor: ThreadPoolExecutor | None = None


_shared = _Shared()


def shared_session() -> requests.Session:
    """The process-wide pooled session. Per-call data (token) goes in per-request headers only."""
    from http.cookiejar import DefaultCookiePolicy

    import requests
    from requests.adapters import HTTPAdapter

    with _shared.lock:
        if _shared.session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy/.netrc from the environment near patient data
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # keep no cookies
            adapter = HTTPAdapter(pool_connections=16, pool_maxsize=32, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _shared.session = session
        return _shared.session


def shared_executor(max_workers: int) -> ThreadPoolExecutor:
    with _shared.lock:
        if _shared.executor is None:
            _shared.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fhir")
        return _shared.executor


LOOPBACK_CACHE_MAX_CHARS = 2048  # longer URLs are checked every time (at most ~0.5 MiB kept)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is http(s) on localhost or a loopback address.

    Every in-scope call without an access token asks this of its fhirServer (the sandbox's
    default), and parsing the address costs more than the rest of the data source's set-up;
    an EHR names the same few servers, so short URLs are answered from a small cache."""
    if len(url) <= LOOPBACK_CACHE_MAX_CHARS:
        return _is_loopback_short_url(url)
    return _is_loopback(url)


@functools.lru_cache(maxsize=256)
def _is_loopback_short_url(url: str) -> bool:
    return _is_loopback(url)


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def query_permission(base_url: str | None, has_token: bool, mode: str) -> str | None:
    """None when the service may query ``base_url``; otherwise why not (safe to show)."""
    if not base_url:
        return "the request names no fhirServer"
    if urlsplit(base_url).scheme not in ("http", "https"):
        return "fhirServer is not an http(s) URL"
    if has_token or mode == "always":
        return None
    if mode == "loopback" and is_loopback_url(base_url):
        return None
    return (f"no fhirAuthorization access token was sent and FHIR_ALLOW_UNAUTHENTICATED={mode} "
            "does not allow querying this fhirServer without one")


class FhirClient:
    """FHIR reads and searches for one hook call, bounded by that call's deadline."""

    def __init__(self, base_url: str, access_token: str | None, settings: FhirSettings,
                 deadline: float, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self._token = access_token
        self.settings = settings
        self.deadline = deadline
        self._session = session  # the shared session, taken at the first fetch

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = shared_session()
        return self._session

    def __repr__(self) -> str:  # never show the token
        return f"FhirClient(base={self.base!r})"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def owns(self, url: str) -> bool:
        """True for an absolute URL below this server's base (the token may go there)."""
        return url.startswith(self.base + "/") or url.startswith(self.base + "?")

    def relative(self, reference: str) -> str | None:
        """``Type/id`` to read for a literal reference, or None if it cannot be read here."""
        ref = reference.strip()
        if ref.startswith(("http://", "https://")):
            if not self.owns(ref):
                return None
            ref = ref[len(self.base) + 1:]
        match = _RELATIVE_REFERENCE.match(ref)
        return f"{match.group(1)}/{match.group(2)}" if match else None

    def read(self, type_and_id: str) -> Resource:
        resource = self._get(f"{self.base}/{type_and_id}", None, what=type_and_id)
        if f"{resource.get('resourceType')}/{resource.get('id')}" != type_and_id:
            raise FetchError(f"{type_and_id}: the server returned a different resource")
        return resource

    def search(self, resource_type: str, params: dict[str, str]) -> SearchResult:
        query = {**params, "_count": str(self.settings.page_size)}
        bundle = self._get(f"{self.base}/{resource_type}", query, what=f"{resource_type} search")
        if bundle.get("resourceType") != "Bundle":
            raise FetchError(f"{resource_type} search: the server did not return a Bundle")
        if bundle_reports_error(bundle):  # as in prefetch: a search that failed is no answer
            raise FetchError(f"{resource_type} search: the server reported an error in the searchset")
        return self.follow_pages(bundle, resource_type)

    def follow_pages(self, bundle: Resource, resource_type: str, pages: int = 1) -> SearchResult:
        """The resources of ``bundle`` and of its ``next`` pages, up to FHIR_MAX_PAGES pages."""
        found = [r for r in bundle_resources(bundle) if r.get("resourceType") == resource_type]
        url = next_link(bundle)
        while url:
            if pages >= self.settings.max_pages:
                return SearchResult(found, False, f"more than {pages} pages of {resource_type}; "
                                                  "the rest was not read", pages)
            if not self.owns(url):
                return SearchResult(found, False, f"the next page of {resource_type} is not on "
                                                  "fhirServer and was not read", pages)
            try:
                page = self._get(url, None, what=f"{resource_type} page {pages + 1}")
            except FetchError as exc:
                return SearchResult(found, False, str(exc), pages)
            if page.get("resourceType") != "Bundle" or bundle_reports_error(page):
                return SearchResult(found, False, f"page {pages + 1} of {resource_type} reported an error "
                                                  "or is not a Bundle", pages)
            pages += 1
            found.extend(r for r in bundle_resources(page) if r.get("resourceType") == resource_type)
            url = next_link(page)
        return SearchResult(found, True, "", pages)

    def _get(self, url: str, params: dict[str, str] | None, what: str) -> Resource:
        import requests
        import urllib3

        from .metrics import count_fhir_fetch  # not at import time: see cds_service.metrics

        remaining = self.remaining()
        if remaining <= 0.01:
            count_fhir_fetch("deadline_passed")
            raise FetchError(f"{what}: not requested, the FHIR deadline had passed")
        timeout = min(self.settings.request_timeout, remaining)
        headers = {"Accept": _ACCEPT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        started = time.monotonic()
        try:
            with self.session.get(url, params=params, headers=headers, timeout=timeout,
                                  stream=True, allow_redirects=False) as response:
                status = response.status_code
                if status != 200:
                    count_fhir_fetch("http_error")
                    raise FetchError(f"{what}: HTTP {status} from the FHIR server")
                body = bytearray()
                # read1: whatever has arrived, at most 16 KiB, so the deadline is checked after
                # every read; a server trickling a byte at a time never hits the per-read
                # timeout, and iter_content would wait for each whole 16 KiB chunk.
                while chunk := response.raw.read1(16384, decode_content=True):
                    body += chunk
                    if len(body) > self.settings.max_response_bytes:
                        count_fhir_fetch("too_large")
                        raise FetchError(f"{what}: response too large")
                    if time.monotonic() - started > timeout:
                        count_fhir_fetch("timeout")
                        raise FetchError(f"{what}: timed out after {timeout:.2f} s")
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
            count_fhir_fetch("timeout")
            raise FetchError(f"{what}: timed out after {timeout:.2f} s") from None
        except requests.ConnectionError:
            count_fhir_fetch("connect_error")
            raise FetchError(f"{what}: could not connect to the FHIR server") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            count_fhir_fetch("request_error")
            raise FetchError(f"{what}: request failed ({type(exc).__name__})") from None
        finally:
            log.debug("FHIR GET %s %.1f ms", what, (time.monotonic() - started) * 1000)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            count_fhir_fetch("invalid_response")
            raise FetchError(f"{what}: the FHIR server's response is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            count_fhir_fetch("invalid_response")
            raise FetchError(f"{what}: the FHIR server's response is not a FHIR resource")
        if data["resourceType"] == "OperationOutcome":
            count_fhir_fetch("operation_outcome")
            raise FetchError(f"{what}: the FHIR server answered with an OperationOutcome")
        count_fhir_fetch("ok")
        return data
