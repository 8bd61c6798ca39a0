"""The response checker itself rejects what the spec forbids (so a green suite means something)."""

from __future__ import annotations

from cds_service.card_render import first_sentence

from .cds_response_rules import discovery_problems, response_problems

GOOD = {"uuid": "0b7c3a5e-3f0e-4c1e-9a4b-2f6c1d9e8a70", "summary": "ok", "indicator": "warning",
        "source": {"label": "Plan"}}


def card(**changes):
    return {"cards": [{**GOOD, **changes}]}


def test_a_valid_card_passes():
    assert response_problems(card()) == []


def test_summary_of_140_characters_fails():
    assert response_problems(card(summary="x" * 140))


def test_suggestions_without_selection_behavior_fail():
    assert any("selectionBehavior" in p for p in response_problems(card(suggestions=[{"label": "do"}])))


def test_override_reason_without_display_fails():
    problems = response_problems(card(overrideReasons=[{"system": "s", "code": "c"}]))
    assert any("display" in p for p in problems)


def test_app_context_on_absolute_link_fails():
    link = {"label": "l", "url": "https://example.org", "type": "absolute", "appContext": "x"}
    assert response_problems(card(links=[link]))


def test_empty_and_null_elements_fail():
    assert response_problems(card(detail=""))
    assert response_problems(card(links=[]))
    assert response_problems(card(source={"label": "Plan", "url": None}))


def test_unknown_indicator_fails():
    assert response_problems(card(indicator="hard-stop"))


def test_discovery_with_a_draft_orders_prefetch_token_fails():
    service = {"hook": "order-sign", "id": "x", "description": "d",
               "prefetch": {"orders": "MedicationRequest?_id={{context.draftOrders}}"}}
    assert discovery_problems({"services": [service]})


def test_first_sentence_marks_the_cut():
    assert first_sentence("Weak evidence. More text here.") == "Weak evidence. [...]"
    assert first_sentence("One sentence only.") == "One sentence only."
