"""The baseline of bench/throughput.py: parse the JSON body, answer ``{"cards": []}``.

Served by ``cds-service serve --app bare_app:create_app`` so that it runs under exactly the
server, worker and thread settings the service itself gets.
"""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str):
        request.get_json(force=True)
        return jsonify({"cards": []})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "alive"})

    return app
