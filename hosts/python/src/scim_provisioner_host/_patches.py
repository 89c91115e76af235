"""Two adjustments to wasmtime-py 50's value conversion, applied once when the package loads.

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
   results it returns in ``Ok(...)`` / ``Err(...)``, which these patches lower by their tag.
3. Type caching. wasmtime-py rebuilds a function's parameter and result types through the C
   API on every call, and re-reads each variant's cases (to decide tagged or untagged) for
   every value: most of a call's cost. Type objects are immutable, so their properties are
   memoized here, and ``call`` (used instead of ``Func.__call__``) reuses one export's types.
   Strings are copied into the C API with one ``memmove``.

4. Thread safety. wasmtime-py decides an untagged variant's case with a module-level scratch
   set, shared by all threads; ``_lower`` here uses a per-type cached tuple instead.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _types as T
from wasmtime.component._enter import enter_wasm

_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_KIND_OFFSET = ffi.wasmtime_component_val_t.kind.offset
_U8_OFFSET = ffi.wasmtime_component_val_t.of.offset + ffi.wasmtime_component_valunion_t.u8.offset
_U8_KIND = ffi.WASMTIME_COMPONENT_U8.value


@dataclass(frozen=True)
class Ok:
    """The ok case of a WIT result, lowered by tag."""

    value: Any = None


@dataclass(frozen=True)
class Err:
    """The err case of a WIT result, lowered by tag."""

    value: Any = None


_orig_list_to_c = T.ListType.convert_to_c
_orig_list_from_c = T.ListType.convert_from_c
_orig_result_to_c = T.ResultType.convert_to_c


def _list_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
    if not self._is_bytes():
        return _orig_list_to_c(self, store, val, ptr)
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


def _list_from_c(self: Any, c: Any) -> Any:
    if not self._is_bytes():
        return _orig_list_from_c(self, c)
    assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
    try:
        n = c.of.list.size
        if n == 0:
            return b""
        raw = ctypes.string_at(c.of.list.data, n * _VAL_SIZE)
        return raw[_U8_OFFSET::_VAL_SIZE]
    finally:
        ffi.wasmtime_component_valtuple_delete(ctypes.byref(c.of.tuple))


def _result_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
    if not isinstance(val, (Ok, Err)):
        return _orig_result_to_c(self, store, val, ptr)
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


def _memoize(cls: type, name: str) -> None:
    original = cls.__dict__[name]
    key = "_scimp_memo_" + name
    if isinstance(original, property):
        fget = original.fget

        def getter(self: Any) -> Any:
            d = self.__dict__
            if key not in d:
                d[key] = fget(self)  # type: ignore[misc]
            return d[key]

        setattr(cls, name, property(getter))
    else:
        def method(self: Any) -> Any:
            d = self.__dict__
            if key not in d:
                d[key] = original(self)
            return d[key]

        setattr(cls, name, method)


def call(func: Any, store: Any, types: tuple[list, Any], params: list, before: Any = None) -> Any:
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


def func_types(func: Any, store: Any) -> tuple[list, Any]:
    fty = func.type(store)
    return [ty for _, ty in fty.params], fty.result


def _case_classes(ty: Any) -> tuple:
    d = ty.__dict__
    classes = d.get("_scimp_case_classes")
    if classes is None:
        found: set = set()  # local: wasmtime-py's shared module-level set is not thread-safe
        ty.add_classes(found)
        classes = d["_scimp_case_classes"] = tuple(found)
    return classes


def _lower(self: Any, store: Any, val: Any) -> Any:
    """``VariantLikeType._lower`` without its module-level scratch set (two threads lowering
    untagged variants at once could read each other's classes) and with cached case classes."""
    tagged = self._tagged()
    if tagged and not isinstance(val, T.Variant):
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


def _bytes_to_capi(s: Any) -> Any:
    """``ffi.bytes_to_capi`` without the intermediate ctypes array copy."""
    if not isinstance(s, (bytes, bytearray)):
        raise TypeError("expected bytes or bytearray")
    vec = ffi.wasm_byte_vec_t()
    ffi.wasm_byte_vec_new_uninitialized(ctypes.byref(vec), len(s))
    if s:
        ctypes.memmove(vec.data, bytes(s), len(s))
    return vec


def apply() -> None:
    ffi.bytes_to_capi = _bytes_to_capi
    T.VariantLikeType._lower = _lower  # type: ignore[method-assign]
    for cls, names in ((T.VariantType, ("cases", "_tagged")), (T.OptionType, ("payload", "_tagged")),
                       (T.ResultType, ("ok", "err", "_tagged")), (T.RecordType, ("fields",)),
                       (T.ListType, ("element", "_is_bytes")), (T.TupleType, ("elements",)),
                       (T.EnumType, ("names",))):
        for name in names:
            if name in cls.__dict__:
                _memoize(cls, name)
            elif hasattr(cls, name):
                _memoize_inherited(cls, name)
    T.ListType.convert_to_c = _list_to_c  # type: ignore[method-assign]
    T.ListType.convert_from_c = _list_from_c  # type: ignore[method-assign]
    T.ResultType.convert_to_c = _result_to_c  # type: ignore[method-assign]



def _memoize_inherited(cls: type, name: str) -> None:
    original = getattr(cls, name)
    key = "_scimp_memo_" + name

    def method(self: Any) -> Any:
        d = self.__dict__
        if key not in d:
            d[key] = original(self)
        return d[key]

    setattr(cls, name, method)


apply()
