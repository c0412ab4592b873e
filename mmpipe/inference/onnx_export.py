"""ONNX export of a model bundle (``mmpipe export BUNDLE --onnx OUT``) and the onnxruntime head that reads it
(``mmpipe predict --runtime onnx``).

``OUT`` holds

* ``<ablation>.seed<k>.onnx``: one graph per bundle head and seed. One named float32 input per modality (the
  modality name, width as the head was fitted: with ``context`` the features with the context appended, as
  ``mmpipe.fusion.context.add_context`` makes them) and one float32 output: ``proba`` ``(n, n_classes)`` or,
  for ``task: regression``, ``score`` ``(n,)``. The batch dimension is dynamic. The head's standardisation is
  inside the graph, so it takes the raw feature vectors, exactly as the head's ``predict_proba`` does.
  A sequence head (``context_gru``) takes ``(groups, length, d)`` per modality instead (every group of one call
  of the same length) and gives ``(groups, length, n_classes)`` / ``(groups, length)``; ``OnnxHead`` does the
  grouping.
* ``encoder_<name>.onnx`` for each ``hf_text`` encoder without ``adapt``: ``input_ids`` and ``attention_mask``
  (int64, dynamic batch and sequence) -> ``vector`` ``(n, dim)``, the encoder's pooled (and, where it does,
  L2-normalised) last hidden state; its tokenizer beside it in ``encoder_<name>_tokenizer/``.
* ``onnx.json``: the files, the opset, the onnxruntime version, what each file takes and gives.

How each head becomes a graph (all exact re-statements of the head's own prediction code, checked numerically
against it right after the export, which fails with an ``MmpipeError`` above 1e-4):

* neural heads (``NeuralHead``): standardisation + the fitted ``nn.Module`` + the head's own ``_finish``
  (softmax, late fusion's weighted average, the regression score), traced with the TorchScript exporter;
* ``context_gru``: the same per group, with the GRU run over unpadded sequences of equal length;
* ``logreg``: standardise, concatenate, the linear model in float64 (as scikit-learn computes it), softmax
  (sigmoid for two classes); ridge regression for ``task: regression``;
* ``svm``: the RBF kernel against the support vectors (float32-rounded like scikit-learn's), libsvm's
  one-vs-one decision values, scikit-learn's one-vs-rest vote transform, the calibration logistic regression;
  SVR for regression;
* ``stack``: every member's graph, log-clipped probabilities (or scores), the meta logistic (ridge) regression.

torch is imported only to export; ``OnnxHead`` needs numpy and onnxruntime only.
"""

from __future__ import annotations

import copy
import functools
import json
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mmpipe import __version__
from mmpipe.core.atomic import atomic_dir
from mmpipe.core.errors import MmpipeError
from mmpipe.encoders.text_onnx import torch_spec
from mmpipe.fusion.context import group_layout

FORMAT = 1
OPSET = 17
INDEX = "onnx.json"
META = "mmpipe."       # prefix of the ONNX metadata_props keys
TOLERANCE = 1e-4        # the export's self-check: max abs difference to the torch / scikit-learn head
LOG_CLIP = 1e-6         # mmpipe.fusion.heads.stack.LOG_CLIP


def head_file(ablation: str, seed: int) -> str:
    return f"{ablation}.seed{int(seed)}.onnx"


def encoder_file(name: str) -> str:
    return f"encoder_{name}.onnx"


def tokenizer_dir(name: str) -> str:
    return f"encoder_{name}_tokenizer"


class Unsupported(MmpipeError):
    """A head (or encoder) that this module cannot express as an ONNX graph."""


# --------------------------------------------------------------------------------------------------------------
# torch modules that restate each head's prediction (built lazily: importing this module must not import torch)


