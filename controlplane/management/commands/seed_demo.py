from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from controlplane.seed import seed


class Command(BaseCommand):
    help = (
        "Create or update the demo operator (demo/demo), the demo service "
        "targets with their policies, the order saga and the demo stock."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            help="Address of the web server that serves /demo/ "
            "(default: the DEMO_BASE_URL setting).",
        )

    def handle(self, *args: Any, base_url: str | None = None, **options: Any) -> None:
        seed(base_url)
        self.stdout.write("Demo data is in place.")
