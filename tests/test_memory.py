"""core.memory: freed activations stay in the process, so a CPU forward pass does not fault them in every batch."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator settings are glibc's")

FORWARDS = """
import resource, sys
import torch
from mmpipe.core.memory import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory() is True
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.AdaptiveAvgPool2d(1))
x = torch.randn(16, 3, 112, 112)
with torch.inference_mode():
    net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        net(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FORWARDS, mode], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


def test_retained_memory_cuts_the_page_faults_of_repeated_forward_passes():
    """The same forward passes, each in a fresh process: with freed memory kept, the batches after the first
    re-use their buffers (a few thousand faults at most) where glibc's defaults fault ~100 MB in every batch."""
    default, retained = page_faults("default"), page_faults("retain")
    assert default > 50_000
    assert retained * 5 < default


def test_cpu_torch_encoders_retain_freed_memory(tmp_path):
    """Building a CPU torch encoder puts the settings in force for its process (extraction jobs, predict)."""
    code = ("import mmpipe.core.memory as m; from mmpipe.encoders.base import build_encoder; "
            "assert m._applied is None; "
            "build_encoder({'backend': 'efficientnet_lite', 'model': 'efficientnet-lite0'}); "
            "print(m._applied)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split()[-1] == "True"