@functools.lru_cache(maxsize=None)
def _torch_parts() -> SimpleNamespace:
    import torch
    from torch import nn

    def const(a: Any, dtype: Any = None) -> torch.Tensor:
        t = torch.from_numpy(np.array(a, copy=True))
        return t if dtype is None else t.to(dtype)

    class Standardise(nn.Module):
        """``(x - mean) / std`` per modality in float32, as ``mmpipe.fusion.heads.common.standardize``."""

        def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]], modalities: list[str]):
            super().__init__()
            self.n = len(modalities)
            for i, m in enumerate(modalities):
                mean, std = stats[m]
                self.register_buffer(f"mean{i}", const(np.asarray(mean, dtype=np.float32)))
                self.register_buffer(f"std{i}", const(np.asarray(std, dtype=np.float32)))

        def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
            return [(x - getattr(self, f"mean{i}")) / getattr(self, f"std{i}") for i, x in enumerate(xs)]

    def _head_copy(head: Any) -> Any:
        h = copy.copy(head)
        h.module_ = copy.deepcopy(head.module_).cpu().eval()
        h.device_ = torch.device("cpu")
        return h

    class NeuralRows(nn.Module):
        """A ``NeuralHead``: standardise, the fitted module, the head's ``_finish`` (probabilities or scores)."""

        def __init__(self, head: Any):
            super().__init__()
            self.head = _head_copy(head)  # a plain attribute; its module is registered below
            self.module = self.head.module_
            self.std = Standardise(head.stats_, head.modalities_)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return self.head._finish(self.module(self.std(list(xs))))

    class NeuralSequences(nn.Module):
        """``context_gru`` on groups of equal length (no padding, so no packing): per modality
        ``(groups, length, d)`` -> ``(groups, length, K)`` probabilities or ``(groups, length)`` scores."""

        def __init__(self, head: Any):
            super().__init__()
            self.head = _head_copy(head)
            self.module = self.head.module_
            self.std = Standardise(head.stats_, head.modalities_)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            mod = self.module
            zs = self.std(list(xs))
            z = torch.cat([p(x) for p, x in zip(mod.proj, zs)], dim=2)
            c, _ = mod.gru(z)
            o = mod.out(torch.cat([z, c], dim=2))
            flat = self.head._finish(o.flatten(0, 1))
            return flat.reshape(o.shape[0], o.shape[1], -1) if flat.dim() == 2 else flat.reshape(o.shape[0], o.shape[1])

    class Spread(nn.Module):
        """``SklearnHead._full_proba``: the estimator's columns (its ``classes_``) spread over all classes."""

        def __init__(self, classes: np.ndarray, n_classes: int):
            super().__init__()
            classes = [int(c) for c in np.asarray(classes)]
            self.identity = classes == list(range(n_classes))
            pos = {c: i for i, c in enumerate(classes)}
            self.register_buffer("index", torch.tensor([pos.get(j, len(classes)) for j in range(n_classes)],
                                                       dtype=torch.int64))

        def forward(self, p: torch.Tensor) -> torch.Tensor:
            if self.identity:
                return p
            return torch.cat([p, torch.zeros_like(p[:, :1])], dim=1).index_select(1, self.index)

    class LogisticProba(nn.Module):
        """A fitted ``LogisticRegression``'s ``predict_proba`` (softmax; two classes: sigmoid), spread."""

        def __init__(self, lr: Any, n_classes: int):
            super().__init__()
            coef = np.asarray(lr.coef_)
            self.dtype = torch.float64 if coef.dtype == np.float64 else torch.float32
            self.register_buffer("coef_t", const(coef.T, self.dtype))
            self.register_buffer("intercept", const(np.asarray(lr.intercept_).reshape(-1), self.dtype))
            self.binary = len(lr.classes_) <= 2
            self.spread = Spread(lr.classes_, n_classes)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            d = z.to(self.dtype) @ self.coef_t + self.intercept
            if self.binary:
                p1 = torch.sigmoid(d[:, 0])
                p = torch.stack([1 - p1, p1], dim=1)
            else:
                p = torch.softmax(d, dim=1)
            return self.spread(p)

    class LinearScore(nn.Module):
        """A fitted ``Ridge``'s ``predict`` (one target)."""

        def __init__(self, ridge: Any):
            super().__init__()
            coef = np.asarray(ridge.coef_).reshape(-1)
            self.dtype = torch.float64 if coef.dtype == np.float64 else torch.float32
            self.register_buffer("coef", const(coef, self.dtype))
            self.register_buffer("intercept", const(np.asarray(ridge.intercept_, dtype=coef.dtype).reshape(()),
                                                    self.dtype))

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z.to(self.dtype) @ self.coef + self.intercept

    class SklearnInput(nn.Module):
        """``SklearnHead._transform``: standardise (float32), concatenate."""

        def __init__(self, head: Any):
            super().__init__()
            self.std = Standardise(head.stats_, head.modalities_)

        def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(self.std(xs), dim=1)

    class LogRegHead(nn.Module):
        def __init__(self, head: Any):
            super().__init__()
            self.input = SklearnInput(head)
            self.out = LinearScore(head.model_) if head.regression else LogisticProba(head.model_, head.n_classes_)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return self.out(self.input(list(xs)))

    class RBFKernel(nn.Module):
        """``rbf_kernel(Z, X_sv, gamma)`` as scikit-learn computes it for float32 rows: squared distances in
        float64 (``-2 z.sv + |z|^2 + |sv|^2``, clipped at 0) stored as float32, then ``exp(-gamma d)`` in float32."""

        def __init__(self, sv: np.ndarray, gamma: float):
            super().__init__()
            sv64 = np.asarray(sv, dtype=np.float64)
            self.register_buffer("sv_t", const(sv64.T))
            self.register_buffer("sv_sq", const(np.einsum("ij,ij->i", sv64, sv64)))
            self.register_buffer("neg_gamma", const(np.float32(-gamma)))

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            z = z.to(torch.float64)
            d = -2 * (z @ self.sv_t)
            d = d + (z * z).sum(dim=1, keepdim=True)
            d = d + self.sv_sq
            d = torch.clamp(d.to(torch.float32), min=0.0)
            return torch.exp(d * self.neg_gamma).to(torch.float64)

    class SVMHead(nn.Module):
        """``SVM.predict_proba`` / ``predict``: kernel, libsvm decision values, (classification) the ovr
        transform of ``SVC.decision_function`` and the calibration logistic regression."""

        def __init__(self, head: Any):
            super().__init__()
            svc = head.svc_
            self.input = SklearnInput(head)
            self.kernel = RBFKernel(head.X_sv_, head.gamma_)
            self.regression = head.regression
            dual = np.asarray(svc._dual_coef_, dtype=np.float64)        # libsvm's sv_coef: (K-1, n_sv)
            intercept = np.asarray(svc._intercept_, dtype=np.float64)   # -rho, one per class pair
            if self.regression:
                W, self.k = dual.T, 0                                   # (n_sv, 1)
            else:
                n_sv = np.asarray(svc.n_support_, dtype=np.int64)
                start = np.concatenate([[0], np.cumsum(n_sv)[:-1]])
                self.k = k = len(n_sv)
                pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
                W = np.zeros((dual.shape[1], len(pairs)))
                A_i, A_j = np.zeros((len(pairs), k)), np.zeros((len(pairs), k))
                for p, (i, j) in enumerate(pairs):  # libsvm svm_predict_values
                    W[start[i]:start[i] + n_sv[i], p] = dual[j - 1, start[i]:start[i] + n_sv[i]]
                    W[start[j]:start[j] + n_sv[j], p] = dual[i, start[j]:start[j] + n_sv[j]]
                    A_i[p, i], A_j[p, j] = 1.0, 1.0
                self.register_buffer("a_i", const(A_i))
                self.register_buffer("a_j", const(A_j))
                self.register_buffer("a_diff", const(A_i - A_j))
                self.calibrator = LogisticProba(head.calibrator_, head.n_classes_)
            self.register_buffer("w", const(W))
            self.register_buffer("b", const(intercept.reshape(-1)))

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            dec = self.kernel(self.input(list(xs))) @ self.w + self.b   # libsvm's decision values (n, pairs)
            if self.regression:
                return dec[:, 0]
            if self.k == 2:     # SVC.decision_function gives -dec; SVM._decision stacks [-d, d]
                d = torch.cat([dec, -dec], dim=1)
            else:               # sklearn.utils.multiclass._ovr_decision_function(dec < 0, -dec, k)
                first = (dec >= 0).to(torch.float64)
                votes = first @ self.a_i + (1 - first) @ self.a_j
                s = dec @ self.a_diff
                d = votes + s / (3 * (torch.abs(s) + 1))
            return self.calibrator(d)

    class StackHead(nn.Module):
        """``Stack``: each member's graph on its modalities, log(clip(p, 1e-6, 1)) (or the score), the meta model."""

        def __init__(self, head: Any, members: list[Any], inputs: list[list[int]]):
            super().__init__()
            self.members = nn.ModuleList(members)
            self.inputs = inputs
            self.regression = head.regression
            self.meta = LinearScore(head.meta_) if head.regression else LogisticProba(head.meta_, head.n_classes_)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            cols = []
            for member, idx in zip(self.members, self.inputs):
                out = member(*[xs[i] for i in idx]).to(torch.float64)
                cols.append(out.reshape(-1, 1) if self.regression else torch.log(torch.clamp(out, LOG_CLIP, 1.0)))
            return self.meta(torch.cat(cols, dim=1))

    class Float32(nn.Module):
        def __init__(self, core: nn.Module):
            super().__init__()
            self.core = core

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return self.core(*xs).to(torch.float32)

    class TextEncoder(nn.Module):
        """An ``hf_text`` encoder's ``embed``: the model, then its pooling (and normalisation)."""

        def __init__(self, enc: Any):
            super().__init__()
            self.enc = enc
            self.model = enc.model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.enc.embed({"input_ids": input_ids, "attention_mask": attention_mask}).to(torch.float32)

    return SimpleNamespace(**{k: v for k, v in locals().items() if isinstance(v, type)}, torch=torch)


