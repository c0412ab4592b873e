"""``mmpipe serve BUNDLE``: a model bundle behind HTTP.

Endpoints

* ``GET /health``: ``{"status": "ok", "model": <selected ablation>, "mmpipe_version": ..., "modalities": [...]}``.
* ``GET /model``: the bundle's ``model.json``.
* ``POST /predict``: one sample as a multipart form (field ``text``; file parts ``text_file``, ``image``,
  ``audio``, ``video``; optional ``guid``), as JSON ``{"text": ..., "text_file": <base64>, "image": <base64>,
  "audio": <base64>, "video": <base64>, "guid": ...}`` (base64 may be a ``data:`` URL), or a batch as JSON
  ``{"samples": [{...}, ...]}``. The answer is ``{"predictions": [{"guid", "tag", "p_<class>"..., "served_by"}]}``,
  the rows of ``mmpipe predict``. ``?skip_bad=true`` predicts the good samples of a batch and lists the bad ones
  (``tag`` null, ``error``) instead of refusing the whole request.

Uploaded bytes go to a per-request temporary folder (suffix from the upload's file name, else sniffed from the
bytes, else ``.txt`` / ``.jpg`` / ``.wav`` / ``.mp4``) and become ``RawSample``s (``inputs.one_sample``), which the
``Predictor`` checks, decodes and encodes exactly as ``mmpipe predict`` does: the same input gives the same tag and
probabilities. A text file's bytes are decoded as in training; a ``text`` field is taken as given.

Errors are ``{"detail": "<one line>"}``: invalid JSON 400; unsupported content type 415; a body over
``max_body`` 413 (a declared Content-Length is checked before anything is read, a chunked body is counted as it
streams); a request without anything to predict, an unknown field, a modality the model does not take, bad base64,
or a sample the predictor refuses (corrupt image, unreadable audio, empty text, a modality every head needs) 422,
with the predictor's message (temporary paths replaced by the upload's name). Only a bug answers 500. The body
limit is this module's ``BodyLimit`` rather than FastAPI's ``max_body_size``: its 413 names the limit and the
option that sets it, and a modestly oversized body is read to the end first, so that a client still sending it
gets the 413 rather than a connection reset.

Why FastAPI + uvicorn: it is the field's standard Python ASGI stack for model serving; request bodies are
validated by pydantic (here: the JSON sample schema, with field-level messages), multipart uploads are parsed
by python-multipart and spooled to disk (not held in memory), and uvicorn is the reference ASGI server. Nothing
heavier is needed: one process holds one ``Predictor``.

Concurrency: the ``Predictor`` is loaded once, when the app is made, and warmed up (encoders and heads built, one
dummy input through each encoder), so the first request is not slow and a bundle whose encoders do not match
fails at start, not at the first request. Predictions run in Starlette's thread pool (``run_in_threadpool``), so
the event loop keeps answering (``/health`` stays instant under load) while the ``Predictor``'s lock runs one
prediction at a time. Concurrent requests are not merged into one batch on purpose: the run's cached vectors are
keyed by guid and content hash, a batch refuses duplicate guids, and one bad sample would fail its neighbours;
the tiny per-request overhead is not worth those couplings. A client with many samples sends one batch request.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from mmpipe import __version__
from mmpipe.core.errors import MmpipeError

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 10 * 2**20
DRAIN_LIMIT = 16 * 2**20    # an oversized body up to this size is read (and dropped) before the 413, so that
#                             the client, still sending, reads the answer instead of a connection reset
MAX_BATCH = 10_000
FILE_FIELDS = ("text_file", "image", "audio", "video")
FIELDS = ("guid", "text", *FILE_FIELDS)
MODALITY = {"text": "text", "text_file": "text", "image": "image", "audio": "audio", "video": "video"}
DEFAULT_SUFFIX = {"text_file": ".txt", "image": ".jpg", "audio": ".wav", "video": ".mp4"}
KNOWN_SUFFIXES = {
    "text_file": {".txt"},
    "image": {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"},
    "audio": {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"},
    "video": {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"},
}
MIME_SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/bmp": ".bmp",
               "image/webp": ".webp", "image/tiff": ".tif", "audio/wav": ".wav", "audio/x-wav": ".wav",
               "audio/wave": ".wav", "audio/flac": ".flac", "audio/mpeg": ".mp3", "audio/ogg": ".ogg",
               "video/mp4": ".mp4", "video/x-msvideo": ".avi", "video/quicktime": ".mov", "video/webm": ".webm",
               "text/plain": ".txt"}


def sniff_suffix(head: bytes) -> str | None:
    """The usual file suffix of a media file from its first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if head.startswith(b"BM"):
        return ".bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ".webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return ".wav"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi"
    if head.startswith(b"fLaC"):
        return ".flac"
    if head.startswith(b"OggS"):
        return ".ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return ".mp3"
    if head[4:8] == b"ftyp":
        return ".m4a" if head[8:11] == b"M4A" else ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm" if b"webm" in head[:64] else ".mkv"
    return None


