"""WhatsApp groups of each session: a cache the owning worker keeps fresh from group events,
the API to run groups, and the group webhooks."""
