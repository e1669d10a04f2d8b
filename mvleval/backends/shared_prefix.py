"""Beam search that does the prompt's work once per sample instead of once per beam, keeping transformers' token ids.

transformers' ``generate`` copies every input ``num_beams`` times (``repeat_interleave``) before computing anything,
so with 5 beams the work on the prompt is done 5 times on identical rows:

* decoder-only LLM (BLOOM): the whole prefill of ``[image query embeddings ; prompt]`` through every layer;
* encoder-decoder LLM (mT5): every decoder layer's cross-attention key/value projection of the encoder output, at
  the first decoder step (the encoder itself already runs once per sample; later steps reuse the projections).

:func:`generate_sharing_prefix` lets that one computation see one copy per sample and repeats its result to the
beams (forward hooks that act on the first call only and are removed afterwards); everything else is transformers'
own beam search, unchanged. For encoder-decoder models the cache also skips re-ordering the cross-attention rows
after each step: they are equal across a sample's beams, so the copy would change nothing.

Why the ids are the same: the shared computation gets exactly the rows it would get as one of the copies, and a
matrix product computes each row the same way however many rows there are, provided the row count stays in the
same kernel class: on this project's CPUs (MKL/oneDNN) a product's rows are identical for any row count >= 4, but 1
and 2-3 rows take other kernels (a one-row product can differ in the last bit). So only computations with one row
per *prompt position* are shared (at least num_query_tokens rows per sample), never per-token ones such as the first
decoder step or the last position's lm_head, which would drop to 1-3 rows for a batch of 1-3 samples. The tests
(tests/test_backend_shared_prefix.py) check ids and beam scores bitwise against plain ``generate``. A GPU library
may pick another kernel for another row count, which moves a last bit exactly as a different batch size does;
``BackendOptions(shared_prefix=False)`` runs the plain path, so anyone can compare on their own hardware.

Alternatives measured and not used: sharing the encoder-decoder's whole first decoder step (one row per sample: scores
off in the last bits for a batch of 1), and prefilling the prompt minus its last token once and letting ``generate``
run that token from the provided cache (the last position then comes from a one-query attention instead of the full
prefill: beam scores off by up to 3e-5 on the tiny BLOOM model, same ids).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedConfig


class LanguageModel(Protocol):
    """The parts of a transformers language model (or a peft wrapper of one) this module uses; transformers types
    ``generate`` only through ``torch.nn.Module.__getattr__`` and leaves ``get_decoder`` unannotated."""

    @property
    def config(self) -> PreTrainedConfig:
        """The model's configuration."""
        ...

    @property
    def base_model(self) -> torch.nn.Module:
        """The body without the head (the model itself when it has no separate body)."""
        ...

    def get_decoder(self) -> torch.nn.Module:
        """The decoder stack (encoder-decoder models)."""
        ...

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """One forward pass."""
        ...

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """transformers' generation loop."""
        ...


def uses_shared_prefix(num_beams: int, do_sample: bool) -> bool:
    """Whether the settings are ones :func:`generate_sharing_prefix` applies to: beam search with more than one beam
    and no sampling (greedy search has nothing to share; sampling keeps transformers' plain path)."""
    return num_beams > 1 and not do_sample


def supports_shared_prefix(language_model: LanguageModel) -> bool:
    """Whether the model has the parts :func:`generate_sharing_prefix` shares: a decoder-only body (``base_model``)
    or, for an encoder-decoder, T5-style cross-attention projections (``EncDecAttention.k`` / ``.v``)."""
    if language_model.config.is_encoder_decoder:
        return bool(_cross_attention_projections(language_model))
    return _has_separate_body(language_model)


