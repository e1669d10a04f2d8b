"""The served-model backend: a model behind an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, TGI,
``transformers serve``, hosted APIs), asked one request per example, many in flight, never scoring a failed request.

Each example is one ``POST {base_url}/chat/completions`` whose user turn holds the example's images (base64 data URLs,
in the task's order) followed by the task's prompt text: the same content order the local generic backend gives a
chat template, so a server applying the checkpoint's template sees the same conversation. Decoding is deterministic:
temperature 0, ``max_tokens`` from the task, a seed; beam search only through a server's documented extension
(``--server-extensions vllm|transformers``), otherwise greedy, and the run says so (``num_beams`` 1 in the record).

A request is retried (exponential back-off with jitter, at least as long as a ``Retry-After`` header asks) on 429,
5xx, connection errors, timeouts and malformed bodies (no choices, no or empty content, not JSON). When a request
still fails, ``generate`` raises :class:`BatchFailed` with the answers that did arrive: the runner keeps those, stops
without scoring, and ``--resume`` sends only what is missing. The API key is read from an environment variable and
sent as a bearer token; it is removed from every message this module produces (and never stored: records hold the
variable's name).

Several replicas of one model (repeated ``--base-url``) share the requests: each goes to the replica with the fewest in
flight; a replica that fails is taken out for a back-off period and its requests go to the others (``_Router``).
Without ``--concurrency`` each replica's window adapts (AIMD, ``_Router``'s docstring). Every answer is looked up in,
and kept in, the response cache (mvleval/run/cache.py) first, keyed by the served model id, the server's version and the
request body as sent.

No torch, transformers or numpy is imported here: a machine that only evaluates served models does not need them.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import os
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import field_validator

from mvleval.backends.base import (
    SERVER_EXTENSIONS,
    Backend,
    BackendOptions,
    BatchFailed,
    EndpointOptions,
    GenerationRequest,
    interleave,
)
from mvleval.backends.registry import served_model_name
from mvleval.backends.spec import ModelOptions
from mvleval.run.cache import CACHE_MODES, served_key
from mvleval.util.errors import MissingDependencyError, MvlevalError

if TYPE_CHECKING:
    import httpx

    from mvleval.benchmarks.task import GenerationSettings
    from mvleval.record.schema import ModelInfo
    from mvleval.run.cache import ResponseCache

logger = logging.getLogger("mvleval.backends.openai_api")

#: First retry waits about this long; each further one twice as long (times a jitter in [0.5, 1)), up to the cap.
RETRY_BASE_S = 0.5
RETRY_CAP_S = 30.0
#: A Retry-After longer than this is shortened to it (a server asking for an hour would otherwise stall the run).
MAX_RETRY_AFTER_S = 300.0
#: Encoded images kept (xGQA asks ~32 questions about each image; XM3600 uses each image in 36 languages).
IMAGE_CACHE_SIZE = 512
#: Runner batch = this many x --concurrency when the user gives no --batch-size: the requests of a batch run
#: concurrently, and several waves per batch keep the pipe full between the per-batch fsyncs.
WAVES_PER_BATCH = 4
#: Characters of a server's error body quoted in a message.
QUOTE_CHARS = 300
#: Adaptive concurrency (no --concurrency): a replica's window starts here and never exceeds ADAPTIVE_MAX.
ADAPTIVE_START = 4
ADAPTIVE_MAX = 128
#: On 429 / 503 / a timeout / latency above LATENCY_TOLERANCE x the lowest seen, the window is multiplied by DECREASE.
DECREASE = 0.9
LATENCY_TOLERANCE = 2.0
#: An adaptive run's request may be refused as "too many" this often before it counts against --max-retries.
ADAPTIVE_OVERLOAD_RETRIES = 20
#: Failover: a replica is taken out after a connection error, or REPLICA_FAILURES failures in a row (5xx, timeouts),
#: for REPLICA_BACKOFF_S, doubling on each further take-out up to REPLICA_BACKOFF_CAP_S; back, it gets one request
#: at a time until one succeeds.
REPLICA_FAILURES = 3
REPLICA_BACKOFF_S = 1.0
REPLICA_BACKOFF_CAP_S = 30.0
#: A request moves to another replica at most this many times per replica without using one of its --max-retries.
FAILOVER_LIMIT = 2
IMAGE_ENCODING = "the file's own bytes for RGB JPEG/PNG without EXIF rotation and no resizing; else lossless PNG of the decoded RGB image"


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(
        self,
        cause: str,
        detail: str,
        retry_after: float | None = None,
        *,
        overloaded: bool = False,
        replica_fault: bool = False,
    ) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail
        self.retry_after = retry_after
        self.overloaded = overloaded  # 429 / 503: too many requests in flight (the window shrinks)
        self.replica_fault = replica_fault  # connection error, timeout, other 5xx: the replica may be down


class _Failed(Exception):
    """A request failed for good (its retries used up, or an error that retrying cannot fix)."""


class _Stopped(Exception):
    """A request not sent (or not retried) because another request of the batch failed for good."""


class _Replica:
    """One server of the model: its URL, requests in flight, concurrency window and health (guarded by the router's
    condition)."""

    def __init__(self, index: int, url: str, window: float) -> None:
        self.index = index
        self.url = url.rstrip("/")
        self.public = public_url(self.url)
        self.outstanding = 0
        self.window = window
        self.answers = 0
        self.failures = 0
        self.consecutive = 0  # failures since its last answer
        self.down_until = 0.0  # taken out (failover) until then
        self.down_for = 0.0  # its current back-off period
        self.probing = False  # back from a back-off: one request at a time until one succeeds
        self.paused_until = 0.0  # Retry-After: no new request before then
        self.min_latency = float("inf")
        self.slow_start = True  # +1 per answer until the first decrease, then +1 per window of answers
        self.last_decrease = 0.0
        self.times_out = 0

    def usable(self, now: float) -> bool:
        return (
            self.down_until <= now
            and self.paused_until <= now
            and self.outstanding < max(1, int(self.window))
            and not (self.probing and self.outstanding > 0)
        )


class _Router:
    """Least-outstanding routing over the replicas, their adaptive windows and their failover back-off.

    Windows (``--concurrency`` not given): additive increase, multiplicative decrease. Each answer whose latency stays
    within LATENCY_TOLERANCE x the lowest seen on that replica grows its window, by 1 per answer until the first
    decrease (slow start) and then by 1 per window of answers; a 429, 503 or timeout, or a latency above the tolerance,
    multiplies it by DECREASE, at most once per round trip (on a 429 or 503 also down to the requests the replica still
    holds: it refused one more than those); a Retry-After pauses the replica for that long. With a fixed
    ``--concurrency`` the windows never change.
    """

    def __init__(self, urls: Sequence[str], concurrency: int | None, stop: threading.Event) -> None:
        self.adaptive = concurrency is None
        start = float(ADAPTIVE_START if concurrency is None else concurrency)
        self.replicas = [_Replica(i, url, start) for i, url in enumerate(urls)]
        self.cond = threading.Condition()
        self._stop = stop
        self.answers = 0
        self.started = time.monotonic()

    @property
    def several(self) -> bool:
        return len(self.replicas) > 1

    def acquire(self) -> _Replica:
        """The usable replica with the fewest requests in flight (waits while every window is full or every replica is
        out); raises _Stopped when the batch was stopped."""
        with self.cond:
            while True:
                if self._stop.is_set():
                    raise _Stopped
                now = time.monotonic()
                usable = [r for r in self.replicas if r.usable(now)]
                if usable:
                    best = min(usable, key=lambda r: (r.outstanding / max(1.0, r.window), r.outstanding, r.index))
                    best.outstanding += 1
                    return best
                wake = [t for r in self.replicas for t in (r.down_until, r.paused_until) if t > now]
                self.cond.wait(min([0.5, *(t - now for t in wake)]) + 0.001)

    def all_out(self) -> float | None:
        """Seconds until the first replica is back when every replica is out (failed), else None."""
        with self.cond:
            now = time.monotonic()
            if all(r.down_until > now for r in self.replicas):
                return min(r.down_until for r in self.replicas) - now
            return None

    def succeeded(self, replica: _Replica, latency: float) -> None:
        with self.cond:
            replica.outstanding -= 1
            replica.answers += 1
            self.answers += 1
            replica.consecutive = 0
            replica.down_for = 0.0
            replica.probing = False
            if self.adaptive:
                replica.min_latency = min(replica.min_latency, latency)
                if latency > LATENCY_TOLERANCE * replica.min_latency and replica.min_latency > 0:
                    self._decrease(replica)
                elif replica.slow_start:
                    replica.window = min(ADAPTIVE_MAX, replica.window + 1)
                else:
                    replica.window = min(ADAPTIVE_MAX, replica.window + 1 / replica.window)
            self.cond.notify_all()

    def failed(self, replica: _Replica, exc: _Retryable) -> bool:
        """Count a failed attempt; returns True when the replica was taken out (failover: the request goes elsewhere)."""
        with self.cond:
            replica.outstanding -= 1
            replica.failures += 1
            now = time.monotonic()
            if exc.overloaded:  # 429 / 503: the server is busy, not broken
                if self.adaptive:
                    # it refused one more than the requests it holds: the window need not exceed those
                    self._decrease(replica, cap=max(1, replica.outstanding))
                if exc.retry_after is not None:
                    replica.paused_until = max(replica.paused_until, now + min(exc.retry_after, MAX_RETRY_AFTER_S))
                self.cond.notify_all()
                return False
            if exc.cause == "timeout" and self.adaptive:
                self._decrease(replica)
            taken_out = False
            if self.several and exc.replica_fault:
                if replica.down_until > now:
                    self.cond.notify_all()
                    return True  # already out (another request of it failed first): no second, longer back-off
                replica.consecutive += 1
                if exc.cause.startswith("connection error") or replica.consecutive >= REPLICA_FAILURES:
                    replica.down_for = min(REPLICA_BACKOFF_CAP_S, max(REPLICA_BACKOFF_S, replica.down_for * 2))
                    replica.down_until = now + replica.down_for
                    replica.probing = True
                    replica.consecutive = 0
                    taken_out = True
                    logger.warning(
                        "replica %s taken out for %.0f s after %s", replica.public, replica.down_for, exc.cause
                    )
            self.cond.notify_all()
            return taken_out

    def released(self, replica: _Replica) -> None:
        with self.cond:
            replica.outstanding -= 1
            self.cond.notify_all()

    def _decrease(self, replica: _Replica, cap: int | None = None) -> None:
        now = time.monotonic()
        round_trip = replica.min_latency if replica.min_latency < float("inf") else 0.0
        if now - replica.last_decrease < round_trip:
            return  # one decrease per round trip: the answers of one congested window count once
        replica.last_decrease = now
        replica.slow_start = False
        replica.window = max(1.0, replica.window * DECREASE if cap is None else min(replica.window * DECREASE, cap))

    def capacity(self) -> int:
        """Most requests in flight at once over all replicas."""
        per = ADAPTIVE_MAX if self.adaptive else int(self.replicas[0].window)
        return per * len(self.replicas)

    def windows(self) -> list[int]:
        with self.cond:
            return [max(1, int(r.window)) for r in self.replicas]

    def report(self) -> list[dict[str, Any]]:
        with self.cond:
            return [
                {"url": r.public, "answers": r.answers, "failed_attempts": r.failures, "window": max(1, int(r.window))}
                for r in self.replicas
            ]


class OpenAIOptions(ModelOptions):
    """A served model's options (``-M KEY=VALUE``; the old flags --base-url, --api-key-env, --concurrency, --timeout,
    --max-retries, --max-image-side and --server-extensions are aliases of them); the CLI turns them into the run's
    EndpointOptions, whose checks (``check_endpoint``) name every bad value."""

    #: every replica's base URL, in order (default: $OPENAI_BASE_URL, else OpenAI's API); repeat the key for several
    base_url: list[str] = []
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key; the key is never recorded
    max_concurrency: int | None = None  # requests in flight per replica; None: adaptive
    timeout: float = 120.0
    max_retries: int = 5
    max_image_side: int | None = None
    server_extensions: str = "none"

    carried: ClassVar[frozenset[str]] = frozenset(
        {"base_url", "api_key_env", "max_concurrency", "timeout", "max_retries", "max_image_side", "server_extensions"}
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def recorded(self) -> dict[str, Any]:
        """As given, each URL without user name, password or query (they may hold keys)."""
        values = super().recorded()
        if "base_url" in values:
            values["base_url"] = [public_url(url) for url in values["base_url"]]
        return values


class OpenAIBackend(Backend):
    """A model served behind an OpenAI-compatible endpoint, on one server or several replicas.

    Create it with ``OpenAIBackend.load(BackendOptions(model="openai:NAME", endpoint=EndpointOptions(...)))``.
    """

    options_model = OpenAIOptions

    def __init__(
        self,
        *,
        model: str,
        endpoint: EndpointOptions,
        api_key: str | None,
        client: httpx.Client,
        cache: ResponseCache | None = None,
    ) -> None:
        from mvleval.run.cache import ResponseCache

        self.model = model
        self.served_id = served_model_name(model)
        self.endpoint = endpoint
        self.base_url = endpoint.urls[0].rstrip("/")
        self.public_url = public_url(self.base_url)
        self._api_key = api_key
        self._client = client
        self._stop = threading.Event()
        self._router = _Router(endpoint.urls, endpoint.concurrency, self._stop)
        publics = [r.public for r in self._router.replicas]
        self.device = f"endpoint {self.public_url}" if len(publics) == 1 else f"endpoints {', '.join(publics)}"
        self._pool = ThreadPoolExecutor(max_workers=self._router.capacity(), thread_name_prefix="mvleval-openai")
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple[str, int | None], str] = OrderedDict()
        self._random = random.Random()  # jitter only: answers never depend on it
        self._stats = _Stats()
        self._cache = cache or ResponseCache(endpoint.cache)
        self._from_cache: frozenset[int] = frozenset()
        self.models_report: dict[str, Any] = {}
        self.server_version: str | None = None

    # -- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, options: BackendOptions) -> OpenAIBackend:
        """Check the options, read the API key, and ask every replica's ``/models`` about the served model.

        Raises:
            MissingDependencyError: httpx is not installed.
            MvlevalError: a bad option, a named key variable that is not set, an endpoint that cannot be reached, or
                replicas that serve different models.
        """
        try:
            import httpx
        except ImportError:
            raise MissingDependencyError(
                "httpx", "evaluating a served model (--model openai:NAME)", install='pip install "mvleval[openai]"'
            ) from None
        endpoint = options.endpoint or EndpointOptions()
        _check_endpoint(endpoint, options.model)
        api_key = os.environ.get(endpoint.api_key_env) or None
        if api_key is None and endpoint.api_key_env != "OPENAI_API_KEY":
            raise MvlevalError(
                f"--api-key-env names the environment variable {endpoint.api_key_env}, which is not set.",
                fix=f"export {endpoint.api_key_env}=YOUR_KEY (or leave --api-key-env out for a server without keys).",
            )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        connections = (endpoint.concurrency or ADAPTIVE_MAX) * len(endpoint.urls)
        client = httpx.Client(
            timeout=httpx.Timeout(endpoint.timeout_s),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers=headers,
            trust_env=False,  # proxies from the environment would see the key; a proxy is set in base_url's network
        )
        backend = cls(model=options.model, endpoint=endpoint, api_key=api_key, client=client)
        reports = [backend._query_models(r) for r in backend._router.replicas]
        backend._check_same_model(reports)
        backend.models_report = reports[0]
        backend.server_version = backend._query_version()
        logger.info("serving %s at %s: %s", backend.served_id, backend.device, backend.models_report)
        return backend

    def _check_same_model(self, reports: list[dict[str, Any]]) -> None:
        """Every replica must list the model the first one lists (by id, and root where given): a replica serving
        another model would mix two models' answers in one run."""
        if len(reports) < 2:
            return
        first = reports[0]
        for replica, report in zip(self._router.replicas, reports):
            if report.get("status") != first.get("status") or report.get("root") != first.get("root"):
                what = (
                    f"lists {', '.join(report.get('listed', [])) or 'no model'}"
                    if report.get("status") == "not listed"
                    else (
                        f"serves {report.get('id', self.served_id)!r}"
                        + (f" from {report['root']!r}" if report.get("root") else "")
                        if report.get("status") == "listed"
                        else f"answers /models with {report.get('status')}"
                    )
                )
                raise MvlevalError(
                    self._redact(
                        f"the replicas do not serve the same model: {replica.public} {what}, but "
                        f"{self._router.replicas[0].public} "
                        + (
                            f"serves {self.served_id!r}"
                            if first.get("status") == "listed"
                            else f"answers /models with {first.get('status')}"
                        )
                        + "."
                    ),
                    fix="give --base-url only for servers of the same model (the same checkpoint, the same --served-model-name).",
                )

    def _query_version(self) -> str | None:
        """The server's version where it reports one (vLLM: ``GET /version`` beside ``/v1``); part of cache keys."""
        versions = set()
        for replica in self._router.replicas:
            parts = urlsplit(replica.url)
            root = parts.path.rstrip("/")
            root = root[: -len("/v1")] if root.endswith("/v1") else root
            try:
                response = self._client.get(
                    urlunsplit((parts.scheme, parts.netloc, root + "/version", parts.query, "")), timeout=5.0
                )
                value = json.loads(response.content).get("version") if response.status_code == 200 else None
            except Exception:
                value = None
            versions.add(str(value) if isinstance(value, (str, int, float)) else None)
        if len(versions) > 1:
            logger.warning("the replicas report different server versions: %s", sorted(map(str, versions)))
        return ",".join(sorted(str(v) for v in versions)) if versions != {None} else None

    # -- the Backend API -----------------------------------------------------------------------------------------
    def check_settings(self, settings: GenerationSettings, images_per_example: int) -> None:
        """Refuse beam search unless the server's beam-search extension was chosen, and sampling."""
        if settings.do_sample:
            raise MvlevalError(
                "sampling (do_sample) is not supported for served models: runs must be deterministic.",
                fix="use the task's own settings (greedy or beam search).",
            )
        if settings.num_beams > 1 and self.endpoint.server_extensions == "none":
            raise MvlevalError(
                f"beam search (num_beams={settings.num_beams}) cannot be asked of a plain OpenAI-compatible API.",
                fix="pass --num-beams 1 (greedy: recorded, and the leaderboard labels the row), or --server-extensions "
                "vllm / transformers for a vLLM or `transformers serve` server, which offer beam search.",
            )

    def pick_batch_size(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> int:
        """``--batch-size auto``: a few waves of every replica's most requests in flight per batch."""
        return default_batch_size(self.endpoint.concurrency, len(self.endpoint.urls))

    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """One answer per request, in request order: the cached ones from the cache, the others from the replicas.

        Raises:
            BatchFailed: a request failed after its retries on every replica; carries the answers that arrived.
        """
        self._from_cache = frozenset()
        if not requests:
            return []
        started = time.perf_counter()
        fields = self._settings_fields(settings)
        payloads = [self._payload(r, fields) for r in requests]
        keys = [served_key(self.served_id, self.server_version, p) for p in payloads] if self._cache.enabled else []
        cached = self._cache.lookup(keys)
        answers: dict[int, str] = {i: cached[k] for i, k in enumerate(keys) if k in cached}
        self._from_cache = frozenset(answers)
        futures: dict[int, Future[str]] = {
            i: self._pool.submit(self._answer, p) for i, p in enumerate(payloads) if i not in answers
        }
        failures: list[tuple[int, str]] = []
        try:
            for i, future in futures.items():
                try:
                    answers[i] = future.result()
                except _Failed as exc:
                    failures.append((i, str(exc)))
                    self._stop.set()  # nothing else is sent or retried; requests in flight finish their attempt
                except _Stopped:
                    pass
        except BaseException:  # Ctrl-C: drop what has not started, let in-flight attempts end on their own
            self._stop.set()
            for future in futures.values():
                future.cancel()
            raise
        finally:
            self._stats.add_wall(time.perf_counter() - started)
            if keys:  # what arrived is kept even when the batch failed: a resume finds it
                self._cache.store(self.served_id, {keys[i]: answers[i] for i in futures if i in answers})
        self._stop.clear()
        if failures:
            index, message = failures[0]
            more = f" ({len(failures) - 1} more request(s) of the batch failed too)" if len(failures) > 1 else ""
            where = (
                f"{self.public_url}/chat/completions"
                if len(self.endpoint.urls) == 1
                else f"every replica ({self.device.split(' ', 1)[1]})"
            )
            raise BatchFailed(
                self._redact(f"a request to {where} for model {self.served_id!r} failed: {message}{more}."),
                answered=answers,
                fix="check the server (its log, its load, --base-url, the model name), then rerun the same command with "
                "--resume: answers already received are kept and not asked again; raise --timeout or --max-retries for a "
                "slow or busy server.",
            )
        return [answers[i] for i in range(len(requests))]

    def from_cache(self) -> frozenset[int]:
        """Indices of the last ``generate`` call's requests answered from the response cache."""
        return self._from_cache

    def progress_note(self) -> str:
        """Answers per second since loading, and every replica's current window (shown beside the progress bar)."""
        rate = self._router.answers / max(1e-9, time.monotonic() - self._router.started)
        windows = "+".join(str(w) for w in self._router.windows())
        return f"{rate:.1f} answers/s, window {windows}" + (" (adaptive)" if self._router.adaptive else "")

    def info(self, settings: GenerationSettings) -> ModelInfo:
        """The served model's identity: endpoint (no credentials), /models report, request settings, image encoding."""
        from mvleval.record.schema import ModelInfo

        fields = self._settings_fields(settings)
        details: dict[str, Any] = {
            "endpoint": self.public_url,
            "served_model": self.served_id,
            "models_endpoint": self.models_report,
            "auth": f"bearer token from ${self.endpoint.api_key_env}" if self._api_key else "none",
            "request": {
                **fields,
                "concurrency": self.endpoint.concurrency if self.endpoint.concurrency is not None else "adaptive",
                "timeout_s": self.endpoint.timeout_s,
                "max_retries": self.endpoint.max_retries,
                "max_image_side": self.endpoint.max_image_side,
                "server_extensions": self.endpoint.server_extensions,
                "image_encoding": IMAGE_ENCODING,
            },
        }
        if self.server_version is not None:
            details["server_version"] = self.server_version
        return ModelInfo(
            path=self.model,
            kind="served",
            bits=0,  # not known here: the server chose the precision (details.models may say)
            dtype="served",
            generation=settings.to_dict(),
            generation_path=f"openai chat completions ({'greedy' if settings.num_beams == 1 else 'beam search'}, "
            f"server extensions: {self.endpoint.server_extensions})",
            backend="openai",
            family=None,
            image_handling="native",
            details=details,
        )

    def run_details(self) -> dict[str, Any]:
        """Requests, token totals, retries by cause, generation wall time, replicas and the cache since the previous
        call."""
        out = self._stats.take()
        out["replicas"] = self._router.report()
        out["cache"] = self._cache.summary()
        with self._router.cond:
            for replica in self._router.replicas:
                replica.answers = replica.failures = 0
            self._router.answers = 0
            self._router.started = time.monotonic()
        self._cache.hits = self._cache.misses = self._cache.stored = 0
        return out

    def close(self) -> None:
        """Nothing to release between tasks of one invocation (the pool and connections are reused)."""

    # -- one request ---------------------------------------------------------------------------------------------
    def _payload(self, request: GenerationRequest, fields: dict[str, Any]) -> bytes:
        """The request body as sent (also what the cache key hashes)."""
        # images first, or where the prompt's <image k> markers place them (mvleval.backends.base.interleave)
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": self._data_url(request.images[p])}}
            if isinstance(p, int)
            else {"type": "text", "text": p}
            for p in interleave(request.prompt, len(request.images))
        ]
        return json.dumps(
            {"model": self.served_id, "messages": [{"role": "user", "content": content}], **fields}
        ).encode()

    def _answer(self, payload: bytes) -> str:
        if self._stop.is_set():
            raise _Stopped
        attempts = self.endpoint.max_retries + 1
        charged = 0  # failed attempts that count against --max-retries
        free = 0  # attempts moved to another replica after this one was taken out (bounded: replicas can flap)
        overloaded = 0
        while True:
            replica = self._router.acquire()
            started = time.monotonic()
            try:
                answer = self._attempt(replica, payload)
            except _Retryable as exc:
                taken_out = self._router.failed(replica, exc)
                self._stats.retry(exc.cause)
                if taken_out and self._router.all_out() is None and free < FAILOVER_LIMIT * len(self._router.replicas):
                    free += 1
                    logger.info("moving a request off %s: %s", replica.public, exc.detail)
                    continue  # another replica is up: no back-off, no retry used
                if exc.overloaded and self._router.adaptive and overloaded < ADAPTIVE_OVERLOAD_RETRIES:
                    # the window was too large: it shrank (and a Retry-After paused the replica), so the request just
                    # waits for a free place in a window again; only a window already at 1 also backs off in time
                    overloaded += 1
                    if replica.window <= 1 and self._stop.wait(
                        min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(overloaded - 1, 6)) * self._random.uniform(0.5, 1.0)
                    ):
                        raise _Stopped from None
                    continue
                charged += 1
                if charged == attempts:
                    raise _Failed(f"{exc.detail} (gave up after {attempts} attempt(s))") from None
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (charged - 1)) * self._random.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER_S))
                back = self._router.all_out()
                if back is not None:
                    delay = max(delay, back)  # every replica is out: wait for the first to come back
                logger.info("retrying in %.1f s: %s", delay, exc.detail)
                if self._stop.wait(delay):
                    raise _Stopped from None
            except BaseException:
                self._router.released(replica)
                raise
            else:
                self._router.succeeded(replica, time.monotonic() - started)
                return answer

    def _attempt(self, replica: _Replica, payload: bytes) -> str:
        import httpx

        self._stats.attempt()
        try:
            response = self._client.post(
                self._url("/chat/completions", replica.url),
                content=payload,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TimeoutException:
            raise _Retryable(
                "timeout", f"no answer within --timeout {self.endpoint.timeout_s:g} s", replica_fault=True
            ) from None
        except httpx.TransportError as exc:
            name = type(exc).__name__
            raise _Retryable(
                f"connection error ({name})", self._redact(f"connection error ({name}: {exc})"), replica_fault=True
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(
                f"HTTP {status}",
                f"HTTP {status} {self._quote(response)}",
                _retry_after(response.headers.get("retry-after")),
                overloaded=status in (429, 503),
                replica_fault=status not in (429, 503),
            )
        if status != 200:
            hint = " (does --base-url end with /v1?)" if status == 404 else ""
            raise _Failed(f"HTTP {status}{hint} {self._quote(response)}")
        answer, usage, finish = _parse_completion(response.content)  # raises _Retryable("malformed response")
        self._stats.success(usage, finish)
        return answer

    def _settings_fields(self, settings: GenerationSettings) -> dict[str, Any]:
        """The request fields for these decoding settings (standard ones, then the chosen server's extension)."""
        fields: dict[str, Any] = {"max_tokens": settings.max_new_tokens, "temperature": 0.0, "seed": self.endpoint.seed}
        if self.endpoint.server_extensions == "vllm":
            fields["min_tokens"] = settings.min_new_tokens
            if settings.num_beams > 1:
                # vLLM: beam width is n; the choices come back best first, the first is the answer
                fields.update(use_beam_search=True, n=settings.num_beams, length_penalty=settings.length_penalty)
        elif self.endpoint.server_extensions == "transformers":
            # transformers serve builds its GenerationConfig from this JSON string (max_tokens still sets the length)
            fields["generation_config"] = json.dumps(
                {
                    "num_beams": settings.num_beams,
                    "max_new_tokens": settings.max_new_tokens,
                    "min_new_tokens": settings.min_new_tokens,
                    "length_penalty": settings.length_penalty,
                    "do_sample": False,
                },
                sort_keys=True,
            )
        return fields

    def _data_url(self, path: Path) -> str:
        key = (str(path), self.endpoint.max_image_side)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        url = encode_image(path, self.endpoint.max_image_side)
        with self._lock:
            self._images[key] = url
            while len(self._images) > IMAGE_CACHE_SIZE:
                self._images.popitem(last=False)
        return url

    def _query_models(self, replica: _Replica) -> dict[str, Any]:
        """What a replica's ``GET /models`` says about the served model (its entry, or why there is none); an
        unreachable server stops here, before any data is read."""
        import httpx

        url = self._url("/models", replica.url)
        for attempt in range(self.endpoint.max_retries + 1):
            try:
                response = self._client.get(url)
                break
            except httpx.TransportError as exc:
                if attempt == self.endpoint.max_retries:
                    raise MvlevalError(
                        self._redact(f"cannot reach the endpoint {replica.public} ({type(exc).__name__}: {exc})."),
                        fix="start the server or correct --base-url (e.g. http://HOST:8000/v1).",
                    ) from None
                self._stop.wait(min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt))
        if response.status_code != 200:
            return {"status": f"HTTP {response.status_code}"}
        try:
            listed = json.loads(response.content).get("data") or []
        except (ValueError, AttributeError):
            return {"status": "not a JSON model list"}
        entry = next((m for m in listed if isinstance(m, dict) and m.get("id") == self.served_id), None)
        if entry is None:
            ids = [str(m.get("id")) for m in listed if isinstance(m, dict)][:20]
            logger.warning(
                "the endpoint does not list model %r (it lists: %s)", self.served_id, ", ".join(ids) or "nothing"
            )
            return {"status": "not listed", "listed": ids}
        keep = ("id", "object", "created", "owned_by", "root", "parent", "max_model_len")
        return {"status": "listed", **{k: entry[k] for k in keep if k in entry}}

    def _url(self, path: str, base_url: str | None = None) -> str:
        """`path` under a replica's base URL (default: the first), keeping a query it has (e.g. an api-version)."""
        parts = urlsplit(base_url or self.base_url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))

    def _quote(self, response: httpx.Response) -> str:
        text = response.content[:QUOTE_CHARS].decode("utf-8", "replace").replace("\n", " ").strip()
        return self._redact(f"({text!r})") if text else "(empty body)"

    def _redact(self, text: str) -> str:
        """`text` without the API key or any password in the base URL."""
        for secret in (self._api_key, *(urlsplit(url).password for url in self.endpoint.urls)):
            if secret:
                text = text.replace(secret, "***")
        return text


