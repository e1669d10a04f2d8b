"""`mvleval train` vs the plain transformers + peft loop of the model cards: examples/s and peak memory, 16- and 4-bit.

For each model (the tiny mBLIP-shaped mT5 checkpoint, and generic families built wider than the tests' so that the
weights matter: hidden 512, 4 layers), each precision (16: bf16 weights + bf16 autocast; 4: bitsandbytes nf4 QLoRA)
and each side, a fresh subprocess

- mvleval: ``mvleval.finetune.train`` on the coloured-squares benchmark (mvleval/testing/squares.py);
- plain: what the families' model cards show: ``from_pretrained`` (with the same BitsAndBytesConfig for 4 bits),
  ``get_peft_model`` with the same LoRA (same target modules, r, alpha, dropout), AdamW, and per step
  ``processor(text=conversation with the answer, images=...)`` -> ``model(**batch, labels=labels).loss`` ->
  backward -> step (mBLIP: ``Blip2Processor(images, prompt)`` and seq2seq ``labels``), same batch and same examples;

reports the median examples/s over the steps after the first two, and the process's peak RSS (ru_maxrss). Both sides
include the same data loading per step (images decoded once, cached).

    OMP_NUM_THREADS=1 python bench/bench_train.py [--steps 12] [--families gemma3,qwen2_vl] [--bits 16,4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _worker(args: argparse.Namespace) -> None:
    import logging
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    torch.manual_seed(0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base, bench, out, family = Path(args.base), Path(args.bench), Path(args.out), args.family
    from mvleval.finetune import load_config
    from mvleval.finetune.data import read_task_split

    sets = ["lr_lora=1e-3", "lr_blip=1e-3", "save_every=100000", "lora_dropout=0.05", "warmup_ratio=0"]
    config = load_config(
        None,
        sets,
        base_model=str(base),
        output_dir=out,
        task=str(bench),
        split="train",
        max_steps=args.steps,
        batch_size=args.batch,
        bits=args.bits,
        device="cpu",
    )
    examples = read_task_split(str(bench), "train", bench, bench / "images")
    processor = None
    if family in ("qwen2_vl", "qwen2_5_vl", "smolvlm"):
        from mvleval.testing.tiny_vlm import load_processor

        processor = load_processor(base)
    clock = _StepClock()
    if args.side == "mvleval":
        from mvleval.finetune import train

        train(config, processor=processor, progress=clock)
    elif family == "mblip":
        _plain_mblip(base, examples, config, clock)
    else:
        _plain_generic(base, examples, config, processor, clock)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # steps after the first two (warm-up) and before the last (mvleval saves the adapter and plots the loss there)
    cpu = clock.cpu[2:-1] or clock.cpu
    wall = clock.wall[2:-1] or clock.wall
    print(
        json.dumps(
            {
                "rate": args.batch / statistics.median(cpu),
                "wall_rate": args.batch / statistics.median(wall),
                "peak_mb": peak / 1024,
                "start_mb": rss_before / 1024,
            }
        )
    )


class _StepClock:
    """Per optimizer step: process CPU time (what the step costs, whatever else the shared machine runs) and wall
    time. For mvleval it is the training loop's progress object (update() after each step, its log and checkpoint
    writes included); the plain loop calls start() once and update() after each of its steps."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def start(self, label: str = "", total: int = 0, done: int = 0) -> None:
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def update(self, *args: object) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        self.cpu.append(cpu - self._cpu)
        self.wall.append(wall - self._wall)
        self._cpu, self._wall = cpu, wall

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def _order(config, n):  # the same micro-batches mvleval's DataOrder gives
    from mvleval.finetune.train import DataOrder

    order = DataOrder(n, config.batch_size, config.seed)
    return [order.batch(i) for i in range(config.max_steps)]


