"""Simultaneous requests never oversell stock or apply one key twice.

Each thread has its own database connection, so the requests really race:
on PostgreSQL through row locks and the unique constraints, on SQLite
through its single write lock.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from demo.models import Payment, Product
from demo.services import ServiceError, reserve
from tests.demo.conftest import PAYMENT, post

THREADS = 12


@pytest.fixture(autouse=True)
def file_database() -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]
        # Connections to a shared in-memory SQLite database fail with
        # "database table is locked" instead of waiting for the lock.
        pytest.skip("needs a file database: set CONTROLPLANE_TEST_DB")


def run_in_threads(work: Callable[[int], Any]) -> list[Any]:
    """Start ``work(index)`` in THREADS threads at once; return the results."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(work(index))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_reservations_never_oversell(seeded: None) -> None:
    Product.objects.create(product_id="sku-few", available=5)

    def reserve_one(index: int) -> str:
        try:
            reserve(f"r-{index}", "sku-few", 1)
        except ServiceError as exc:
            return exc.code
        return "reserved"

    outcomes = run_in_threads(reserve_one)

    assert outcomes.count("reserved") == 5
    assert outcomes.count("insufficient_stock") == THREADS - 5
    product = Product.objects.get(product_id="sku-few")
    assert product.available == 0
    assert product.reserved == 5


@pytest.mark.django_db(transaction=True)
def test_one_key_charged_once(seeded: None) -> None:
    def charge(index: int) -> Any:
        return post(APIClient(), "/demo/payment/payments/", PAYMENT, key="same")

    responses = run_in_threads(charge)

    assert [r.status_code for r in responses] == [201] * THREADS
    replayed = [r for r in responses if r.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == THREADS - 1
    assert Payment.objects.count() == 1
