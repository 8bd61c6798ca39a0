"""Small loopback HTTP servers standing in for an EHR's FHIR server, and hook bodies that use one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .factories import IV, hook_request, med_request, rxnorm

KETAMINE = rxnorm("238084", "ketamine 50 MG/ML Injectable Solution")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    content_type: str = "application/fhir+json"
    trickle: float = 0.0  # seconds between bytes of the body (a server that sends it a byte at a time)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]


@dataclass
class FakeFhir:
    base_url: str
    requests: list[Recorded] = field(default_factory=list)


def json_reply(resource: dict, status: int = 200) -> Reply:
    return Reply(status, json.dumps(resource).encode())


@contextmanager
def fake_fhir(answer: Callable[[str], Reply]) -> Iterator[FakeFhir]:
    """Serve ``answer(path)`` on a free 127.0.0.1 port; records each request's path and headers."""
    state: FakeFhir

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(Recorded(self.path, dict(self.headers.items())))
            reply = answer(self.path)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if not reply.trickle:
                    self.wfile.write(reply.body)
                for position in range(len(reply.body) if reply.trickle else 0):
                    self.wfile.write(reply.body[position:position + 1])
                    self.wfile.flush()
                    time.sleep(reply.trickle)
            except OSError:
                pass  # the client gave up (deadline): expected in the slow-server tests

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    state = FakeFhir(f"http://127.0.0.1:{server.server_address[1]}/fhir")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback base URL where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"


def ketamine_order(reason_ref: str | None = "Condition/c-crps", **extra) -> dict:
    order = med_request(KETAMINE, route=IV, **extra)
    if reason_ref:
        order["reasonReference"] = [{"reference": reason_ref}]
    return order


def body_with_server(base_url: str, *orders: dict, token: str | None = None,
                     prefetch: dict | None = None, patient: str = "p1") -> dict:
    body = hook_request(*(orders or (ketamine_order(),)), prefetch=prefetch)
    body["fhirServer"] = base_url
    body["context"]["patientId"] = patient
    if token is not None:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "cds-service"}
    return body
