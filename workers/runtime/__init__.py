"""The worker runtime: what `run_worker` and `serve` run. It uses the apps' services and the
engines; nothing in the apps imports it."""
