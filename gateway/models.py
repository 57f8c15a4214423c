"""The gateway app's models, where Django looks for them: the webhook outbox (gateway/outbox/)."""

from gateway.outbox.models import DeliveryStatus, WebhookDelivery

__all__ = ["DeliveryStatus", "WebhookDelivery"]
