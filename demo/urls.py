"""URLs of the demo services (/demo/), the fault API and the faults page.

``service_urlpatterns`` is mounted at /demo/, ``api_urlpatterns`` under
/api/ and ``urlpatterns`` (the dashboard page) at the site root.
"""

from django.urls import URLPattern, path

from demo import serializers, services, tcc, views

TCC_TRY_SERIALIZERS = {
    "order": serializers.CreateOrderSerializer,
    "inventory": serializers.ReserveSerializer,
    "payment": serializers.ChargeSerializer,
}


def _service_patterns(service: str) -> list[URLPattern]:
    return [
        path(
            f"{service}/state/",
            views.StateView.as_view(service=service),
            name=f"demo-{service}-state",
        )
    ]


def _tcc_patterns(service: str) -> list[URLPattern]:
    """Return the try, confirm, cancel and branch endpoints of a TCC participant."""
    try_op, confirm_op, cancel_op = tcc.OPERATIONS[service]
    return [
        path(
            f"{service}/tcc/try/",
            views.TccTryView.as_view(
                service=service,
                input_serializer=TCC_TRY_SERIALIZERS[service],
                operation=try_op,
            ),
            name=f"demo-{service}-tcc-try",
        ),
        path(
            f"{service}/tcc/<str:reference>/",
            views.TccBranchView.as_view(service=service),
            name=f"demo-{service}-tcc-branch",
        ),
        path(
            f"{service}/tcc/<str:reference>/confirm/",
            views.TccPhaseTwoView.as_view(service=service, operation=confirm_op),
            name=f"demo-{service}-tcc-confirm",
        ),
        path(
            f"{service}/tcc/<str:reference>/cancel/",
            views.TccPhaseTwoView.as_view(service=service, operation=cancel_op),
            name=f"demo-{service}-tcc-cancel",
        ),
    ]


service_urlpatterns = [
    path(
        "order/orders/",
        views.ActionView.as_view(
            service="order",
            input_serializer=serializers.CreateOrderSerializer,
            operation=services.create_order,
        ),
        name="demo-order-create",
    ),
    path(
        "order/checkouts/",
        views.ActionView.as_view(
            service="order",
            input_serializer=serializers.CreateOrderSerializer,
            operation=services.place_order,
        ),
        name="demo-order-checkout",
    ),
    path(
        "order/orders/<str:reference>/",
        views.RecordView.as_view(service="order"),
        name="demo-order",
    ),
    path(
        "order/orders/<str:reference>/confirm/",
        views.ReferenceActionView.as_view(
            service="order", operation=services.confirm_order
        ),
        name="demo-order-confirm",
    ),
    path(
        "order/orders/<str:reference>/cancel/",
        views.ReferenceActionView.as_view(
            service="order", operation=services.cancel_order
        ),
        name="demo-order-cancel",
    ),
    path(
        "inventory/reservations/",
        views.ActionView.as_view(
            service="inventory",
            input_serializer=serializers.ReserveSerializer,
            operation=services.reserve,
        ),
        name="demo-inventory-reserve",
    ),
    path(
        "inventory/reservations/<str:reference>/",
        views.RecordView.as_view(service="inventory"),
        name="demo-inventory-reservation",
    ),
    path(
        "inventory/reservations/<str:reference>/release/",
        views.ReferenceActionView.as_view(
            service="inventory", operation=services.release
        ),
        name="demo-inventory-release",
    ),
    path(
        "payment/payments/",
        views.ActionView.as_view(
            service="payment",
            input_serializer=serializers.ChargeSerializer,
            operation=services.charge,
        ),
        name="demo-payment-charge",
    ),
    path(
        "payment/payments/<str:reference>/",
        views.RecordView.as_view(service="payment"),
        name="demo-payment",
    ),
    path(
        "payment/payments/<str:reference>/refund/",
        views.ReferenceActionView.as_view(service="payment", operation=services.refund),
        name="demo-payment-refund",
    ),
    path(
        "shipping/shipments/",
        views.ActionView.as_view(
            service="shipping",
            input_serializer=serializers.ScheduleShipmentSerializer,
            operation=services.schedule_shipment,
        ),
        name="demo-shipping-schedule",
    ),
    path(
        "shipping/shipments/<str:reference>/",
        views.RecordView.as_view(service="shipping"),
        name="demo-shipment",
    ),
    path(
        "shipping/shipments/<str:reference>/cancel/",
        views.ReferenceActionView.as_view(
            service="shipping", operation=services.cancel_shipment
        ),
        name="demo-shipping-cancel",
    ),
    *_service_patterns("order"),
    *_service_patterns("inventory"),
    *_service_patterns("payment"),
    *_service_patterns("shipping"),
    *_tcc_patterns("order"),
    *_tcc_patterns("inventory"),
    *_tcc_patterns("payment"),
]

api_urlpatterns = [
    path("faults/", views.FaultListView.as_view(), name="api-faults"),
    path("faults/<str:service>/", views.FaultDetailView.as_view(), name="api-fault"),
]

urlpatterns = [
    path("faults/", views.faults_page, name="faults"),
]
