"""Makes image-only subclasses of the Qwen2-VL, Qwen2.5-VL and SmolVLM processors, for transformers without torchvision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from transformers import ProcessorMixin

_IMAGE_ONLY_CLASSES: dict[str, type[ProcessorMixin]] = {}


def image_only_processor_class(family: str) -> type[ProcessorMixin]:
    """A subclass of the family's processor whose sub-processors are the image processor and the tokenizer only.

    ProcessorMixin derives a processor's sub-processors from its ``__init__`` signature, so an ``__init__`` without
    ``video_processor`` is enough for construction, ``save_pretrained`` and ``from_pretrained`` to skip the
    torchvision-only video processor; ``__call__``, the image-token expansion and the chat template are inherited.
    """
    if family in _IMAGE_ONLY_CLASSES:
        return _IMAGE_ONLY_CLASSES[family]
    from transformers import (
        ProcessorMixin,
        Qwen2_5_VLProcessor,
        Qwen2VLProcessor,
        SmolVLMProcessor,
    )

    namespace: dict[str, Any] = {}
    if family in ("qwen2_vl", "qwen2_5_vl"):
        base: type[ProcessorMixin] = Qwen2VLProcessor if family == "qwen2_vl" else Qwen2_5_VLProcessor

        def qwen_init(
            self: Any,
            image_processor: Any = None,
            tokenizer: Any = None,
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        namespace["__init__"] = qwen_init
    elif family == "smolvlm":
        base = SmolVLMProcessor

        def smolvlm_init(
            self: Any,
            image_processor: Any = None,
            tokenizer: Any = None,
            image_seq_len: int = 169,
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            # SmolVLMProcessor.__init__ (transformers 5.23) without the video processor and without its num2words
            # check: num2words only spells out video frame counts
            self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
            self.image_token = getattr(tokenizer, "image_token", "<image>")
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
            self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
            self.image_seq_len = image_seq_len
            self.video_token = getattr(tokenizer, "video_token", "<video>")
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

        def smolvlm_apply_chat_template(
            self: Any, conversation: Any, chat_template: str | None = None, **kwargs: Any
        ) -> Any:
            # SmolVLMProcessor's override only adds video-sampling defaults, read from the video processor
            return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

        namespace["__init__"] = smolvlm_init
        namespace["apply_chat_template"] = smolvlm_apply_chat_template
    else:
        raise MvlevalError(f"family '{family}' has no image-only processor.", fix="use AutoProcessor.")
    namespace["__doc__"] = f"{base.__name__} without its video processor (transformers without torchvision)."
    cls = cast("type[ProcessorMixin]", type(f"ImageOnly{base.__name__}", (base,), namespace))
    _IMAGE_ONLY_CLASSES[family] = cls
    return cls