def generate_sharing_prefix(language_model: LanguageModel, *, num_beams: int, **generate_kwargs: Any) -> torch.Tensor:
    """``language_model.generate(num_beams=num_beams, **generate_kwargs)``, the prompt's work done once per sample.

    Args:
        language_model: a transformers model that :func:`supports_shared_prefix` (BloomForCausalLM,
            MT5ForConditionalGeneration, ...), in any precision (4-bit included), on any device, LoRA layers included.
        num_beams: beams of the search (more than 1).
        **generate_kwargs: the rest of the generate() arguments; ``inputs_embeds`` (batch, length, hidden) is
            required, ``do_sample`` must be false and ``num_return_sequences`` at most ``num_beams``.

    Returns:
        What ``generate`` returns, with the same token ids as without sharing.

    Raises:
        ValueError: arguments or a model this path does not handle (use plain ``generate`` for them).
        RuntimeError, TypeError: a shared module's first call did not look as expected (a transformers version that
            works differently): an error, never a silently different result.
    """
    from transformers import DynamicCache

    if not uses_shared_prefix(num_beams, bool(generate_kwargs.get("do_sample", False))):
        raise ValueError("generate_sharing_prefix is for beam search without sampling (num_beams > 1, do_sample False)")
    if int(generate_kwargs.get("num_return_sequences") or 1) > num_beams:
        raise ValueError("num_return_sequences larger than num_beams would expand the inputs beyond the beams")
    inputs_embeds = generate_kwargs.get("inputs_embeds")
    if inputs_embeds is None or inputs_embeds.dim() != 3:
        raise ValueError("generate_sharing_prefix needs inputs_embeds of shape (batch, length, hidden)")
    cache_kwarg = _cache_kwarg(language_model)
    if generate_kwargs.get("past_key_values") is not None or generate_kwargs.get("cache") is not None:
        raise ValueError("generate_sharing_prefix makes its own cache; do not pass one")
    batch_size = int(inputs_embeds.shape[0])
    if language_model.config.is_encoder_decoder:
        modules = _cross_attention_projections(language_model)
        if not modules:
            raise ValueError(f"{type(language_model).__name__} has no T5-style cross-attention projections to share")
        # the cache generate would make itself, but with cross-attention re-ordering skipped (see the class)
        config = language_model.config.get_text_config(decoder=True)
        generate_kwargs[cache_kwarg] = _beam_shared_cross_attention_cache_class()(
            DynamicCache(config=config), DynamicCache(config=config), num_beams=num_beams
        )
    else:
        modules = [language_model.base_model]
        if not _has_separate_body(language_model):
            raise ValueError(f"{type(language_model).__name__} has no separate body (base_model) to share")
    with share_first_call(modules, batch_size=batch_size, num_beams=num_beams):
        # the sequences tensor: the callers never ask generate for a dict output
        return cast("torch.Tensor", language_model.generate(num_beams=num_beams, **generate_kwargs))


def _has_separate_body(language_model: LanguageModel) -> bool:
    """Whether ``base_model`` is a body below the head rather than the model itself."""
    body: object = language_model.base_model
    return body is not language_model


def _cache_kwarg(language_model: LanguageModel) -> str:
    """The name generate() takes a cache under: transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old
    name warns until 6.0 removes it); passing the current name keeps the path silent and working after 6.0.

    ``generate``'s own signature names neither (both travel in ``**kwargs``, up to 5.23 and from 5.25 alike), so the
    model's ``forward``, which receives them, decides: it names ``cache`` from the rename on, ``past_key_values`` before.
    """
    import inspect

    model = language_model.get_base_model() if hasattr(language_model, "get_base_model") else language_model
    forward = inspect.signature(model.forward).parameters
    return (
        "cache" if "cache" in forward or "cache" in inspect.signature(model.generate).parameters else "past_key_values"
    )


def _cross_attention_projections(language_model: LanguageModel) -> list[torch.nn.Module]:
    """The key and value projections of every decoder layer's cross-attention (T5 family: ``EncDecAttention``),
    looked up on each call: a LoRA adapter replaces them by its own wrapping layers."""
    decoder = language_model.get_decoder()
    found: list[torch.nn.Module] = []
    for module in decoder.modules():
        attention = getattr(module, "EncDecAttention", None)
        if attention is not None and hasattr(attention, "k") and hasattr(attention, "v"):
            found += [attention.k, attention.v]
    return found


