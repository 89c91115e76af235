"""The engine, the compiled component (compiled once, cached on disk) and the linker."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import warnings
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, Optional, Union

import wasmtime
from wasmtime import component as C

from ._codec import add_func
from .errors import HostSetupError

HTTP = "scim:provisioner/http-client@0.1.0"
LOGGING = "scim:provisioner/logging@0.1.0"
DIRECTORY = "scim:provisioner/directory@0.1.0"
CLIENT = "scim:provisioner/client@0.1.0"
SERVER = "scim:provisioner/server@0.1.0"
SELECTION = "scim:provisioner/selection@0.1.0"
DIRECTORY_FUNCS = ("get", "query", "create", "replace", "delete")

DEFAULT_WASM = "target/component/wasm32-wasip2/component/scim_provisioner.wasm"
TICK_MS = 10

_current = threading.local()


def _repo_root() -> Optional[Path]:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "wit" / "world.wit").is_file() and (parent / "Cargo.toml").is_file():
            return parent
    return None


PACKAGED_WASM = "scim_provisioner.wasm"


def packaged_wasm_path() -> Optional[Path]:
    """The component the wheel carries (copied in when the wheel is built), if any."""
    try:
        resource = resources.files(__package__ or "scim_provisioner_host") / PACKAGED_WASM
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - an unusual loader
        return None
    # An installed wheel is files on disk; a zipped install would need resources.as_file().
    return resource if isinstance(resource, Path) and resource.is_file() else None


def default_wasm_path() -> Path:
    """``$SCIM_PROVISIONER_WASM``, else the component inside the installed package, else the
    repository's build output (a source checkout)."""
    env = os.environ.get("SCIM_PROVISIONER_WASM")
    if env:
        return Path(env)
    packaged = packaged_wasm_path()
    if packaged is not None:
        return packaged
    root = _repo_root()
    return (root / DEFAULT_WASM) if root else Path(DEFAULT_WASM)


def wasmtime_version() -> str:
    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # pragma: no cover - vendored installs
        return "unknown"


class _Ticker:
    """Advances the engine's epoch every TICK_MS while any Runtime lives (daemon thread)."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scim-provisioner-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK_MS / 1000):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()


def _dispatch(fn: Callable[..., Any], renews_deadline: bool = True) -> Callable[..., Any]:
    """A host function: finds the session running on this thread, and after the host's answer
    (HTTP, directory; not a log line) gives the guest a fresh deadline: the deadline bounds
    guest time between two host answers."""

    def host_func(store: Any, *args: Any) -> Any:
        session = getattr(_current, "session", None)
        if session is None:
            raise HostSetupError("a host function was called outside any export call")
        result = fn(session, *args)
        if renews_deadline:
            wasmtime._ffi.wasmtime_context_set_epoch_deadline(store._context(), session._deadline_ticks)
        return result

    return host_func


def default_cache_dir() -> str:
    """The per-user compile cache: ``$XDG_CACHE_HOME/scim-provisioner`` or ``~/.cache/scim-provisioner``."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "scim-provisioner")


def _private_folder(path: Path) -> Optional[str]:
    """Creates ``path`` 0700 when missing; why it is not private to this user, or None."""
    try:
        if not path.exists() and not path.is_symlink():
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        link = path.lstat()
        uid = os.geteuid()
        if path.is_symlink() and link.st_uid != uid:
            return f"it is a symbolic link owned by user {link.st_uid}, not by this user ({uid})"
        st = path.stat()
    except OSError as e:
        return f"it cannot be created or read: {e.strerror or e}"
    if not os.path.isdir(path):
        return "it is not a folder"
    if st.st_uid != uid:
        return f"it belongs to user {st.st_uid}, not to this user ({uid}); another user may have created it first"
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("its group", 0o020), ("other users", 0o002)) if st.st_mode & bit)
        return f"it is writable by {who} (mode {st.st_mode & 0o7777:04o}); make it private with chmod 700"
    return None


