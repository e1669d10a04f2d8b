"""Benchmark: the generic Hugging Face backend (`mvleval run` on a LLaVA-shaped model) against the loop per-model
harness adapters run (lmms-eval / VLMEvalKit style: one sample per `generate`, chat template + processor per sample).

Workload (xGQA-shaped, synthesised offline): N JPEGs of 320x240 with drawn shapes and noise, Q questions per image in
each language, written in xGQA's native format and read by mvleval's own xgqa task. Model: a mid-size random
LLaVA-1.5-shaped checkpoint from mvleval.testing.tiny_vlm (language model and vision tower of width --hidden and
depth --layers), greedy decoding, --max-new-tokens new tokens (an untrained model never stops early: every answer is
that long, on both sides).

Measured side by side in one run, same model files, data and settings:
  mvleval: runner.evaluate (model load, data validation, batched generation with left padding and image prefetch,
           scoring incl. the language-fidelity detector, records written), --batch-size auto by default (on CPU: as
           many samples as half the free memory holds, at most 64; its probe is timed too);
  loop:    model + processor load, then per sample: decode the image, apply the chat template, processor, generate
           (batch 1), decode; no scoring.
  backend: the generation phase alone as the runner drives it (model load, --batch-size pick, image prefetch,
           length-sorted batches through the generic backend), without the run's data checks, scoring and records.
Prints the wall times, the backend's and the whole run's speed-up over the loop, the whole run's seconds by phase
(plan + data checks, model load + batch-size probe, generation, scoring + records), and whether every prediction is
identical on all three (exit 1 if not). The run starts with an empty cache of lingua's rankings (as on a machine that
never scored these answers): language fidelity's models load in the run, in the worker of mvleval/run/rank_ahead.py
while the model generates. Scoring is not free on a random model: its long multi-script gibberish makes
the language-fidelity detector take ~13 ms per caption (real captions take a fraction of that).

Run: ``OMP_NUM_THREADS=1 python bench/bench_hf_vlm.py [--quick]`` (~3 min on 2 cores; --quick ~1 min).

``--case cache``: instead, `mvleval run` twice with the response cache (a fresh one in a temporary folder, read-write),
the second run into another output folder, as a rerun of a finished local evaluation is (a new metric, a second
report): prints both wall times, their ratio, the answers the second run took from the cache and whether every
prediction is identical (exit 1 if not). Both runs load the model, check the data, score and write records; only
generation is saved.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

LANGUAGES = ("en", "de", "zh")
QUESTIONS = {
    "en": (
        "What colour is the shape?",
        "How many shapes are there?",
        "Is the {o} on the left?",
        "What is next to the {o}?",
    ),
    "de": ("Welche Farbe hat die Form?", "Wie viele Formen gibt es?", "Ist der {o} links?", "Was ist neben dem {o}?"),
    "zh": ("这个形状是什么颜色？", "有几个形状？", "{o}在左边吗？", "{o}旁边是什么？"),
}
OBJECTS = ("circle", "square", "triangle", "star")


def make_workload(root: Path, n_images: int, per_image: int, seed: int = 0) -> tuple[Path, Path]:
    """xGQA-format question files and JPEGs under root; returns (data_root, image_root)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    data_root, image_root = root / "data", root / "data" / "images"
    (image_root / "gqa").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        noise = np.random.default_rng(i).integers(0, 40, (240, 320, 3), dtype=np.uint8)
        img = Image.fromarray(noise + 200)
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 4)):
            x, y = rng.randint(0, 260), rng.randint(0, 180)
            draw.ellipse((x, y, x + 50, y + 50), fill=tuple(rng.randint(0, 255) for _ in range(3)))
        img.save(image_root / "gqa" / f"b{i:05d}.jpg", quality=90)
    for lang in LANGUAGES:
        questions = {}
        for i in range(n_images):
            for j in range(per_image):
                template = QUESTIONS[lang][j % len(QUESTIONS[lang])]
                questions[f"{i:05d}{j:02d}"] = {
                    "imageId": f"b{i:05d}",
                    "question": template.format(o=rng.choice(OBJECTS)),
                    "answer": rng.choice(OBJECTS),
                }
        path = data_root / "xgqa" / "data" / "few_shot" / lang / "test.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(questions, ensure_ascii=False))
    return data_root, image_root


