"""Picks the backend for a model: ``--backend NAME``, else ``openai:NAME`` -> the served-model backend (no file is
read), else the checkpoint's config.json ``model_type`` (BLIP-2 -> the mBLIP backend, anything else -> the generic
Hugging Face one); imports that backend's module only then."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mvleval.errors import MvlevalError, did_you_mean

if TYPE_CHECKING:
    from mvleval.backends.base import Backend, BackendOptions

#: backend name -> "module:Class", imported on first use (each family is one file in backends/).
BACKENDS: dict[str, str] = {
    "mblip": "mvleval.backends.mblip:MBlipBackend",
    "hf": "mvleval.backends.hf_vlm:HfVlmBackend",
    "openai": "mvleval.backends.openai_api:OpenAIBackend",
}
#: Backends that talk to a server: they need neither torch nor a checkpoint folder on this machine.
SERVED_BACKENDS = ("openai",)
#: ``--model openai:NAME`` names a model served behind an OpenAI-compatible endpoint.
SERVED_PREFIX = "openai:"
#: model_type values that the mBLIP backend serves (cached Q-Former embeddings, MaRVL's two-image encoding,
#: shared-prefix beam search); every other model type goes to the generic backend.
MBLIP_MODEL_TYPES = ("blip-2",)


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def is_served(model: str, backend: str | None) -> bool:
    """True when `model` (with `backend`, if forced) is a served model: decided from the names alone, no file read."""
    return backend in SERVED_BACKENDS if backend is not None else model.startswith(SERVED_PREFIX)


def served_model_name(model: str) -> str:
    """The served model id: `model` without the ``openai:`` prefix."""
    return model[len(SERVED_PREFIX) :] if model.startswith(SERVED_PREFIX) else model


def choose_backend(options: BackendOptions) -> str:
    """The backend name for these options: the one asked for, else ``openai:`` models to the served backend, else by
    the checkpoint's model_type."""
    if options.backend is not None:
        if options.backend not in BACKENDS:
            raise MvlevalError(
                f"unknown backend '{options.backend}'.{did_you_mean(options.backend, BACKENDS)} "
                f"Known backends: {', '.join(backend_names())}.",
                fix="pass one of these to --backend, or leave it out to choose by the checkpoint's config.json.",
            )
        return options.backend
    if options.model.startswith(SERVED_PREFIX):
        return "openai"
    from mvleval.backends.hf.checkpoint import read_config, resolve_model_dir

    model_dir = resolve_model_dir(options.model)
    config = read_config(
        model_dir, fix="pass a Hugging Face checkpoint folder (config.json, weights, processor files)."
    )
    return "mblip" if config.get("model_type") in MBLIP_MODEL_TYPES else "hf"


def load_backend(options: BackendOptions) -> Backend:
    """Load the backend for a model path or hub id (imports torch and transformers lazily)."""
    name = choose_backend(options)
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # a machine set up for served models only may lack the local backends' packages
        from mvleval.extras import missing_extra

        error = missing_extra(exc, f"loading a checkpoint on this machine (the {name} backend)")
        if error is not None:
            raise error from None
        raise
    # each backend class declares its own load() signature (extra keyword options), so Backend has none to type it
    backend: Backend = getattr(module, class_name).load(options)
    return backend
