/*
 * scim_bridge.h: the C ABI of the scim-provisioner native bridge (libscim_bridge.so).
 *
 * The bridge embeds wasmtime 48 and the scim-provisioner component. A host in any language
 * with a C FFI (PHP's FFI extension first) drives the component through it without ever
 * being called back: every export call runs on a wasmtime async store, and when the guest
 * calls an import the host must serve (http-client.send, directory.*), the call is
 * suspended and the pending import is handed back as data. The host performs it and
 * resumes the call with the answer, until the export returns. `logging` is buffered in
 * the bridge and handed back with every step.
 *
 * All messages are UTF-8 JSON. Values follow one canonical mapping of WIT values:
 *   bool, integers, floats -> JSON booleans and numbers;  string, char -> string;
 *   list<u8> -> base64 string;  other list<T> -> array;  tuple -> array;
 *   record -> object keyed by the WIT field names (kebab-case);
 *   variant -> {"tag": "case"} or {"tag": "case", "val": payload};
 *   enum -> the case name as a string;  option<T> -> null or T;
 *   result<T, E> -> {"tag": "ok", "val": T} or {"tag": "err", "val": E} ("val" absent when empty);
 *   own<R>/borrow<R> -> an integer handle, valid in the instance that returned it.
 * (This is jco's JavaScript representation, written as JSON.)
 *
 * Strings returned by the bridge are owned by the caller: free each with scimp_string_free.
 * No function panics across the ABI; a null pointer or bad JSON is reported as an error.
 */
#ifndef SCIM_BRIDGE_H
#define SCIM_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A compiled component and its engine; share one per process. */
typedef struct scimp_runtime scimp_runtime;
/* One instance of the component (one wasmtime store) with at most one call in flight. */
typedef struct scimp_instance scimp_instance;

/*
 * Loads the component at `wasm_path`. `options_json` (may be NULL or "{}") holds:
 *   "cache_dir": where the precompiled component is kept (default: beside the .wasm),
 *   "memory_limit_bytes": the most linear memory one instance may hold (default 512 MiB),
 *   "deadline_ms": how long the guest may run between two host answers (default 10000);
 *                  PHP's max_execution_time does not stop native code, this does.
 * The compiled component is cached under a name keyed by the .wasm's SHA-256 and the
 * engine's compatibility hash, so only the first load in a cache directory compiles.
 * Returns NULL on failure and sets *error_out (if not NULL) to a message to free.
 */
scimp_runtime *scimp_runtime_new(const char *wasm_path, const char *options_json, char **error_out);

/* A JSON object describing the runtime: {"wasm": ..., "cache_file": ..., "loaded_from_cache": bool,
 * "load_ms": ..., "memory_limit_bytes": ..., "deadline_ms": ..., "bridge_version": ...}. */
char *scimp_runtime_info(const scimp_runtime *runtime);

void scimp_runtime_free(scimp_runtime *runtime);

/* A fresh instance. Returns NULL on failure and sets *error_out. */
scimp_instance *scimp_instance_new(scimp_runtime *runtime, char **error_out);

void scimp_instance_free(scimp_instance *instance);

/*
 * Starts an export call. `request_json` is
 *   {"interface": "scim:provisioner/client@0.1.0", "func": "[method]connector.provision",
 *    "args": [handle, user, "created", null]}
 * or, to drop a resource handle, {"drop": handle}.
 * Returns a step (below). Only one call may be in flight per instance.
 */
char *scimp_call(scimp_instance *instance, const char *request_json, size_t len);

/*
 * Resumes the suspended call with the pending import's result, as canonical JSON of the
 * import's result type (e.g. {"tag":"ok","val":{"status":200,"headers":[],"body":""}} for
 * http-client.send; null for a function without a result). Returns the next step.
 */
char *scimp_resume(scimp_instance *instance, const char *result_json, size_t len);

/*
 * A step is one of:
 *   {"step": "import", "interface": "scim:provisioner/http-client@0.1.0", "func": "send",
 *    "args": [...], "logs": [...]}                  the call waits for scimp_resume;
 *   {"step": "done", "result": <value or null>, "logs": [...]}
 *                                                  the export returned;
 *   {"step": "trap", "kind": "deadline" | "memory" | "trap", "message": "...", "logs": [...]}
 *                                                  the guest trapped; the instance was thrown
 *                                                  away and its handles are gone; the next
 *                                                  call starts on a fresh instance;
 *   {"step": "error", "message": "..."}            the request was malformed (nothing ran).
 * "logs" is a list of ["level", "message"] pairs, level one of trace, debug, info, warn, error.
 */

/*
 * Evaluates a SCIM filter, sort and page over resources the host has loaded, with the same
 * parser and comparator the component uses, so a host's directory never disagrees with the
 * guest. `request_json`: {"filter": "userName eq \"a\"" | null, "sort-by": "name.familyName" | null,
 * "sort-descending": false, "start-index": 1, "count": 100, "resources": [<SCIM JSON object>, ...]},
 * each resource as a client sees it, with its "id" and "meta" ("resourceType", "created",
 * "lastModified", "version"), so `id eq` and `meta.lastModified gt` filters work.
 * Returns {"total-results": n, "indices": [i, ...]} (indices into "resources", in page order)
 * or {"error": "invalid-filter", "message": "..."}.
 */
char *scimp_select(const char *request_json, size_t len);

void scimp_string_free(char *s);

#ifdef __cplusplus
}
#endif

#endif /* SCIM_BRIDGE_H */
