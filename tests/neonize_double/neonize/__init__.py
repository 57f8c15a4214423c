"""A double of the neonize 0.5.2 package for tests (see ../BEHAVIOURS.md for what it reproduces and
where each behaviour comes from). Put its parent directory first on PYTHONPATH of an engine host;
production code never imports it."""

from .client import NewClient
from .events import Event

__version__ = "0.5.2"
__all__ = ("Event", "NewClient")
