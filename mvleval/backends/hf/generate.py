"""GenerationSettings -> transformers generate() arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mvleval.benchmarks.task import GenerationSettings


def generation_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """Map GenerationSettings onto transformers' generate() arguments."""
    kwargs: dict[str, Any] = {
        "num_beams": settings.num_beams,
        "max_new_tokens": settings.max_new_tokens,
        "min_new_tokens": settings.min_new_tokens,
        "do_sample": settings.do_sample,
    }
    if settings.num_beams > 1:
        # only beam search uses it (mBLIP's VQA protocol sets -1 to favour short answers)
        kwargs["length_penalty"] = settings.length_penalty
    return kwargs
