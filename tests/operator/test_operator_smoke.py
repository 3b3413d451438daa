from __future__ import annotations

from op_harness import eventually, running

TJ = {
    "apiVersion": "llmops.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "tiny"},
    "spec": {
        "model": {"preset": "tiny"},
        "data": {"train": "/opt/llmops/data/corpus.txt"},
        "hyperparameters": {"maxSteps": 200},
        "resources": {"accelerator": "cpu", "acceleratorsPerNode": 1},
        "output": {"location": "pvc://tiny-checkpoints/model"},
        "checkpoint": {"volumeClaim": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
    },
}


async def test_smoke():
    async with running() as (cluster, op, emu):
        await cluster.create(TJ)
        job = await eventually(lambda: cluster.get("kubeflow.org/v1", "pytorchjobs", "tiny"), 10)
        print(job["metadata"])
        tj = await eventually(lambda: cluster.get("llmops.dev/v1alpha1", "trainingjobs", "tiny"), 5)
        print(tj.get("status"))
