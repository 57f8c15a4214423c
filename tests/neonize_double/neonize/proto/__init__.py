"""neonize's own generated protobuf modules, loaded from the installed package (they are plain
protobuf code; only neonize's client loads the Go library). As neonize/proto/__init__.py does, the
directory goes on sys.path too, for the modules' imports of each other."""

import sys
from importlib.metadata import distribution
from pathlib import Path

_REAL = Path(str(distribution("neonize").locate_file("neonize/proto")))
__path__ = [str(_REAL)]
sys.path.insert(0, str(_REAL))
