//! The C ABI (`include/scim_bridge.h`). This module only converts: C strings in, JSON
//! strings out, and no panic ever crosses the boundary.

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::instance::Instance;
use crate::runtime::{Options, Runtime};

/// What `scimp_runtime_new` hands out.
pub struct RuntimeHandle(Arc<Runtime>);

/// A JSON value as a C string the caller frees with `scimp_string_free`.
fn out(value: &Value) -> *mut c_char {
    // serde_json escapes U+0000, so the text holds no NUL byte.
    CString::new(value.to_string()).map_or(std::ptr::null_mut(), CString::into_raw)
}

fn set_error(error_out: *mut *mut c_char, message: &str) {
    if !error_out.is_null() {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller passed a valid pointer to a `char *` (or null, checked above).
        unsafe { *error_out = text.into_raw() };
    }
}

/// # Safety
/// `ptr` is null or points to `len` readable bytes.
unsafe fn json_arg(ptr: *const c_char, len: usize) -> Result<Value, String> {
    if ptr.is_null() {
        return Err("null request".into());
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    serde_json::from_slice(bytes).map_err(|e| format!("the request is not JSON: {e}"))
}

fn guarded(f: impl FnOnce() -> Value) -> *mut c_char {
    let value = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        json!({"step": "error", "message": "the bridge failed internally (a bug); the call was abandoned"})
    });
    out(&value)
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `wasm_path` is a NUL-terminated string; `options_json` is null or one; `error_out` is
/// null or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_runtime_new(
    wasm_path: *const c_char,
    options_json: *const c_char,
    error_out: *mut *mut c_char,
) -> *mut RuntimeHandle {
    let made = catch_unwind(AssertUnwindSafe(|| -> Result<RuntimeHandle, String> {
        if wasm_path.is_null() {
            return Err("no component path given".into());
        }
        // SAFETY: the caller passes NUL-terminated strings.
        let path = unsafe { CStr::from_ptr(wasm_path) }
            .to_str()
            .map_err(|_| "the component path is not UTF-8".to_string())?;
        let options = if options_json.is_null() {
            Options::default()
        } else {
            // SAFETY: as above.
            let text = unsafe { CStr::from_ptr(options_json) }.to_bytes();
            let json: Value = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(text)
                    .map_err(|e| format!("the options are not JSON: {e}"))?
            };
            Options::from_json(&json).map_err(|e| format!("{e:#}"))?
        };
        Runtime::new(Path::new(path), options)
            .map(|r| RuntimeHandle(Arc::new(r)))
            .map_err(|e| format!("{e:#}"))
    }));
    match made {
        Ok(Ok(handle)) => Box::into_raw(Box::new(handle)),
        Ok(Err(message)) => {
            set_error(error_out, &message);
            std::ptr::null_mut()
        }
        Err(_) => {
            set_error(error_out, "the bridge failed internally while loading");
            std::ptr::null_mut()
        }
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `runtime` is null or came from `scimp_runtime_new` and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_runtime_info(runtime: *const RuntimeHandle) -> *mut c_char {
    // SAFETY: per the contract above.
    match unsafe { runtime.as_ref() } {
        Some(r) => out(r.0.info()),
        None => out(&json!({"error": "null runtime"})),
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `runtime` is null or came from `scimp_runtime_new` and was not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_runtime_free(runtime: *mut RuntimeHandle) {
    if !runtime.is_null() {
        // SAFETY: per the contract above; instances keep their own reference.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(runtime) })));
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `runtime` is null or a live runtime; `error_out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_instance_new(
    runtime: *const RuntimeHandle,
    error_out: *mut *mut c_char,
) -> *mut Instance {
    // SAFETY: per the contract above.
    let Some(runtime) = (unsafe { runtime.as_ref() }) else {
        set_error(error_out, "null runtime");
        return std::ptr::null_mut();
    };
    match catch_unwind(AssertUnwindSafe(|| Instance::new(runtime.0.clone()))) {
        Ok(Ok(instance)) => Box::into_raw(Box::new(instance)),
        Ok(Err(e)) => {
            set_error(error_out, &format!("{e:#}"));
            std::ptr::null_mut()
        }
        Err(_) => {
            set_error(
                error_out,
                "the bridge failed internally while instantiating",
            );
            std::ptr::null_mut()
        }
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `instance` is null or came from `scimp_instance_new` and was not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_instance_free(instance: *mut Instance) {
    if !instance.is_null() {
        // SAFETY: per the contract above.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            drop(unsafe { Box::from_raw(instance) })
        }));
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `instance` is null or a live instance; `request` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_call(
    instance: *mut Instance,
    request: *const c_char,
    len: usize,
) -> *mut c_char {
    // SAFETY: per the contract above.
    let Some(instance) = (unsafe { instance.as_mut() }) else {
        return out(&json!({"step": "error", "message": "null instance"}));
    };
    // SAFETY: per the contract above.
    match unsafe { json_arg(request, len) } {
        Ok(request) => guarded(|| instance.call(&request)),
        Err(m) => out(&json!({"step": "error", "message": m})),
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `instance` is null or a live instance; `answer` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_resume(
    instance: *mut Instance,
    answer: *const c_char,
    len: usize,
) -> *mut c_char {
    // SAFETY: per the contract above.
    let Some(instance) = (unsafe { instance.as_mut() }) else {
        return out(&json!({"step": "error", "message": "null instance"}));
    };
    // SAFETY: per the contract above.
    match unsafe { json_arg(answer, len) } {
        Ok(answer) => guarded(|| instance.resume(answer)),
        Err(m) => out(&json!({"step": "error", "message": m})),
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `request` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_select(request: *const c_char, len: usize) -> *mut c_char {
    // SAFETY: per the contract above.
    match unsafe { json_arg(request, len) } {
        Ok(request) => guarded(|| crate::select::answer(&request)),
        Err(m) => out(&json!({"error": "invalid-request", "message": m})),
    }
}

/// See `scim_bridge.h`.
///
/// # Safety
/// `s` is null or a string this bridge returned, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scimp_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: per the contract above.
        drop(unsafe { CString::from_raw(s) });
    }
}
