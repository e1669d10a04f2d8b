"""Model backends behind one small base class; ``load_backend`` picks one (imports nothing heavy here)."""

from mvleval.backends.base import Backend, BackendOptions, GenerationRequest
from mvleval.backends.registry import load_backend

#: The name earlier versions exported.
get_backend = load_backend

__all__ = ["Backend", "BackendOptions", "GenerationRequest", "get_backend", "load_backend"]
