"""`mvleval train` vs the plain transformers + peft loop of the model cards: examples/s and peak memory, 16- and 4-bit.

For each model (mBLIP-shaped mT5 and generic families, built so that the language model's linear layers dominate the
weights, as in a published checkpoint: LM hidden 768 x 8 layers (mT5: 4 encoder + 4 decoder), a 2-layer vision tower,
weights stored in bf16 as published), each precision (16: bf16 weights + bf16 autocast; 4: bitsandbytes nf4 QLoRA with
the vision tower, projector, embeddings and lm_head in bf16, nf4 computed in bf16, bf16 autocast — mvleval and the
plain loop alike) and each side, a fresh subprocess

- mvleval: ``mvleval.finetune.train`` on the coloured-squares benchmark (mvleval/testing/squares.py);
- plain: what the families' model cards show: ``from_pretrained`` (with the same BitsAndBytesConfig for 4 bits),
  ``get_peft_model`` with the same LoRA (same target modules, r, alpha, dropout), AdamW, and per step
  ``processor(text=conversation with the answer, images=...)`` -> ``model(**batch, labels=labels).loss`` ->
  backward -> step (mBLIP: ``Blip2Processor(images, prompt)`` and seq2seq ``labels``), same batch and same examples;

reports the median examples/s over the steps after the first two and before the last (mvleval saves the adapter and
plots there), timed in process CPU time (the machine is shared: wall time swings with the other jobs, CPU time much
less; wall-time rates are in the JSON lines on stderr), the ratio mvleval / plain as the median and range over
``--repeat`` runs (sides interleaved), and each run's peak resident memory (VmHWM of its own process; ru_maxrss is
not used: a forked child starts with its parent's high-water mark there). Data loading: the plain loops and mvleval's
generic families decode each image once and keep it; mvleval's mBLIP path decodes the batch's images every step
(extra work on mvleval's side, ~0.1 ms per 32-px image here).

    OMP_NUM_THREADS=1 python bench/bench_train.py [--steps 6] [--repeat 2] [--families mblip,gemma3,paligemma]
        [--bits 16,4] [--hidden 768] [--layers 8] [--vision-layers 2]
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
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    torch.manual_seed(0)
    rss_before = _vm_hwm_mb()
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
    peak = _vm_hwm_mb()
    # steps after the first two (warm-up) and before the last (mvleval saves the adapter and plots the loss there)
    cpu = clock.cpu[2:-1] or clock.cpu
    wall = clock.wall[2:-1] or clock.wall
    print(
        json.dumps(
            {
                "rate": args.batch / statistics.median(cpu),
                "wall_rate": args.batch / statistics.median(wall),
                "peak_mb": peak,
                "start_mb": rss_before,
                "loaded_peak_mb": clock.loaded_peak_mb,
                "loaded_rss_mb": clock.loaded_rss_mb,
            }
        )
    )


def _vm_hwm_mb(field: str = "VmHWM:") -> float:
    """This process's peak resident memory in MB (VmHWM). Not ru_maxrss: a child created by fork starts with its
    parent's high-water mark there, so the models the parent built would count in every run."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


