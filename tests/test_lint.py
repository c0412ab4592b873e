"""The workflow as Snakemake sees it: `snakemake --lint` is clean, every rule that runs something declares threads,
mem_mb, runtime and a conda environment from envs/, the config can override the sizes, the target-only rules are
local, extraction asks for a GPU only when the config says so, and envs/*.yaml are conda environment specs that
hold every package their rules' code imports."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

ENVS = REPO / "envs"
TARGET_RULES = {"all", "features", "ablations", "predictions", "tune", "html", "robustness"}
# which environment each group of rules runs in (issue: one per rule group)
ENV_OF = {"demo_data": "extract", "manifest": "extract", "extract": "extract", "adapter": "extract", "folds": "heads",
          "encoder_onnx": "extract",
          "ablation": "heads", "model": "model", "predict": "model", "decode_report": "report", "summary": "report",
          "tune_worker": "heads", "tune_report": "heads", "ablation_html": "report", "summary_html": "report",
          "decode_html": "report", "robustness_eval": "heads", "robustness_plan": "heads",
          "robustness_report": "report", "tuning_html": "report", "robustness_html": "report"}


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_lint_is_clean():
    proc = _snakemake("--lint")
    out = proc.stdout + proc.stderr
    # lint exits 1 and prints "Lints for ..." blocks when it has something to say
    assert proc.returncode == 0 and "Lints for" not in out, out
    assert "Congratulations, your workflow is in a good condition" in out, out


# --- the rules, as the parsed workflow holds them -------------------------------------------------------------

DUMP = """
include: {snakefile!r}
import json as _json
from types import SimpleNamespace as _NS


def _value(res, **wildcards):
    return res.evaluate(_NS(**wildcards)).value if res.is_evaluable() else res.value


_x = workflow.get_rule("extract")
_json.dump({{"rules": {{r.name: {{
    "norun": r.norun, "localrule": r.name in workflow._localrules,
    "conda": str((Path(r.snakefile).parent / r.conda_env).resolve()) if r.conda_env else None,
    "script": str((Path(r.snakefile).parent / r.script).resolve()) if r.script else None,
    "threads": _value(r.resources["_cores"]),
    "resources": {{k: None if v.is_evaluable() else v.value for k, v in r.resources.items() if not k.startswith("_")}},
}} for r in workflow.rules}},
   "extract_gpu": {{enc: {{k: _value(_x.resources[k], encoder=enc, shard="000")
                          for k in ("gpu", "gpu_model", "slurm_extra") if k in _x.resources}}
                   for enc in config["encoders"]}},
}}, open("rules.json", "w"), indent=1)
"""


def parsed_rules(workdir: Path, config: dict, *args: str) -> dict:
    """Load the real Snakefile with ``config`` in ``workdir``; every rule's settings as a dict."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "dump.smk").write_text(DUMP.format(snakefile=str(REPO / "Snakefile")))
    proc = _snakemake("-s", "dump.smk", "--list-rules", *args, cwd=workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((workdir / "rules.json").read_text())["rules"]


def extract_gpu(workdir: Path, config: dict) -> dict:
    parsed_rules(workdir, config)
    return json.loads((workdir / "rules.json").read_text())["extract_gpu"]


@pytest.fixture(scope="module")
def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(scope="module")
def rules(tmp_path_factory, default_config) -> dict:
    return parsed_rules(tmp_path_factory.mktemp("rules"), default_config)


def test_every_job_rule_declares_threads_memory_runtime_and_an_env(rules):
    jobs = {name for name, r in rules.items() if not r["norun"]}
    assert jobs == set(ENV_OF), f"rules with a job: {sorted(jobs)}; update ENV_OF for new rules"
    for name in jobs:
        r = rules[name]
        assert isinstance(r["resources"].get("mem_mb"), int) and r["resources"]["mem_mb"] > 0, name
        assert isinstance(r["resources"].get("runtime"), int) and r["resources"]["runtime"] > 0, name
        assert r["threads"] >= 1, name
        assert r["conda"] == str(ENVS / f"{ENV_OF[name]}.yaml"), (name, r["conda"])
        assert r["script"] and Path(r["script"]).is_file(), name


def test_target_rules_are_local(rules):
    targets = {name for name, r in rules.items() if r["norun"]}
    assert targets == TARGET_RULES
    assert all(rules[name]["localrule"] for name in targets), {n: rules[n]["localrule"] for n in targets}


def test_config_overrides_threads_memory_runtime(tmp_path, default_config):
    config = {**default_config, "resources": {name: {"threads": 3, "mem_mb": 1234 + i, "runtime": 7 + i}
                                              for i, name in enumerate(sorted(ENV_OF))}}
    rules = parsed_rules(tmp_path, config)
    for i, name in enumerate(sorted(ENV_OF)):
        r = rules[name]
        assert (r["threads"], r["resources"]["mem_mb"], r["resources"]["runtime"]) == (3, 1234 + i, 7 + i), name


def test_extraction_asks_for_a_gpu_only_when_the_config_says_so(tmp_path, default_config):
    none = {"gpu": None, "gpu_model": None, "slurm_extra": None}
    names = list(default_config["encoders"])
    assert extract_gpu(tmp_path, default_config) == {e: none for e in names}

    encoders = {**default_config["encoders"], "text": {**default_config["encoders"]["text"], "device": "cuda"}}
    gpu = {"count": 2, "model": "a100", "slurm_extra": "--gres-flags=enforce-binding"}
    assert extract_gpu(tmp_path, {**default_config, "encoders": encoders, "gpu": gpu}) == {
        **{e: none for e in names}, "text": {"gpu": 2, "gpu_model": "a100", "slurm_extra": "--gres-flags=enforce-binding"}}

    every = extract_gpu(tmp_path, {**default_config, "gpu": {"enabled": True}})
    assert every == {e: {"gpu": 1, "gpu_model": None, "slurm_extra": None} for e in names}


# --- envs/*.yaml ----------------------------------------------------------------------------------------------

CONDA_SPEC = re.compile(r"^[A-Za-z0-9_.\-]+(::[A-Za-z0-9_.\-]+)?([=<>!~ ].*)?$")
# imported only where present (import-guarded, never on the default path): not required in an env
OPTIONAL = {"torchvision", "timm"}


def env_spec(name: str) -> dict:
    spec = yaml.safe_load((ENVS / f"{name}.yaml").read_text())
    assert isinstance(spec, dict) and set(spec) <= {"name", "channels", "dependencies", "variables"}, spec
    assert isinstance(spec.get("channels"), list) and all(isinstance(c, str) for c in spec["channels"])
    deps = spec.get("dependencies")
    assert isinstance(deps, list) and deps
    return spec


def pip_requirements(spec: dict) -> list[Requirement]:
    pips = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict)]
    assert len(pips) == 1 and isinstance(pips[0], list) and pips[0]
    return [Requirement(r) for r in pips[0]]


