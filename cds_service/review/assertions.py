"""Review page: find a kept Da Vinci CRD coverage assertion by its id (for claims staff).

Adds ``/review/assertions`` to the review blueprint; it inherits the blueprint's login,
no-store and framing headers.
"""

from __future__ import annotations

import json

from flask import current_app, render_template, request
from flask_login import login_required

from ..crd.store import find_assertion
from .views import bp

MAX_ID_LENGTH = 100


@bp.get("/assertions")
@login_required
def assertions():
    assertion_id = (request.args.get("id") or "").strip()[:MAX_ID_LENGTH]
    rows = find_assertion(current_app.extensions["cds"].database, assertion_id) if assertion_id else []
    for row in rows:
        row["extension_json"] = json.dumps(row["extension"], indent=2)
    return render_template("review/assertions.html", assertion_id=assertion_id, rows=rows)
