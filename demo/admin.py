from django.contrib import admin

from .models import (
    AppliedEffect,
    FaultSetting,
    IdempotencyKey,
    Order,
    Payment,
    Product,
    Reservation,
    Shipment,
)

RECORD_LIST = ["reference", "status", "compensated_before_action", "created_at"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [*RECORD_LIST, "customer_id", "product_id", "quantity", "amount"]
    list_filter = ["status", "compensated_before_action"]
    search_fields = ["reference", "customer_id"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["product_id", "available", "reserved"]
    search_fields = ["product_id"]


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = [*RECORD_LIST, "product_id", "quantity"]
    list_filter = ["status", "compensated_before_action"]
    search_fields = ["reference", "product_id"]


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = [*RECORD_LIST, "customer_id", "amount"]
    list_filter = ["status", "compensated_before_action"]
    search_fields = ["reference", "customer_id"]


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):
    list_display = [*RECORD_LIST, "customer_id", "product_id", "quantity"]
    list_filter = ["status", "compensated_before_action"]
    search_fields = ["reference", "customer_id"]


@admin.register(AppliedEffect)
class AppliedEffectAdmin(admin.ModelAdmin):
    list_display = ["service", "reference", "kind", "applied_at"]
    list_filter = ["service", "kind"]
    search_fields = ["reference"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ["service", "key", "status_code", "created_at"]
    list_filter = ["service", "status_code"]
    search_fields = ["key"]


@admin.register(FaultSetting)
class FaultSettingAdmin(admin.ModelAdmin):
    list_display = ["service", "error_rate", "latency_ms", "updated_at"]
