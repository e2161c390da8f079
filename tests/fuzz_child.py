"""Run ``hardwire`` once per case inside one process whose address space is capped
(``RLIMIT_AS``), so that no crafted header can make the reader allocate gigabytes: a
``MemoryError`` shows up as a traceback, which the fuzz test counts as a failure.

``python -m tests.fuzz_child CASES.json LIMIT_BYTES`` reads ``[{"args": [...]}, ...]`` (or
``{"alloc": N}``, which allocates N bytes: the check that the cap holds) and prints one JSON
line per case: ``{"code": exit code, "err": stderr, "traceback": text or
null}``.
"""

import contextlib
import io
import json
import resource
import sys
import traceback


def main(cases_path: str, limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from gen.cli import main as hardwire

    for case in json.loads(open(cases_path).read()):
        err, tb, code = io.StringIO(), None, None
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                if "alloc" in case:
                    bytearray(case["alloc"])
                code = 0 if "alloc" in case else hardwire(case["args"])
        except BaseException:  # noqa: BLE001 - every escape is what the test looks for
            tb = traceback.format_exc()
        print(json.dumps({"code": code, "err": err.getvalue(), "traceback": tb}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
