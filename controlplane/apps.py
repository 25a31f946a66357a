from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from django.conf import settings

        from controlplane import ownership, tracing

        ownership.connect_worker_signals()
        # Runs once per process: configure() remembers the process id.
        if settings.TRACING_ENABLED:
            tracing.configure()
            tracing.connect_worker_signals()