def make_caption_workload(root: Path, n_images: int) -> tuple[Path, Path]:
    """An XM3600-format captions file (every image captioned in every language) over the same kind of JPEGs."""
    data_root, image_root = make_workload(root, n_images, 1)
    (image_root / "xm3600").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_images):
        key = f"{i:016x}"
        (image_root / "gqa" / f"b{i:05d}.jpg").rename(image_root / "xm3600" / f"{key}.jpg")
        row = {"image/key": key, "image/locale": "en"}
        row.update({lang: {"caption": [f"{lang} caption {i}"]} for lang in LANGUAGES})
        lines.append(json.dumps(row))
    (data_root / "xm3600").mkdir(parents=True, exist_ok=True)
    (data_root / "xm3600" / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return data_root, image_root


def run_mvleval(
    task: str,
    model_dir: Path,
    data_root: Path,
    image_root: Path,
    out: Path,
    batch_size: int | None,
    max_new_tokens: int,
) -> tuple[float, dict]:
    from mvleval.record.schema import read_samples
    from mvleval.run.evaluate import evaluate
    from mvleval.run.plan import RunOptions

    phases = PhaseClock()
    phases.cpu0 = phases.cpu()
    started = phases.t0 = time.perf_counter()
    options = RunOptions(
        task=task,
        model=str(model_dir),
        data_root=data_root,
        image_root=image_root,
        languages=LANGUAGES,
        batch_size=batch_size,
        out_dir=out,
        generation={"num_beams": 1, "max_new_tokens": max_new_tokens},
    )
    record, path = evaluate(options, progress=phases)
    elapsed = time.perf_counter() - started
    phases.end, phases.cpu_end = started + elapsed, phases.cpu()
    predictions = {(r["lang"], r["id"]): r["prediction"] for r in read_samples(path.parent / record.samples_file)}
    return elapsed, predictions, phases


class PhaseClock:
    """A progress sink for runner.evaluate that notes when each phase of the run begins: the model load (its
    "loading" note), the first language's generation, the last one's end (then scoring and records)."""

    def __init__(self) -> None:
        self.t0 = self.load = self.gen_start = self.gen_end = self.end = 0.0
        self.cpu0 = self.cpu_end = 0.0

    @staticmethod
    def cpu() -> float:
        """CPU seconds of this process (all its threads) and of its children waited for (the ranking worker)."""
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def note(self, message: str) -> None:
        if message.startswith("loading") and not self.load:
            self.load = time.perf_counter()

    def start(self, label: str, total: int, done: int) -> None:
        if not self.gen_start:
            self.gen_start = time.perf_counter()

    def advance(self, n: int, status: str = "") -> None:
        pass

    def finish(self) -> None:
        self.gen_end = time.perf_counter()

    def breakdown(self) -> str:
        """The run's seconds: before the load (data checks, fingerprint), load + batch-size probe, generation,
        after (ranking wait, scoring, records)."""
        parts = (
            ("plan + data checks", self.load - self.t0),
            ("model load + batch-size probe", self.gen_start - self.load),
            ("generation", self.gen_end - self.gen_start),
            ("scoring + records", self.end - self.gen_end),
        )
        return ", ".join(f"{name} {s:.1f} s" for name, s in parts) + (
            f"; CPU {self.cpu_end - self.cpu0:.1f} s (this process + the ranking worker)"
        )


def run_backend(
    task_name: str, model_dir: Path, data_root: Path, image_root: Path, batch_size: int | None, max_new_tokens: int
) -> tuple[float, dict]:
    """The generation phase alone, as the runner drives it: model load, batch size pick, prefetch, length-sorted
    batches through the generic backend (no data validation, scoring or records)."""
    from mvleval.backends import BackendOptions, GenerationRequest, load_backend
    from mvleval.benchmarks.registry import load_task
    from mvleval.run.generate import batches as _batches

    task = load_task(task_name)
    settings = task.generation.replace(num_beams=1, max_new_tokens=max_new_tokens)
    examples = {lang: task.examples(data_root, image_root, lang) for lang in LANGUAGES}
    started = time.perf_counter()
    backend = load_backend(BackendOptions(model=str(model_dir)))
    probe = sorted((e for exs in examples.values() for e in exs), key=lambda e: -len(e.prompt))[:32]
    size = batch_size or backend.pick_batch_size([GenerationRequest(e.prompt, e.images) for e in probe], settings)
    predictions = {}
    for lang in LANGUAGES:
        batches = _batches(examples[lang], size)
        backend.prefetch([GenerationRequest(e.prompt, e.images) for b in batches for e in b])
        for batch in batches:
            for e, p in zip(batch, backend.generate([GenerationRequest(e.prompt, e.images) for e in batch], settings)):
                predictions[(lang, e.id)] = p
    backend.close()
    return time.perf_counter() - started, predictions


def run_loop(
    task_name: str, model_dir: Path, data_root: Path, image_root: Path, max_new_tokens: int
) -> tuple[float, dict]:
    """What a per-model harness adapter does: one sample at a time through the chat template and processor."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mvleval.benchmarks.registry import load_task

    started = time.perf_counter()
    processor = AutoProcessor.from_pretrained(model_dir, backend="pil")
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    task = load_task(task_name)
    predictions = {}
    for lang in LANGUAGES:
        for example in task.examples(data_root, image_root, lang):
            image = Image.open(example.images[0]).convert("RGB")
            conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example.prompt}]}]
            text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            inputs = processor(text=[text], images=[[image]], return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    num_beams=1,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=1,
                    pad_token_id=processor.tokenizer.pad_token_id,
                )
            predictions[(lang, example.id)] = processor.tokenizer.decode(
                out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            ).strip()
    return time.perf_counter() - started, predictions


def run_twice_with_cache(
    args: argparse.Namespace,
    model_dir: Path,
    data_root: Path,
    image_root: Path,
    root: Path,
    batch_size: int | None,
    max_new: int,
    n: int,
) -> int:
    """The first and the second `mvleval run` of the same task with the response cache, side by side."""
    from mvleval.record.schema import read_record

    os.environ["MVLEVAL_CACHE_DIR"] = str(root / "cache")  # an empty cache: the first run generates everything
    times, preds, counts = [], [], []
    for name in ("first", "second"):
        started = time.perf_counter()
        from mvleval.run.evaluate import evaluate
        from mvleval.run.plan import RunOptions

        options = RunOptions(
            task=args.shape,
            model=str(model_dir),
            data_root=data_root,
            image_root=image_root,
            languages=LANGUAGES,
            batch_size=batch_size,
            out_dir=root / name,
            cache="read-write",
            generation={"num_beams": 1, "max_new_tokens": max_new},
        )
        record, path = evaluate(options)
        times.append(time.perf_counter() - started)
        from mvleval.record.schema import read_samples

        preds.append({(r["lang"], r["id"]): r["prediction"] for r in read_samples(path.parent / record.samples_file)})
        counts.append(read_record(path).model.details["cache"])
        print(
            f"{name} run:  {times[-1]:7.1f} s  (cache: {counts[-1]['answers_from_cache']} answers from it, "
            f"{counts[-1]['answers_generated']} generated)"
        )
    same = sum(preds[1].get(k) == v for k, v in preds[0].items())
    print(
        f"second run / first run: {times[1] / times[0]:.3f} ({times[0] / times[1]:.1f}x faster); answers from the cache: "
        f"{counts[1]['answers_from_cache']}/{n}; identical predictions: {same}/{len(preds[0])}"
    )
    return 0 if same == len(preds[0]) == len(preds[1]) == counts[1]["answers_from_cache"] == n else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller workload (~1 min)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--batch-size", default="auto", help="a number, or 'auto' (what `mvleval run --batch-size auto` picks)"
    )
    parser.add_argument(
        "--shape",
        choices=("xgqa", "xm3600"),
        default="xgqa",
        help="xgqa: questions, short answers (10 new tokens); xm3600: one caption per image and language (50)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 10 (xgqa) or 50 (xm3600), mBLIP's")
    parser.add_argument(
        "--case",
        choices=("speed", "cache"),
        default="speed",
        help="speed: mvleval vs the per-sample loop; cache: a second `mvleval run` vs the first (response cache)",
    )
    args = parser.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    from mvleval.testing.tiny_vlm import build_tiny_vlm

    hf_logging.disable_progress_bar()  # "Loading weights" bars of the loop's own from_pretrained

    n_images, per_image = (16, 4) if args.quick else (40, 8)
    max_new = args.max_new_tokens or (10 if args.shape == "xgqa" else 50)
    if args.shape == "xm3600":
        n_images, per_image = (n_images // 2, 1) if args.quick else (80, 1)
    with tempfile.TemporaryDirectory(prefix="bench-hf-vlm-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_vlm("llava", root / "model", hidden=args.hidden, layers=args.layers)
        if args.shape == "xgqa":
            data_root, image_root = make_workload(root / "work", n_images, per_image)
        else:
            data_root, image_root = make_caption_workload(root / "work", n_images)
        n = n_images * per_image * len(LANGUAGES)
        print(
            f"workload: {n} prompts over {n_images} images ({len(LANGUAGES)} languages); LLaVA-shaped model "
            f"hidden {args.hidden} x {args.layers} layers; {args.shape}-shaped, greedy, {max_new} new tokens; "
            f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
        )
        if args.case == "cache":
            return run_twice_with_cache(
                args,
                model_dir,
                data_root,
                image_root,
                root,
                None if args.batch_size == "auto" else int(args.batch_size),
                max_new,
                n,
            )
        # an empty cache of lingua's rankings (mvleval.metrics.ranking_cache): the run scores as on a machine that never
        # ranked these answers, whatever earlier runs of this script left in the user's cache
        os.environ["MVLEVAL_CACHE_DIR"] = str(root / "cache")
        loop_s, loop_pred = run_loop(args.shape, model_dir, data_root, image_root, max_new)
        print(f"per-sample loop:  {loop_s:7.1f} s  ({n / loop_s:.1f} prompts/s; load + generation)")
        batch_size = None if args.batch_size == "auto" else int(args.batch_size)
        gen_s, gen_pred = run_backend(args.shape, model_dir, data_root, image_root, batch_size, max_new)
        print(
            f"generic backend:  {gen_s:7.1f} s  ({n / gen_s:.1f} prompts/s, batch size {args.batch_size}; load + generation)"
        )
        mv_s, mv_pred, phases = run_mvleval(
            args.shape, model_dir, data_root, image_root, root / "runs", batch_size, max_new
        )
        print(
            f"mvleval run:      {mv_s:7.1f} s  ({n / mv_s:.1f} prompts/s; + data checks, scoring incl. language "
            "fidelity, records)"
        )
        print(f"  whole run's seconds: {phases.breakdown()}")
        same = sum(mv_pred[k] == v == gen_pred[k] for k, v in loop_pred.items())
        print(
            f"speed-up of the backend (generation): {loop_s / gen_s:.2f}x; of the whole run: {loop_s / mv_s:.2f}x; "
            f"identical predictions: {same}/{len(loop_pred)}"
        )
        print(
            f"side by side ({args.shape}-shaped): loop {loop_s:.1f} s | mvleval run {mv_s:.1f} s | whole run "
            f"{loop_s / mv_s:.2f}x the loop"
        )
        return 0 if same == len(loop_pred) == len(mv_pred) == len(gen_pred) else 1


if __name__ == "__main__":
    sys.exit(main())
