"""The process's allocation settings made at import (allocation.py): freed memory kept for reuse, so that a
large tensor allocated again is not paid for in page faults again; huge pages asked of PyTorch unless set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bigbird_pegasus import allocation

# A child process: import the package first, then allocate, fill and free a 64 MiB tensor three times, printing
# the minor page faults of each round.
FAULTS_OF_REALLOCATING = """
import json, os, resource
import bigbird_pegasus
import torch

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

rounds = []
for _ in range(3):
    before = faults()
    tensor = torch.empty(16 << 20)
    tensor.fill_(1.0)
    del tensor
    rounds.append(faults() - before)
print(json.dumps({"faults": rounds, "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE")}))
"""


def run_child(**environment: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("BIGBIRD_PEGASUS_REUSE_FREED_MEMORY", "THP_MEM_ALLOC_ENABLE")}
    completed = subprocess.run([sys.executable, "-c", FAULTS_OF_REALLOCATING], env={**env, **environment},
                               capture_output=True, text=True, timeout=120, check=True)
    return json.loads(completed.stdout)


glibc_only = pytest.mark.skipif(allocation._glibc() is None, reason="the freed-memory setting is glibc's mallopt")


@glibc_only
def test_glibc_takes_both_settings():
    assert allocation.keep_freed_memory() is True


@glibc_only
def test_a_large_tensor_allocated_again_reuses_pages_already_faulted_in():
    kept = run_child()["faults"]
    returned = run_child(BIGBIRD_PEGASUS_REUSE_FREED_MEMORY="0")["faults"]
    # 64 MiB faulted in anew is 32 huge pages or 16384 small ones each round; kept, the later rounds fault ~none
    assert min(returned[1:]) >= 32, returned
    assert max(kept[1:]) * 4 < min(returned[1:]), (kept, returned)


def test_huge_pages_asked_unless_set():
    assert run_child()["huge_pages"] == "1"
    assert run_child(THP_MEM_ALLOC_ENABLE="0")["huge_pages"] == "0"
