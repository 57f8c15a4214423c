"""Where Django's admin finds the gateway app's pages: the outbox (gateway/outbox/)."""

from gateway.outbox.admin import EndpointAdmin, WebhookDeliveryAdmin

__all__ = ["EndpointAdmin", "WebhookDeliveryAdmin"]