class BodyTooLarge(Exception):
    """Raised from the counting ``receive`` when a streamed body passes the limit."""


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_body`` bytes, declared or streamed."""

    def __init__(self, app: Any, max_body: int):
        self.app, self.max_body = app, int(max_body)

    def message(self) -> str:
        return (f"request body too large: over the server's limit of {self.max_body} bytes "
                f"({self.max_body / 2**20:g} MiB; mmpipe serve --max-body-mb)")

    async def reject(self, send: Any) -> None:
        body = json.dumps({"detail": self.message()}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def drain(receive: Any, budget: int) -> None:
        while budget > 0:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            budget -= len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body:
            if int(declared) <= DRAIN_LIMIT and b"100-continue" not in headers.get(b"expect", b"").lower():
                await self.drain(receive, DRAIN_LIMIT)
            await self.reject(send)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return msg

        async def tracked(msg: Any) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await self.drain(receive, DRAIN_LIMIT - seen)
            await self.reject(send)


@dataclasses.dataclass
class _Part:
    """One uploaded file (or decoded base64) of a sample."""

    field: str
    data: bytes | None = None
    file: BinaryIO | None = None
    filename: str | None = None
    mime: str | None = None

    def head(self) -> bytes:
        if self.data is not None:
            return self.data[:64]
        assert self.file is not None
        self.file.seek(0)
        head = self.file.read(64)
        self.file.seek(0)
        return head

    def suffix(self) -> str:
        known = KNOWN_SUFFIXES[self.field]
        name_suffix = Path(self.filename).suffix.lower() if self.filename else ""
        if name_suffix in known:
            return name_suffix
        if self.field == "text_file":
            return ".txt"
        sniffed = sniff_suffix(self.head())
        if sniffed in known:
            return sniffed
        mime = MIME_SUFFIX.get((self.mime or "").lower())
        return mime if mime in known else DEFAULT_SUFFIX[self.field]

    def label(self) -> str:
        return f"<{self.field} upload {self.filename!r}>" if self.filename else f"<{self.field} upload>"


@dataclasses.dataclass
class _Sample:
    guid: str | None
    text: str | None
    parts: dict[str, _Part]


def _one_line(message: str) -> str:
    message = message.replace(" (set on_bad_sample: skip to leave them out)", "")
    message = re.sub(r":\s*\n\s*", ": ", message.strip())
    return re.sub(r"\s*\n\s*", "; ", message)


def _http_error(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=_one_line(message))


def _decode_base64(value: str, where: str) -> tuple[bytes, str | None]:
    """Bytes of a base64 string or ``data:<mime>;base64,`` URL, and the URL's mime type."""
    mime = None
    value = value.strip()
    if value.startswith("data:"):
        head, sep, value = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _http_error(422, f"{where}: a data: URL must be base64 (data:<type>;base64,<data>)")
        mime = head[5:-7] or None
    compact = re.sub(r"\s+", "", value)
    compact += "=" * (-len(compact) % 4)
    try:
        if "-" in compact or "_" in compact:
            data = base64.urlsafe_b64decode(compact.encode("ascii"))
        else:
            data = base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _http_error(422, f"{where}: not valid base64 ({exc})") from None
    if not data:
        raise _http_error(422, f"{where}: is empty")
    return data, mime


