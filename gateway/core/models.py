"""The floor's tables: what every app may rely on (see the modules that define them)."""
