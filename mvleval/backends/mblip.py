"""The BLIP-2/mBLIP backend: loads a checkpoint (mT5 or BLOOM LLM, 4/8/16/32-bit, optional LoRA) and generates answers.

Images are encoded once each (ViT -> Q-Former -> language projection) and kept in a bounded LRU cache keyed by
path; ``prefetch(requests)`` decodes and preprocesses the images of upcoming requests on worker threads while the
model runs (``prefetch.py``), and ``auto_batch_size`` finds the largest batch that fits. The language model's input
is built here as ``[image query embeddings ; prompt token embeddings]``, which is
what ``Blip2ForConditionalGeneration.generate`` computes for one image (tests prove the generated ids are equal) and
also gives MaRVL's two-image input the way mBLIP does it (each image through ViT + Q-Former separately, the two
query outputs concatenated before the prompt). Beam search does the prompt's work once per sample instead of once
per beam (``shared_prefix.py``: the same token ids; ``BackendOptions(shared_prefix=False)`` turns it off).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mvleval.backends.base import Backend, BackendOptions, GenerationRequest
from mvleval.backends.hf.adapter import ADAPTER_FIX as _ADAPTER_FIX
from mvleval.backends.hf.adapter import adapter_fingerprint, check_adapter_dir
from mvleval.backends.hf.batch_size import (  # noqa: F401 -- re-exported: tests and bench import them from here
    CPU_BATCH_CAP,
    CPU_MEMORY_FRACTION,
    CPU_MIN_BYTES_PER_SAMPLE,
    CPU_SAFETY_FACTOR,
    batch_size_for_budget,
    largest_fitting_batch,
)
from mvleval.backends.hf.batch_size import auto_batch_size as _shared_auto_batch_size
from mvleval.backends.hf.checkpoint import (
    check_weights,
    fingerprint_files,
    read_config,
    resolve_model_dir,
    weight_files,
)
from mvleval.backends.hf.checkpoint import (
    read_json as _read_json,
)
from mvleval.backends.hf.generate import generation_kwargs
from mvleval.backends.hf.precision import disable_cpu_bf16_repack, load_weights, precision, resolve_device
from mvleval.backends.hf.processor import load_processor
from mvleval.backends.prefetch import DEFAULT_WINDOW, PixelPrefetcher
from mvleval.benchmarks.images import load_image
from mvleval.util.errors import MissingDependencyError, MvlevalError

if TYPE_CHECKING:
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    from mvleval.benchmarks.task import GenerationSettings
    from mvleval.record.schema import ModelInfo

logger = logging.getLogger("mvleval.backends.mblip")

#: Modules kept in full precision when quantising. Passing llm_int8_skip_modules replaces transformers' default list,
#: so lm_head must be named too (NOTES.md); QLoRA needs language_projection unquantised; the ViT and Q-Former are small.
QUANT_SKIP_MODULES = ("lm_head", "language_projection", "vision_model", "qformer")

#: File name of the trained BLIP-2 parts (Q-Former, query_tokens, language_projection) inside an adapter folder.
BLIP_PARTS_FILE = "blip_parts.safetensors"

#: Top-level parameters/modules of Blip2ForConditionalGeneration that blip_parts.safetensors may replace.
_BLIP_PART_PREFIXES = ("qformer.", "query_tokens", "language_projection.")

_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "tokenizer.model")
#: Texts used at load time to prove the backend tokenises prompts exactly as the checkpoint's processor does
#: (an mBLIP prompt with quotes, a non-Latin one, and the empty prompt).
_PROBE_PROMPTS = ('Question: Is the circle "red"? Short answer in English:', "Caption in Thai: สีแดง 红色 ", "")
_IMAGE_ENCODE_CHUNK = 32  # images pushed through the ViT at once when filling the cache
#: ``MBlipBackend.generation_path`` values: transformers' generate as it is, or beam search that does the prompt's
#: work once per sample instead of once per beam (shared_prefix.py; the same token ids).
PLAIN_PATH = "transformers generate"
SHARED_PREFIX_PATH = "beam search, prompt computed once per sample"
#: Decoding threads per backend: one keeps ahead of the model on 2 CPU cores (bench/README.md); a second helps
#: where images are large (XM3600) and the GPU is fast.
DEFAULT_PREFETCH_WORKERS = 2


@dataclass(frozen=True)
class LlmInputs:
    """The language model input of one batch, built from cached image embeddings and the prompt tokens.

    Attributes:
        inputs_embeds: (batch, length, hidden): [image query embeddings ; prompt embeddings], padded.
        attention_mask: (batch, length), 0 on padding.
        input_ids: (batch, length): the token ids the embeddings stand for, with the image token id at image
            positions (as Blip2Processor builds them); passed to decoder-only generate so logits processors see them.
        image_positions: (batch,) number of image positions in each row.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    input_ids: torch.Tensor
    image_positions: torch.Tensor


