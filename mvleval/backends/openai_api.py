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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mvleval.backends.base import SERVER_EXTENSIONS, Backend, BackendOptions, BatchFailed, EndpointOptions, GenerationRequest
from mvleval.backends.registry import served_model_name
from mvleval.errors import MissingDependencyError, MvlevalError

if TYPE_CHECKING:
    import httpx

    from mvleval.record import ModelInfo
    from mvleval.task import GenerationSettings

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
IMAGE_ENCODING = "the file's own bytes for RGB JPEG/PNG without EXIF rotation and no resizing; else lossless PNG of the decoded RGB image"


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, cause: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail
        self.retry_after = retry_after


class _Failed(Exception):
    """A request failed for good (its retries used up, or an error that retrying cannot fix)."""


class _Stopped(Exception):
    """A request not sent (or not retried) because another request of the batch failed for good."""


class OpenAIBackend(Backend):
    """A model served behind an OpenAI-compatible endpoint.

    Create it with ``OpenAIBackend.load(BackendOptions(model="openai:NAME", endpoint=EndpointOptions(...)))``.
    """

    def __init__(self, *, model: str, endpoint: EndpointOptions, api_key: str | None, client: httpx.Client) -> None:
        self.model = model
        self.served_id = served_model_name(model)
        self.endpoint = endpoint
        self.base_url = endpoint.base_url.rstrip("/")
        self.public_url = public_url(self.base_url)
        self.device = f"endpoint {self.public_url}"
        self._api_key = api_key
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=endpoint.concurrency, thread_name_prefix="mvleval-openai")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple[str, int | None], str] = OrderedDict()
        self._random = random.Random()  # jitter only: answers never depend on it
        self._stats = _Stats()
        self.models_report: dict[str, Any] = {}

    # -- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, options: BackendOptions) -> OpenAIBackend:
        """Check the options, read the API key, and ask ``/models`` about the served model.

        Raises:
            MissingDependencyError: httpx is not installed.
            MvlevalError: a bad option, a named key variable that is not set, or an endpoint that cannot be reached.
        """
        try:
            import httpx
        except ImportError:
            raise MissingDependencyError("httpx", "evaluating a served model (--model openai:NAME)", install='pip install "mvleval[openai]"') from None
        endpoint = options.endpoint or EndpointOptions()
        _check_endpoint(endpoint, options.model)
        api_key = os.environ.get(endpoint.api_key_env) or None
        if api_key is None and endpoint.api_key_env != "OPENAI_API_KEY":
            raise MvlevalError(
                f"--api-key-env names the environment variable {endpoint.api_key_env}, which is not set.",
                fix=f"export {endpoint.api_key_env}=YOUR_KEY (or leave --api-key-env out for a server without keys).",
            )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.Client(
            timeout=httpx.Timeout(endpoint.timeout_s),
            limits=httpx.Limits(max_connections=endpoint.concurrency, max_keepalive_connections=endpoint.concurrency),
            headers=headers,
            trust_env=False,  # proxies from the environment would see the key; a proxy is set in base_url's network
        )
        backend = cls(model=options.model, endpoint=endpoint, api_key=api_key, client=client)
        backend.models_report = backend._query_models()
        logger.info("serving %s at %s: %s", backend.served_id, backend.public_url, backend.models_report)
        return backend

    # -- the Backend API -----------------------------------------------------------------------------------------
    def check_settings(self, settings: GenerationSettings, images_per_example: int) -> None:
        """Refuse beam search unless the server's beam-search extension was chosen, and sampling."""
        if settings.do_sample:
            raise MvlevalError("sampling (do_sample) is not supported for served models: runs must be deterministic.",
                               fix="use the task's own settings (greedy or beam search).")
        if settings.num_beams > 1 and self.endpoint.server_extensions == "none":
            raise MvlevalError(
                f"beam search (num_beams={settings.num_beams}) cannot be asked of a plain OpenAI-compatible API.",
                fix="pass --num-beams 1 (greedy: recorded, and the leaderboard labels the row), or --server-extensions "
                "vllm / transformers for a vLLM or `transformers serve` server, which offer beam search.",
            )

    def pick_batch_size(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> int:
        """``--batch-size auto``: a few waves of ``--concurrency`` requests per batch."""
        return default_batch_size(self.endpoint.concurrency)

    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """One answer per request, in request order; ``--concurrency`` requests in flight.

        Raises:
            BatchFailed: a request failed after its retries; carries the answers that arrived.
        """
        if not requests:
            return []
        started = time.perf_counter()
        fields = self._settings_fields(settings)
        futures: list[Future[str]] = [self._pool.submit(self._answer, r, fields) for r in requests]
        answers: dict[int, str] = {}
        failures: list[tuple[int, str]] = []
        try:
            for i, future in enumerate(futures):
                try:
                    answers[i] = future.result()
                except _Failed as exc:
                    failures.append((i, str(exc)))
                    self._stop.set()  # nothing else is sent or retried; requests in flight finish their attempt
                except _Stopped:
                    pass
        except BaseException:  # Ctrl-C: drop what has not started, let in-flight attempts end on their own
            self._stop.set()
            for future in futures:
                future.cancel()
            raise
        finally:
            self._stats.add_wall(time.perf_counter() - started)
        self._stop.clear()
        if failures:
            index, message = failures[0]
            more = f" ({len(failures) - 1} more request(s) of the batch failed too)" if len(failures) > 1 else ""
            raise BatchFailed(
                self._redact(f"a request to {self.public_url}/chat/completions for model {self.served_id!r} failed: {message}{more}."),
                answered=answers,
                fix="check the server (its log, its load, --base-url, the model name), then rerun the same command with "
                "--resume: answers already received are kept and not asked again; raise --timeout or --max-retries for a "
                "slow or busy server.",
            )
        return [answers[i] for i in range(len(requests))]

    def info(self, settings: GenerationSettings) -> ModelInfo:
        """The served model's identity: endpoint (no credentials), /models report, request settings, image encoding."""
        from mvleval.record import ModelInfo

        fields = self._settings_fields(settings)
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
            details={
                "endpoint": self.public_url,
                "served_model": self.served_id,
                "models_endpoint": self.models_report,
                "auth": f"bearer token from ${self.endpoint.api_key_env}" if self._api_key else "none",
                "request": {
                    **fields,
                    "concurrency": self.endpoint.concurrency,
                    "timeout_s": self.endpoint.timeout_s,
                    "max_retries": self.endpoint.max_retries,
                    "max_image_side": self.endpoint.max_image_side,
                    "server_extensions": self.endpoint.server_extensions,
                    "image_encoding": IMAGE_ENCODING,
                },
            },
        )

    def run_details(self) -> dict[str, Any]:
        """Requests, token totals, retries by cause and generation wall time since the previous call."""
        return self._stats.take()

    def close(self) -> None:
        """Nothing to release between tasks of one invocation (the pool and connections are reused)."""

    # -- one request ---------------------------------------------------------------------------------------------
    def _answer(self, request: GenerationRequest, fields: dict[str, Any]) -> str:
        if self._stop.is_set():
            raise _Stopped
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": self._data_url(p)}} for p in request.images]
        content.append({"type": "text", "text": request.prompt})
        payload = json.dumps({"model": self.served_id, "messages": [{"role": "user", "content": content}], **fields}).encode()
        attempts = self.endpoint.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._attempt(payload)
            except _Retryable as exc:
                self._stats.retry(exc.cause)
                if attempt + 1 == attempts:
                    raise _Failed(f"{exc.detail} (gave up after {attempts} attempt(s))") from None
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt) * self._random.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER_S))
                logger.info("retrying in %.1f s: %s", delay, exc.detail)
                if self._stop.wait(delay):
                    raise _Stopped from None
        raise AssertionError("unreachable")

    def _attempt(self, payload: bytes) -> str:
        import httpx

        self._stats.attempt()
        try:
            response = self._client.post(self._url("/chat/completions"), content=payload,
                                         headers={"Content-Type": "application/json"})
        except httpx.TimeoutException:
            raise _Retryable("timeout", f"no answer within --timeout {self.endpoint.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            name = type(exc).__name__
            raise _Retryable(f"connection error ({name})", self._redact(f"connection error ({name}: {exc})")) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", f"HTTP {status} {self._quote(response)}", _retry_after(response.headers.get("retry-after")))
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
                {"num_beams": settings.num_beams, "max_new_tokens": settings.max_new_tokens, "min_new_tokens": settings.min_new_tokens,
                 "length_penalty": settings.length_penalty, "do_sample": False},
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

    def _query_models(self) -> dict[str, Any]:
        """What ``GET /models`` says about the served model (its entry, or why there is none); an unreachable server
        stops here, before any data is read."""
        import httpx

        url = self._url("/models")
        for attempt in range(self.endpoint.max_retries + 1):
            try:
                response = self._client.get(url)
                break
            except httpx.TransportError as exc:
                if attempt == self.endpoint.max_retries:
                    raise MvlevalError(
                        self._redact(f"cannot reach the endpoint {self.public_url} ({type(exc).__name__}: {exc})."),
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
            logger.warning("the endpoint does not list model %r (it lists: %s)", self.served_id, ", ".join(ids) or "nothing")
            return {"status": "not listed", "listed": ids}
        keep = ("id", "object", "created", "owned_by", "root", "parent", "max_model_len")
        return {"status": "listed", **{k: entry[k] for k in keep if k in entry}}

    def _url(self, path: str) -> str:
        """`path` under the base URL, keeping a query the base URL has (e.g. an api-version)."""
        parts = urlsplit(self.base_url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))

    def _quote(self, response: httpx.Response) -> str:
        text = response.content[:QUOTE_CHARS].decode("utf-8", "replace").replace("\n", " ").strip()
        return self._redact(f"({text!r})") if text else "(empty body)"

    def _redact(self, text: str) -> str:
        """`text` without the API key or any password in the base URL."""
        for secret in (self._api_key, urlsplit(self.base_url).password):
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
            if usage and isinstance(usage.get("prompt_tokens"), int) and isinstance(usage.get("completion_tokens"), int):
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


def default_batch_size(concurrency: int) -> int:
    """The runner's batch size for a served model: WAVES_PER_BATCH waves of ``concurrency`` requests."""
    return WAVES_PER_BATCH * concurrency


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

    from mvleval.images import load_image

    image = load_image(path)  # validated (missing, corrupt, bomb) and decoded to RGB
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
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
    first = min((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0, default=None)
    message = first.get("message") if first else None
    content = message.get("content") if isinstance(message, dict) else None
    # a reasoning model's thinking, in the field vLLM/SGLang (reasoning_content) or newer servers (reasoning) return it:
    # kept in the prediction as <think>...</think> before the answer, so the per-sample file holds the whole output and
    # scoring removes it (metrics/answer.py); thinking without content (the token budget ran out) is an open <think>
    reasoning = next((message.get(k) for k in ("reasoning_content", "reasoning") if isinstance(message, dict)
                      and isinstance(message.get(k), str) and message.get(k).strip()), None)
    if reasoning is not None and (content is None or isinstance(content, str)):
        text = f"<think>{reasoning.strip()}</think>{content.strip()}" if content and content.strip() else f"<think>{reasoning.strip()}"
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
        problems.append("--model openai: needs the served model's name after the colon (e.g. openai:Qwen/Qwen2.5-VL-7B-Instruct)")
    parts = urlsplit(endpoint.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"--base-url must be an http(s) URL such as http://HOST:8000/v1, got {public_url(endpoint.base_url)!r}")
    if endpoint.concurrency < 1:
        problems.append(f"--concurrency must be at least 1, got {endpoint.concurrency}")
    if not endpoint.timeout_s > 0:
        problems.append(f"--timeout must be positive, got {endpoint.timeout_s}")
    if endpoint.max_retries < 0:
        problems.append(f"--max-retries must be 0 or more, got {endpoint.max_retries}")
    if endpoint.max_image_side is not None and endpoint.max_image_side < 1:
        problems.append(f"--max-image-side must be positive, got {endpoint.max_image_side}")
    if endpoint.server_extensions not in SERVER_EXTENSIONS:
        problems.append(f"--server-extensions must be one of {', '.join(SERVER_EXTENSIONS)}, got {endpoint.server_extensions!r}")
    if problems:
        raise MvlevalError("; ".join(problems) + ".", fix="correct the flags above.")


__all__ = ["OpenAIBackend", "default_batch_size", "encode_image", "public_url"]
