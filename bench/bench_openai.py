"""Served-model throughput, measured side by side in one process against local servers (subprocesses: an asyncio
HTTP/1.1 server with keep-alive, a fixed latency per request, and optionally a capacity: 429 beyond K requests at
once). The backend is driven as the runner drives it: batches of its default size, one appended and fsynced line per
answer after each batch. Cases (``--case``, default all):

- ``concurrency``: 32 in flight vs 1 on one server without a capacity: the ratio to the ideal 32x (goal >= 0.8).
- ``replicas``: 4 replicas vs 1, each with capacity K and --concurrency K: the ratio to the ideal 4x (goal >= 0.85),
  answers identical.
- ``failover``: 4 replicas, one killed when 30% of the answers are in: the run completes, every example answered
  exactly once (the answers equal the undisturbed run's).
- ``adaptive``: one replica with capacity K; fixed --concurrency swept over a range around K vs no --concurrency
  (adaptive windows): adaptive / the best fixed (goal >= 0.9).
- ``cache``: a run with the response cache, then the same run again: every answer from the cache; the second
  generation's wall time / the first's (goal < 0.05).

    OMP_NUM_THREADS=1 python bench/bench_openai.py [--case all|concurrency|replicas|failover|adaptive|cache]
        [--latency-ms 50] [--concurrency 32] [--capacity 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- the server (python bench/bench_openai.py --serve PORT LATENCY_MS CAPACITY) ----------------------------------------------
class _Load:
    in_flight = 0


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency_s: float, capacity: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
            }
            data = (
                await reader.readexactly(int(headers["content-length"]))
                if int(headers.get("content-length", "0"))
                else b""
            )
            status = b"200 OK"
            if path.endswith("/models"):
                body = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()
            elif not path.endswith("/chat/completions"):
                status, body = b"404 Not Found", b"{}"
            elif capacity and _Load.in_flight >= capacity:
                status, body = b"429 Too Many Requests", b'{"error": "over capacity"}'
            else:
                _Load.in_flight += 1
                try:
                    await asyncio.sleep(latency_s)
                finally:
                    _Load.in_flight -= 1
                answer = hashlib.sha256(data).hexdigest()[:12]  # the same request gets the same answer on every replica
                body = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                        ],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
                    }
                ).encode()
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int, latency_ms: float, capacity: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(r, w, latency_ms / 1000, capacity), "127.0.0.1", port, backlog=512
        )
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


class Servers:
    """`n` bench servers in subprocesses."""

    def __init__(self, n: int, latency_ms: float, capacity: int) -> None:
        self.ports = [_free_port() for _ in range(n)]
        self.procs = [
            subprocess.Popen([sys.executable, __file__, "--serve", str(p), str(latency_ms), str(capacity)])
            for p in self.ports
        ]
        for port in self.ports:
            _wait_for(port)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/v1" for p in self.ports]

    def kill(self, i: int) -> None:
        self.procs[i].kill()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


def measure(
    urls: list[str],
    concurrency: int | None,
    n_requests: int,
    image: Path,
    out: Path,
    *,
    cache: str = "off",
    warm: bool = True,
    kill_at: float | None = None,
    servers: Servers | None = None,
    max_retries: int = 5,
) -> tuple[float, list[str], dict]:
    """(requests per second, the answers in request order, run details) of the openai backend over `urls`, driven in
    runner-sized batches; `kill_at`: kill server 0 once that fraction of the answers is in."""
    from mvleval.backends.base import BackendOptions, EndpointOptions, GenerationRequest
    from mvleval.backends.openai_api import OpenAIBackend, default_batch_size
    from mvleval.benchmarks.task import GenerationSettings
    from mvleval.record.schema import SampleWriter

    endpoint = EndpointOptions(
        base_url=urls[0], base_urls=tuple(urls), concurrency=concurrency, cache=cache, max_retries=max_retries
    )
    backend = OpenAIBackend.load(BackendOptions(model="openai:bench", endpoint=endpoint))
    settings = GenerationSettings(num_beams=1, max_new_tokens=10)
    # distinct prompts, one image (encoded once and cached, as a benchmark's shared images are)
    requests = [
        GenerationRequest(f"Question: is this picture number {i}? Short answer in English:", (image,))
        for i in range(n_requests)
    ]
    if warm:  # connections opened, image encoded (not cached: another prompt)
        backend.generate([GenerationRequest(f"warm-up {i}", (image,)) for i in range(len(urls))], settings)
        backend.run_details()
    size = default_batch_size(concurrency, len(urls))
    if kill_at is not None:
        assert servers is not None

        def killer() -> None:
            while backend._router.answers < kill_at * n_requests:
                time.sleep(0.005)
            servers.kill(0)

        threading.Thread(target=killer, daemon=True).start()
    answers: list[str] = []
    started = time.perf_counter()
    with SampleWriter(out) as writer:
        for i in range(0, n_requests, size):
            got = backend.generate(requests[i : i + size], settings)
            writer.write_batch({"id": str(i + j), "prediction": a} for j, a in enumerate(got))
            answers += got
    elapsed = time.perf_counter() - started
    return n_requests / elapsed, answers, backend.run_details()


def _image(tmp: str) -> Path:
    from PIL import Image

    image = Path(tmp) / "image.jpg"
    Image.new("RGB", (64, 48), (90, 140, 200)).save(image, quality=90)
    return image


def case_concurrency(args: argparse.Namespace, tmp: str) -> None:
    servers = Servers(1, args.latency_ms, 0)
    try:
        image = _image(tmp)
        print(f"[concurrency] server latency {args.latency_ms:g} ms per request; {args.concurrency} in flight vs 1")
        ratios = []
        for r in range(args.repeats):
            seq, _, _ = measure(servers.urls, 1, 40, image, Path(tmp) / f"seq{r}.jsonl")
            par, _, _ = measure(
                servers.urls, args.concurrency, 10 * args.concurrency, image, Path(tmp) / f"par{r}.jsonl"
            )
            ratio = par / (args.concurrency * seq)
            ratios.append(ratio)
            print(
                f"  run {r + 1}: sequential {seq:.1f} req/s (ideal {1000 / args.latency_ms:.1f}), {args.concurrency} in flight "
                f"{par:.1f} req/s -> {par / seq:.1f}x = {ratio:.2f} of the ideal {args.concurrency}x"
            )
        print(f"  ratio to the ideal: {min(ratios):.2f}-{max(ratios):.2f} over {args.repeats} runs (goal >= 0.8)")
    finally:
        servers.close()


def case_replicas(args: argparse.Namespace, tmp: str) -> None:
    k, n = args.capacity, 4
    servers = Servers(n, args.latency_ms, k)
    try:
        image = _image(tmp)
        print(
            f"[replicas] {n} replicas vs 1; each: latency {args.latency_ms:g} ms, capacity {k} (429 beyond), --concurrency {k}"
        )
        ratios = []
        for r in range(args.repeats):
            one, a1, _ = measure(servers.urls[:1], k, 20 * k, image, Path(tmp) / f"one{r}.jsonl")
            four, a4, details = measure(servers.urls, k, 20 * k * n, image, Path(tmp) / f"four{r}.jsonl")
            same = a4[: len(a1)] == a1
            ratio = four / (n * one)
            ratios.append(ratio)
            spread = "/".join(str(d["answers"]) for d in details["replicas"])
            print(
                f"  run {r + 1}: 1 replica {one:.1f} req/s, {n} replicas {four:.1f} req/s -> {four / one:.2f}x = {ratio:.2f} of "
                f"the ideal {n}x; answers per replica {spread}; answers identical: {same}"
            )
        print(f"  ratio to the ideal: {min(ratios):.2f}-{max(ratios):.2f} over {args.repeats} runs (goal >= 0.85)")
    finally:
        servers.close()


def case_failover(args: argparse.Namespace, tmp: str) -> None:
    k, n = args.capacity, 4
    image = _image(tmp)
    print(
        f"[failover] {n} replicas (latency {args.latency_ms:g} ms, capacity {k}); replica 0 killed at 30% of the answers"
    )
    for r in range(args.repeats):
        servers = Servers(n, args.latency_ms, k)
        try:
            total = 20 * k * n
            _, reference, _ = measure(servers.urls, k, total, image, Path(tmp) / f"ref{r}.jsonl")
            rate, answers, details = measure(
                servers.urls, k, total, image, Path(tmp) / f"kill{r}.jsonl", kill_at=0.3, servers=servers
            )
            lines = (Path(tmp) / f"kill{r}.jsonl").read_text().splitlines()
            ids = [json.loads(line)["id"] for line in lines]
            once = len(ids) == total and len(set(ids)) == total
            spread = "/".join(str(d["answers"]) for d in details["replicas"])
            print(
                f"  run {r + 1}: completed {len(answers)}/{total}, every example once: {once}, answers equal the undisturbed "
                f"run's: {answers == reference}; answers per replica {spread}; {rate:.1f} req/s"
            )
        finally:
            servers.close()


def case_adaptive(args: argparse.Namespace, tmp: str) -> None:
    k = args.capacity * 2
    servers = Servers(1, args.latency_ms, k)
    try:
        image = _image(tmp)
        total = 40 * k
        sweep = sorted({max(1, k // 4), k // 2, (3 * k) // 4, k, (5 * k) // 4, (3 * k) // 2, 2 * k})
        print(
            f"[adaptive] one replica: latency {args.latency_ms:g} ms, capacity {k} (429 beyond); {total} requests; fixed "
            f"--concurrency swept over {sweep} vs adaptive"
        )
        for r in range(args.repeats):
            fixed = {}
            for c in sweep:
                try:
                    fixed[c] = measure(
                        servers.urls, c, total, image, Path(tmp) / f"fixed{r}-{c}.jsonl", max_retries=50
                    )[0]
                except Exception as exc:
                    print(f"  --concurrency {c}: failed ({type(exc).__name__})")
            best = max(fixed, key=lambda c: fixed[c])
            rate, _, details = measure(servers.urls, None, total, image, Path(tmp) / f"adaptive{r}.jsonl")
            table = ", ".join(f"{c}: {v:.0f}" for c, v in fixed.items())
            print(
                f"  run {r + 1}: fixed req/s {{{table}}}; best fixed {best} -> {fixed[best]:.1f} req/s; adaptive {rate:.1f} req/s "
                f"(final window {details['replicas'][0]['window']}, 429s {details['retries'].get('HTTP 429', 0)}) = "
                f"{rate / fixed[best]:.2f} of the best fixed (goal >= 0.9)"
            )
    finally:
        servers.close()


def case_cache(args: argparse.Namespace, tmp: str) -> None:
    k = args.capacity
    servers = Servers(1, args.latency_ms, k)
    os.environ["MVLEVAL_CACHE_DIR"] = str(Path(tmp) / "cache")
    try:
        image = _image(tmp)
        total = 40 * k
        print(
            f"[cache] one replica (latency {args.latency_ms:g} ms, capacity {k}, --concurrency {k}); {total} requests, "
            "then the same requests again (--cache read-write)"
        )
        for r in range(args.repeats):
            from mvleval.run.cache import ResponseCache

            ResponseCache().clear()
            first, a1, d1 = measure(servers.urls, k, total, image, Path(tmp) / f"c1-{r}.jsonl", cache="read-write")
            second, a2, d2 = measure(servers.urls, k, total, image, Path(tmp) / f"c2-{r}.jsonl", cache="read-write")
            print(
                f"  run {r + 1}: first {total / first:.3f} s ({d1['cache']['answers_from_cache']} from the cache), second "
                f"{total / second:.3f} s ({d2['cache']['answers_from_cache']} from the cache, {d2['requests_answered']} asked); "
                f"answers equal: {a1 == a2}; second / first = {first / second:.4f} (goal < 0.05)"
            )
    finally:
        servers.close()


CASES = {
    "concurrency": case_concurrency,
    "replicas": case_replicas,
    "failover": case_failover,
    "adaptive": case_adaptive,
    "cache": case_cache,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["all", *CASES], default="all")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=32, help="in flight for the 'concurrency' case")
    parser.add_argument(
        "--capacity", type=int, default=8, help="K: a replica's requests at once before 429 (adaptive: 2 K)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "LATENCY_MS", "CAPACITY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]), int(args.serve[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MVLEVAL_CACHE_DIR", str(Path(tmp) / "cache"))
        for name, case in CASES.items():
            if args.case in ("all", name):
                case(args, tmp)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
