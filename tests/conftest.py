import json

import pytest

from gen.cli import main


def hardwire(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def generate(tmp_path):
    """Generate a design into tmp_path and return its directory and manifest."""
    def _generate(name="d", **opts):
        out = tmp_path / name
        args = ["matvec"]
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                args.append(flag)
            elif v is not False and v is not None:
                args += [flag, v]
        assert hardwire(*args, "--out", out) == 0
        return out, json.loads((out / "manifest.json").read_text())
    return _generate