def _plain_generic(base, examples, config, processor, clock):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    from mvleval.backends.hf_vlm import QUANT_SKIP_MODULES
    from mvleval.finetune.generic import lora_targets, projector_names
    from mvleval.images import load_image

    processor = processor or AutoProcessor.from_pretrained(base, backend="pil")
    kwargs = {"dtype": torch.bfloat16 if config.bits == 16 else torch.float32}
    if config.bits == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=list(QUANT_SKIP_MODULES),  # the same modules kept unquantised as mvleval keeps
        )
    model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
    regex, _ = lora_targets(model, config)
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora_r,
            lora_alpha=int(config.lora_alpha),
            lora_dropout=config.lora_dropout,
            target_modules=regex,
            modules_to_save=projector_names(model) or None,
        ),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    images = {}
    tok = processor.tokenizer
    tok.padding_side = "right"
    template = getattr(processor, "chat_template", None)
    model.train()
    clock.start()
    for batch_idx in _order(config, len(examples)):
        exs = [examples[i] for i in batch_idx]
        imgs = [[images.setdefault(p, load_image(p)) for p in e.images] for e in exs]
        if template:  # the model cards' collator: the whole conversation, prompt tokens masked by the prompt's length
            convs = [
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": e.prompt}]}] for e in exs
            ]
            prompts = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
            full = [
                processor.apply_chat_template(
                    c + [{"role": "assistant", "content": [{"type": "text", "text": e.target}]}], tokenize=False
                )
                for c, e in zip(convs, exs)
            ]
            batch = processor(text=full, images=imgs, padding=True, return_tensors="pt", add_special_tokens=False)
            plens = [
                len(processor(text=[p], images=[i], return_tensors="pt", add_special_tokens=False)["input_ids"][0])
                for p, i in zip(prompts, imgs)
            ]
            labels = batch["input_ids"].clone()
            labels[batch["attention_mask"] == 0] = -100
            for r, n in enumerate(plens):
                labels[r, :n] = -100
        else:  # PaliGemma's card: the processor's suffix makes the labels
            batch = processor(
                text=[e.prompt for e in exs],
                images=imgs,
                suffix=[e.target for e in exs],
                padding=True,
                return_tensors="pt",
            )
            labels = batch.pop("labels")
        batch.pop("labels", None)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bits == 16):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.update()


def _plain_mblip(base, examples, config, clock):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Blip2ForConditionalGeneration

    from mvleval.backends.mblip import load_config_and_processor
    from mvleval.finetune.train import lora_leaf_names, lora_target_regex, quantization_config
    from mvleval.images import load_image

    cfg, processor = load_config_and_processor(Path(base))
    kwargs = {"config": cfg, "dtype": torch.bfloat16 if config.bits == 16 else torch.float32}
    if config.bits == 4:
        kwargs["quantization_config"] = quantization_config(4, True, False)
    model = Blip2ForConditionalGeneration.from_pretrained(base, **kwargs)
    lm = model.language_model
    regex = lora_target_regex(lm, lora_leaf_names(lm))
    for p in model.parameters():
        p.requires_grad_(False)
    get_peft_model(
        lm,
        LoraConfig(
            r=config.lora_r, lora_alpha=int(config.lora_alpha), lora_dropout=config.lora_dropout, target_modules=regex
        ),
    )
    for p in [*model.qformer.parameters(), model.query_tokens, *model.language_projection.parameters()]:
        p.data = p.data.float()
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    images = {}
    model.train()
    clock.start()
    for batch_idx in _order(config, len(examples)):
        exs = [examples[i] for i in batch_idx]
        imgs = [images.setdefault(e.images[0], load_image(e.images[0])) for e in exs]
        batch = processor(images=imgs, text=[e.prompt for e in exs], padding=True, return_tensors="pt")
        labels = processor.tokenizer([e.target for e in exs], padding=True, return_tensors="pt")["input_ids"]
        labels[labels == processor.tokenizer.pad_token_id] = -100
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bits == 16):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.update()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--families", default="mblip,gemma3,paligemma")
    parser.add_argument("--bits", default="16,4")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side")
    parser.add_argument("--family")
    parser.add_argument("--base")
    parser.add_argument("--bench")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        args.bits = int(args.bits)
        _worker(args)
        return
    from mvleval.testing.squares import write_squares_benchmark

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    bench = write_squares_benchmark(tmp / "squares", n_train=32, n_test=4)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(REPO)}
    print(
        f"{'model':<12} {'bits':>4} {'mvleval ex/s':>13} {'plain ex/s':>11} {'ratio':>6} {'mvleval peak MB':>16} {'plain peak MB':>14}"
    )
    for family in args.families.split(","):
        if family == "mblip":
            from mvleval.factory import build_tiny_checkpoint

            base = build_tiny_checkpoint(tmp / "mblip", "mt5", seed=0)
        else:
            from mvleval.testing.tiny_vlm import build_tiny_vlm

            base = build_tiny_vlm(family, tmp / family, hidden=args.hidden, layers=4)
        for bits in [int(b) for b in args.bits.split(",")]:
            res = {}
            for side in ("mvleval", "plain"):
                out = tmp / f"out-{family}-{bits}-{side}"
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--side",
                    side,
                    "--family",
                    family,
                    "--base",
                    str(base),
                    "--bench",
                    str(bench),
                    "--out",
                    str(out),
                    "--bits",
                    str(bits),
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                ]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                if done.returncode or not lines:
                    print(f"{family} {bits} {side} failed:\n{done.stderr[-2000:]}")
                    res[side] = {"rate": float("nan"), "peak_mb": float("nan")}
                else:
                    res[side] = json.loads(lines[-1])
            m, p = res["mvleval"], res["plain"]
            print(
                f"{family:<12} {bits:>4} {m['rate']:>13.1f} {p['rate']:>11.1f} {m['rate'] / p['rate']:>6.2f} "
                f"{m['peak_mb']:>16.0f} {p['peak_mb']:>14.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
