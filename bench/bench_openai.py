"""Served-model throughput: the openai backend with 32 requests in flight vs one at a time, against a local server that
answers every chat completion after a fixed latency (default 50 ms), measured side by side in one process.

The ideal with N in flight is N x the sequential rate (the server is never the bottleneck: it only sleeps); the goal is
>= 0.8 of it at N = 32. The backend is driven as the runner drives it: batches of its default size (4 x concurrency),
one appended and fsynced line per answer after each batch.

    OMP_NUM_THREADS=1 python bench/bench_openai.py [--latency-ms 50] [--concurrency 32] [--waves 10] [--repeats 3]

The server runs in a subprocess (an asyncio HTTP/1.1 server with keep-alive), so its work does not share this
process's interpreter lock with the client's threads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- the server (python bench/bench_openai.py --serve PORT LATENCY_MS) ---------------------------------------------------
async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency_s: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
            if int(headers.get("content-length", "0")):
                await reader.readexactly(int(headers["content-length"]))
            if path.endswith("/models"):
                body = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()
            else:
                await asyncio.sleep(latency_s)
                body = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "yes"}}],
                                   "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int, latency_ms: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _handle(r, w, latency_ms / 1000), "127.0.0.1", port, backlog=256)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the client ------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the bench server did not start")


def measure(url: str, concurrency: int, n_requests: int, image: Path, out: Path) -> float:
    """Requests per second of the openai backend at `concurrency` in flight, driven in runner-sized batches."""
    from mvleval.backends.base import BackendOptions, EndpointOptions, GenerationRequest
    from mvleval.backends.openai_api import OpenAIBackend, default_batch_size
    from mvleval.record import SampleWriter
    from mvleval.task import GenerationSettings

    backend = OpenAIBackend.load(BackendOptions(model="openai:bench", endpoint=EndpointOptions(base_url=url, concurrency=concurrency)))
    settings = GenerationSettings(num_beams=1, max_new_tokens=10)
    # distinct prompts, one image (encoded once and cached, as a benchmark's shared images are)
    requests = [GenerationRequest(f"Question: is this picture number {i}? Short answer in English:", (image,)) for i in range(n_requests)]
    backend.generate(requests[:concurrency], settings)  # connections opened, image encoded
    size = default_batch_size(concurrency)
    started = time.perf_counter()
    with SampleWriter(out) as writer:
        for i in range(0, n_requests, size):
            answers = backend.generate(requests[i : i + size], settings)
            writer.write_batch({"id": str(i + j), "prediction": a} for j, a in enumerate(answers))
    elapsed = time.perf_counter() - started
    assert backend.run_details()["requests_answered"] == n_requests + concurrency
    return n_requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--waves", type=int, default=10, help="requests at full concurrency = waves x concurrency")
    parser.add_argument("--sequential", type=int, default=40, help="requests of the sequential run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "LATENCY_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]))
        return

    from PIL import Image

    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(args.latency_ms)])
    try:
        _wait_for(port)
        url = f"http://127.0.0.1:{port}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            image = Path(tmp) / "image.jpg"
            Image.new("RGB", (64, 48), (90, 140, 200)).save(image, quality=90)
            print(f"server latency {args.latency_ms:g} ms per request; {args.concurrency} in flight vs 1")
            ratios = []
            for r in range(args.repeats):
                seq = measure(url, 1, args.sequential, image, Path(tmp) / f"seq{r}.jsonl")
                par = measure(url, args.concurrency, args.waves * args.concurrency, image, Path(tmp) / f"par{r}.jsonl")
                ratio = par / (args.concurrency * seq)
                ratios.append(ratio)
                print(f"run {r + 1}: sequential {seq:.1f} req/s (ideal {1000 / args.latency_ms:.1f}), "
                      f"{args.concurrency} in flight {par:.1f} req/s -> {par / seq:.1f}x = {ratio:.2f} of the ideal "
                      f"{args.concurrency}x")
            print(f"ratio to the ideal: {min(ratios):.2f}-{max(ratios):.2f} over {args.repeats} runs (goal >= 0.8)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