class Runtime:
    """Loads the component once, and holds the engine, the linker and the compile cache.

    ``wasm``: the component (default ``$SCIM_PROVISIONER_WASM``, else the one the installed
    package carries, else the repository's build output). ``cache_dir``: where the compiled artefact is kept (default
    ``$SCIM_PROVISIONER_CACHE``, else ``$XDG_CACHE_HOME/scim-provisioner`` or
    ``~/.cache/scim-provisioner``; ``None`` disables it); the cache key is the .wasm's SHA-256
    and the wasmtime version. The artefact is native code that is mapped and run, so the folder
    is created 0700, and one that another user owns or others can write is not used: the
    component is compiled in memory instead, with a ``RuntimeWarning`` (``cache_problem``
    says why). ``memory_limit_bytes``:
    the most linear memory one instance may use (default 512 MiB). ``deadline_ms``: the most
    guest time between two host answers (default 10 s).
    """

    def __init__(
        self,
        wasm: Union[str, os.PathLike[str], None] = None,
        *,
        cache_dir: Union[str, os.PathLike[str], None, bool] = True,
        memory_limit_bytes: int = 512 * 1024 * 1024,
        deadline_ms: int = 10_000,
    ) -> None:
        path = Path(wasm) if wasm is not None else default_wasm_path()
        if not path.is_file():
            raise HostSetupError(
                f"the component {path} does not exist: build it (cargo build -p host-example, or "
                f"cargo build --release --target wasm32-wasip2 -p scim-provisioner) or set SCIM_PROVISIONER_WASM"
            )
        if memory_limit_bytes < 1024 * 1024:
            raise HostSetupError("memory_limit_bytes must be at least 1 MiB")
        if deadline_ms < 1:
            raise HostSetupError("deadline_ms must be at least 1")
        self.wasm_path = path
        self.memory_limit_bytes = memory_limit_bytes
        self.deadline_ms = deadline_ms
        # One tick more than the deadline: a tick may come right after the deadline is set.
        self.deadline_ticks = max(1, -(-deadline_ms // TICK_MS)) + 1
        wasm_bytes = path.read_bytes()
        self.wasm_sha256 = hashlib.sha256(wasm_bytes).hexdigest()
        self.wasmtime_version = wasmtime_version()

        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)

        if cache_dir is True:
            cache_dir = os.environ.get("SCIM_PROVISIONER_CACHE") or default_cache_dir()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache_problem: Optional[str] = None
        if self.cache_dir is not None:
            self.cache_problem = _private_folder(self.cache_dir)
            if self.cache_problem is not None:
                warnings.warn(
                    f"the compile cache {self.cache_dir} is not used ({self.cache_problem}); "
                    "the component is compiled in memory instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.cache_dir = None
        self.loaded_from_cache = False
        started = time.perf_counter()
        self.component = self._load(wasm_bytes)
        self.load_seconds = time.perf_counter() - started

        self.linker = C.Linker(self.engine)
        self.linker.add_wasip2()
        self._define_imports()
        self._func_types: dict[str, Any] = {}
        self._ticker = _Ticker(self.engine)

    # -- compile cache -------------------------------------------------------------

    def cache_path(self) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"scim_provisioner-{self.wasm_sha256[:32]}-wasmtime-{self.wasmtime_version}.cwasm"

    def _load(self, wasm_bytes: bytes) -> C.Component:
        cached = self.cache_path()
        if cached is not None and cached.is_file():
            try:
                component = C.Component.deserialize(self.engine, cached.read_bytes())
                self.loaded_from_cache = True
                return component
            except wasmtime.WasmtimeError:
                pass  # stale or from another engine configuration: compile again
        try:
            component = C.Component(self.engine, wasm_bytes)
        except wasmtime.WasmtimeError as e:
            raise HostSetupError(f"{self.wasm_path} is not a loadable component: {e}") from e
        if cached is not None:
            try:
                fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".cwasm-")
                with os.fdopen(fd, "wb") as f:
                    f.write(component.serialize())
                os.replace(tmp, cached)  # atomic: concurrent processes never read half a file
            except OSError:
                pass  # a read-only cache directory only costs the next process a compile
        return component

    # -- imports -------------------------------------------------------------------

    def _define_imports(self) -> None:
        with self.linker.root() as root:
            with root.add_instance(HTTP) as i:
                add_func(i, "send", _dispatch(lambda s, req: s._serve_http(req)))
            with root.add_instance(LOGGING) as i:
                add_func(i, "log", _dispatch(lambda s, level, msg: s._serve_log(level, msg), renews_deadline=False))
            with root.add_instance(DIRECTORY) as i:
                for name in DIRECTORY_FUNCS:
                    add_func(i, name, _dispatch(lambda s, *a, name=name: s._serve_directory(name, a)))

    def info(self) -> dict[str, Any]:
        return {
            "wasm": str(self.wasm_path),
            "wasm_sha256": self.wasm_sha256,
            "wasmtime": self.wasmtime_version,
            "cache": str(self.cache_path()) if self.cache_path() else None,
            "loaded_from_cache": self.loaded_from_cache,
            "load_seconds": self.load_seconds,
            "memory_limit_bytes": self.memory_limit_bytes,
            "deadline_ms": self.deadline_ms,
        }

    def close(self) -> None:
        self._ticker.stop()

    def __del__(self) -> None:
        ticker = getattr(self, "_ticker", None)
        if ticker is not None:
            ticker.stop()
