"""Fill the database with many targets and runs, to measure the dashboard."""

import random
import uuid
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from controlplane.seed import DEMO_POLICY
from resilience.models import Policy, Target
from sagas.definitions import ORDER_SAGA
from sagas.models import RunStatus, SagaDefinition, SagaRun, StepRun, StepStatus

BATCH = 5000


class Command(BaseCommand):
    help = (
        "Create N load-test targets (load-0001, ...) with the demo policy and "
        "M finished order runs spread over the last 7 days, in batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--targets",
            type=int,
            default=1000,
            help="number of targets to create (default 1000)",
        )
        parser.add_argument(
            "--runs",
            type=int,
            default=100_000,
            help="number of runs to create (default 100000)",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=1,
            help="random seed, for repeatable data (default 1)",
        )

    def handle(
        self, *args: Any, targets: int, runs: int, seed: int, **options: Any
    ) -> None:
        if targets < 0 or runs < 0:
            raise CommandError(
                f"--targets and --runs must be 0 or more, got {targets} and {runs}."
            )
        rng = random.Random(seed)
        self._targets(targets)
        definition, _ = SagaDefinition.objects.get_or_create(
            name=ORDER_SAGA["name"],
            defaults={
                k: ORDER_SAGA[k] for k in ("description", "input_schema", "steps")
            },
        )
        for start in range(0, runs, BATCH):
            self._runs(definition, min(BATCH, runs - start), rng)
            self.stdout.write(f"{min(start + BATCH, runs)} of {runs} runs")
        self.stdout.write(f"Created {targets} targets and {runs} runs.")

    def _targets(self, count: int) -> None:
        existing = set(Target.objects.values_list("name", flat=True))
        names = [f"load-{i:04d}" for i in range(count)]
        with transaction.atomic():
            Target.objects.bulk_create(
                Target(name=name, base_url=f"http://127.0.0.1:9/{name}")
                for name in names
                if name not in existing
            )
            created = Target.objects.filter(name__in=names, policy__isnull=True)
            Policy.objects.bulk_create(
                Policy(target=target, config=DEMO_POLICY) for target in created
            )

    def _runs(self, definition: SagaDefinition, count: int, rng: random.Random) -> None:
        now = timezone.now()
        statuses = [RunStatus.COMPLETED] * 8 + [RunStatus.COMPENSATED] * 2
        runs = []
        steps: list[StepRun] = []
        for _ in range(count):
            created = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
            status = rng.choice(statuses)
            run = SagaRun(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                definition=definition,
                steps_snapshot=definition.steps,
                status=status,
                input={
                    "customer_id": "load",
                    "product_id": "sku-1",
                    "quantity": 1,
                    "amount": "1.00",
                },
                started_at=created,
                finished_at=created + timedelta(seconds=1),
            )
            runs.append((run, created))
            step_status = (
                StepStatus.SUCCEEDED
                if status == RunStatus.COMPLETED
                else StepStatus.COMPENSATED
            )
            steps.extend(
                StepRun(
                    run=run,
                    index=i,
                    name=s["name"],
                    target=s["target"],
                    status=step_status,
                    attempts=1,
                )
                for i, s in enumerate(definition.steps)
            )
        with transaction.atomic():
            SagaRun.objects.bulk_create([run for run, _ in runs], batch_size=1000)
            StepRun.objects.bulk_create(steps, batch_size=2000)
            # created_at is auto_now_add, so spread it out after the insert.
            _set_created_at(runs)


def _set_created_at(runs: list[tuple[SagaRun, Any]]) -> None:
    id_field = SagaRun._meta.pk
    table = SagaRun._meta.db_table
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(table)} SET {quote('created_at')} = %s WHERE {quote('id')} = %s"
    )
    params = [
        (
            connection.ops.adapt_datetimefield_value(created),
            id_field.get_db_prep_value(run.pk, connection),
        )
        for run, created in runs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