@contextlib.contextmanager
def share_first_call(modules: Sequence[torch.nn.Module], *, batch_size: int, num_beams: int) -> Iterator[None]:
    """While active, the first call of each module runs on the first of every ``num_beams`` rows of its inputs (the
    beams' copies of one sample) and its result is repeated back to all of them; later calls run unchanged.

    A result is a tensor (repeated along its first dimension) or a model output, whose per-sample tensors and
    ``past_key_values`` cache are repeated. The hooks are removed on exit (after an error too). Not thread-safe:
    nothing else may call the modules while it is active (the backend's generate is their only caller).

    Args:
        modules: the modules whose first call computes the same thing for every beam copy.
        batch_size: samples in the generate call (rows before generate expands them).
        num_beams: copies generate makes of each sample.

    Raises:
        RuntimeError: from inside the first call, when a tensor input does not have ``batch_size * num_beams`` rows
            or a cache passed to it is not empty.
        TypeError: from inside the first call, when its result is neither a tensor nor a model output.
    """
    expanded = batch_size * num_beams
    done: set[int] = set()

    def before(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if id(module) in done:
            return None
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is not None and cache.get_seq_length() != 0:
            raise RuntimeError(
                f"shared-prefix beam search expected the first call of {type(module).__name__} to start from an empty "
                "cache; this transformers version works differently. Turn it off with BackendOptions(shared_prefix=False)."
            )
        sliced_args = tuple(
            _first_of_each_beam_group(f"argument {i}", a, expanded, num_beams) for i, a in enumerate(args)
        )
        sliced_kwargs = {k: _first_of_each_beam_group(k, v, expanded, num_beams) for k, v in kwargs.items()}
        return sliced_args, sliced_kwargs

    def after(module: torch.nn.Module, _args: tuple[Any, ...], _kwargs: dict[str, Any], output: Any) -> Any:
        if id(module) in done:
            return None
        done.add(id(module))
        return _repeat_to_beams(output, batch_size, num_beams)

    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_of_each_beam_group(name: str, value: Any, expanded: int, num_beams: int) -> Any:
    """Rows 0, num_beams, 2 * num_beams, ... of a batch input: one of each sample's identical beam copies."""
    import torch
    from transformers.utils.generic import ModelOutput

    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.shape[0] != expanded:
            raise RuntimeError(
                f"shared-prefix beam search: input '{name}' has shape {tuple(value.shape)}, expected {expanded} rows "
                "(samples x beams) first. Turn it off with BackendOptions(shared_prefix=False)."
            )
        return value[::num_beams]
    if isinstance(value, ModelOutput):
        return type(value)(
            **{k: _first_of_each_beam_group(f"{name}.{k}", v, expanded, num_beams) for k, v in value.items()}
        )
    return value  # None, flags, numbers and the (empty) cache


def _repeat_to_beams(output: Any, batch_size: int, num_beams: int) -> Any:
    """Each per-sample row of a result repeated ``num_beams`` times, as generate's copies would have computed it."""
    import torch
    from transformers.utils.generic import ModelOutput

    if isinstance(output, torch.Tensor):
        return output.repeat_interleave(num_beams, dim=0)
    if not isinstance(output, ModelOutput):
        raise TypeError(f"shared-prefix beam search cannot repeat a {type(output).__name__} result to the beams")
    for key, value in list(output.items()):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            output[key] = value.repeat_interleave(num_beams, dim=0)
        elif isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            output[key] = tuple(v.repeat_interleave(num_beams, dim=0) for v in value)  # per-layer hidden states
    cache = output.get("past_key_values", output.get("cache"))
    if cache is not None:
        if not hasattr(cache, "batch_repeat_interleave"):
            raise RuntimeError(f"shared-prefix beam search cannot repeat a {type(cache).__name__} to the beams")
        cache.batch_repeat_interleave(num_beams)
    return output


@functools.cache
def _beam_shared_cross_attention_cache_class() -> type:
    """The EncoderDecoderCache subclass below, defined on first use (transformers is imported lazily)."""
    import torch
    from transformers import EncoderDecoderCache

    class BeamSharedCrossAttentionCache(EncoderDecoderCache):
        """An EncoderDecoderCache whose beam-search re-ordering leaves the cross-attention keys/values alone.

        Every beam of a sample holds the same cross-attention rows (copies of one computation) and transformers'
        beam search picks a sample's next beams only from that sample's own beams, so re-ordering those rows (a copy
        of every layer's keys and values at every step) would produce the same tensors. The self-attention cache,
        which differs between beams, is re-ordered as usual.
        """

        def __init__(self, self_attention_cache: Any, cross_attention_cache: Any, *, num_beams: int) -> None:
            super().__init__(self_attention_cache, cross_attention_cache)
            self.num_beams = num_beams

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)
            rows = torch.arange(beam_idx.shape[0], device=beam_idx.device, dtype=beam_idx.dtype)
            within_samples = torch.equal(
                beam_idx.div(self.num_beams, rounding_mode="floor"), rows.div(self.num_beams, rounding_mode="floor")
            )
            if not within_samples:
                # a beam taken from another sample (transformers never does this): then the rows really must move
                self.cross_attention_cache.reorder_cache(beam_idx)

    return BeamSharedCrossAttentionCache
