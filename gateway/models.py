"""The gateway app's models, where Django looks for them: the outbox (gateway/outbox/)."""

from gateway.outbox.models import DeliveryStatus, Endpoint, Event, WebhookDelivery

__all__ = ["DeliveryStatus", "Endpoint", "Event", "WebhookDelivery"]
