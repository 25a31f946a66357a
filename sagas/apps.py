from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"

    def ready(self) -> None:
        # Step functions register themselves on import; a worker must import
        # them before it runs a step that names one.
        for module in settings.SAGA_STEP_MODULES:
            import_module(module)
