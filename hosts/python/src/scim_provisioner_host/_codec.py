"""Our own value conversion on top of wasmtime-py's, for this package's objects only.

wasmtime-py (50.x and 51.x alike: their ``wasmtime.component`` Python code is identical)
converts component values with methods of its type classes. Four of those do not serve this
host, and nothing here changes wasmtime-py itself: every type object this package calls with
is re-classed (``localize``) into a subclass defined below, so other wasmtime users in the
process keep wasmtime-py's behaviour, and the package never assigns to a wasmtime attribute.

1. ``list<u8>`` fast path. wasmtime-py lowers and lifts a ``list<u8>`` one element at a time
   through Python (each byte a 32-byte ``wasmtime_component_val_t``), about a second per MiB.
   Here the element array is filled and read with strided byte slices and one ``memmove``:
   the same C structures, built at C speed.
2. Explicit ``Ok`` / ``Err`` for results. A ``result`` whose ok and err types have different
   Python classes is *untagged*: the value is lowered as the first case whose class matches.
   For ``result<option<stored-resource>, directory-error>`` (``directory.get``) the ok case's
   classes include ``object`` (for ``none``), so *every* value, an error ``Variant`` included,
   is taken as ``ok`` and then fails with "value not valid for this variant": an untagged
   result whose ok type is an option cannot carry an error. The host therefore wraps the
   results it returns in ``Ok(...)`` / ``Err(...)``, which ``_Result`` lowers by their tag.
3. Type caching. wasmtime-py rebuilds a function's parameter and result types through the C
   API on every call, and re-reads each variant's cases (to decide tagged or untagged) for
   every value: most of a call's cost. Type objects are immutable, so the subclasses memoize
   their properties, ``call`` (used instead of ``Func.__call__``) reuses one export's types,
   and ``add_func`` (used instead of ``LinkerInstance.add_func``) one import's. Strings are
   copied into the C API with one ``memmove``.
4. Thread safety. wasmtime-py decides an untagged variant's case with a module-level scratch
   set, shared by all threads; ``_lower`` here uses a per-type cached tuple instead.

What this relies on of wasmtime-py's private modules (``_ffi``, ``component._types``,
``component._enter``) is pinned by the dependency range in ``pyproject.toml``, which is the
range the tests run on.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from wasmtime import _ffi as ffi
from wasmtime.component import LinkerInstance, Variant
from wasmtime.component import _types as T
from wasmtime.component._enter import catch_exceptions, enter_wasm

_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_KIND_OFFSET = ffi.wasmtime_component_val_t.kind.offset
_U8_OFFSET = ffi.wasmtime_component_val_t.of.offset + ffi.wasmtime_component_valunion_t.u8.offset  # type: ignore[attr-defined]
_U8_KIND = ffi.WASMTIME_COMPONENT_U8.value

FuncTypes = tuple[list[Any], Any]


@dataclass(frozen=True)
class Ok:
    """The ok case of a WIT result, lowered by tag."""

    value: Any = None


@dataclass(frozen=True)
class Err:
    """The err case of a WIT result, lowered by tag."""

    value: Any = None


def _str_to_capi(s: Any) -> Any:
    """``ffi.str_to_capi`` without the intermediate ctypes array copy."""
    if not isinstance(s, str):
        raise TypeError("expected a string")
    data = s.encode("utf-8")
    vec = ffi.wasm_byte_vec_t()
    ffi.wasm_byte_vec_new_uninitialized(ctypes.byref(vec), len(data))
    if data:
        ctypes.memmove(vec.data, data, len(data))
    return vec


def _memo(obj: Any, key: str, make: Callable[[], Any]) -> Any:
    d = obj.__dict__
    try:
        return d[key]
    except KeyError:
        value = d[key] = make()
        return value


class _String(T.String):
    def convert_to_c(self, store: Any, val: Any, ptr: Any) -> None:
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_STRING
        ptr.contents.of.string = _str_to_capi(val)


class _List(T.ListType):
    @property
    def element(self) -> Any:
        return _memo(self, "_scimp_element", lambda: localize(T.ListType.element.fget(self)))  # type: ignore[attr-defined]

    def _is_bytes(self) -> bool:
        return bool(_memo(self, "_scimp_is_bytes", lambda: isinstance(self.element, T.U8)))

    def add_classes(self, s: set[type]) -> None:
        s.add(bytes if self._is_bytes() else list)

    def convert_to_c(self, store: Any, val: Any, ptr: Any) -> None:
        if not self._is_bytes():
            return super().convert_to_c(store, val, ptr)
        if isinstance(val, (bytearray, memoryview)):
            val = bytes(val)
        if not isinstance(val, bytes):
            raise TypeError("expected bytes value")
        n = len(val)
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            buf = bytearray(n * _VAL_SIZE)
            buf[_KIND_OFFSET::_VAL_SIZE] = bytes([_U8_KIND]) * n
            buf[_U8_OFFSET::_VAL_SIZE] = val
            ctypes.memmove(raw.data, (ctypes.c_char * len(buf)).from_buffer(buf), len(buf))
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
        ptr.contents.of.list = raw

    def convert_from_c(self, c: Any) -> Any:
        if not self._is_bytes():
            return super().convert_from_c(c)
        if c.kind != ffi.WASMTIME_COMPONENT_LIST.value:
            raise TypeError("expected a list value")
        try:
            n = c.of.list.size
            if n == 0:
                return b""
            raw = ctypes.string_at(c.of.list.data, n * _VAL_SIZE)
            return raw[_U8_OFFSET::_VAL_SIZE]
        finally:
            ffi.wasmtime_component_valtuple_delete(ctypes.byref(c.of.tuple))


class _Record(T.RecordType):
    @property
    def fields(self) -> list[tuple[str, Any]]:
        return _memo(self, "_scimp_fields",  # type: ignore[no-any-return]
                     lambda: [(n, localize(t)) for n, t in T.RecordType.fields.fget(self)])  # type: ignore[attr-defined]


class _Tuple(T.TupleType):
    @property
    def elements(self) -> list[Any]:
        return _memo(self, "_scimp_elements",  # type: ignore[no-any-return]
                     lambda: [localize(t) for t in T.TupleType.elements.fget(self)])  # type: ignore[attr-defined]


class _Enum(T.EnumType):
    @property
    def names(self) -> list[str]:
        return _memo(self, "_scimp_names", lambda: T.EnumType.names.fget(self))  # type: ignore[attr-defined,no-any-return]


class _VariantLike(T.VariantLikeType):
    """Cached tagged/untagged decision and case classes, and a thread-safe ``_lower``. Not a
    base of the classes below (a mixin ahead of wasmtime's class makes ``__class__``
    assignment refuse the object's layout): they take these methods by assignment."""

    def add_classes(self: Any, s: set[type]) -> None:
        s.update(self._classes())

    def _classes(self: Any) -> tuple[type, ...]:
        def make() -> tuple[type, ...]:
            found: set[type] = set()
            if self._tagged():
                found.add(Variant)
            else:
                for _, ty in self._cases():
                    if ty is None:
                        found.add(object)
                    else:
                        ty.add_classes(found)
            return tuple(found)

        return _memo(self, "_scimp_classes", make)  # type: ignore[no-any-return]

    def _tagged(self: Any) -> bool:
        def make() -> bool:
            seen: set[type] = set()
            for _, ty in self._cases():
                case: set[type] = set()
                if ty is None:
                    case.add(object)
                else:
                    ty.add_classes(case)
                if case & seen:
                    return True
                seen |= case
            return False

        return bool(_memo(self, "_scimp_tagged", make))

    def _lower(self: Any, store: Any, val: Any) -> tuple[str, Any]:
        tagged = self._tagged()
        if tagged and not isinstance(val, Variant):
            raise TypeError("expected Variant type")
        for name, ty in self._cases():
            if tagged:
                if name != val.tag:
                    continue
            elif ty is None:
                if val is not None:
                    continue
            elif not isinstance(val, _case_classes(ty)):
                continue
            if ty is None:
                return (name, None)
            raw = ffi.wasmtime_component_val_t()
            ty.convert_to_c(store, val.payload if tagged else val, ctypes.pointer(raw))
            return (name, ffi.wasmtime_component_val_new(ctypes.byref(raw)))
        raise ValueError("value not valid for this variant")


def _case_classes(ty: Any) -> tuple[type, ...]:
    """The Python classes one case's type accepts, computed once per (immutable) type."""
    if isinstance(ty, (_Variant, _Option, _Result)):
        return ty._classes()

    def make() -> tuple[type, ...]:
        found: set[type] = set()  # local: wasmtime-py's module-level scratch set is shared by threads
        ty.add_classes(found)
        return tuple(found)

    return _memo(ty, "_scimp_case_classes", make)  # type: ignore[no-any-return]


class _Variant(T.VariantType):
    add_classes = _VariantLike.add_classes
    _classes = _VariantLike._classes
    _tagged = _VariantLike._tagged
    _lower = _VariantLike._lower

    @property
    def cases(self) -> list[tuple[str, Optional[Any]]]:
        return _memo(self, "_scimp_cases",  # type: ignore[no-any-return]
                     lambda: [(n, None if t is None else localize(t))
                              for n, t in T.VariantType.cases.fget(self)])  # type: ignore[attr-defined]

    def _cases(self) -> list[tuple[str, Optional[Any]]]:
        return self.cases

    def convert_to_c(self, store: Any, val: Any, ptr: Any) -> None:
        name, raw = self._lower(store, val)
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_VARIANT
        ptr.contents.of.variant.discriminant = _str_to_capi(name)
        ptr.contents.of.variant.val = raw


class _Option(T.OptionType):
    add_classes = _VariantLike.add_classes
    _classes = _VariantLike._classes
    _tagged = _VariantLike._tagged
    _lower = _VariantLike._lower

    @property
    def payload(self) -> Any:
        return _memo(self, "_scimp_payload", lambda: localize(T.OptionType.payload.fget(self)))  # type: ignore[attr-defined]

    def _cases(self) -> list[tuple[str, Optional[Any]]]:
        return _memo(self, "_scimp_cases", lambda: [("none", None), ("some", self.payload)])  # type: ignore[no-any-return]


class _Result(T.ResultType):
    add_classes = _VariantLike.add_classes
    _classes = _VariantLike._classes
    _tagged = _VariantLike._tagged
    _lower = _VariantLike._lower

    @property
    def ok(self) -> Optional[Any]:
        return _memo(self, "_scimp_ok", lambda: _localize_opt(T.ResultType.ok.fget(self)))  # type: ignore[attr-defined]

    @property
    def err(self) -> Optional[Any]:
        return _memo(self, "_scimp_err", lambda: _localize_opt(T.ResultType.err.fget(self)))  # type: ignore[attr-defined]

    def _cases(self) -> list[tuple[str, Optional[Any]]]:
        return _memo(self, "_scimp_cases", lambda: [("ok", self.ok), ("err", self.err)])  # type: ignore[no-any-return]

    def convert_to_c(self, store: Any, val: Any, ptr: Any) -> None:
        if not isinstance(val, (Ok, Err)):
            return super().convert_to_c(store, val, ptr)
        is_ok = isinstance(val, Ok)
        ty = self.ok if is_ok else self.err
        raw_ptr = None
        if ty is not None:
            raw = ffi.wasmtime_component_val_t()
            ty.convert_to_c(store, val.value, ctypes.pointer(raw))
            raw_ptr = ffi.wasmtime_component_val_new(ctypes.byref(raw))
        elif val.value is not None:
            raise ValueError("this result case carries no value")
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_RESULT
        ptr.contents.of.result.is_ok = is_ok
        ptr.contents.of.result.val = raw_ptr


_LOCAL: dict[type, type] = {
    T.String: _String, T.ListType: _List, T.RecordType: _Record, T.TupleType: _Tuple,
    T.EnumType: _Enum, T.VariantType: _Variant, T.OptionType: _Option, T.ResultType: _Result,
}


def localize(ty: Any) -> Any:
    """Re-classes a type object that wasmtime-py made for us (``valtype_from_ptr`` builds a new
    one on every query, so no one else holds it) as this module's subclass of its class."""
    local = _LOCAL.get(type(ty))
    if local is not None:
        ty.__class__ = local
    return ty


def _localize_opt(ty: Optional[Any]) -> Optional[Any]:
    return None if ty is None else localize(ty)


def func_types(func: Any, store: Any) -> FuncTypes:
    """An export's parameter and result types, localized (cache them per export)."""
    fty = func.type(store)
    return [localize(ty) for _, ty in fty.params], _localize_opt(fty.result)


def call(func: Any, store: Any, types: FuncTypes, params: Sequence[Any],
         before: Optional[Callable[[], None]] = None) -> Any:
    """``Func.__call__`` with the function's types given (cached by the caller)."""
    param_tys, result_ty = types
    if len(params) != len(param_tys):
        raise TypeError(f"wrong number of parameters provided: given {len(params)}, expected {len(param_tys)}")
    param_capi = (ffi.wasmtime_component_val_t * len(params))()
    n = 0
    try:
        for ty, val in zip(param_tys, params):
            ty.convert_to_c(store, val, ctypes.pointer(param_capi[n]))
            n += 1
        result_space = ffi.wasmtime_component_val_t() if result_ty is not None else None
        result_capi = ctypes.byref(result_space) if result_space is not None else None

        def run() -> Any:
            if before is not None:
                before()  # e.g. the deadline, set after the Python-side lowering
            return ffi.wasmtime_component_func_call(ctypes.byref(func._func), store._context(), param_capi, n,
                                                    result_capi, 1 if result_space is not None else 0)

        enter_wasm(run)
        if result_space is None:
            return None
        return result_ty.convert_from_c(result_space)
    finally:
        for i in range(n):
            ffi.wasmtime_component_val_delete(ctypes.byref(param_capi[i]))


# -- imports: wasmtime-py's LinkerInstance.add_func, with localized and cached types --------

HostFunc = Callable[..., Any]


class _Import:
    __slots__ = ("func", "types")

    def __init__(self, func: HostFunc) -> None:
        self.func = func
        self.types: Optional[FuncTypes] = None


_imports: dict[int, _Import] = {}
_imports_lock = threading.Lock()
_next_import = 1


def add_func(instance: LinkerInstance, name: str, func: HostFunc) -> None:
    """Defines the host function ``name`` in a linker instance, like ``LinkerInstance.add_func``
    (``func(store, *params)``), but lowering and lifting through this module's types, which are
    read once per import rather than on every call."""
    global _next_import
    with _imports_lock:
        idx = _next_import
        _next_import += 1
        _imports[idx] = _Import(func)
    name_bytes = name.encode("utf-8")
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(name_bytes), len(name_bytes), _import_trampoline,
        idx, _import_finalize)
    if err:
        with _imports_lock:
            _imports.pop(idx, None)
        from wasmtime import WasmtimeError

        raise WasmtimeError._from_ptr(err)


def _run_import(idx: int, ty_raw: Any, args: Any, nargs: int, results: Any, nresults: int, store: Any) -> None:
    entry = _imports[idx]
    types = entry.types
    if types is None:
        with T.FuncType._from_ptr(ty_raw, owner=store) as fty:
            types = entry.types = ([localize(ty) for _, ty in fty.params], _localize_opt(fty.result))
    param_tys, result_ty = types
    if len(param_tys) != nargs or nresults != (0 if result_ty is None else 1):
        raise TypeError("the import's signature does not match its type")
    pyargs = [ty.convert_from_c(args[i]) for i, ty in enumerate(param_tys)]
    result = entry.func(store, *pyargs)
    if result_ty is None:
        if result is not None:
            raise TypeError("this import returns nothing")
    else:
        result_ty.convert_to_c(store, result, results)


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _import_trampoline(idx: Any, context: Any, ty_raw: Any, args: Any, nargs: Any, results: Any, nresults: Any) -> Any:
    return catch_exceptions(context, lambda store: _run_import(idx or 0, ty_raw, args, nargs, results, nresults, store))


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _import_finalize(idx: Any) -> None:
    with _imports_lock:
        _imports.pop(idx or 0, None)