# -- loading helpers -----------------------------------------------------------------------------------------------


def check_checkpoint_dir(model_dir: Path, allow_pickle: bool) -> dict[str, Any]:
    """Check that a folder holds a BLIP-2 checkpoint with its processor; return its config.json.

    Raises:
        MvlevalError: one message naming the first problem found and how to fix it.
    """
    fix_layout = (
        "pass a folder laid out like Gregor/mblip-mt0-xl: config.json (model_type 'blip-2'), *.safetensors weights, "
        "tokenizer files and preprocessor_config.json/processor_config.json."
    )
    config = read_config(model_dir, fix_layout)
    model_type = config.get("model_type")
    if model_type != "blip-2":
        raise MvlevalError(
            f"config.json has model_type {model_type!r}, but mvleval's mBLIP backend needs a BLIP-2 model ('blip-2').",
            fix=fix_layout
            + " Other vision-LLMs run through the generic backend (leave out --backend, or pass --backend hf).",
            where=model_dir / "config.json",
        )
    check_weights(model_dir, allow_pickle, fix_layout)
    if not any((model_dir / name).is_file() for name in _TOKENIZER_FILES):
        raise MvlevalError(
            f"the checkpoint has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}).", fix=fix_layout, where=model_dir
        )
    if not any((model_dir / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise MvlevalError(
            "the checkpoint has no image processor (preprocessor_config.json or processor_config.json).",
            fix=fix_layout,
            where=model_dir,
        )
    return config


def _adapter_targets_full_model(keys: Sequence[str]) -> bool:
    """Whether a peft adapter was made on the whole Blip2ForConditionalGeneration (vs on its language model)."""
    top = {"language_model", "vision_model", "qformer", "language_projection", "query_tokens"}
    for key in keys:
        rest = key.removeprefix("base_model.model.")
        if rest.split(".", 1)[0] in top:
            return True
    return False


def apply_adapter(model: Blip2ForConditionalGeneration, adapter_dir: Path) -> Any:
    """Apply a peft LoRA adapter folder (and its blip_parts.safetensors, if present) to a loaded model, in place.

    The LoRA weights are injected into ``model.language_model`` (or into ``model`` when the adapter was made on
    the whole BLIP-2 model, i.e. its keys start with ``language_model.``). ``blip_parts.safetensors`` holds the
    trained Q-Former, query_tokens and language_projection under their Blip2ForConditionalGeneration names.

    Args:
        model: a loaded Blip2ForConditionalGeneration (any precision).
        adapter_dir: folder with adapter_config.json and adapter_model.safetensors, as `PeftModel.save_pretrained`
            writes it.

    Returns:
        The PeftModel wrapping ``model.language_model`` (or ``model``); its ``merge_and_unload()`` merges in place.

    Raises:
        MvlevalError: the folder is missing, not a LoRA adapter, or does not fit the model.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        from peft import PeftModel, get_peft_model_state_dict
    except ImportError:
        raise MissingDependencyError("peft", "applying a LoRA adapter (--adapter)") from None

    adapter_dir = Path(adapter_dir)
    check_adapter_dir(adapter_dir)
    weights_path = adapter_dir / "adapter_model.safetensors"
    fix = _ADAPTER_FIX

    # -- trained BLIP-2 parts first, while the module names are still the plain Blip2ForConditionalGeneration ones --
    parts_path = adapter_dir / BLIP_PARTS_FILE
    if parts_path.is_file():
        parts = load_file(str(parts_path))
        own = model.state_dict()
        for name, tensor in parts.items():
            if not name.startswith(_BLIP_PART_PREFIXES):
                raise MvlevalError(
                    f"{BLIP_PARTS_FILE} holds '{name}', which is not part of the Q-Former, query_tokens or "
                    "language_projection (the language model is changed only through LoRA).",
                    fix=fix,
                    where=parts_path,
                )
            if name not in own or tuple(own[name].shape) != tuple(tensor.shape):
                shape = tuple(own[name].shape) if name in own else None
                raise MvlevalError(
                    f"{BLIP_PARTS_FILE} entry '{name}' {tuple(tensor.shape)} does not fit this model ({shape}); the "
                    "adapter was trained on a different base checkpoint.",
                    fix="pass the --model the adapter was trained from.",
                    where=parts_path,
                )
        with torch.no_grad():
            for name, tensor in parts.items():
                own[name].copy_(tensor.to(own[name].dtype))
        logger.info("loaded %d trained BLIP-2 tensors from %s", len(parts), parts_path)

    with safe_open(str(weights_path), framework="pt") as fh:
        saved_keys = list(fh.keys())
    target = model if _adapter_targets_full_model(saved_keys) else model.language_model
    if target is not model:
        # transformers marks only the top-level model as quantised; without the flag peft wraps 4/8-bit Linears
        # in its generic LoRA layer instead of the bitsandbytes-aware one (which casts to the compute dtype)
        for flag in ("is_loaded_in_4bit", "is_loaded_in_8bit"):
            if getattr(model, flag, False):
                setattr(target, flag, True)
    try:
        with warnings.catch_warnings():
            # peft probes transformers' deprecated is_gradient_checkpointing; nothing the user can act on
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = PeftModel.from_pretrained(target, str(adapter_dir), is_trainable=False)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise MvlevalError(
            f"the adapter does not fit this model ({exc}).",
            fix="pass the --model the adapter was trained from.",
            where=adapter_dir,
        ) from None
    loaded = set(get_peft_model_state_dict(peft_model).keys())
    missing = sorted(k for k in saved_keys if k not in loaded)
    if missing:
        raise MvlevalError(
            f"{len(missing)} adapter tensors found no module in the model (first: '{missing[0]}').",
            fix="pass the --model the adapter was trained from.",
            where=weights_path,
        )
    peft_model.eval()
    logger.info("applied LoRA adapter %s (%d tensors) to %s", adapter_dir, len(saved_keys), type(target).__name__)
    return peft_model


# -- the backend ---------------------------------------------------------------------------------------------------
class MBlipBackend(Backend):
    """A loaded BLIP-2/mBLIP checkpoint that generates answers for (prompt, images) requests.

    Create it with ``MBlipBackend.load(BackendOptions(...))`` (or ``mvleval.backends.get_backend``).

    Attributes:
        device: where the model runs ("cpu", "cuda", "cuda:1", ...).
        model: the Blip2ForConditionalGeneration.
        processor: the checkpoint's Blip2Processor (tokenizer + PIL image processor), num_query_tokens set.
        images_encoded: how many images went through ViT + Q-Former so far (a cache miss each).
        cache_hits: how many image look-ups the cache answered.
        shared_prefix: beam search does the prompt's work once per sample (see ``generation_path``).
    """

    def __init__(
        self,
        *,
        model: Blip2ForConditionalGeneration,
        processor: Blip2Processor,
        model_dir: Path,
        model_name: str,
        device: str,
        bits: int,
        quantization: str | None,
        adapter: Path | None,
        fingerprint: str,
        image_cache_size: int,
        jpeg_draft: bool = False,
        prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
        shared_prefix: bool = True,
    ) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.model_dir = model_dir
        self.model_name = model_name
        self.device = device
        self.bits = bits
        self.quantization = quantization
        self.adapter = adapter
        self.fingerprint = fingerprint
        self.image_cache_size = image_cache_size
        self.shared_prefix = shared_prefix
        self.num_query_tokens: int = int(model.config.num_query_tokens)
        self.image_token_id: int = int(cast(int, model.config.image_token_index))
        self.is_encoder_decoder: bool = not is_decoder_only(model.config)
        self.pad_token_id: int = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )
        self.images_encoded = 0
        self.cache_hits = 0
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.jpeg_draft = jpeg_draft
        size = self.image_processor.size
        # BLIP's processor resizes to exactly (height, width); Pillow's draft keeps the decoded JPEG at least that big
        self._draft_size: tuple[int, int] = (int(size.width), int(size.height))
        if prefetch_workers < 0:
            raise MvlevalError(
                "the number of prefetch workers cannot be negative.", fix="pass 0 (no prefetching) or more."
            )
        self._prefetcher = (
            PixelPrefetcher(self.image_pixels, workers=prefetch_workers, window=DEFAULT_WINDOW)
            if prefetch_workers
            else None
        )

    # -- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        options: BackendOptions,
        *,
        jpeg_draft: bool = False,
        prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
    ) -> MBlipBackend:
        """Load a BLIP-2/mBLIP checkpoint folder (or a downloaded hub id) as `options` say.

        Args:
            options: model path or hub id, adapter folder, bits (4, 8, 16, 32 or None), device, allow_pickle,
                image_cache_size, shared_prefix (beam search computes the prompt once per sample; see
                ``generation_path``).
            jpeg_draft: decode JPEGs at least twice the processor's size in both directions at a reduced scale
                (Pillow's draft mode). Faster, but the pixels differ from a full decode (bench/README.md: up to 0.95
                in normalised units at 640x480), so it is off by default and changes results when on.
            prefetch_workers: threads decoding announced images ahead of use (0: decode in the calling thread).

        Returns:
            The loaded backend, in eval mode, with its processor checked against the model.

        Raises:
            MvlevalError: anything wrong with the folder, the flags, or the processor/model consistency.
        """

        started = time.perf_counter()
        if options.bits not in (None, 4, 8, 16, 32):
            raise MvlevalError(f"--bits {options.bits} is not supported.", fix="use 4, 8, 16 or 32.")
        if options.image_cache_size < 0:
            raise MvlevalError("the image cache size cannot be negative.", fix="pass 0 (no cache) or more.")
        model_dir = resolve_model_dir(options.model)
        config_json = check_checkpoint_dir(model_dir, options.allow_pickle)
        device = resolve_device(options.device)
        on_cuda = device.startswith("cuda")

        adapter_dir = Path(options.adapter).expanduser() if options.adapter else None
        if adapter_dir is not None:
            check_adapter_dir(adapter_dir)  # before the (possibly minutes-long) weight load
            _refuse_merged_adapter(model_dir, adapter_dir)
        bits, quantization_config, dtype, quant_desc = precision(
            config_json,
            options.bits,
            on_cuda,
            model_dir,
            QUANT_SKIP_MODULES,
            double_quant=nf4_double_quant(config_json),
        )

        from transformers import Blip2ForConditionalGeneration

        # processor and config are made consistent (and checked) before the weights are read
        config, processor = load_config_and_processor(model_dir)

        safe, _ = weight_files(model_dir)
        load_kwargs: dict[str, Any] = {
            "config": config,
            "dtype": dtype,
            "device_map": {"": device},
            "use_safetensors": bool(safe),
        }
        if quantization_config is not None:
            load_kwargs["quantization_config"] = quantization_config
        model = load_weights(Blip2ForConditionalGeneration, model_dir, load_kwargs, bits=bits, on_cuda=on_cuda)

        extra_fingerprint: list[Path] = []
        if adapter_dir is not None:
            apply_adapter(model, adapter_dir)
            if bits == 4 and not on_cuda:
                disable_cpu_bf16_repack(model)
            model.eval()
            extra_fingerprint = sorted(p for p in adapter_dir.iterdir() if p.is_file())

        weights = safe or weight_files(model_dir)[1]
        backend = cls(
            model=model,
            processor=processor,
            model_dir=model_dir,
            model_name=options.model,
            device=device,
            bits=bits,
            quantization=quant_desc,
            adapter=adapter_dir,
            fingerprint=fingerprint_files([*weights, *extra_fingerprint]),
            image_cache_size=options.image_cache_size,
            jpeg_draft=jpeg_draft,
            prefetch_workers=prefetch_workers,
            shared_prefix=options.shared_prefix,
        )
        logger.info(
            "loaded %s (%s, %s LLM, %d-bit%s, %d query tokens%s) on %s in %.1f s",
            options.model,
            model_dir,
            type(model.language_model).__name__,
            bits,
            f", {quant_desc}" if quant_desc else "",
            backend.num_query_tokens,
            f", adapter {adapter_dir}" if adapter_dir else "",
            device,
            time.perf_counter() - started,
        )
        return backend

    # -- public API ----------------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """Generate one answer per request (all requests must have the same number of images).

        Args:
            requests: prompts with their image paths (1 image, or 2 for MaRVL).
            settings: decoding settings (beams, new-token limits, length penalty, sampling).

        Returns:
            The decoded answers, special tokens skipped and whitespace stripped, in request order.

        Raises:
            ValueError: requests with different numbers of images in one call (a programming error).
            MvlevalError: an unreadable image, or a prompt containing the image token.
        """
        ids = self.generate_ids(requests, settings)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def generate_ids(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[list[int]]:
        """Generated token ids per request, as the language model's generate returns them minus the prompt.

        Encoder-decoder rows start with the decoder start token (as transformers' own output does); decoder-only
        rows hold only the new tokens. Trailing padding is kept (decode with skip_special_tokens).
        """
        import torch

        if not requests:
            return []
        inputs = self.prepare_inputs(requests)
        kwargs = generation_kwargs(settings)
        generate_inputs: dict[str, Any] = {
            "inputs_embeds": inputs.inputs_embeds,
            "attention_mask": inputs.attention_mask,
        }
        if not self.is_encoder_decoder:
            # as Blip2ForConditionalGeneration.generate does: logits processors then see the real prompt ids
            generate_inputs["input_ids"] = inputs.input_ids
        with torch.inference_mode():
            if self.generation_path(settings) == SHARED_PREFIX_PATH:
                from mvleval.backends.shared_prefix import generate_sharing_prefix

                output = generate_sharing_prefix(self.model.language_model, **generate_inputs, **kwargs)
            else:
                output = self.model.language_model.generate(**generate_inputs, **kwargs)
        if not self.is_encoder_decoder:
            output = output[:, inputs.input_ids.shape[1] :]
        return output.tolist()

    def generation_path(self, settings: GenerationSettings) -> str:
        """Which code path ``generate`` takes for these settings: SHARED_PREFIX_PATH (``shared_prefix`` on, beam
        search without sampling, an LLM with the parts it shares (decoder-only with a separate body, e.g. BLOOM; T5-style
        encoder-decoder, e.g. mT5): the prompt's work once per sample, then transformers' beam search; the same token
        ids) or PLAIN_PATH (transformers' generate as it is).
        """
        from mvleval.backends.shared_prefix import supports_shared_prefix, uses_shared_prefix

        if (
            self.shared_prefix
            and uses_shared_prefix(settings.num_beams, settings.do_sample)
            and supports_shared_prefix(self.model.language_model)
        ):
            return SHARED_PREFIX_PATH
        return PLAIN_PATH

    def prepare_inputs(self, requests: Sequence[GenerationRequest]) -> LlmInputs:
        """Build the language model input of a batch: encoded images (cached) followed by the prompt embeddings.

        Decoder-only models are padded on the left (generation continues from the last position); encoder-decoder
        models on the right.
        """
        import torch

        n_images = {len(r.images) for r in requests}
        if len(n_images) != 1:
            raise ValueError(
                f"all requests in one generate() call must have the same number of images, got {sorted(n_images)}"
            )
        (per_row,) = n_images
        if per_row < 1:
            raise MvlevalError(
                "mBLIP answers questions about images: this task has questions without an image (text-only).",
                fix="evaluate a Hugging Face vision-LLM or a served model on this task: they take text-only questions.",
            )
        prompts = [r.prompt for r in requests]
        token_ids = tokenize_prompts(self.tokenizer, prompts)
        for request, ids in zip(requests, token_ids):
            if self.image_token_id in ids:
                raise MvlevalError(
                    f"the prompt {request.prompt!r} contains the model's image token; it would be mistaken for an image.",
                    fix="remove the image token text from the prompt or annotation.",
                )
        embeddings = self._encode_images([p for r in requests for p in r.images])

        embed = self.model.language_model.get_input_embeddings()
        n_image_positions = per_row * self.num_query_tokens
        # Plain BLIP-2 checkpoints may add <image> after the last embedding row; it is never embedded here (image
        # positions get the Q-Former output), and decoder-only generate sees the pad id there instead.
        image_id_for_lm = self.image_token_id if self.image_token_id < embed.weight.shape[0] else self.pad_token_id
        lengths = [n_image_positions + len(ids) for ids in token_ids]
        width = max(lengths)
        batch = len(requests)
        text_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        image_mask = torch.zeros((batch, width), dtype=torch.bool)
        mask = torch.zeros((batch, width), dtype=torch.long)
        left = not self.is_encoder_decoder
        starts = [width - length if left else 0 for length in lengths]
        for row, (start, ids) in enumerate(zip(starts, token_ids)):
            image_mask[row, start : start + n_image_positions] = True
            text_ids[row, start + n_image_positions : start + lengths[row]] = torch.tensor(ids, dtype=torch.long)
            mask[row, start : start + lengths[row]] = 1
        image_positions = image_mask.sum(dim=1)
        # the check the issue asks for: every row carries exactly its images' query outputs, no more, no less
        if not bool((image_positions == n_image_positions).all()):
            raise RuntimeError(f"image positions per row {image_positions.tolist()} != {n_image_positions}")
        text_ids, image_mask, mask = text_ids.to(self.device), image_mask.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            queries = torch.stack([embeddings[str(p)] for r in requests for p in r.images])
            inputs_embeds = embed_with_image_queries(self.model, text_ids, image_mask, queries)
        input_ids = text_ids.masked_fill(image_mask, image_id_for_lm)
        return LlmInputs(
            inputs_embeds=inputs_embeds, attention_mask=mask, input_ids=input_ids, image_positions=image_positions
        )

    def next_token_logits(self, requests: Sequence[GenerationRequest]) -> torch.Tensor:
        """Logits (batch, vocab) of the first generated token: what the images and prompt make the model predict."""
        import torch

        inputs = self.prepare_inputs(requests)
        lm = self.model.language_model
        with torch.inference_mode():
            if self.is_encoder_decoder:
                start = lm.generation_config.decoder_start_token_id
                start = cast(Any, self.model.config.text_config).decoder_start_token_id if start is None else start
                decoder_ids = torch.full((len(requests), 1), int(start), dtype=torch.long, device=self.device)
                out = lm(
                    inputs_embeds=inputs.inputs_embeds,
                    attention_mask=inputs.attention_mask,
                    decoder_input_ids=decoder_ids,
                )
            else:
                out = lm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask)
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def prefetch(self, requests: Sequence[GenerationRequest]) -> int:
        """Announce upcoming requests: their images not yet encoded are decoded and preprocessed on worker threads
        while the model works on earlier batches. Non-blocking; predictions are the same with or without it.

        Announce in the order the requests will be generated (the runner: all of a language's batches, in batch
        order); a bad image raises its MvlevalError from the ``generate`` call that needs it, not from here.

        Args:
            requests: the requests of upcoming ``generate`` calls.

        Returns:
            How many images were newly queued (0 when prefetching is off or all are cached or queued).
        """
        if self._prefetcher is None:
            return 0
        paths: dict[str, Path] = {}
        for request in requests:
            for path in request.images:
                key = str(path)
                if key not in self._cache:
                    paths.setdefault(key, Path(path))
        return self._prefetcher.submit(paths.values())

    def cancel_prefetch(self) -> None:
        """Forget every announced image (e.g. when the announced requests will not be generated after all)."""
        if self._prefetcher is not None:
            self._prefetcher.cancel()

    def close(self) -> None:
        """Stop the prefetch threads; the backend stays usable (a later ``prefetch`` starts them again)."""
        if self._prefetcher is not None:
            self._prefetcher.close()

    @property
    def prefetch_served(self) -> int:
        """Images whose pixels came from the prefetch threads rather than a decode in ``generate``."""
        return self._prefetcher.served if self._prefetcher is not None else 0

    @property
    def prefetch_waited_s(self) -> float:
        """Seconds ``generate`` waited for prefetch threads that were behind (0 when they keep ahead)."""
        return self._prefetcher.waited_s if self._prefetcher is not None else 0.0

    def image_pixels(self, path: Path) -> torch.Tensor:
        """The processor's pixel tensor (3, height, width) of one image file, as the vision encoder receives it.

        Uses ``load_image`` (clear errors for missing/corrupt/oversized files) and JPEG draft decoding when
        ``jpeg_draft`` is on. Thread-safe: the prefetch threads call it.

        Raises:
            MvlevalError: the image cannot be read.
        """
        image = load_image(Path(path), draft_size=self._draft_size if self.jpeg_draft else None)
        pixels: torch.Tensor = self.image_processor(image, return_tensors="pt")["pixel_values"][0]
        return pixels

    def info(self, settings: GenerationSettings) -> ModelInfo:
        """What was loaded and how, for the run record."""
        from mvleval.record.schema import ModelInfo

        return ModelInfo(
            path=self.model_name,
            kind="encoder-decoder" if self.is_encoder_decoder else "decoder-only",
            bits=self.bits,
            dtype=str(self.model.language_model.get_input_embeddings().weight.dtype).removeprefix("torch."),
            quantization=self.quantization,
            adapter=str(self.adapter) if self.adapter else None,
            generation=settings.to_dict(),
            num_query_tokens=self.num_query_tokens,
            fingerprint=self.fingerprint,
            generation_path=self.generation_path(settings),
            backend="mblip",
            family="blip-2",
            model_class=type(self.model).__name__,
            processor_class=type(self.processor).__name__,
            image_handling="native",
            trust_remote_code=False,
        )

    def cache_identity(self, settings: GenerationSettings) -> dict[str, Any] | None:
        """What the answers depend on apart from the example (mvleval/backends/local_cache.py): the record's model
        facts, the tokenizer/processor files and JPEG draft decoding (other pixels); None when sampling."""
        if settings.do_sample or not self.fingerprint:
            return None
        from mvleval.backends.hf_vlm import _processor_sha
        from mvleval.backends.local_cache import local_identity

        return local_identity(
            self.info(settings), self.device, processor_files=_processor_sha(self.model_dir), jpeg_draft=self.jpeg_draft
        )

    def pick_batch_size(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> int:
        """The largest batch that fits (``auto_batch_size``); the image cache is left as it was."""
        return auto_batch_size(self, requests, settings)

    @property
    def cached_paths(self) -> tuple[str, ...]:
        """Image paths whose encodings are cached, least recently used first."""
        return tuple(self._cache)

    def clear_cache(self) -> None:
        """Drop every cached image encoding."""
        self._cache.clear()

    # -- internals -----------------------------------------------------------------------------------------------
    def _encode_images(self, paths: Sequence[Path]) -> dict[str, torch.Tensor]:
        """Projected Q-Former outputs (num_query_tokens, hidden) for each distinct path, through the LRU cache."""
        import torch

        wanted: dict[str, Path] = {}
        for path in paths:
            wanted.setdefault(str(path), Path(path))
        found: dict[str, torch.Tensor] = {}
        missing: list[str] = []
        for key in wanted:
            cached = self._cache.get(key)
            if cached is None:
                missing.append(key)
            else:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                found[key] = cached
                if self._prefetcher is not None:
                    self._prefetcher.discard(wanted[key])  # announced twice, say: its pixels are not needed
        # the chunks are the same with and without prefetching (the batch's missing images, in order), so the
        # vision encoder sees identical inputs in identical groupings and predictions cannot differ
        for start in range(0, len(missing), _IMAGE_ENCODE_CHUNK):
            keys = missing[start : start + _IMAGE_ENCODE_CHUNK]
            pixel_values = torch.stack([self._take_pixels(wanted[k]) for k in keys]).to(self.device)
            with torch.inference_mode():
                features = self.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output
            self.images_encoded += len(keys)
            for key, feature in zip(keys, features):
                feature = feature.clone()  # a view would keep the whole chunk alive after eviction
                found[key] = feature
                if self.image_cache_size > 0:
                    self._cache[key] = feature
                    self._cache.move_to_end(key)
                    while len(self._cache) > self.image_cache_size:
                        self._cache.popitem(last=False)
        return found

    def _take_pixels(self, path: Path) -> torch.Tensor:
        """Pixels from the prefetch threads if announced (re-raising their error), else decoded here."""
        if self._prefetcher is not None:
            pixels = self._prefetcher.take(path)
            if pixels is not None:
                return pixels
        return self.image_pixels(path)


# -- batch size ----------------------------------------------------------------------------------------------------


def auto_batch_size(
    backend: MBlipBackend,
    sample_requests: Sequence[GenerationRequest],
    settings: GenerationSettings,
    *,
    start: int = 32,
    max_size: int = 256,
    memory_budget: int | None = None,
) -> int:
    """``backends.hf.batch_size.auto_batch_size`` for this backend; its image cache and counters are as before the
    call (probing changes nothing a run records)."""
    cached = OrderedDict(backend._cache)
    counters = (backend.images_encoded, backend.cache_hits)
    try:
        return _shared_auto_batch_size(
            backend.generate_ids,
            backend.device,
            sample_requests,
            settings,
            start=start,
            max_size=max_size,
            memory_budget=memory_budget,
        )
    finally:
        backend._cache.clear()
        backend._cache.update(cached)
        backend.images_encoded, backend.cache_hits = counters


def _refuse_merged_adapter(model_dir: Path, adapter_dir: Path) -> None:
    """Refuse an adapter that `mvleval export` already merged into this checkpoint (it would be applied twice)."""
    info_path = model_dir / "mvleval_export.json"
    if not info_path.is_file():
        return
    info = _read_json(info_path)
    source, merged = info.get("source"), info.get("source_fingerprint")
    same_folder = isinstance(source, str) and bool(source) and Path(source).resolve() == adapter_dir.resolve()
    same_content = bool(merged) and adapter_fingerprint(adapter_dir) == merged  # a copy of the adapter
    if same_folder or same_content:
        what = (
            f"the adapter {adapter_dir}"
            if same_folder
            else f"the adapter in {source}, of which {adapter_dir} is a copy"
        )
        raise MvlevalError(
            f"this checkpoint was exported from {what} (its mvleval_export.json says so): the adapter "
            "is already merged into the weights, and applying it again would change the model.",
            fix="drop --adapter to evaluate the exported checkpoint, or pass the base checkpoint to --model.",
            where=info_path,
        )


def is_decoder_only(config: Any) -> bool:
    """Whether a BLIP-2 config's language model is decoder-only (BLOOM, OPT) rather than encoder-decoder (mT5, T5):
    the one test evaluation, fine-tuning and export all use."""
    return bool(config.use_decoder_only_language_model)


def embed_with_image_queries(
    model: Any, ids: torch.Tensor, image_mask: torch.Tensor, queries: torch.Tensor
) -> torch.Tensor:
    """The language model's input embeddings for ``[image queries ; text]`` rows, built one way for evaluation and
    fine-tuning: the text ids embedded, then the image positions (``image_mask``, row by row, left to right) filled
    with ``queries`` in order.

    Args:
        model: the Blip2ForConditionalGeneration (its language model's input embeddings are used).
        ids: (batch, length) token ids; image positions hold any id (they are replaced).
        image_mask: (batch, length) True at image positions; each row holds its images' num_query_tokens positions.
        queries: (images of all rows in row order, num_query_tokens, hidden) projected Q-Former outputs.

    Returns:
        (batch, length, hidden) embeddings; differentiable in ``queries`` (fine-tuning trains the Q-Former through it).
    """
    inputs_embeds = model.language_model.get_input_embeddings()(ids)
    flat = queries.reshape(-1, queries.shape[-1]).to(inputs_embeds.dtype)
    embeds: torch.Tensor = inputs_embeds.masked_scatter(image_mask.unsqueeze(-1), flat)
    return embeds


def nf4_double_quant(config_json: dict[str, Any]) -> bool:
    """Whether 4-bit quantisation uses double quantisation: mBLIP quantises mT0 (encoder-decoder) with it and BLOOMZ
    (decoder-only) without; evaluation, training and export all follow this one rule."""
    return not bool(config_json.get("use_decoder_only_language_model", False))


def load_config_and_processor(model_dir: Path) -> tuple[Blip2Config, Blip2Processor]:
    """The checkpoint's BLIP-2 config and processor, made consistent and checked before any weight is read: the
    processor carries num_query_tokens, the config the image token, and the processor's text part tokenises exactly
    as the tokenizer alone (what ``prepare_inputs`` and fine-tuning build). Training and evaluation both load this way.

    Raises:
        MvlevalError: a config that is not BLIP-2's, or a processor that disagrees with the model.
    """
    from transformers import Blip2Config

    processor = _load_processor(model_dir)
    try:
        config = Blip2Config.from_pretrained(str(model_dir))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MvlevalError(
            f"config.json is not a valid BLIP-2 config ({exc}).",
            fix="restore the checkpoint's config.json.",
            where=model_dir,
        ) from None
    _reconcile_processor(config, processor, model_dir)
    _check_processor_tokenisation(
        processor, int(cast(int, config.image_token_index)), int(config.num_query_tokens), model_dir
    )
    return config, processor


def _load_processor(model_dir: Path) -> Blip2Processor:
    """The checkpoint's Blip2Processor with the PIL image processor (same pixels on every machine)."""
    from transformers import Blip2Processor

    processor = load_processor(model_dir, "blip-2")
    if not isinstance(processor, Blip2Processor):
        raise MvlevalError(
            f"the checkpoint's processor is a {type(processor).__name__}, not a Blip2Processor.",
            fix="pass a BLIP-2/mBLIP checkpoint (its tokenizer and image processor saved with it).",
            where=model_dir,
        )
    return processor


def _reconcile_processor(config: Blip2Config, processor: Blip2Processor, model_dir: Path) -> None:
    """Make processor and model config agree on num_query_tokens and the image token, or refuse (NOTES.md)."""
    expected = int(config.num_query_tokens)
    if processor.num_query_tokens is None:
        # the published mBLIP checkpoints were saved before processors carried num_query_tokens
        processor.num_query_tokens = expected
        logger.info("processor of %s has no num_query_tokens; set it to %d from the model config", model_dir, expected)
    elif int(processor.num_query_tokens) != expected:
        raise MvlevalError(
            f"the processor says num_query_tokens={processor.num_query_tokens} but the model has {expected} query tokens.",
            fix="fix num_query_tokens in processor_config.json to match config.json.",
            where=model_dir,
        )
    token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token.content)
    unk = processor.tokenizer.unk_token_id
    if token_id is None or (unk is not None and token_id == unk):
        raise MvlevalError(
            f"the tokenizer has no '{processor.image_token.content}' token.",
            fix="re-save the processor with Blip2Processor.save_pretrained.",
            where=model_dir,
        )
    if config.image_token_index is None:
        # transformers' generate crashes on None; the published checkpoints predate the field
        config.image_token_index = token_id
        logger.info(
            "config of %s has no image_token_index; set it to %d (the processor's image token)", model_dir, token_id
        )
    elif int(config.image_token_index) != token_id:
        raise MvlevalError(
            f"config.json has image_token_index={config.image_token_index} but the tokenizer's image token is {token_id}.",
            fix="make config.json's image_token_index match the tokenizer.",
            where=model_dir,
        )


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Prompt ids exactly as Blip2Processor's tokenizer call makes them (the tokenizer's BOS/EOS conventions:
    mT5 appends EOS and has no BOS, BLOOM adds nothing)."""
    encoded = tokenizer(list(prompts), add_special_tokens=True, padding=False, truncation=False)
    return [list(ids) for ids in encoded["input_ids"]]


def _check_processor_tokenisation(
    processor: Blip2Processor, image_token_id: int, num_query_tokens: int, model_dir: Path
) -> None:
    """Prove that the text part the backend builds equals the processor's output minus its image tokens, and that
    the processor inserts exactly num_query_tokens image tokens, in front, per row."""
    from PIL import Image

    size = processor.image_processor.size
    height = getattr(size, "height", None) or 32
    width = getattr(size, "width", None) or 32
    image = Image.new("RGB", (width, height))
    for text in _PROBE_PROMPTS:
        ids = list(processor(images=image, text=text)["input_ids"][0])
        n_image = sum(1 for i in ids if i == image_token_id)
        if n_image != num_query_tokens or ids[:n_image] != [image_token_id] * n_image:
            raise MvlevalError(
                f"the checkpoint's processor inserts {n_image} image tokens per row, but the model has "
                f"{num_query_tokens} query tokens (transformers would silently ignore the image).",
                fix="fix num_query_tokens in the checkpoint's processor_config.json to match config.json.",
                where=model_dir,
            )
        ours = tokenize_prompts(processor.tokenizer, [text])[0]
        if ids[n_image:] != ours:
            raise MvlevalError(
                f"the checkpoint's processor tokenises {text!r} differently from its tokenizer "
                f"({ids[n_image:]} vs {ours}); mvleval would feed the model different text than its processor.",
                fix="re-save the processor and tokenizer together (Blip2Processor.save_pretrained).",
                where=model_dir,
            )
