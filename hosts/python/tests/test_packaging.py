"""The package as a library: importing and using it changes nothing global (wasmtime-py's
classes and functions, logging's level names and handlers), and its logger is named after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

CHECK = r'''
import logging, sys
import wasmtime
from wasmtime import _ffi
from wasmtime.component import _linker, _types

def snapshot():
    classes = {name: dict(vars(cls)) for name, cls in vars(_types).items() if isinstance(cls, type)}
    return (classes, dict(vars(_ffi)), dict(vars(_linker)), dict(logging._levelToName),
            list(logging.getLogger().handlers), logging.getLogger().level)

before = snapshot()
import scim_provisioner_host as h
from scim_provisioner_host import CmsUser, Connector, Runtime
after_import = snapshot()
runtime = Runtime(cache_dir=None)
connector = Connector.open(runtime, {"base_url": "https://scim.example/v2", "token": "t"})
mapped = connector.map_user(CmsUser("1", {"name": "alice", "mail": "alice@example.com"}, active=True))
assert mapped["userName"] == "alice", mapped
after_use = snapshot()
for label, snap in (("import", after_import), ("use", after_use)):
    for i, what in enumerate(("wasmtime.component._types classes", "wasmtime._ffi", "wasmtime.component._linker",
                              "logging level names", "root handlers", "root level")):
        if snap[i] != before[i]:
            print(f"{what} changed at {label}")
            sys.exit(1)
logger = logging.getLogger("scim_provisioner_host")
assert any(isinstance(x, logging.NullHandler) for x in logger.handlers), logger.handlers
assert logger.level == logging.NOTSET and logger.propagate
print("unchanged")
'''


def test_import_and_use_change_nothing_global() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "hosts" / "python" / "src"))
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("unchanged"), out.stdout + out.stderr


def test_the_package_logs_under_its_own_name(caplog) -> None:
    import logging

    from scim_provisioner_host import CmsUser, Connector, Runtime

    from conftest import free_port
    from scim_provisioner_host import ProvisioningError

    with caplog.at_level(logging.DEBUG, logger="scim_provisioner_host"):
        runtime = Runtime(cache_dir=None)
        # Nothing listens there: the transport and the component log the refused connection.
        connector = Connector.open(runtime, {"base_url": f"http://127.0.0.1:{free_port()}/v2", "token": "t"})
        try:
            connector.test_connection()
        except ProvisioningError:
            pass
        runtime.close()
    names = {r.name for r in caplog.records}
    assert names == {"scim_provisioner_host"}, names