# -- helpers -----------------------------------------------------------------------------------------------------------
class _Stats:
    """Counters shared by the request threads; ``take`` returns them and starts again from zero."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self.attempts = 0
        self.retries: Counter[str] = Counter()
        self.finish: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.without_usage = 0
        self.wall_s = 0.0

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    def retry(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] += 1

    def success(self, usage: dict[str, Any] | None, finish: str | None) -> None:
        with self._lock:
            self.requests += 1
            self.finish[str(finish)] += 1
            if (
                usage
                and isinstance(usage.get("prompt_tokens"), int)
                and isinstance(usage.get("completion_tokens"), int)
            ):
                self.prompt_tokens += usage["prompt_tokens"]
                self.completion_tokens += usage["completion_tokens"]
            else:
                self.without_usage += 1

    def add_wall(self, seconds: float) -> None:
        with self._lock:
            self.wall_s += seconds

    def take(self) -> dict[str, Any]:
        with self._lock:
            out = {
                "requests_answered": self.requests,
                "attempts": self.attempts,
                "retries": dict(sorted(self.retries.items())),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "answers_without_usage": self.without_usage,
                "finish_reasons": dict(sorted(self.finish.items())),
                "generation_wall_s": round(self.wall_s, 3),
                "counted": "requests sent by this invocation (a resumed run counts only what it asked)",
            }
            self._reset()
        return out


def default_batch_size(concurrency: int | None, replicas: int = 1) -> int:
    """The runner's batch size for a served model: WAVES_PER_BATCH waves of every replica's ``concurrency`` requests
    (adaptive: of the largest window, so that the windows can grow)."""
    return WAVES_PER_BATCH * (concurrency or ADAPTIVE_MAX) * replicas


def public_url(url: str) -> str:
    """`url` without user name, password, query or fragment (what a record may show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def encode_image(path: Path, max_side: int | None) -> str:
    """A data URL for the image at `path`: the same bytes on every run.

    The pixels the server decodes are the ones mvleval's local backends see: an RGB JPEG/PNG without EXIF rotation goes
    as the file's own bytes (servers rotate by EXIF, mvleval does not); anything else, and any downsized image
    (bicubic, aspect kept, longer side = `max_side`), goes as a lossless PNG of the decoded RGB image.
    """
    from PIL import Image

    from mvleval.benchmarks.images import load_image

    image = load_image(path)  # validated (missing, corrupt, bomb) and decoded to RGB
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC
        )
        return _png_url(image)
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as raw:
        fmt, mode, orientation = raw.format, raw.mode, raw.getexif().get(0x0112, 1)
    if fmt in ("JPEG", "PNG") and mode == "RGB" and orientation == 1:
        return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode('ascii')}"
    return _png_url(image)