# --------------------------------------------------------------------------------------------------------------
# heads


def _head_inputs(head: Any) -> dict[str, int]:
    """The modalities a head's graph takes, with their widths, in the head's order."""
    from mmpipe.fusion.heads.stack import Stack

    if isinstance(head, Stack):
        dims: dict[str, int] = {}
        for member in head.member_heads_:
            dims.update(_head_inputs(member))
        return {m: dims[m] for m in head.modalities_ if m in dims}
    if not hasattr(head, "modalities_") or not hasattr(head, "dims_"):
        raise Unsupported(f"head {head.name!r} ({type(head).__name__}) has no fitted modalities")
    return {m: int(d) for m, d in zip(head.modalities_, head.dims_)}


def _core(head: Any) -> tuple[Any, str]:
    """The torch module that restates ``head``'s prediction, and its layout (``rows`` or ``sequences``)."""
    from mmpipe.fusion.heads.context_gru import ContextGRU
    from mmpipe.fusion.heads.logreg import LogReg
    from mmpipe.fusion.heads.neural import NeuralHead
    from mmpipe.fusion.heads.stack import Stack
    from mmpipe.fusion.heads.svm import SVM
    from mmpipe.fusion.nets import ContextGRUModule

    T = _torch_parts()
    if isinstance(head, Stack):
        if not getattr(head, "fitted_", False):
            raise Unsupported("stack: fit or load the head first")
        order = list(_head_inputs(head))
        members, inputs = [], []
        for spec, member in zip(head.members_, head.member_heads_):
            core, layout = _core(member)
            if layout != "rows":
                raise Unsupported(f"stack member {spec['name']!r}: a sequence head cannot be a member")
            members.append(core)
            inputs.append([order.index(m) for m in _head_inputs(member)])
        return T.StackHead(head, members, inputs), "rows"
    if isinstance(head, SVM):
        return T.SVMHead(head), "rows"
    if isinstance(head, LogReg):
        return T.LogRegHead(head), "rows"
    if isinstance(head, ContextGRU):
        if not isinstance(head.module_, ContextGRUModule):
            raise Unsupported(f"head {head.name!r}: its module is not a ContextGRUModule")
        return T.NeuralSequences(head), "sequences"
    if isinstance(head, NeuralHead):
        if head.uses_groups:
            raise Unsupported(f"head {head.name!r}: a sequence head other than context_gru")
        if head.module_ is None:
            raise Unsupported(f"head {head.name!r}: fit or load the head first")
        return T.NeuralRows(head), "rows"
    raise Unsupported(f"head {head.name!r} ({type(head).__name__}): no ONNX export for this kind of head "
                      "(neural heads, logreg, svm and stack are exported)")


