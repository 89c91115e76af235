"""Copies the built component into the wheel (``scim_provisioner_host/scim_provisioner.wasm``).

The ``.wasm`` is not checked in: it is built by ``cargo build -p host-example`` (or taken from
``$SCIM_PROVISIONER_WASM``), and building a wheel without it fails with what to run, rather
than shipping a package that cannot work. Everything else is in ``pyproject.toml``.
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUILT = HERE.parents[1] / "target" / "component" / "wasm32-wasip2" / "component" / "scim_provisioner.wasm"


class build_py_with_component(build_py):
    def run(self) -> None:
        super().run()
        source = Path(os.environ.get("SCIM_PROVISIONER_WASM") or BUILT)
        if not source.is_file():
            raise SystemExit(
                f"the component {source} is missing: build it first (cargo build -p host-example in the "
                "repository) or set SCIM_PROVISIONER_WASM to a built scim_provisioner.wasm")
        target = Path(self.build_lib) / "scim_provisioner_host" / "scim_provisioner.wasm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


setup(cmdclass={"build_py": build_py_with_component})