def _validation_message(exc: Any, prefix: str = "") -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "body")
        if err.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field (expected {', '.join(FIELDS)})")
        else:
            parts.append(f"{where}: {err.get('msg')}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _sample_models() -> tuple[Any, Any]:
    from pydantic import BaseModel, ConfigDict, Field

    class SampleIn(BaseModel):
        """One sample as JSON: text as given, files as base64."""

        model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
        guid: str | None = None
        text: str | None = None
        text_file: str | None = Field(None, description="base64 of a text file, decoded as in training")
        image: str | None = Field(None, description="base64 (or a data: URL) of an image")
        audio: str | None = Field(None, description="base64 (or a data: URL) of an audio file")
        video: str | None = Field(None, description="base64 (or a data: URL) of a video file")

    class BatchIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        samples: list[SampleIn] = Field(min_length=1, max_length=MAX_BATCH)

    return SampleIn, BatchIn


class Service:
    """The app's state: the loaded ``Predictor`` and what the bundle takes."""

    def __init__(self, bundle_dir: str | Path, threads: int | None = None, warm: bool = True):
        from mmpipe.inference.predictor import Predictor

        self.bundle = Path(bundle_dir)
        self.predictor = Predictor(self.bundle, threads=threads)
        self.model = self.predictor.model
        self.modalities = sorted({e["modality"] for e in self.model["encoders"].values()})
        self.SampleIn, self.BatchIn = _sample_models()
        if warm:
            self.warm_up()

    # --- start ------------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Build every encoder and head (errors are fatal: the bundle cannot serve), then encode one dummy input
        per encoder so lazy initialisation happens now, not in the first request."""
        p = self.predictor
        for entry in self.model["heads"]:
            p.heads(entry)
        with tempfile.TemporaryDirectory(prefix="mmpipe-warm-") as tmp:
            for name, entry in self.model["encoders"].items():
                enc = p.encoder(name)
                try:
                    dummy = _dummy_input(entry["modality"], Path(tmp))
                    if dummy is not None:
                        enc.encode([dummy], progress=False)
                except Exception as exc:  # a warm-up is an optimisation; the requests will tell the real story
                    log.warning("warm-up of encoder %s failed: %s", name, exc)

    # --- requests -----------------------------------------------------------------------------------------
    def json_samples(self, payload: Any) -> list[_Sample]:
        from pydantic import ValidationError

        if isinstance(payload, list):
            payload = {"samples": payload}
        if not isinstance(payload, dict):
            raise _http_error(422, f"expected a JSON object (a sample, or {{\"samples\": [...]}}), "
                                   f"got {type(payload).__name__}")
        batch = "samples" in payload
        try:
            items = self.BatchIn.model_validate(payload).samples if batch else [self.SampleIn.model_validate(payload)]
        except ValidationError as exc:
            raise _http_error(422, _validation_message(exc)) from None
        out = []
        for i, item in enumerate(items):
            where = f"samples.{i}." if batch else ""
            parts = {}
            for field in FILE_FIELDS:
                value = getattr(item, field)
                if value is not None:
                    data, mime = _decode_base64(value, f"{where}{field}")
                    parts[field] = _Part(field, data=data, mime=mime)
            out.append(_Sample(item.guid, item.text, parts))
        return out

    def form_sample(self, form: Any) -> _Sample:
        unknown = sorted(set(form.keys()) - set(FIELDS))
        if unknown:
            raise _http_error(422, f"unknown form field(s) {', '.join(unknown)} (expected {', '.join(FIELDS)})")
        guid = text = None
        parts: dict[str, _Part] = {}
        for key in FIELDS:
            values = form.getlist(key)
            if not values:
                continue
            if len(values) > 1:
                raise _http_error(422, f"{key}: given {len(values)} times; one sample per form (batches: JSON "
                                       f"{{\"samples\": [...]}})")
            value = values[0]
            if isinstance(value, UploadFile):
                field = "text_file" if key == "text" else key
                if key == "guid":
                    raise _http_error(422, "guid: expected a form field, not a file")
                if field in parts:
                    raise _http_error(422, "give text or text_file, not both")
                parts[field] = _Part(field, file=value.file, filename=value.filename or None,
                                     mime=(value.content_type or None))
            elif key == "guid":
                guid = value or None
            elif key == "text":
                text = value
            elif key == "text_file":
                if "text_file" in parts:
                    raise _http_error(422, "give text or text_file, not both")
                parts[key] = _Part(key, data=value.encode("utf-8"))
            else:
                data, mime = _decode_base64(value, f"{key} (expected a file upload, e.g. curl -F {key}=@file, "
                                                   f"or base64)")
                parts[key] = _Part(key, data=data, mime=mime)
        return _Sample(guid, text, parts)

    def check(self, samples: list[_Sample], batch: bool) -> None:
        """Refuse, before any file is written, what cannot be a sample for this model."""
        for i, s in enumerate(samples):
            where = f"samples.{i}: " if batch else ""
            given = (["text"] if s.text is not None else []) + list(s.parts)
            if not given:
                raise _http_error(422, f"{where}nothing to predict: give {', '.join(FIELDS[1:])} "
                                       f"(this model takes {', '.join(self.modalities)})")
            if s.text is not None and "text_file" in s.parts:
                raise _http_error(422, f"{where}give text or text_file, not both")
            unused = [f for f in given if MODALITY[f] not in self.modalities]
            if unused:
                raise _http_error(422, f"{where}this model takes {', '.join(self.modalities)}; it has no use for "
                                       f"{', '.join(unused)}")

    def predict(self, samples: list[_Sample], batch: bool, skip_bad: bool = False) -> list[dict[str, Any]]:
        """Write the uploads to a temporary folder and predict (blocking: run it in the thread pool)."""
        from mmpipe.inference.inputs import one_sample

        labels: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="mmpipe-serve-") as tmp:
            raw = []
            for i, s in enumerate(samples):
                folder = Path(tmp) / str(i)
                folder.mkdir()
                paths: dict[str, str] = {}
                for field, part in s.parts.items():
                    path = folder / f"{field}{part.suffix()}"
                    if part.data is not None:
                        path.write_bytes(part.data)
                    else:
                        assert part.file is not None
                        part.file.seek(0)
                        with open(path, "wb") as f:
                            shutil.copyfileobj(part.file, f, 2**20)
                    paths[field] = str(path)
                    labels[str(path)] = part.label()
                    labels[str(path.resolve())] = part.label()
                named = next((Path(p.filename).stem for p in s.parts.values() if p.filename), None)
                guid = s.guid or named or (f"sample-{i + 1}" if batch else "sample")
                sample = one_sample(guid, s.text, paths.get("text_file"), paths.get("image"), paths.get("audio"),
                                    paths.get("video"))
                raw.append(dataclasses.replace(sample, source="samples" if batch else "request",
                                               line=i + 1 if batch else None))  # type: ignore[arg-type]
            try:
                pred, bad = self.predictor.predict_samples(raw, skip_bad=skip_bad)
            except (MmpipeError, ValueError) as exc:
                raise _http_error(422, self.clean(str(exc), labels)) from None
            return pred.records() + [{"guid": b.guid, "tag": None, "error": _one_line(self.clean(str(b), labels))}
                                     for b in bad]

    def clean(self, message: str, labels: dict[str, str]) -> str:
        """The message without the server's temporary paths (the upload's name instead) or bundle path."""
        for path in sorted(labels, key=len, reverse=True):
            message = message.replace(f"'{path}'", labels[path]).replace(path, labels[path])
        model_json = str(self.bundle / "model.json")
        return message.replace(model_json, "GET /model").replace(str(self.bundle.resolve() / "model.json"),
                                                                  "GET /model")


def _dummy_input(modality: str, tmp: Path) -> str | None:
    """A small valid input of ``modality`` for the warm-up (None where making one is not cheap)."""
    if modality == "text":
        return "warm up"
    if modality == "image":
        from PIL import Image

        path = tmp / "warm.png"
        Image.new("RGB", (32, 32), (127, 127, 127)).save(path)
        return str(path)
    if modality == "audio":
        import wave

        path = tmp / "warm.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\x00\x01" * 8000)
        return str(path)
    return None


def create_app(bundle_dir: str | Path, max_body: int = DEFAULT_MAX_BODY, threads: int | None = None,
               warm: bool = True) -> FastAPI:
    """The FastAPI app serving the bundle at ``bundle_dir``; the ``Predictor`` is loaded (and warmed up) here, so
    a bad bundle raises ``MmpipeError`` before any port is bound."""
    service = Service(bundle_dir, threads=threads, warm=warm)
    app = FastAPI(title="mmpipe", version=__version__,
                  description=f"Model bundle {service.bundle}: {service.model.get('selected')}")
    app.state.service = service
    app.state.predictor = service.predictor
    app.add_middleware(BodyLimit, max_body=max_body)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # ServerErrorMiddleware re-raises after this answer, so uvicorn logs the traceback
        return JSONResponse({"detail": _one_line(f"internal error: {type(exc).__name__}: {exc}")}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": service.model.get("selected"), "mmpipe_version": __version__,
                "modalities": service.modalities}

    @app.get("/model")
    async def model() -> Response:
        # as model.json holds it (json.dumps, not the strict JSONResponse, so nothing in it can fail to encode)
        return Response(json.dumps(service.model, indent=1, default=str), media_type="application/json")

    @app.post("/predict")
    async def predict(request: Request, skip_bad: bool = False) -> Any:
        ctype = request.headers.get("content-type", "")
        mime = ctype.split(";", 1)[0].strip().lower()
        form = None
        try:
            if mime == "application/json" or mime.endswith("+json"):
                body = await request.body()
                try:
                    payload = json.loads(body)
                except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
                    raise _http_error(400, f"invalid JSON: {exc}") from None
                samples = await run_in_threadpool(service.json_samples, payload)
                batch = isinstance(payload, list) or (isinstance(payload, dict) and "samples" in payload)
            elif mime in ("multipart/form-data", "application/x-www-form-urlencoded"):
                form = await request.form(max_files=len(FILE_FIELDS) + 1, max_fields=len(FIELDS) + 1,
                                          max_part_size=max(max_body, 1))
                samples, batch = [service.form_sample(form)], False
            else:
                raise _http_error(415, f"unsupported content type {mime or '(none)'!r}: send multipart/form-data "
                                       f"(fields text, text_file, image, audio, video, guid) or application/json")
            service.check(samples, batch)
            records = await run_in_threadpool(service.predict, samples, batch, skip_bad)
        except ClientDisconnect:  # the client went away mid-body: nobody reads the answer, nothing to log
            return Response(status_code=400)
        finally:
            if form is not None:
                await form.close()
        return {"predictions": records}

    return app


def serve(bundle: str | Path, host: str = "127.0.0.1", port: int = 8000, max_body: int = DEFAULT_MAX_BODY,
          threads: int | None = None, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    app = create_app(bundle, max_body=max_body, threads=threads)
    print(f"mmpipe: serving {bundle} (model {app.state.service.model.get('selected')}) on http://{host}:{port} "
          f"(POST /predict, GET /health, GET /model)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
