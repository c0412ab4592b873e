"""``mmpipe serve``: the real server (a ``mmpipe serve`` subprocess on a free port of 127.0.0.1) answers real HTTP
requests: multipart, JSON base64 and batch predictions that agree with ``mmpipe predict`` on the same inputs (tags
exactly, probabilities to 1e-6), /health and /model, 413 for an oversized body (declared or chunked), 4xx with a
one-line message for bad input (never 500), and 200 concurrent requests that all succeed."""

from __future__ import annotations

import base64
import csv
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

MAX_BODY_MB = 0.5
THREADS = 1  # the same torch threads for the server and `mmpipe predict`


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, {"raw": raw.decode("utf-8", "replace")}

    def json(self, payload, path: str = "/predict") -> tuple[int, dict]:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def form(self, fields: dict[str, str] | None = None, files: dict[str, tuple[str, bytes]] | None = None
             ) -> tuple[int, dict]:
        body, ctype = multipart(fields or {}, files or {})
        return self.request("POST", "/predict", body, {"Content-Type": ctype})

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                   + value.encode() + b"\r\n")
    for name, (filename, data) in files.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                   f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    cmd = [sys.executable, "-m", "mmpipe.cli", "serve", str(tiny_bundle / "results/demo/model"), "--port", str(port),
           "--max-body-mb", str(MAX_BODY_MB), "--threads", str(THREADS)]
    with open(log, "wb") as out:  # a file, not a pipe: 200 access-log lines must never block the server
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ))
    srv = Server(port, proc, log)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mmpipe serve exited with {proc.returncode}:\n{srv.log_tail()}")
        try:
            if srv.request("GET", "/health", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mmpipe serve did not answer /health within 120 s:\n{srv.log_tail()}")
        time.sleep(0.3)
    yield srv
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Case:
    guid: str
    text: str | None = None
    text_file: Path | None = None
    image: Path | None = None

    def json(self) -> dict:
        d = {"guid": self.guid}
        if self.text is not None:
            d["text"] = self.text
        if self.text_file is not None:
            d["text_file"] = b64(self.text_file)
        if self.image is not None:
            d["image"] = b64(self.image)
        return d

    def form(self) -> tuple[dict, dict]:
        fields = {"guid": self.guid, **({"text": self.text} if self.text is not None else {})}
        files = {k: (p.name, p.read_bytes()) for k, p in (("text_file", self.text_file), ("image", self.image)) if p}
        return fields, files


@pytest.fixture(scope="module")
def expected(tiny_bundle, tmp_path_factory):
    """The cases and what `mmpipe predict` says of them (one table, one run): test-list samples (cached vectors),
    the same files under new guids (encoded afresh), an image-only and an inline-text-only sample (fallbacks)."""
    source = tiny_bundle / "results/demo/source"
    test_guids = [line.split(",")[0] for line in (source / "test_without_label.txt").read_text().splitlines()[1:]]
    data = source / "data"
    cases = [Case(g, text_file=data / f"{g}.txt", image=data / f"{g}.jpg") for g in test_guids[:3]]
    cases += [Case(f"new-{g}", text_file=data / f"{g}.txt", image=data / f"{g}.jpg") for g in test_guids[3:5]]
    cases += [Case("only-image", image=data / f"{test_guids[5]}.jpg"),
              Case("only-text", text="what a lovely happy day, i love it")]
    work = tmp_path_factory.mktemp("cli")
    table = work / "cases.jsonl"
    table.write_text("".join(json.dumps({"guid": c.guid, **({"text": c.text} if c.text else {}),
                                         **({"text_file": str(c.text_file)} if c.text_file else {}),
                                         **({"image": str(c.image)} if c.image else {})}) + "\n" for c in cases))
    out = work / "cli.csv"
    proc = subprocess.run([sys.executable, "-m", "mmpipe.cli", "predict", str(tiny_bundle / "results/demo/model"),
                           str(table), "-o", str(out), "--threads", str(THREADS)],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out, newline="") as f:
        rows = {r["guid"]: r for r in csv.DictReader(f)}
    assert list(rows) == [c.guid for c in cases]
    assert {rows["only-image"]["served_by"], rows["only-text"]["served_by"]} == {"image__logreg", "text__concat_mlp"}
    return cases, rows


def assert_agrees(records: list[dict], rows: dict[str, dict]) -> None:
    for rec in records:
        want = rows[rec["guid"]]
        assert rec["tag"] == want["tag"], (rec, want)
        assert rec["served_by"] == want["served_by"], (rec, want)
        probs = sorted(k for k in want if k.startswith("p_"))
        assert sorted(k for k in rec if k.startswith("p_")) == probs
        np.testing.assert_allclose([rec[k] for k in probs], [float(want[k]) for k in probs], rtol=0, atol=1e-6)


def assert_refused(status: int, answer: dict, code: int, *words: str) -> None:
    assert status == code, (status, answer)
    detail = answer.get("detail")
    assert isinstance(detail, str) and detail and "\n" not in detail, answer
    for w in words:
        assert w in detail, (w, detail)


def test_health_and_model(server, tiny_bundle):
    from mmpipe import __version__

    model = json.loads((tiny_bundle / "results/demo/model/model.json").read_text())
    status, health = server.request("GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["model"] == model["selected"] == "text+image__concat_mlp"
    assert health["mmpipe_version"] == __version__
    status, served = server.request("GET", "/model")
    assert status == 200 and served == model


def test_predictions_agree_with_mmpipe_predict(server, expected):
    cases, rows = expected
    for c in cases:  # one sample per request, as a multipart form ...
        fields, files = c.form()
        status, answer = server.form(fields, files)
        assert status == 200, answer
        assert [r["guid"] for r in answer["predictions"]] == [c.guid]
        assert_agrees(answer["predictions"], rows)
        status, answer = server.json(c.json())  # ... and as JSON with base64 files
        assert status == 200, answer
        assert_agrees(answer["predictions"], rows)
    status, answer = server.json({"samples": [c.json() for c in cases]})  # all in one batch
    assert status == 200, answer
    assert [r["guid"] for r in answer["predictions"]] == [c.guid for c in cases]
    assert_agrees(answer["predictions"], rows)
    # the guid defaults to the uploaded file's stem, as `mmpipe predict --image 6.jpg` would name it
    c = cases[0]
    status, answer = server.form(files={"text_file": (c.text_file.name, c.text_file.read_bytes()),
                                        "image": (c.image.name, c.image.read_bytes())})
    assert status == 200 and answer["predictions"][0]["guid"] == c.guid
    assert_agrees(answer["predictions"], rows)


def test_oversized_body_gets_413(server):
    limit = int(MAX_BODY_MB * 2**20)
    big = json.dumps({"text": "x" * (2 * limit)}).encode()  # ~1 MB with a Content-Length
    status, answer = server.request("POST", "/predict", big, {"Content-Type": "application/json"})
    assert_refused(status, answer, 413, "too large", str(limit))
    status, answer = server.form(files={"image": ("big.jpg", os.urandom(2 * limit))})
    assert_refused(status, answer, 413, "too large")
    # no Content-Length (chunked): the server counts the bytes as they stream in
    chunks = iter([big[i:i + 65536] for i in range(0, len(big), 65536)])
    status, answer = server.request("POST", "/predict", chunks, {"Content-Type": "application/json"})
    assert_refused(status, answer, 413, "too large")
    small = iter([json.dumps({"text": "a good day", "guid": "chunked"}).encode()])
    status, answer = server.request("POST", "/predict", small, {"Content-Type": "application/json"})
    assert status == 200 and answer["predictions"][0]["guid"] == "chunked", answer
    assert server.request("GET", "/health")[0] == 200


def test_bad_input_gets_4xx_with_a_message(server, tiny_bundle, tmp_path):
    from mmpipe.core.errors import MmpipeError
    from mmpipe.inference.inputs import check_samples, one_sample

    broken = b"\xff\xd8\xff\xe0 this is not really a JPEG " * 20
    status, answer = server.form({"text": "nice"}, {"image": ("broken.jpg", broken)})
    assert_refused(status, answer, 422, "cannot read image", "broken.jpg")
    assert "/tmp" not in answer["detail"] and "mmpipe-serve-" not in answer["detail"]
    status, answer = server.json({"text": "nice", "image": base64.b64encode(broken).decode()})
    assert_refused(status, answer, 422, "cannot read image")
    status, answer = server.json({"samples": [{"text": "fine"}, {"text": "ok", "image": base64.b64encode(b"zz").decode()}]})
    assert_refused(status, answer, 422, "cannot read image", "sample-2")
    # missing fields, nothing to predict, unknown fields, bad base64
    assert_refused(*server.json({}), 422, "nothing to predict")
    assert_refused(*server.json({"guid": "x"}), 422, "nothing to predict")
    assert_refused(*server.form({"guid": "x"}), 422, "nothing to predict")
    assert_refused(*server.json({"samples": []}), 422, "samples")
    assert_refused(*server.json({"txt": "typo"}), 422, "txt", "unknown field")
    assert_refused(*server.json({"text": "hi", "image": "%%% not base64 %%%"}), 422, "image", "base64")
    assert_refused(*server.json({"text": "hi", "audio": base64.b64encode(b"RIFF").decode()}), 422, "audio")
    assert_refused(*server.json({"text": "   "}), 422, "empty")
    # invalid JSON, unsupported content type
    assert_refused(*server.request("POST", "/predict", b'{"text": "unterminated', {"Content-Type": "application/json"}),
                   400, "invalid JSON")
    assert_refused(*server.request("POST", "/predict", b"\xff\xfe\x00junk", {"Content-Type": "application/json"}),
                   400, "invalid JSON")
    assert_refused(*server.request("POST", "/predict", b"hello", {"Content-Type": "text/plain"}), 415, "content type")
    # text files of binary junk: decoded as in training; 422 where the predictor refuses them, never 500
    config = json.loads((tiny_bundle / "results/demo/model/config.json").read_text())
    rng = np.random.default_rng(0)
    junk = {"random.txt": rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
            "blank.txt": b"\x1c\x1d\x1e\x1f \t\r\n\x0b\x0c" * 10, "nul.txt": b"\x00" * 100,
            "utf16.txt": b"\xff\xfe" + os.urandom(301)}
    tmp = tmp_path
    refused = 0
    for name, data in junk.items():
        (tmp / name).write_bytes(data)
        try:
            _, bad = check_samples([one_sample(text_file=str(tmp / name))], config)
        except MmpipeError:
            bad = [True]
        for status, answer in (server.form(files={"text_file": (name, data)}),
                               server.json({"text_file": base64.b64encode(data).decode()})):
            if bad:
                refused += 1
                assert_refused(status, answer, 422)
            else:
                assert status == 200, answer
    assert refused >= 2  # blank.txt at least, as a form upload and as JSON


def test_concurrent_requests(server, expected):
    cases, rows = expected
    file_cases = [c for c in cases if c.text_file is not None]
    health_wait = []

    def one(i: int) -> tuple[int, dict]:
        c = file_cases[i % len(file_cases)]
        if i % 10 == 9:
            t = time.monotonic()
            got = server.request("GET", "/health")
            health_wait.append(time.monotonic() - t)
            return got
        if i % 2:
            return server.form(*c.form())
        return server.json(c.json())

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(one, range(200)))
    elapsed = time.monotonic() - t0
    statuses = [s for s, _ in answers]
    assert statuses == [200] * 200, ({s: statuses.count(s) for s in set(statuses)}, server.log_tail())
    for i, (_, answer) in enumerate(answers):
        if i % 10 != 9:
            assert_agrees(answer["predictions"], rows)
    # the event loop is not blocked by predictions: /health answers long before the load is done
    assert max(health_wait) < max(5.0, elapsed / 2), (health_wait, elapsed)
    assert "Traceback" not in server.log_tail()
