"""The generic backend: any vision-LLM that transformers' AutoModelForImageTextToText maps (Qwen2-VL, Qwen2.5-VL,
PaliGemma 2, LLaVA-1.5 / NeXT, Idefics3, SmolVLM, Gemma 3, Aya Vision, InstructBLIP, Mllama, ...), prompted through the
checkpoint's own chat template and processor, batched with left padding so that answers do not depend on the batch.

The task's prompt text goes into one user turn with the example's images (in the task's order) where the family's
chat template places them; a processor without a chat template (PaliGemma, InstructBLIP) gets the prompt text as it
is (``processor(text=..., images=...)`` adds its image tokens). Family quirks that would change answers are fixed
in one place, ``HfVlmBackend._fix_family_quirks``, on what reaches the model: InstructBLIP's Q-Former instruction is
tokenised again padded on the right (its processor padded it on the left whatever the Q-Former tokenizer's padding
side, and the Q-Former uses absolute positions: logits changed by up to 0.44 between batch sizes), a sequence the
processor padded in the middle is left-aligned, PaliGemma's ``labels`` are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydantic import Field, field_validator

from mvleval.backends.base import IMAGE_HANDLING, Backend, BackendOptions, GenerationRequest, interleave
from mvleval.backends.hf.adapter import check_adapter_dir
from mvleval.backends.hf.batch_size import auto_batch_size
from mvleval.backends.hf.checkpoint import check_weights, fingerprint_files, read_config, resolve_model_dir
from mvleval.backends.hf.generate import generation_kwargs
from mvleval.backends.hf.precision import disable_cpu_bf16_repack, load_weights, precision, resolve_device
from mvleval.backends.hf.processor import load_processor
from mvleval.backends.prefetch import DEFAULT_WINDOW, PixelPrefetcher
from mvleval.backends.spec import ModelOptions
from mvleval.util.errors import MissingDependencyError, MvlevalError

if TYPE_CHECKING:
    from PIL import Image

    from mvleval.benchmarks.task import GenerationSettings
    from mvleval.record.schema import ModelInfo

logger = logging.getLogger("mvleval.backends.hf_vlm")

#: Modules kept in full precision when quantising: the vision tower and the projector of every family, and lm_head
#: (the list replaces transformers' default, NOTES.md). transformers matches each entry as a regex from the start of
#: a module's full name, so each may sit at any depth ("model.vision_tower...", "model.visual...").
QUANT_SKIP_MODULES = tuple(
    rf"(?:.*\.)?{name}"
    for name in (
        "lm_head",
        "vision_tower",
        "vision_model",
        "visual",
        "multi_modal_projector",
        "mm_projector",
        "connector",
        "qformer",
        "language_projection",
        "embed_vision",
    )
)
#: Families whose models take one image per prompt: a two-image example needs --image-handling side-by-side.
SINGLE_IMAGE_FAMILIES = ("instructblip", "instructblipvideo", "blip-2")
#: Decoded images kept (an LRU by path): ~100-300 MB of typical benchmark JPEGs, decoded once instead of per question.
DECODED_IMAGE_CACHE = 256
#: Decoding threads ahead of the model (PIL decode only; the processor resizes in the calling thread).
DEFAULT_PREFETCH_WORKERS = 2
_FIX_LAYOUT = (
    "pass a Hugging Face vision-LLM folder (config.json, *.safetensors, tokenizer and processor files), e.g. one "
    "downloaded with `huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct --local-dir DIR`."
)


def decode_keeping_thinking_tags(tokenizer: Any, ids: Sequence[Sequence[int]], chat_template: str | None) -> list[str]:
    """Decode generated ids with special tokens skipped, except the thinking tags ``chat_template`` declares.

    A tokenizer that registers ``<think>`` and ``</think>`` as special tokens would otherwise drop the tags and keep
    the thinking between them, which scoring (metrics/answer.py) could then no longer tell from the answer. Without
    such tags (every mBLIP-protocol model), this is exactly ``batch_decode(ids, skip_special_tokens=True)``.
    """
    from mvleval.metrics.answer import template_thinking_tags

    special = {int(i) for i in tokenizer.all_special_ids}
    special |= {
        int(i) for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)
    }
    kept: dict[int, str] = {}
    for pair in template_thinking_tags(chat_template):
        for tag in pair:
            tag_id = tokenizer.convert_tokens_to_ids(tag)
            if isinstance(tag_id, int) and tag_id in special:
                kept[tag_id] = tag
    if not kept:
        return list(tokenizer.batch_decode(ids, skip_special_tokens=True))
    texts = []
    for row in ids:
        parts: list[str] = []
        run: list[int] = []
        for token in row:
            if int(token) in kept:
                parts += [tokenizer.decode(run, skip_special_tokens=True), kept[int(token)]]
                run = []
            else:
                run.append(token)
        texts.append("".join(parts) + tokenizer.decode(run, skip_special_tokens=True))
    return texts


class HfVlmOptions(ModelOptions):
    """The generic backend's options (``-M KEY=VALUE``; --trust-remote-code and --image-handling are old aliases)."""

    trust_remote_code: bool = False  # run the checkpoint's own Python code (Centurio, InternVL, MiniCPM-V)
    image_handling: str = "native"  # several images of one example: "native" or "side-by-side" (pasted into one)
    #: Qwen2-VL / Qwen2.5-VL: the most pixels an image is resized to (the image processor's size.longest_edge; fewer
    #: image tokens per image); changes answers, so it is part of the run's identity and of the response cache's key
    max_pixels: int | None = Field(default=None, gt=0)

    carried: ClassVar[frozenset[str]] = frozenset({"trust_remote_code", "image_handling"})

    @field_validator("image_handling", mode="before")
    @classmethod
    def _known_handling(cls, value: Any) -> Any:
        value = value.replace("_", "-") if isinstance(value, str) else value
        if value not in IMAGE_HANDLING:
            raise ValueError(f"must be one of {', '.join(IMAGE_HANDLING)}")
        return value


