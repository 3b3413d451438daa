"""``python -m llmops_train --job FILE`` (one process, or a worker under torchrun): check inputs, train.

Exit codes (``exits``): 0 success; 143 after a SIGTERM checkpoint (retryable: exit 0 would mark an
unfinished job Succeeded); 2 bad input, reported before any heavy work; 1 a failure during training.
Under torchrun, which reduces every failure to 1, the same code and cause are recorded for
``llmops_train.launch``. Errors are one line on stderr: ``llmops-train: error: <cause>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import exits

if TYPE_CHECKING:  # torch-free at import time: a bad manifest must fail fast
    from .config import RunConfig
    from .distributed import Dist
    from .loop import Inputs

PROG = "llmops-train"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Train the model a TrainingJob manifest describes.")
    p.add_argument("--job", type=Path, required=True, help="TrainingJob manifest (YAML)")
    p.add_argument("--output", help="override spec.output.location (directory, pvc:// or s3://)")
    p.add_argument("--checkpoint-dir", help="override $LLMOPS_CHECKPOINT_DIR (default /checkpoints)")
    p.add_argument("--max-steps", type=int, help="override spec.hyperparameters.maxSteps")
    p.add_argument("--device", choices=["cpu", "cuda", "xla", "auto"], default="auto")
    return p.parse_args(argv)


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and write a probe file: a read-only or missing mount fails now, not
    after the whole run."""
    from .config import InputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".llmops-probe-"):
            pass
    except OSError as e:
        raise InputError(f"{what} {folder} is not writable ({e.strerror or e})") from None


def check_outputs(cfg: RunConfig, d: Dist) -> None:
    """Every rank writes into the checkpoint folder; rank 0 also writes metrics and the export."""
    from llmops_core import storage

    check_writable(cfg.checkpoint_dir, "checkpoint folder")
    if not d.main:
        return
    check_writable(cfg.metrics_file.parent, "metrics folder")
    if storage.parse(cfg.output).scheme == "s3":
        if cfg.cache_dir is not None:  # the export is staged there before the upload
            check_writable(cfg.cache_dir, "cache folder")
    else:
        check_writable(storage.resolve(cfg.output).parent, f"output {cfg.output}: folder")


def locate_inputs(cfg: RunConfig, d: Dist) -> Inputs:
    """Resolve (download on rank 0 first) and check data and model before anything heavy."""
    from llmops_core import storage

    from . import distributed as D
    from .config import InputError
    from .data import check_nonempty
    from .loop import Inputs
    from .modeling import check_base_dir

    spec = cfg.spec

    def fetch(uri: str, what: str) -> Path:
        try:
            return storage.resolve(uri, cfg.cache_dir)
        except (FileNotFoundError, ValueError) as e:
            raise InputError(f"{what} {uri}: {e}") from None

    def resolve_all() -> tuple[Path, Path | None, Path | None]:
        train = fetch(spec.data.train, "data")
        val = fetch(spec.data.validation, "validation data") if spec.data.validation else None
        base = fetch(spec.model.base, "model") if spec.model.base else None
        return train, val, base

    if d.main:
        paths = resolve_all()
    D.barrier()
    if not d.main:
        paths = resolve_all()
    train, val, base = paths
    if base is not None:
        check_base_dir(base, spec.hyperparameters.sequence_length)
    return Inputs(
        train_files=check_nonempty(train, "training"),
        validation_files=check_nonempty(val, "validation") if val else None,
        base_dir=base,
    )


def fail(code: int, message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    exits.record(code, message)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    from .config import InputError, read_job, resolve

    d = None
    try:
        job = read_job(args.job)  # before importing torch: a bad manifest fails in well under a second
        import torch

        from . import distributed as D
        from .loop import TrainingFailed, run

        cfg = resolve(
            job,
            output=args.output,
            checkpoint_dir=args.checkpoint_dir,
            max_steps=args.max_steps,
            device=args.device,
            cuda_available=torch.cuda.is_available(),
        )
        d = D.init(cfg.device)
        if d.rank != 0:
            logging.getLogger().setLevel(logging.WARNING)
        check_outputs(cfg, d)
        inputs = locate_inputs(cfg, d)
        if run(cfg, inputs, d) == "Interrupted":
            exits.record(exits.PREEMPTED, f"SIGTERM: checkpoint written to {cfg.checkpoint_dir}")
            return exits.PREEMPTED
        return exits.SUCCEEDED
    except InputError as e:
        return fail(exits.BAD_INPUT, str(e))
    except TrainingFailed as e:
        return fail(exits.FAILED, str(e))
    except KeyboardInterrupt:
        return fail(130, "interrupted")
    except Exception as e:
        logging.getLogger(PROG).exception("unexpected failure")
        return fail(exits.FAILED, f"{type(e).__name__}: {e}".replace("\n", " "))
    finally:
        if d is not None:
            from . import distributed as D

            D.teardown()


def leave(code: int) -> NoReturn:
    """Exit with ``code``; under torchrun without finalizing the interpreter. A gloo worker thread can
    drop the last reference to a finished collective, freeing a Python-owned tensor, while Python
    finalizes; that thread cannot take the GIL then, and the process aborts (SIGABRT) after a run that
    succeeded, which torchrun reports as a failed worker (seen in CI; the cause traced with a core dump
    in the test probes, which leave the same way). Everything the run writes is closed by now."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(main())
