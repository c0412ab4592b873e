"""Planning stays light: ``snakemake -n`` checks the config, which imports every head module through the head
registry, and none of that may load torch (it costs over a second per snakemake call). The torch modules of the
built-in heads live in ``mmpipe.fusion.nets``, imported only when a head builds its model."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_checking_the_default_config_does_not_import_torch():
    _run("import sys, yaml; from mmpipe.checks import check_config; "
         "check_config(yaml.safe_load(open('config.yaml'))); "
         "assert 'torch' not in sys.modules, 'check_config imported torch'")


def test_every_head_module_imports_without_torch():
    modules = sorted(f"mmpipe.fusion.heads.{p.stem}" for p in (REPO / "mmpipe/fusion/heads").glob("*.py"))
    _run(f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
         "from mmpipe.fusion.heads import HEADS; [HEADS.get(n).check_params({}) for n in HEADS.names()]; "
         "bad = [m for m in ('torch', 'sklearn', 'joblib', 'imblearn') if m in sys.modules]; assert not bad, bad")