def _n_outputs(head: Any) -> int:
    return 1 if head.regression else int(head.n_classes_)


def _sequence_groups(n: int) -> np.ndarray:
    """Groups of lengths 1, 2, 3, ... over ``n`` rows, as ``sequence_index`` gives them."""
    out, g = [], 0
    while len(out) < n:
        out += [[g, p] for p in range(g + 1)]
        g += 1
    return np.asarray(out[:n], dtype=np.int64)


def _probe(head: Any, inputs: dict[str, int], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Feature rows around the head's training distribution (mean + std * N(0, 1))."""
    rng = np.random.default_rng(seed)
    stats = _all_stats(head)
    X = {}
    for m, d in inputs.items():
        mean, std = stats.get(m, (np.zeros(d, np.float32), np.ones(d, np.float32)))
        X[m] = (mean + std * rng.standard_normal((n, d))).astype(np.float32)
    return X


def _all_stats(head: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    stats = dict(getattr(head, "stats_", {}) or {})
    for member in getattr(head, "member_heads_", []) or []:
        stats = {**_all_stats(member), **stats}
    return stats


def _cpu_copy(head: Any) -> Any:
    """A shallow copy of ``head`` that predicts on the CPU in float32 (a neural head loaded where CUDA is would
    run under mixed precision, which is not what the graph restates)."""
    h = copy.copy(head)
    if getattr(head, "module_", None) is not None and hasattr(head, "device_"):
        import torch

        h.module_ = copy.deepcopy(head.module_).cpu()
        h.device_ = torch.device("cpu")
    if getattr(head, "member_heads_", None):
        h.member_heads_ = [_cpu_copy(m) for m in head.member_heads_]
    return h


def _reference(head: Any, X: dict[str, np.ndarray], groups: np.ndarray | None) -> np.ndarray:
    head = _cpu_copy(head)
    if head.regression:
        return np.asarray(head.predict(X, groups=groups), dtype=np.float64)
    return np.asarray(head.predict_proba(X, groups=groups), dtype=np.float64)


def export_head(head: Any, modalities: list[str] | None, dims: list[int] | None, path: str | Path, *,
                metadata: dict[str, Any] | None = None, verify: bool = True) -> dict[str, Any]:
    """Write ``head`` (fitted or loaded) as one ONNX graph to ``path``; returns what it takes and gives.

    ``modalities`` / ``dims``: the inputs the caller will feed (None: the head's own); they must be the head's.
    ``metadata``: extra ``metadata_props`` (prefixed ``mmpipe.``). With ``verify`` the graph is run with
    onnxruntime on probe rows and compared with the head's own ``predict_proba`` / ``predict``.
    """
    import onnx

    T = _torch_parts()
    torch = T.torch
    path = Path(path)
    inputs = _head_inputs(head)
    if modalities is not None:
        want = dict(zip(modalities, dims if dims is not None else [inputs.get(m) for m in modalities]))
        extra = [m for m in inputs if m not in want]
        wrong = [f"{m} ({want[m]} given, the head takes {inputs[m]})" for m in inputs
                 if m in want and want[m] is not None and int(want[m]) != inputs[m]]
        if extra or wrong:
            raise MmpipeError(f"head {head.name!r}: inputs do not match the fitted head: "
                              + "; ".join([*(f"missing modality {m}" for m in extra), *wrong]))
    core, layout = _core(head)
    module = T.Float32(core).eval()
    names = list(inputs)
    out_name = "score" if head.regression else "proba"
    k = _n_outputs(head)
    if layout == "rows":
        dummy = tuple(torch.randn(3, inputs[m]) for m in names)
        axes = {m: {0: "batch"} for m in names}
        axes[out_name] = {0: "batch"}
        in_shapes = {m: ["batch", inputs[m]] for m in names}
        out_shape = ["batch"] if head.regression else ["batch", k]
    else:
        dummy = tuple(torch.randn(2, 3, inputs[m]) for m in names)
        axes = {m: {0: "groups", 1: "length"} for m in names}
        axes[out_name] = {0: "groups", 1: "length"}
        in_shapes = {m: ["groups", "length", inputs[m]] for m in names}
        out_shape = ["groups", "length"] + ([] if head.regression else [k])
    path.parent.mkdir(parents=True, exist_ok=True)
    # with grad enabled and trainable weights, nn.TransformerEncoderLayer takes its plain path (its fused
    # inference kernel, aten::_transformer_encoder_layer_fwd, has no ONNX form)
    for param in module.parameters():
        param.requires_grad_(True)
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, dummy, str(path), dynamo=False, input_names=names, output_names=[out_name],
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - tracing errors come in many types
        raise Unsupported(f"head {head.name!r}: torch.onnx.export failed: {exc}") from exc
    props = {"format": FORMAT, "mmpipe_version": __version__, "head": head.name, "task": head.task,
             "layout": layout, "modalities": names, "dims": [inputs[m] for m in names], "output": out_name,
             "n_outputs": k, **(metadata or {})}
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {META + key: v if isinstance(v, str) else json.dumps(v)
                                        for key, v in props.items()})
    model.doc_string = (f"mmpipe head {head.name} ({head.task}); inputs: "
                        + ", ".join(f"{m} {in_shapes[m]}" for m in names) + f"; output {out_name} {out_shape}")
    onnx.save(model, str(path))
    info = {"layout": layout,
            "takes": [{"name": m, "dtype": "float32", "shape": in_shapes[m]} for m in names],
            "gives": [{"name": out_name, "dtype": "float32", "shape": out_shape}]}
    if verify:
        info["check_max_abs_diff"] = _verify_head(head, path, inputs, layout)
    return info


def _verify_head(head: Any, path: Path, inputs: dict[str, int], layout: str) -> float:
    n = 23
    X = _probe(head, inputs, n)
    groups = _sequence_groups(n) if layout == "sequences" else None
    want = _reference(head, X, groups)
    got = OnnxHead.from_file(path).outputs(X, groups)
    diff = float(np.abs(got - want).max()) if want.size else 0.0
    scale = max(1.0, float(np.abs(want).max())) if head.regression and want.size else 1.0
    if not np.isfinite(diff) or diff > TOLERANCE * scale:
        raise MmpipeError(f"{path.name}: the ONNX graph of head {head.name!r} disagrees with the head itself "
                          f"(max abs difference {diff:.3g} on probe rows)")
    return diff


# --------------------------------------------------------------------------------------------------------------
# the text encoder


def torch_fingerprint_id(entry: dict[str, Any]) -> str | None:
    """The fingerprint id of a bundle encoder entry's torch encoder (one with ``runtime: onnx`` drops it)."""
    from mmpipe.encoders.base import fingerprint_id

    fp = dict(entry.get("fingerprint") or {})
    if fp.pop("runtime", None) is None:
        return entry.get("fingerprint_id")
    return fingerprint_id(fp)


def export_text_encoder(spec: dict[str, Any], path: str | Path, tokenizer_path: str | Path | None = None,
                        fingerprint_id: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Export an ``hf_text`` encoder (``spec`` as in the config) to ``path``; its tokenizer to ``tokenizer_path``.

    ``fingerprint_id``: the one the bundle was built with (a mismatch is an ``MmpipeError``)."""
    import onnx

    from mmpipe.encoders.base import build_encoder

    T = _torch_parts()
    torch = T.torch
    spec = dict(spec)
    if spec.get("backend") != "hf_text":
        raise Unsupported(f"backend {spec.get('backend')!r}: only hf_text encoders are exported")
    if spec.get("adapt"):
        raise Unsupported("an adapted encoder (adapt:) is a mean over fold adapters; not exported")
    spec["device"] = "cpu"
    enc = build_encoder(spec)
    if fingerprint_id is not None and enc.fingerprint_id() != fingerprint_id:
        raise MmpipeError(f"encoder {spec.get('model')!r} here has fingerprint {enc.fingerprint_id()}, the bundle was "
                          f"built with {fingerprint_id} (other weights or preprocessing); install the bundle's weights")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = T.TextEncoder(enc).eval()
    # a padded dummy batch, so the traced graph keeps the attention-mask path
    dummy = enc.tokenizer(["a a a a a a", "a"], padding=True, truncation=True, max_length=enc.max_length,
                          return_tensors="pt")
    args = (dummy["input_ids"].to(torch.int64), dummy["attention_mask"].to(torch.int64))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "vector": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=["input_ids", "attention_mask"],
                              output_names=["vector"], dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - tracing errors come in many types
        raise Unsupported(f"model {spec.get('model')!r}: torch.onnx.export failed: {exc}") from exc
    dim = int(enc.dim)
    props = {"format": FORMAT, "mmpipe_version": __version__, "kind": "encoder", "backend": "hf_text",
             "model": str(spec.get("model")), "pooling": enc.pooling, "normalize": enc.normalize,
             "max_length": enc.max_length, "tweet_normalize": enc.tweet_normalize, "dim": dim,
             "fingerprint_id": enc.fingerprint_id()}
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {META + k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})
    model.doc_string = (f"mmpipe hf_text encoder {spec.get('model')}: input_ids, attention_mask (batch, sequence) "
                        f"-> vector (batch, {dim}), {enc.pooling} pooling"
                        + (", L2-normalised" if enc.normalize else ""))
    onnx.save(model, str(path))
    if tokenizer_path is not None:
        enc.tokenizer.save_pretrained(str(tokenizer_path))
    info = {"takes": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]},
                      {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "sequence"]}],
            "gives": [{"name": "vector", "dtype": "float32", "shape": ["batch", dim]}],
            "pooling": enc.pooling, "normalize": enc.normalize, "fingerprint_id": enc.fingerprint_id(),
            "tokenize": {"padding": True, "truncation": True, "max_length": enc.max_length,
                         "tweet_normalize": enc.tweet_normalize,
                         "call": f"tokenizer(texts, padding=True, truncation=True, max_length={enc.max_length}, "
                                 f"return_tensors='np')"
                                 + ("; texts through mmpipe.encoders.tweet.normalize_tweet first"
                                    if enc.tweet_normalize else "")}}
    if verify:
        info["check_max_abs_diff"] = _verify_encoder(enc, path)
    return info


def _verify_encoder(enc: Any, path: Path) -> float:
    import onnxruntime as ort

    texts = ["good", "this movie is so very good and the music is great", "", "i hate it", "ok " * 200]
    want = enc.encode(texts, progress=False)
    tok = enc.tokenizer(enc.inputs(texts), padding=True, truncation=True, max_length=enc.max_length,
                        return_tensors="np")
    sess = ort.InferenceSession(str(path), _session_options(), providers=["CPUExecutionProvider"])
    got = sess.run(["vector"], {"input_ids": tok["input_ids"].astype(np.int64),
                                "attention_mask": tok["attention_mask"].astype(np.int64)})[0]
    diff = float(np.abs(got - want).max())
    if not np.isfinite(diff) or diff > TOLERANCE:
        raise MmpipeError(f"{path.name}: the ONNX encoder disagrees with the torch encoder "
                          f"(max abs difference {diff:.3g})")
    return diff


# --------------------------------------------------------------------------------------------------------------
# the bundle


def export_bundle(bundle: str | Path, out: str | Path) -> list[Path]:
    """Export every head and seed of the bundle (and its ``hf_text`` encoders) to ``out``; returns the files
    written (the ONNX files, the tokenizer folders, ``onnx.json``). ``out`` is replaced as a whole (a temp folder
    beside it, then a rename); an existing ``out`` must be an earlier export (it holds ``onnx.json``) or empty."""
    import onnxruntime as ort

    from mmpipe.fusion.heads.base import HEADS
    from mmpipe.inference.bundle import load_model_json

    bundle, out = Path(bundle), Path(out)
    model = load_model_json(bundle)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / INDEX).is_file())):
        raise MmpipeError(f"{out}: exists and is not an mmpipe ONNX export (no {INDEX}); give a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    written: list[str] = []
    skipped: dict[str, str] = {}
    with atomic_dir(out) as tmp:
        for entry in model["heads"]:
            ablation, name = entry["ablation"], entry["head"]
            for seed, rel in zip(entry["seeds"], entry["files"]):
                fname = head_file(ablation, seed)
                try:
                    head = HEADS.get(name).load(bundle / rel)
                    info = export_head(head, None, None, tmp / fname,
                                       metadata={"ablation": ablation, "seed": int(seed),
                                                 "context": entry.get("context") or "none",
                                                 "classes": model.get("classes")})
                except MmpipeError as exc:
                    raise MmpipeError(f"ablation {ablation!r} (head {name!r}, seed {seed}): cannot export to "
                                      f"ONNX: {exc}") from exc
                missing = [m for m in info["takes"] if m["name"] not in entry["modalities"]]
                if missing:
                    raise MmpipeError(f"ablation {ablation!r}: the head takes {missing}, not in the bundle's "
                                      f"modalities {entry['modalities']}")
                files.append({"file": fname, "kind": "head", "ablation": ablation, "head": name, "seed": int(seed),
                              "source": rel, "modalities": list(entry["modalities"]),
                              "context": entry.get("context") or "none", **info})
                written.append(fname)
        for enc_name, enc_entry in model["encoders"].items():
            spec = enc_entry["spec"]
            if spec.get("backend") != "hf_text":
                skipped[enc_name] = f"backend {spec.get('backend')}: only hf_text encoders are exported"
                continue
            if spec.get("adapt"):
                skipped[enc_name] = "adapted (adapt:): a mean over fold adapters, not exported"
                continue
            if spec.get("context"):
                skipped[enc_name] = "context: true pools over the text's segment of a (text, context) pair; not exported"
                continue
            fname, tdir = encoder_file(enc_name), tokenizer_dir(enc_name)
            try:
                info = export_text_encoder(torch_spec(spec), tmp / fname, tmp / tdir, torch_fingerprint_id(enc_entry))
            except MmpipeError as exc:
                raise MmpipeError(f"encoder {enc_name!r}: cannot export to ONNX: {exc}") from exc
            files.append({"file": fname, "kind": "encoder", "encoder": enc_name, "modality": enc_entry.get("modality"),
                          "model": spec.get("model"), "tokenizer": tdir, **info})
            written += [fname, tdir]
        index = {
            "format": FORMAT,
            "mmpipe_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "bundle": str(bundle.resolve()),
            "bundle_created": model.get("created"),
            "task": model.get("task"),
            "classes": model.get("classes"),
            "opset": OPSET,
            "onnxruntime_version": ort.__version__,
            "torch_version": _torch_parts().torch.__version__,
            "files": files,
            "not_exported": skipped,
            "about": [
                "Heads: one float32 input per modality (named after it) with the raw feature vectors (the head's "
                "standardisation is in the graph; with context, the features with their context appended); output "
                "proba (n, n_classes) or score (n,) for regression; dynamic batch. A sequence head (layout "
                "sequences) takes (groups, length, d) per modality and gives (groups, length[, n_classes]).",
                "The bundle's prediction is the mean over the seeds of each ablation.",
                "Encoders: input_ids and attention_mask (int64, from the tokenizer folder beside it) -> vector.",
                "Predict with it: mmpipe predict BUNDLE INPUT --runtime onnx --onnx THIS_FOLDER.",
            ],
        }
        (tmp / INDEX).write_text(json.dumps(index, indent=1, default=str) + "\n", encoding="utf-8")
        written.append(INDEX)
    return [out / f for f in written]


def check_export(onnx_dir: str | Path, model: dict[str, Any]) -> dict[str, Any]:
    """``onnx.json`` of ``onnx_dir``, checked against the bundle's ``model.json`` (``model``): an export of an
    earlier build of the bundle (another ``created`` time) is an ``MmpipeError``."""
    path = Path(onnx_dir) / INDEX
    if not path.is_file():
        raise MmpipeError(f"{onnx_dir}: no ONNX export ({INDEX} missing); run `mmpipe export BUNDLE --onnx {onnx_dir}`")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("bundle_created") != model.get("created"):
        raise MmpipeError(f"{onnx_dir}: exported from the bundle built {index.get('bundle_created')}, this bundle was "
                          f"built {model.get('created')}; run `mmpipe export BUNDLE --onnx {onnx_dir}` again")
    return index


# --------------------------------------------------------------------------------------------------------------
# the onnxruntime head


def _session_options(threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


class OnnxHead:
    """One exported head (``<ablation>.seed<seed>.onnx`` in ``onnx_dir``) on onnxruntime's CPU provider, with the
    head interface that ``mmpipe.fusion.predict.head_outputs`` uses: ``predict_proba(X, groups=None)`` and
    ``predict(X, groups=None)`` on a dict modality -> ``(n, d)`` float32 raw features."""

    def __init__(self, onnx_dir: str | Path, entry: dict[str, Any], seed: int, threads: int | None = None):
        path = Path(onnx_dir) / head_file(entry["ablation"], seed)
        if not path.is_file():
            raise MmpipeError(f"{path}: no ONNX export of {entry['ablation']} seed {seed}; run "
                              f"`mmpipe export BUNDLE --onnx {onnx_dir}` (with this bundle) first")
        self._open(path, threads)
        if self.meta.get("ablation") not in (None, entry["ablation"]) or self.meta.get("seed") not in (None, int(seed)):
            raise MmpipeError(f"{path}: exported from ablation {self.meta.get('ablation')} "
                              f"seed {self.meta.get('seed')}, "
                              f"not {entry['ablation']} seed {seed}; export this bundle again")
        extra = [m for m in self.inputs if m not in entry["modalities"]]
        if extra:
            raise MmpipeError(f"{path}: takes {', '.join(extra)}, which ablation {entry['ablation']} does not use; "
                              f"export this bundle again")

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = None) -> "OnnxHead":
        self = cls.__new__(cls)
        self._open(Path(path), threads)
        return self

    def _open(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), _session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise MmpipeError(f"{path}: onnxruntime cannot load it ({exc}); export the bundle again") from exc
        raw = self.session.get_modelmeta().custom_metadata_map
        self.meta = {}
        for key, value in raw.items():
            if key.startswith(META):
                try:
                    self.meta[key[len(META):]] = json.loads(value)
                except ValueError:
                    self.meta[key[len(META):]] = value
        self.name = str(self.meta.get("head", "onnx"))
        self.task = str(self.meta.get("task", "classification"))
        self.regression = self.task == "regression"
        self.layout = str(self.meta.get("layout", "rows"))
        self.inputs = {i.name: i.shape[-1] for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name
        self.n_outputs = int(self.meta.get("n_outputs", 1))

    def _feed(self, X: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        missing = [m for m in self.inputs if m not in X]
        if missing:
            raise ValueError(f"{self.path.name}: missing modalities {missing}; have {sorted(X)}")
        feed, n = {}, None
        for m, d in self.inputs.items():
            a = np.ascontiguousarray(X[m], dtype=np.float32)
            if a.ndim != 2 or (isinstance(d, int) and a.shape[1] != d):
                raise ValueError(f"{self.path.name}: modality {m!r} takes (n, {d}) features, got shape {a.shape}")
            if n is not None and a.shape[0] != n:
                raise ValueError(f"{self.path.name}: modalities have different row counts ({n} vs {a.shape[0]})")
            feed[m], n = a, a.shape[0]
        return feed, int(n or 0)

    def outputs(self, X: dict[str, np.ndarray], groups: np.ndarray | None = None) -> np.ndarray:
        """``(n, n_classes)`` probabilities or ``(n,)`` scores, float64."""
        feed, n = self._feed(X)
        shape = (n,) if self.regression else (n, self.n_outputs)
        if n == 0:
            return np.zeros(shape)
        if self.layout == "rows":
            return np.asarray(self.session.run([self.output], feed)[0], dtype=np.float64).reshape(shape)
        if groups is None:
            raise ValueError(f"{self.name} reads each group's sequence: pass groups= "
                             "(see mmpipe.fusion.context.sequence_index)")
        if len(groups) != n:
            raise ValueError(f"{len(groups)} group entries for {n} rows")
        index, lengths = group_layout(groups)
        out = np.zeros(shape)
        for length in np.unique(lengths):  # groups of one length together: no padding
            rows = index[lengths == length, :length]
            o = self.session.run([self.output], {m: a[rows] for m, a in feed.items()})[0]
            out[rows.reshape(-1)] = np.asarray(o, dtype=np.float64).reshape((-1, *shape[1:]))
        return out

    def predict_proba(self, X: dict[str, np.ndarray], groups: np.ndarray | None = None) -> np.ndarray:
        if self.regression:
            raise TypeError(f"{self.name}: a regression head has no class probabilities; use predict()")
        return self.outputs(X, groups)

    def predict(self, X: dict[str, np.ndarray], groups: np.ndarray | None = None) -> np.ndarray:
        """Regression: ``(n,)`` scores; classification: ``(n,)`` class ids (argmax of the probabilities)."""
        out = self.outputs(X, groups)
        return out if self.regression else out.argmax(axis=1)
