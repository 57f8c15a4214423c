"""Protocol adapters behind one async interface (`base.Engine`).

Engines know no Django models: they take and give plain data. `neonize` is imported only inside
engine host processes; this package's `__init__` imports nothing engine-specific.
"""