class _StepClock:
    """Per optimizer step: process CPU time (what the step costs, whatever else the shared machine runs) and wall
    time. For mvleval it is the training loop's progress object (update() after each step, its log and checkpoint
    writes included); the plain loop calls start() once and update() after each of its steps."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def start(self, label: str = "", total: int = 0, done: int = 0) -> None:
        self.loaded_peak_mb, self.loaded_rss_mb = _vm_hwm_mb(), _vm_hwm_mb("VmRSS:")  # model loaded, before step 1
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
    from mvleval.finetune.loop import DataOrder

    order = DataOrder(n, config.batch_size, config.seed)
    return [order.batch(i) for i in range(config.max_steps)]


def _plain_generic(base, examples, config, processor, clock):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    from mvleval.backends.hf_vlm import QUANT_SKIP_MODULES
    from mvleval.benchmarks.images import load_image
    from mvleval.finetune.generic import lora_targets, projector_names

    processor = processor or AutoProcessor.from_pretrained(base, backend="pil")
    # the QLoRA model cards: bf16 weights outside the nf4 layers, nf4 computed in bf16, bf16 autocast (as 16 bits)
    kwargs = {"dtype": torch.bfloat16}
    if config.bits == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=True):
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
    from mvleval.benchmarks.images import load_image
    from mvleval.finetune.loop import lora_leaf_names, lora_target_regex, quantization_config

    cfg, processor = load_config_and_processor(Path(base))
    kwargs = {"config": cfg, "dtype": torch.bfloat16}
    if config.bits == 4:
        kwargs["quantization_config"] = quantization_config(4, True, True)  # nf4, double quant, bf16 compute
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=True):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.update()


def _bf16_files(model_dir: Path) -> Path:
    """Rewrite a built checkpoint's weights in bf16, as vision-LLMs are published (a 16-bit load then reads its
    weights as they are stored, and a 4-bit load quantises from bf16)."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in model_dir.glob("*.safetensors"):
        tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path), metadata={"format": "pt"})
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "bfloat16"
    (model_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return model_dir


def _build(family: str, root: Path, args: argparse.Namespace) -> Path:
    if family == "mblip":
        from mvleval.testing.factory import build_tiny_checkpoint

        # mT5: encoder and decoder of layers/2 each, so its language model has about the generic families' weights
        base = build_tiny_checkpoint(
            root / "mblip", "mt5", seed=0, text_hidden=args.hidden, text_layers=max(2, args.layers // 2), layers=2
        )
    else:
        from mvleval.testing.tiny_vlm import build_tiny_vlm

        base = build_tiny_vlm(
            family, root / family, hidden=args.hidden, layers=args.layers, vision_layers=args.vision_layers
        )
    return _bf16_files(base)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--families", default="mblip,gemma3,paligemma")
    parser.add_argument("--bits", default="16,4")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=8, help="language-model depth (mBLIP's mT5: half each side)")
    parser.add_argument("--vision-layers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each (side, bits) pair, interleaved")
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
    bits_list = [int(b) for b in args.bits.split(",")]
    print(
        f"batch {args.batch}, {args.steps} steps a run (median over steps 3..{args.steps - 1}), {args.repeat} runs "
        f"each; language model hidden {args.hidden} x {args.layers} layers, vision tower {args.vision_layers} layers; "
        "bf16 files. ex/s from process CPU time (wall time in the JSON lines); ratio = mvleval / plain, "
        "median [range] over runs; peak = VmHWM of each run's own process",
        flush=True,
    )
    print(
        f"{'model':<10} {'bits':>4} {'mvleval ex/s':>13} {'plain ex/s':>11} {'ratio':>18} "
        f"{'mvleval peak MB':>16} {'plain peak MB':>14}",
        flush=True,
    )
    for family in args.families.split(","):
        base = _build(family, tmp, args)
        for bits in bits_list:
            runs: dict[str, list[dict]] = {"mvleval": [], "plain": []}
            for rep in range(args.repeat):
                for side in ("mvleval", "plain") if rep % 2 == 0 else ("plain", "mvleval"):
                    out = tmp / f"out-{family}-{bits}-{side}-{rep}"
                    cmd = [sys.executable, __file__, "--worker", "--side", side, "--family", family]
                    cmd += ["--base", str(base), "--bench", str(bench), "--out", str(out), "--bits", str(bits)]
                    cmd += ["--steps", str(args.steps), "--batch", str(args.batch)]
                    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                    if done.returncode or not lines:
                        print(f"{family} {bits} {side} failed:\n{done.stderr[-2000:]}", flush=True)
                        continue
                    runs[side].append(json.loads(lines[-1]))
                    print(json.dumps({"family": family, "bits": bits, "side": side, **runs[side][-1]}), file=sys.stderr)
            m, p = runs["mvleval"], runs["plain"]
            if not m or not p:
                continue
            ratios = [a["rate"] / b["rate"] for a, b in zip(m, p)]
            med = statistics.median
            print(
                f"{family:<10} {bits:>4} {med(r['rate'] for r in m):>13.2f} {med(r['rate'] for r in p):>11.2f} "
                f"{_spread(ratios):>18} {med(r['peak_mb'] for r in m):>16.0f} {med(r['peak_mb'] for r in p):>14.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
