"""Placeholders in step paths and bodies."""

import pytest

from sagas.definitions import TemplateError, render

CONTEXT = {
    "run": {"id": "r-1"},
    "input": {"quantity": 3, "amount": "9.90"},
    "steps": {"create_order": {"output": {"id": 7}}},
}


def test_whole_placeholder_keeps_type() -> None:
    assert render({"q": "{{input.quantity}}"}, CONTEXT) == {"q": 3}


def test_embedded_placeholder_interpolates() -> None:
    assert render("/orders/{{ run.id }}/cancel/", CONTEXT) == "/orders/r-1/cancel/"


def test_earlier_step_output_is_reachable() -> None:
    assert render(["{{steps.create_order.output.id}}"], CONTEXT) == [7]


def test_unknown_placeholder_raises() -> None:
    with pytest.raises(TemplateError, match=r"input\.colour"):
        render("{{input.colour}}", CONTEXT)
