"""Picks the backend for a model: ``--backend NAME``, else ``openai:NAME`` -> the served-model backend (no file is
read), else the checkpoint's config.json ``model_type`` (BLIP-2 -> the mBLIP backend, anything else -> the generic
Hugging Face one); imports that backend's module only then."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mvleval.util.errors import MvlevalError, did_you_mean

if TYPE_CHECKING:
    from mvleval.backends.base import Backend, BackendOptions
    from mvleval.backends.spec import ModelOptions, ModelSpec

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
    return _choose(options.model, options.backend)


def _choose(model: str, backend: str | None) -> str:
    if backend is not None:
        if backend not in BACKENDS:
            raise MvlevalError(
                f"unknown backend '{backend}'.{did_you_mean(backend, BACKENDS)} "
                f"Known backends: {', '.join(backend_names())}.",
                fix="pass one of these to --backend, or leave it out to choose by the checkpoint's config.json.",
            )
        return backend
    if model.startswith(SERVED_PREFIX):
        return "openai"
    from mvleval.backends.hf.checkpoint import read_config, resolve_model_dir

    model_dir = resolve_model_dir(model)
    config = read_config(
        model_dir, fix="pass a Hugging Face checkpoint folder (config.json, weights, processor files)."
    )
    return "mblip" if config.get("model_type") in MBLIP_MODEL_TYPES else "hf"


def _backend_class(name: str) -> type[Backend]:
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # a machine set up for served models only may lack the local backends' packages
        from mvleval.util.extras import missing_extra

        error = missing_extra(exc, f"loading a checkpoint on this machine (the {name} backend)")
        if error is not None:
            raise error from None
        raise
    cls: type[Backend] = getattr(module, class_name)
    return cls


def options_model(name: str) -> type[ModelOptions]:
    """The pydantic model of backend `name`'s own options (``-M KEY=VALUE``)."""
    return _backend_class(name).options_model


def option_owners() -> dict[str, str]:
    """Every backend's option keys -> the backend declaring it (to say where a misplaced ``-M`` key belongs)."""
    owners: dict[str, str] = {}
    for name in backend_names():
        try:
            owners.update(dict.fromkeys(options_model(name).model_fields, name))
        except MvlevalError:  # a backend whose packages this machine lacks declares nothing here
            continue
    return owners


def resolve(spec: ModelSpec) -> tuple[str, ModelOptions]:
    """The backend that runs `spec` and its options, validated by that backend's options model.

    Reads nothing for a served model, a forced ``--backend``, or options no local backend declares (refused at
    once); otherwise the checkpoint's config.json picks the backend, as when it loads.

    Raises:
        MvlevalError: an unknown backend, an unreadable checkpoint, an option the backend does not declare.
    """
    from mvleval.backends.spec import check_options

    owners = option_owners()
    if spec.backend is None and not spec.model.startswith(SERVED_PREFIX) and spec.options:
        local = {key for key, owner in owners.items() if owner not in SERVED_BACKENDS}
        if not set(spec.options) <= local:  # decided from the names alone: no checkpoint is read for it
            return "hf", check_options(spec, "hf", options_model("hf"), owners)
    name = _choose(spec.model, spec.backend)
    return name, check_options(spec, name, options_model(name), owners)


def load_backend(options: BackendOptions) -> Backend:
    """Load the backend for a model path or hub id (imports torch and transformers lazily)."""
    # each backend class declares its own load() signature (extra keyword options), so Backend has none to type it
    family: Any = _backend_class(choose_backend(options))
    backend: Backend = family.load(options)
    return backend
