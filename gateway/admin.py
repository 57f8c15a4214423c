"""Where Django's admin finds the gateway app's pages: the webhook outbox (gateway/outbox/)."""

from gateway.outbox.admin import WebhookDeliveryAdmin

__all__ = ["WebhookDeliveryAdmin"]
