"""The floor every app stands on: API errors and base views, authentication, throttling, request
limits, logging, tracing, middleware, the API contract, failpoints, wake-ups and JIDs. Nothing here
imports an app, the runtime or an engine."""
