"""Model backends behind one small protocol: generate(requests, settings) -> texts."""

from mvleval.backends.base import Backend, GenerationRequest, get_backend

__all__ = ["Backend", "GenerationRequest", "get_backend"]