@pytest.mark.parametrize("name", sorted(set(ENV_OF.values())))
def test_env_is_a_conda_spec_with_python_and_pip(name):
    spec = env_spec(name)
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    assert all(CONDA_SPEC.match(d) for d in conda), conda
    assert any(re.match(r"^python([=<>]|$)", d) for d in conda), "python is pinned in the env"
    assert "pip" in conda
    others = [d for d in spec["dependencies"] if not isinstance(d, str)]
    assert all(isinstance(d, dict) and set(d) == {"pip"} for d in others), others
    reqs = pip_requirements(spec)
    # a CPU torch pin keeps a fresh env small (see the README); the same pin as the package's
    torch = [r for r in reqs if r.name == "torch"]
    assert all(str(r.specifier) == "==2.13.0" for r in torch), torch


def _installed_closure(reqs: list[Requirement]) -> set[str]:
    """The distributions that installing ``reqs`` brings in, by the metadata of this environment."""
    todo, seen = [canonicalize_name(r.name) for r in reqs], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def _imports(path: Path) -> set[str]:
    """Top-level module names that a file imports, outside `try: ... except ImportError` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                or isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") in ("ImportError",
                                                                               "ModuleNotFoundError")
                                                         for e in h.type.elts)
                for h in node.handlers):
            guarded.update(id(n) for b in node.body for n in ast.walk(b))
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _mmpipe_file(module: str) -> Path | None:
    base = REPO / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def third_party_imports(script: Path) -> set[str]:
    """Third-party top-level modules used by a rule's script and the mmpipe modules it reaches."""
    todo, seen, found = [script], set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top == "mmpipe":
                parts = mod.split(".")
                for i in range(1, len(parts) + 1):  # mmpipe, mmpipe.fusion.heads, mmpipe.fusion.heads.neural ...
                    f = _mmpipe_file(".".join(parts[:i]))
                    if f:
                        todo.append(f)
            elif top not in sys.stdlib_module_names and top not in ("snakemake", "__future__"):
                found.add(top)
    return found


@pytest.mark.parametrize("name", sorted(set(ENV_OF.values())))
def test_env_holds_what_its_rules_import(rules, name):
    provided = _installed_closure(pip_requirements(env_spec(name)))
    dists = md.packages_distributions()
    missing = {}
    for rule, env in ENV_OF.items():
        if env != name:
            continue
        script = Path(rules[rule]["script"])
        modules = third_party_imports(script)
        if rule == "extract":  # encoders are found by name at run time: all of them
            modules |= {m for f in (REPO / "mmpipe/encoders").glob("*.py") for m in third_party_imports(f)}
        if rule in ("ablation", "model", "predict"):  # heads too
            modules |= {m for f in (REPO / "mmpipe/fusion/heads").glob("*.py") for m in third_party_imports(f)}
        for mod in sorted(modules - OPTIONAL):
            owners = {canonicalize_name(d) for d in dists.get(mod, [])}
            if not owners:  # only the import-guarded extras (OPTIONAL) may be missing from the test env too
                missing.setdefault(rule, []).append(f"{mod} (not installed here either)")
            elif not owners & provided:
                missing.setdefault(rule, []).append(f"{mod} ({', '.join(sorted(owners))})")
    assert not missing, f"envs/{name}.yaml lacks packages its rules import: {missing}"


def test_env_pins_match_the_package():
    """An env never asks for a version that the package's own dependencies exclude."""
    loads = pytest.importorskip("tomllib").loads

    project = {canonicalize_name(Requirement(r).name): Requirement(r)
               for r in loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name in sorted(set(ENV_OF.values())):
        for req in pip_requirements(env_spec(name)):
            pinned = [str(v) for v in req.specifier if v.operator == "=="]
            ours = project.get(canonicalize_name(req.name))
            if ours and pinned:
                assert ours.specifier.contains(pinned[0][2:]), (name, str(req), str(ours))