class HfVlmBackend(Backend):
    """A loaded AutoModelForImageTextToText checkpoint with its processor.

    Create it with ``HfVlmBackend.load(BackendOptions(...))`` (or ``mvleval.backends.load_backend``).

    Attributes:
        model: the transformers model (eval mode).
        processor: the checkpoint's processor, its tokenizer padding on the left.
        family: the checkpoint's ``model_type`` (e.g. "qwen2_5_vl").
        device: where the model runs.
    """

    options_model = HfVlmOptions
    #: -M max_pixels (Qwen2-VL / Qwen2.5-VL), else None: the processor's own limit
    max_pixels: int | None = None

    def __init__(
        self,
        *,
        model: Any,
        processor: Any,
        model_dir: Path,
        model_name: str,
        family: str,
        device: str,
        bits: int,
        quantization: str | None,
        adapter: Path | None,
        fingerprint: str,
        trust_remote_code: bool = False,
        image_handling: str = "native",
        prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
    ) -> None:
        if image_handling not in IMAGE_HANDLING:
            raise MvlevalError(
                f"unknown image handling '{image_handling}'.", fix=f"use one of {', '.join(IMAGE_HANDLING)}."
            )
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model_dir = model_dir
        self.model_name = model_name
        self.family = family
        self.device = device
        self.bits = bits
        self.quantization = quantization
        self.adapter = adapter
        self.fingerprint = fingerprint
        self.trust_remote_code = trust_remote_code
        self.image_handling = image_handling
        self.chat_template: str | None = getattr(processor, "chat_template", None) or None
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        # generation continues from the last position of every row: padding must be on the left (other families'
        # padding is put right in _fix_family_quirks, on what reaches the model)
        self.tokenizer.padding_side = "left"
        self.pad_token_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )
        self._prefetcher = (
            PixelPrefetcher(_decode, workers=prefetch_workers, window=DEFAULT_WINDOW) if prefetch_workers else None
        )
        # decoded images, most recent last: an xGQA image serves ~30 questions and the prefetcher hands each announced
        # image over once, so without this every later question of the image would decode the JPEG again
        self._decoded: OrderedDict[str, Image.Image] = OrderedDict()

    # -- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, options: BackendOptions, *, processor: Any = None, prefetch_workers: int = DEFAULT_PREFETCH_WORKERS
    ) -> HfVlmBackend:
        """Load a checkpoint folder (or a downloaded hub id) as `options` say.

        Args:
            options: model, adapter, bits, device, allow_pickle, trust_remote_code, image_handling.
            processor: a processor to use instead of the checkpoint's (tests: an image-only processor where the real
                one needs torchvision).
            prefetch_workers: threads decoding announced images ahead of use (0: decode in the calling thread).

        Raises:
            MvlevalError: the folder, the flags, or a model type transformers does not map to a vision-LLM.
        """

        started = time.perf_counter()
        if options.bits not in (None, 4, 8, 16, 32):
            raise MvlevalError(f"--bits {options.bits} is not supported.", fix="use 4, 8, 16 or 32.")
        model_dir = resolve_model_dir(options.model)
        config_json = read_config(model_dir, _FIX_LAYOUT)
        family = str(config_json.get("model_type") or "")
        _check_family(family, options.trust_remote_code or bool(config_json.get("auto_map")), model_dir)
        weights = check_weights(model_dir, options.allow_pickle, _FIX_LAYOUT)
        if config_json.get("auto_map") and not options.trust_remote_code:
            raise MvlevalError(
                "the checkpoint ships its own Python code (config.json has auto_map); mvleval does not run it unless "
                "asked to.",
                fix="pass -M trust_remote_code=true (old flag: --trust-remote-code) if you trust the checkpoint's code (it is recorded in the run).",
                where=model_dir / "config.json",
            )
        device = resolve_device(options.device)
        on_cuda = device.startswith("cuda")
        adapter_dir = Path(options.adapter).expanduser() if options.adapter else None
        if adapter_dir is not None:
            check_adapter_dir(adapter_dir)  # before the (possibly minutes-long) weight load
        bits, quantization_config, dtype, quant_desc = precision(
            config_json, options.bits, on_cuda, model_dir, QUANT_SKIP_MODULES
        )
        if processor is None:
            processor = load_processor(model_dir, family, options.trust_remote_code)
            if not hasattr(processor, "image_processor"):
                raise MvlevalError(
                    f"the checkpoint's processor is a {type(processor).__name__}, with no image processor.",
                    fix=_FIX_LAYOUT,
                    where=model_dir,
                )
        own = options.model_options if isinstance(options.model_options, HfVlmOptions) else HfVlmOptions()
        if own.max_pixels is not None:
            _limit_pixels(processor, family, own.max_pixels)  # before the (possibly minutes-long) weight load

        from transformers import AutoModelForImageTextToText

        load_kwargs: dict[str, Any] = {
            "dtype": dtype,
            "device_map": {"": device},
            "use_safetensors": weights[0].name.endswith(".safetensors"),
            "trust_remote_code": options.trust_remote_code,
        }
        if quantization_config is not None:
            load_kwargs["quantization_config"] = quantization_config
        model = load_weights(AutoModelForImageTextToText, model_dir, load_kwargs, bits=bits, on_cuda=on_cuda)
        extra: list[Path] = []
        if adapter_dir is not None:
            model = apply_lora(model, adapter_dir)
            if bits == 4 and not on_cuda:
                disable_cpu_bf16_repack(model)
            extra = sorted(p for p in adapter_dir.iterdir() if p.is_file())
        backend = cls(
            model=model,
            processor=processor,
            model_dir=model_dir,
            model_name=options.model,
            family=family,
            device=device,
            bits=bits,
            quantization=quant_desc,
            adapter=adapter_dir,
            fingerprint=fingerprint_files([*weights, *extra]),
            trust_remote_code=options.trust_remote_code,
            image_handling=options.image_handling,
            prefetch_workers=prefetch_workers,
        )
        backend.max_pixels = own.max_pixels
        logger.info(
            "loaded %s (%s, %s, %d-bit) on %s in %.1f s",
            options.model,
            family,
            type(model).__name__,
            bits,
            device,
            time.perf_counter() - started,
        )
        return backend

    # -- the Backend API -----------------------------------------------------------------------------------------
    def check_settings(self, settings: GenerationSettings, images_per_example: int) -> None:
        """Refuse two images per example for a one-image family unless side-by-side was asked for."""
        if images_per_example > 1 and self.family in SINGLE_IMAGE_FAMILIES and self.image_handling == "native":
            raise MvlevalError(
                f"this task gives {images_per_example} images per example, but {self.family} models take one image per "
                "prompt.",
                fix="pass -M image_handling=side-by-side (old flag: --image-handling side-by-side) to paste the images "
                "into one, left to right (recorded in the run and kept apart from two-image runs), or evaluate a family "
                "that takes several images.",
            )

    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """One answer per request: special tokens skipped (but the chat template's thinking tags kept, so that scoring
        can remove the thinking they delimit), whitespace stripped, in request order."""
        ids = self.generate_ids(requests, settings)
        return [t.strip() for t in decode_keeping_thinking_tags(self.tokenizer, ids, self.chat_template)]

    def generate_ids(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[list[int]]:
        """The new token ids of each request (the prompt sliced off), trailing padding kept."""
        import torch

        if not requests:
            return []
        inputs = self.build_inputs(requests)
        kwargs = generation_kwargs(settings)
        kwargs["pad_token_id"] = self.pad_token_id
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        if not self.is_encoder_decoder:
            output = output[:, inputs["input_ids"].shape[1] :]
        return cast("list[list[int]]", output.tolist())

    def build_inputs(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        """The processor's batch for these requests (chat template where the checkpoint has one), on the device."""
        n_images = {len(r.images) for r in requests}
        if len(n_images) != 1:
            raise ValueError(
                f"all requests in one generate() call must have the same number of images, got {sorted(n_images)}"
            )
        images, texts = [], []
        for r in requests:
            decoded = self._images(r)
            parts = self._parts(r)
            # the processor takes the images in the order the rendered text places them
            images.append([decoded[p] for p in parts if isinstance(p, int)])
            texts.append(self._render_parts(r.prompt, parts))
        # templates that write BOS themselves (Gemma 3, Idefics3, Aya Vision, Llama 3.2 Vision) must not get a second
        # one from the tokenizer, as transformers' own apply_chat_template(tokenize=True) avoids too
        special = not writes_own_bos(self.tokenizer, self.chat_template, texts)
        try:
            batch = self.processor(
                text=texts,
                images=images if any(images) else None,  # a text-only question: no images at all
                padding=True,
                return_tensors="pt",
                add_special_tokens=special,
            )
        except (ValueError, TypeError) as exc:
            raise MvlevalError(
                f"the checkpoint's processor rejected the batch ({exc}).",
                fix="check that the checkpoint's processor files belong to its model (and that the prompt holds no image "
                "token text).",
                where=self.model_dir,
            ) from None
        self._fix_family_quirks(batch, texts, special)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}

    def _fix_family_quirks(self, batch: Any, texts: Sequence[str], add_special_tokens: bool) -> None:
        """Every family quirk that would change answers, fixed in place on the processor's batch (what reaches the
        model, not what the tokenizer objects say).

        - PaliGemma's processor returns ``labels`` (all -100) when given text: generate must not see them.
        - InstructBLIP (and BLIP-2-style processors with a ``qformer_tokenizer``): the processor hands the language
          tokenizer's text kwargs, padding side included, to the Q-Former tokenizer, so the instruction came back
          padded on the left whatever ``qformer_tokenizer.padding_side`` said. The Q-Former reads it with absolute
          positions from 0: it is tokenised again here, padded on the right.
        - The same processors put the ``<image>`` query tokens in front of the already padded text (``<image>``...,
          padding, BOS, text): the sequence is left-aligned as a whole, padding first (see _left_align).
        """
        batch.pop("labels", None)
        qformer_tokenizer = getattr(self.processor, "qformer_tokenizer", None)
        if qformer_tokenizer is not None and "qformer_input_ids" in batch:
            encoded = qformer_tokenizer(
                list(texts),
                padding=True,
                padding_side="right",
                return_tensors="pt",
                add_special_tokens=add_special_tokens,
                return_token_type_ids=False,
            )
            batch["qformer_input_ids"] = encoded["input_ids"]
            batch["qformer_attention_mask"] = encoded["attention_mask"]
        _left_align(batch)

    def render_prompt(self, prompt: str, n_images: int) -> str:
        """The text given to the processor: the chat template's user turn with `n_images` image parts and the
        prompt (images where ``<image k>`` markers place them, else first), plus the generation prompt; the prompt
        itself for processors without a chat template."""
        return render_user_turn(self.processor, self.chat_template, prompt, n_images)

    def _render_parts(self, prompt: str, parts: Sequence[str | int]) -> str:
        return render_parts(self.processor, self.chat_template, prompt, parts)

    def _parts(self, request: GenerationRequest) -> list[str | int]:
        """The user turn's text pieces and image indices (mvleval.backends.base.interleave); side by side, the one
        pasted image goes first and markers stay text."""
        if self.image_handling == "side-by-side" and len(request.images) > 1:
            return [0, request.prompt]
        return interleave(request.prompt, len(request.images))

    def rendered_prompt(self, request: GenerationRequest) -> str:
        """The text the processor gets for `request` (part of its response-cache key)."""
        return self._render_parts(request.prompt, self._parts(request))

    def cache_identity(self, settings: GenerationSettings) -> dict[str, Any] | None:
        """What the answers depend on apart from the example (mvleval/backends/local_cache.py); None when sampling."""
        if settings.do_sample or not self.fingerprint:
            return None
        from mvleval.backends.local_cache import local_identity

        extra = {"max_pixels": self.max_pixels} if self.max_pixels is not None else {}
        return local_identity(self.info(settings), self.device, **extra)

    def prefetch(self, requests: Sequence[GenerationRequest]) -> int:
        """Decode the announced requests' images on worker threads ahead of use."""
        if self._prefetcher is None:
            return 0
        return self._prefetcher.submit(dict.fromkeys(p for r in requests for p in r.images))

    def pick_batch_size(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> int:
        return auto_batch_size(self.generate_ids, self.device, requests, settings)

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()

    def info(self, settings: GenerationSettings) -> ModelInfo:
        """What ran: backend, family, model class, processor and chat template hashes, precision, image handling."""
        from mvleval.metrics.answer import template_thinking_tags
        from mvleval.record.schema import ModelInfo

        first = next(self.model.parameters())
        return ModelInfo(
            path=self.model_name,
            kind="encoder-decoder" if self.is_encoder_decoder else "decoder-only",
            bits=self.bits,
            dtype=str(first.dtype if first.is_floating_point() else self.model.dtype).removeprefix("torch."),
            quantization=self.quantization,
            adapter=str(self.adapter) if self.adapter else None,
            generation=settings.to_dict(),
            fingerprint=self.fingerprint,
            generation_path="transformers generate",
            backend="hf",
            family=self.family,
            model_class=type(self.model).__name__,
            processor_class=type(self.processor).__name__,
            processor_sha=_processor_sha(self.model_dir),
            chat_template_sha=hashlib.sha256(self.chat_template.encode()).hexdigest()[:16]
            if self.chat_template
            else None,
            image_handling=self.image_handling,
            trust_remote_code=self.trust_remote_code,
            # the thinking tags the chat template declares: scoring removes the thinking they delimit (metrics/answer.py)
            details=self._details(template_thinking_tags(self.chat_template)),
        )

    def _details(self, tags: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """The thinking tags the chat template declares (scoring removes the thinking they delimit,
        metrics/answer.py), for an adapter made by `mvleval train` the sha256 of its train_config.json, and -M max_pixels."""
        details: dict[str, Any] = {"thinking_tags": [list(t) for t in tags]} if tags else {}
        if self.adapter is not None and (self.adapter / "train_config.json").is_file():
            digest = hashlib.sha256((self.adapter / "train_config.json").read_bytes()).hexdigest()
            details["adapter_train_config_sha256"] = digest
        if self.max_pixels is not None:
            details["max_pixels"] = self.max_pixels
        return details

    # -- internals -----------------------------------------------------------------------------------------------
    def _images(self, request: GenerationRequest) -> list[Image.Image]:
        images = [self._take(p) for p in request.images]
        if self.image_handling == "side-by-side" and len(images) > 1:
            return [side_by_side(images)]
        return images

    def _take(self, path: Path) -> Image.Image:
        key = str(path)
        image = self._decoded.get(key)
        if image is not None:
            self._decoded.move_to_end(key)
            return image
        if self._prefetcher is not None:
            image = self._prefetcher.take(path)
        if image is None:
            image = _decode(path)
        self._decoded[key] = image
        while len(self._decoded) > DECODED_IMAGE_CACHE:
            self._decoded.popitem(last=False)
        return image


#: Per-token inputs that move with ``input_ids`` when a row's padding is moved to its left.
_SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


def _left_align(batch: Any) -> None:
    """Move every row's padding (attention mask 0) to its left, keeping the order of its real tokens.

    Generation continues from each row's last position, and a row must read as the same example alone would: its
    tokens contiguous at the right end, positions 0.. from its first real token. A no-op for a batch that is already
    left-padded (every family but the InstructBLIP/BLIP-2 processors, which prepend the image tokens after padding).
    """
    import torch

    mask = batch.get("attention_mask")
    if mask is None or getattr(mask, "ndim", 0) != 2 or mask.shape[1] < 2:
        return
    if bool((mask[:, 1:] >= mask[:, :-1]).all()):
        return  # already padding-first
    order = torch.argsort((mask != 0).to(torch.int8), dim=1, stable=True)  # padding first, each part in its order
    for key in _SEQUENCE_KEYS:
        value = batch.get(key)
        if value is not None and getattr(value, "shape", None) == mask.shape:
            batch[key] = torch.gather(value, 1, order)


def user_turn(prompt: str, n_images: int) -> dict[str, Any]:
    """The one user message of an example: its images' parts and the prompt text, in the order
    mvleval.backends.base.interleave gives (images where ``<image k>`` markers place them, else all first)."""
    return parts_turn(interleave(prompt, n_images))


def parts_turn(parts: Sequence[str | int]) -> dict[str, Any]:
    """A user message of text pieces and image indices (an image part for each index)."""
    content: list[dict[str, str]] = [
        {"type": "image"} if isinstance(p, int) else {"type": "text", "text": p} for p in parts
    ]
    return {"role": "user", "content": content}


def render_user_turn(processor: Any, chat_template: str | None, prompt: str, n_images: int) -> str:
    """The text the processor gets: the chat template's user turn with `n_images` image parts and the prompt, plus
    the generation prompt; the prompt itself for processors without a chat template. Evaluation and fine-tuning
    (mvleval/finetune/generic.py) both call this, so a model is trained on the conversation it is evaluated with."""
    return render_parts(processor, chat_template, prompt, interleave(prompt, n_images))


def render_parts(processor: Any, chat_template: str | None, prompt: str, parts: Sequence[str | int]) -> str:
    """render_user_turn for a user turn already split into parts (side-by-side images put the pasted image first)."""
    if not chat_template:
        return prompt
    return str(processor.apply_chat_template([parts_turn(parts)], add_generation_prompt=True, tokenize=False))


def writes_own_bos(tokenizer: Any, chat_template: str | None, texts: Sequence[str]) -> bool:
    """Whether the rendered texts already start with BOS (Gemma 3, Idefics3, Aya Vision, Llama 3.2 Vision templates):
    the tokenizer must then add no second one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(chat_template and bos and all(t.startswith(bos) for t in texts))


def left_align(batch: Any) -> None:
    """Public name of _left_align (fine-tuning builds its batches with the same fix)."""
    _left_align(batch)


def _decode(path: Path) -> Image.Image:
    from mvleval.benchmarks.images import load_image

    return load_image(Path(path))


def side_by_side(images: Sequence[Image.Image]) -> Image.Image:
    """The images pasted left to right on a white canvas, each scaled to the tallest one's height (aspect kept)."""
    from PIL import Image

    height = max(im.height for im in images)
    scaled = [
        im
        if im.height == height
        else im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.BICUBIC)
        for im in images
    ]
    canvas = Image.new("RGB", (sum(im.width for im in scaled), height), (255, 255, 255))
    x = 0
    for im in scaled:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.width
    return canvas


#: families whose image processor resizes to a pixel budget (size.longest_edge): what -M max_pixels sets
MAX_PIXELS_FAMILIES = ("qwen2_vl", "qwen2_5_vl")


def _limit_pixels(processor: Any, family: str, max_pixels: int) -> None:
    """Set a Qwen2-VL-style image processor's pixel budget (-M max_pixels), refusing it for other families and below
    the processor's own minimum."""
    if family not in MAX_PIXELS_FAMILIES:
        raise MvlevalError(
            f"-M max_pixels applies to Qwen2-VL and Qwen2.5-VL checkpoints ({', '.join(MAX_PIXELS_FAMILIES)}); this "
            f"checkpoint is a {family}.",
            fix="drop -M max_pixels (other families resize images as their processor says).",
        )
    size = processor.image_processor.size
    if size.shortest_edge and max_pixels < size.shortest_edge:
        raise MvlevalError(
            f"-M max_pixels={max_pixels} is below the processor's minimum of {size.shortest_edge} pixels per image.",
            fix=f"pass at least {size.shortest_edge}.",
        )
    size.longest_edge = max_pixels


def _check_family(family: str, trust_remote_code: bool, model_dir: Path) -> None:
    """Refuse a model type that transformers does not load as an image-text-to-text model."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if family in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES or trust_remote_code:
        return
    from mvleval.util.errors import did_you_mean

    raise MvlevalError(
        f"config.json has model_type {family!r}, which transformers does not load as a vision-LLM "
        f"(AutoModelForImageTextToText).{did_you_mean(family, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)}",
        fix="pass a vision-LLM checkpoint (e.g. Qwen2.5-VL, PaliGemma 2, LLaVA-NeXT, Gemma 3, Idefics3), upgrade "
        "transformers for a newer family, or pass -M trust_remote_code=true for a checkpoint that ships its own model code.",
        where=model_dir / "config.json",
    )


def apply_lora(model: Any, adapter_dir: Path) -> Any:
    """A peft LoRA adapter folder applied to the whole model (not merged); every saved tensor must find its module."""
    try:
        from peft import PeftModel, get_peft_model_state_dict
    except ImportError:
        raise MissingDependencyError("peft", "applying a LoRA adapter (--adapter)") from None
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as fh:
        saved = list(fh.keys())
    try:
        with warnings.catch_warnings():
            # peft probes transformers' deprecated is_gradient_checkpointing; nothing the user can act on
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise MvlevalError(
            f"the adapter does not fit this model ({exc}).",
            fix="pass the --model the adapter was trained from.",
            where=adapter_dir,
        ) from None
    loaded = set(get_peft_model_state_dict(peft_model).keys())
    missing = sorted(k for k in saved if k not in loaded)
    if missing:
        raise MvlevalError(
            f"{len(missing)} adapter tensors found no module in the model (first: '{missing[0]}').",
            fix="pass the --model the adapter was trained from.",
            where=adapter_dir,
        )
    peft_model.eval()
    return peft_model


def _processor_sha(model_dir: Path) -> str:
    """sha256 over the processor's files (tokenizer, image processor, chat template): what turns text into ids."""
    digest = hashlib.sha256()
    names = (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "processor_config.json",
        "preprocessor_config.json",
        "chat_template.jinja",
        "chat_template.json",
        "tokenizer.model",
        "spiece.model",
    )
    for name in names:
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


__all__ = ["HfVlmBackend", "apply_lora", "side_by_side"]
