"""``python -m llmops_train.agent [torchrun arguments]``: torchrun, recording how each worker ended.

torchrun's own summary of a failed worker (its exit code, or the signal that killed it) is only
printed; the launcher needs it to tell an OOM kill (SIGKILL, retryable) from a crash (permanent). So
this runs ``torch.distributed.run`` unchanged (same arguments, same ``PET_*`` environment) and writes
its failures to ``$LLMOPS_AGENT_REPORT`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys

AGENT_REPORT_ENV = "LLMOPS_AGENT_REPORT"


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        print(e.format_msg(), file=sys.stderr)
        failures = [
            {"rank": rank, "exitcode": f.exitcode, "time": f.timestamp} for rank, f in e.failures.items()
        ]
        if report := os.environ.get(AGENT_REPORT_ENV):
            with open(report, "w", encoding="utf-8") as fh:
                json.dump({"failures": failures}, fh)
        return 1
    except SignalException as e:
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