def _png_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _parse_completion(body: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    """(answer stripped, usage, finish reason) of a chat completion; raises _Retryable for anything malformed."""

    def malformed(why: str) -> _Retryable:
        return _Retryable("malformed response", f"malformed response: {why}")

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise malformed(f"not JSON ({body[:80].decode('utf-8', 'replace')!r})") from None
    if not isinstance(data, dict):
        raise malformed("not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise malformed("no choices")
    first = min(
        (c for c in choices if isinstance(c, dict)),
        key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0,
        default=None,
    )
    message = first.get("message") if first else None
    content = message.get("content") if isinstance(message, dict) else None
    # a reasoning model's thinking, in the field vLLM/SGLang (reasoning_content) or newer servers (reasoning) return it:
    # kept in the prediction as <think>...</think> before the answer, so the per-sample file holds the whole output and
    # scoring removes it (metrics/answer.py); thinking without content (the token budget ran out) is an open <think>
    reasoning: str | None = None
    if isinstance(message, dict):
        for field_name in ("reasoning_content", "reasoning"):
            value = message.get(field_name)
            if isinstance(value, str) and value.strip():
                reasoning = value
                break
    if reasoning is not None and (content is None or isinstance(content, str)):
        text = (
            f"<think>{reasoning.strip()}</think>{content.strip()}"
            if content and content.strip()
            else f"<think>{reasoning.strip()}"
        )
        content = text
    if not isinstance(content, str) or not content:
        raise malformed("the first choice has no content" if content in (None, "") else "content is not text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    finish = first.get("finish_reason") if first else None
    return content.strip(), usage, finish if isinstance(finish, str) else None


def _retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _check_endpoint(endpoint: EndpointOptions, model: str) -> None:
    """Every problem with the endpoint options at once."""
    problems = []
    if not served_model_name(model):
        problems.append(
            "--model openai: needs the served model's name after the colon (e.g. openai:Qwen/Qwen2.5-VL-7B-Instruct)"
        )
    for url in endpoint.urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"--base-url must be an http(s) URL such as http://HOST:8000/v1, got {public_url(url)!r}")
    publics = [public_url(url) for url in endpoint.urls]
    if len(set(publics)) < len(publics):
        twice = sorted({p for p in publics if publics.count(p) > 1})
        problems.append(f"--base-url gives the same replica twice ({', '.join(twice)})")
    if endpoint.concurrency is not None and endpoint.concurrency < 1:
        problems.append(f"--concurrency must be at least 1, got {endpoint.concurrency}")
    if not endpoint.timeout_s > 0:
        problems.append(f"--timeout must be positive, got {endpoint.timeout_s}")
    if endpoint.max_retries < 0:
        problems.append(f"--max-retries must be 0 or more, got {endpoint.max_retries}")
    if endpoint.max_image_side is not None and endpoint.max_image_side < 1:
        problems.append(f"--max-image-side must be positive, got {endpoint.max_image_side}")
    if endpoint.cache not in CACHE_MODES:
        problems.append(f"--cache must be one of {', '.join(CACHE_MODES)}, got {endpoint.cache!r}")
    if endpoint.server_extensions not in SERVER_EXTENSIONS:
        problems.append(
            f"--server-extensions must be one of {', '.join(SERVER_EXTENSIONS)}, got {endpoint.server_extensions!r}"
        )
    if problems:
        raise MvlevalError("; ".join(problems) + ".", fix="correct the flags above.")


__all__ = ["OpenAIBackend", "default_batch_size", "encode_image", "public_url"]
