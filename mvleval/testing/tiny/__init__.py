"""Builds tiny real vision-LLM checkpoints of every family mvleval's generic backend supports, built from config (tests, bench, no download).

Each builder makes a random model of one transformers family (width 32, 2 layers, a tiny vision tower on 28-64 px
images), a byte-level BPE tokenizer trained offline on mvleval's multilingual corpus with the family's special
tokens, the family's PIL image processor and, where the published checkpoints have one, a chat template shaped like
theirs. Everything is written with ``save_pretrained`` (config.json, model.safetensors, generation_config.json,
tokenizer files, processor_config.json, chat_template.jinja), so a checkpoint loads through the same
``AutoModelForImageTextToText`` / ``AutoProcessor`` code path as the published one, offline, in well under a second.

Weights are re-drawn with a variance-preserving initialisation and the language-model head is untied, so a tiny
model's answer changes with its image and prompt: tests that compare predictions (batched vs single, image A vs
image B) need that.

Qwen2-VL, Qwen2.5-VL and SmolVLM processors hold a video processor, which transformers 5.23 cannot construct without
torchvision. Their checkpoints are saved by an image-only subclass of the real processor and name the real processor
class and a video-processor entry in processor_config.json, as a published checkpoint does; :func:`load_processor`
loads the image-only variant (same ``__call__``, token expansion and chat template) when torchvision is missing.

Layout: ``build`` (the public API and the family registry), one module a family (``llava``, ``llava_next``,
``paligemma``, ``gemma3``, ``aya_vision``, ``instructblip``, ``mllama``, ``idefics3``, ``smolvlm``, ``qwen2_vl`` for
Qwen2-VL and Qwen2.5-VL) holding its builder and chat template, and the shared parts: ``common`` (sizes, constants,
config arguments), ``tokenizer`` (offline tokenizer training), ``image_only`` (processors without torchvision) and
``save`` (weight re-initialisation, saving). Chat templates are modelled on the published checkpoints': same turn
markers, image placeholders and image placement; tool, document and date preambles are left out. PaliGemma and
InstructBLIP have none (processor(text=..., images=...)).
"""
