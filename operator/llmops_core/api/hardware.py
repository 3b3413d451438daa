"""What each EC2 instance family carries, so a spec can be checked against the hardware it asks for.

Counts are per instance: NVIDIA GPUs (``nvidia.com/gpu``), Neuron devices (``aws.amazon.com/neuron``,
one per Trainium/Inferentia chip) and EFA interfaces (``vpc.amazonaws.com/efa``), from AWS's instance
type pages. Families we do not list are treated as CPU-only.
"""

from __future__ import annotations

from dataclasses import dataclass

# Resource names the device plugins advertise.
RESOURCE_NAMES = {
    "nvidia-gpu": "nvidia.com/gpu",
    "aws-trainium": "aws.amazon.com/neuron",
    "aws-inferentia": "aws.amazon.com/neuron",
}
EFA_RESOURCE = "vpc.amazonaws.com/efa"


@dataclass(frozen=True)
class Instance:
    accelerator: str  # nvidia-gpu | aws-trainium | aws-inferentia
    devices: int
    efa: int = 0
    device_memory_gib: int = 0  # per device (HBM of one GPU or Neuron chip), for `llmops estimate`


FAMILIES = {
    "p3": "nvidia-gpu", "p3dn": "nvidia-gpu", "p4d": "nvidia-gpu", "p4de": "nvidia-gpu",
    "p5": "nvidia-gpu", "p5e": "nvidia-gpu", "p5en": "nvidia-gpu", "p6": "nvidia-gpu",
    "g4dn": "nvidia-gpu", "g5": "nvidia-gpu", "g6": "nvidia-gpu", "g6e": "nvidia-gpu",
    "trn1": "aws-trainium", "trn1n": "aws-trainium", "trn2": "aws-trainium",
    "inf1": "aws-inferentia", "inf2": "aws-inferentia",
}  # fmt: skip

INSTANCES = {
    "p4d.24xlarge": Instance("nvidia-gpu", 8, efa=4, device_memory_gib=40),
    "p4de.24xlarge": Instance("nvidia-gpu", 8, efa=4, device_memory_gib=80),
    "p5.48xlarge": Instance("nvidia-gpu", 8, efa=32, device_memory_gib=80),
    "p5e.48xlarge": Instance("nvidia-gpu", 8, efa=32, device_memory_gib=141),
    "p5en.48xlarge": Instance("nvidia-gpu", 8, efa=16, device_memory_gib=141),
    **{f"g5.{s}": Instance("nvidia-gpu", 1, device_memory_gib=24) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g5.12xlarge": Instance("nvidia-gpu", 4, device_memory_gib=24),
    "g5.24xlarge": Instance("nvidia-gpu", 4, device_memory_gib=24),
    "g5.48xlarge": Instance("nvidia-gpu", 8, efa=1, device_memory_gib=24),
    **{f"g6.{s}": Instance("nvidia-gpu", 1, device_memory_gib=24) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6.12xlarge": Instance("nvidia-gpu", 4, device_memory_gib=24),
    "g6.24xlarge": Instance("nvidia-gpu", 4, device_memory_gib=24),
    "g6.48xlarge": Instance("nvidia-gpu", 8, efa=1, device_memory_gib=24),
    **{f"g6e.{s}": Instance("nvidia-gpu", 1, device_memory_gib=48) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6e.12xlarge": Instance("nvidia-gpu", 4, device_memory_gib=48),
    "g6e.24xlarge": Instance("nvidia-gpu", 4, efa=2, device_memory_gib=48),
    "g6e.48xlarge": Instance("nvidia-gpu", 8, efa=4, device_memory_gib=48),
    "trn1.2xlarge": Instance("aws-trainium", 1, device_memory_gib=32),
    "trn1.32xlarge": Instance("aws-trainium", 16, efa=8, device_memory_gib=32),
    "trn1n.32xlarge": Instance("aws-trainium", 16, efa=16, device_memory_gib=32),
    "trn2.48xlarge": Instance("aws-trainium", 16, efa=16, device_memory_gib=96),
    "inf2.xlarge": Instance("aws-inferentia", 1, device_memory_gib=32),
    "inf2.8xlarge": Instance("aws-inferentia", 1, device_memory_gib=32),
    "inf2.24xlarge": Instance("aws-inferentia", 6, device_memory_gib=32),
    "inf2.48xlarge": Instance("aws-inferentia", 12, device_memory_gib=32),
}  # fmt: skip


# NeuronCores per Neuron device as torch-neuronx sees them: Trainium has 2 (NeuronCore-v2); Trainium2
# has 8, presented as 4 logical cores at its default LNC=2. torch-neuronx runs one process per core.
NEURONCORES_PER_DEVICE = {"trn1": 2, "trn1n": 2, "trn2": 4}
DEFAULT_NEURONCORES = 2  # when no Trainium instance type is listed: trn1's


def neuroncores(instance_types: list[str]) -> set[int]:
    """NeuronCores per device of the listed Trainium instance types (empty: none listed)."""
    return {
        NEURONCORES_PER_DEVICE[t.split(".", 1)[0]]
        for t in instance_types
        if t.split(".", 1)[0] in NEURONCORES_PER_DEVICE
    }


def family_accelerator(instance_type: str) -> str:
    """The accelerator an instance type carries ("cpu" for families we do not list)."""
    return FAMILIES.get(instance_type.split(".", 1)[0], "cpu")


# Dense bf16 peak per accelerator in TFLOP/s (vendor data sheets, no sparsity), for run-time estimates:
# A100, A100 80GB, H100, H200, H200, A10G, L4, L40S, Trainium, Trainium2, Inferentia2.
PEAK_BF16_TFLOPS = {
    "p4d": 312, "p4de": 312, "p5": 989, "p5e": 989, "p5en": 989,
    "g5": 70, "g6": 121, "g6e": 362, "trn1": 190, "trn1n": 190, "trn2": 667, "inf2": 190,
}  # fmt: skip
