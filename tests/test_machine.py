"""hneurons.machine: the facts that change floats are read from the machine and the model."""

from __future__ import annotations

import torch

from hneurons.machine import cpu_facts, machine_facts
from tests.tiny import make_model

X86 = """processor	: 0
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse4_2 avx avx2 fma f16c avx512f avx512_bf16 amx_tile amx_bf16 ht
processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse4_2 avx avx2 fma f16c avx512f avx512_bf16 amx_tile amx_bf16 ht
"""
ARM = """processor	: 0
Features	: fp asimd evtstrm aes sve
CPU implementer	: 0x41
"""


def test_cpu_facts_keep_the_model_name_and_only_float_relevant_flags():
    facts = cpu_facts(X86)
    assert facts["cpu"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert facts["isa"] == ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    assert cpu_facts(ARM)["isa"] == ["asimd", "sve"]


def test_machine_facts_name_torch_threads_dtype_and_the_model_device():
    torch.set_num_threads(1)
    model = make_model()
    facts = machine_facts(model, "float32")
    assert facts["torch"] == torch.__version__ and facts["threads"] == 1 and facts["dtype"] == "float32"
    assert facts["device"] == "cpu" and facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts == machine_facts(model, "float32")         # stable: same machine, same facts
