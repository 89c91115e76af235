"""One component instance serving one Connector or ScimServer: instantiation, export calls,
the imports it serves, and recovery after a trap."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import wasmtime
from wasmtime import component as C

from ._codec import call, func_types
from .errors import DeadlineExceeded, GuestTrap, MemoryLimitExceeded
from .runtime import Runtime, _current

# The component's `trace` level, below DEBUG. No `logging.addLevelName` here: naming a level is
# the application's choice (the records show as "Level 5" unless it names it).
TRACE = 5
LOGGER_NAME = "scim_provisioner_host"
_LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR}
_STDERR_KEEP = 16 * 1024


class RedactingLogger:
    """Writes to a ``logging.Logger``, replacing every secret with ``[redacted]``."""

    def __init__(self, logger: Optional[logging.Logger], secrets: Sequence[str] = ()) -> None:
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "[redacted]")
        return text

    def log(self, level: int, message: str) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", self.redact(message))

    def debug(self, message: str) -> None:
        self.log(logging.DEBUG, message)

    def info(self, message: str) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: str) -> None:
        self.log(logging.WARNING, message)

    def error(self, message: str) -> None:
        self.log(logging.ERROR, message)


class Session:
    """Base of Connector and ScimServer."""

    _interface: str
    _open_func: str

    def __init__(self, runtime: Runtime, logger: RedactingLogger) -> None:
        if not isinstance(runtime, Runtime):
            raise TypeError(f"expected a Runtime, not {type(runtime).__name__}")
        self.runtime = runtime
        self.logger = logger
        self._deadline_ticks = runtime.deadline_ticks
        self._store: Optional[wasmtime.Store] = None
        self._instance: Optional[C.Instance] = None
        self._iface: Any = None
        self._funcs: dict[str, C.Func] = {}
        self._handle: Optional[C.ResourceAny] = None
        self._stderr = bytearray()
        self.instances_opened = 0

    # -- to be provided by subclasses ----------------------------------------------

    def _open_args(self) -> list[Any]:
        raise NotImplementedError

    def _open_error(self, error: Any) -> Exception:
        raise NotImplementedError

    def _serve_http(self, request: Any) -> Any:
        raise NotImplementedError

    def _serve_directory(self, func: str, args: Sequence[Any]) -> Any:
        raise NotImplementedError

    # -- the instance --------------------------------------------------------------

    def _on_stderr(self, data: bytes) -> None:
        self._stderr += data
        if len(self._stderr) > _STDERR_KEEP:
            del self._stderr[: len(self._stderr) - _STDERR_KEEP]

    def _instantiate(self) -> None:
        rt = self.runtime
        store = wasmtime.Store(rt.engine)
        wasi = wasmtime.WasiConfig()
        wasi.stderr_custom = self._on_stderr
        store.set_wasi(wasi)
        store.set_limits(memory_size=rt.memory_limit_bytes)
        store.set_epoch_deadline(self._deadline_ticks)
        try:
            instance = rt.linker.instantiate(store, rt.component)
        except wasmtime.WasmtimeError as e:
            raise GuestTrap("instantiate", str(e)) from e
        self._store, self._instance = store, instance
        self._iface = instance.get_export_index(store, self._interface)
        self._funcs = {}
        self._stderr.clear()
        self.instances_opened += 1

    def _func(self, name: str) -> C.Func:
        f = self._funcs.get(name)
        if f is None:
            assert self._instance is not None and self._store is not None
            idx = self._instance.get_export_index(self._store, name, self._iface)
            f = self._instance.get_func(self._store, idx) if idx is not None else None
            if f is None:
                raise GuestTrap(name, f"the component exports no {self._interface}#{name}")
            self._funcs[name] = f
        return f

    def _ensure_open(self) -> None:
        if self._handle is not None:
            return
        self._instantiate()
        result = self._call(self._open_func, self._open_args())
        if isinstance(result, C.Variant):  # result<resource, provisioning-error> is untagged
            self._discard()
            raise self._open_error(result)
        self._handle = result

    def _discard(self) -> None:
        self._handle = None
        self._instance = None
        self._funcs = {}
        self._store = None

    def _call(self, name: str, args: list[Any]) -> Any:
        store = self._store
        assert store is not None
        func = self._func(name)
        previous = getattr(_current, "session", None)
        _current.session = self
        try:
            types = self.runtime._func_types.get(name)
            if types is None:
                types = self.runtime._func_types[name] = func_types(func, store)
            result = call(func, store, types, args, lambda: store.set_epoch_deadline(self._deadline_ticks))
            func.post_return(store)
            return result
        except wasmtime.WasmtimeError as e:
            trap = self._classify(name, e)
            self._discard()
            raise trap from e
        except BaseException:
            # A host function raised (or Ctrl-C): the instance is mid-call; never reuse it.
            self._discard()
            raise
        finally:
            _current.session = previous

    def _classify(self, name: str, e: Exception) -> GuestTrap:
        message = str(e)
        stderr = self._stderr.decode("utf-8", "replace")
        if stderr.strip():
            self.logger.error(f"guest stderr before the trap in {name}: {stderr.strip()[-2000:]}")
        if "interrupt" in message:
            return DeadlineExceeded(name, f"the guest ran longer than {self.runtime.deadline_ms} ms without a host answer")
        if "memory allocation" in stderr or "out of memory" in message.lower():
            return MemoryLimitExceeded(
                name, f"the guest needed more than the memory limit of {self.runtime.memory_limit_bytes} bytes")
        lines = [l.strip() for l in message.splitlines() if l.strip()]
        cause = next((l for l in lines if l.startswith("wasm trap")), lines[0] if lines else "trap")
        return GuestTrap(name, cause)

    def _invoke(self, name: str, args: list[Any]) -> Any:
        """Calls a method of the open resource, opening (again) first when needed."""
        self._ensure_open()
        return self._call(name, [self._handle, *args])

    def _serve_log(self, level: str, message: str) -> None:
        self.logger.log(_LEVELS.get(level, logging.INFO), message)

    def close(self) -> None:
        """Drops the instance (a later call would open a new one)."""
        if self._handle is not None and self._store is not None:
            try:
                self._handle.drop(self._store)
            except wasmtime.WasmtimeError:
                pass
        self._discard()
