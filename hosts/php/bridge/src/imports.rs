//! The component's own imports, defined from its type rather than from generated bindings,
//! so the bridge carries any function of the contract without knowing it:
//!
//! - `scim:provisioner/logging` is answered here: its lines are buffered and handed to the
//!   host with the next step;
//! - every other `scim:provisioner/*` function (`http-client.send`, `directory.*`) suspends
//!   the call: its arguments go to the host as a [`PendingImport`], and the call resumes
//!   when the host's answer is in the [`Exchange`](crate::state::Exchange).
//!
//! WASI comes from `wasmtime-wasi`, with no filesystem, environment or network.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, Val};
use wasmtime::{AsContextMut, Engine};

use crate::canonical::{NoHandles, from_json, to_json};
use crate::state::{BridgeState, PendingImport, SharedExchange};

/// The package whose imports the host serves.
const OWN_PACKAGE: &str = "scim:provisioner/";
/// The interface answered inside the bridge.
const LOGGING: &str = "scim:provisioner/logging@";

/// Defines every `scim:provisioner/*` import of `component` in `linker`.
pub fn add_to_linker(
    linker: &mut Linker<BridgeState>,
    engine: &Engine,
    component: &Component,
) -> anyhow::Result<()> {
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        if !name.starts_with(OWN_PACKAGE) {
            continue;
        }
        let ComponentItem::ComponentInstance(interface) = import.ty else {
            return Err(anyhow!("import {name} is not an interface"));
        };
        let mut instance = linker.instance(name)?;
        for (func, item) in interface.exports(engine) {
            if !matches!(item.ty, ComponentItem::ComponentFunc(_)) {
                continue;
            }
            if name.starts_with(LOGGING) {
                instance.func_new(func, log_line)?;
            } else {
                let interface = name.to_string();
                let func_name = func.to_string();
                instance.func_new_async(func, move |store, ty, params, results| {
                    Box::new(suspend(
                        store,
                        ty,
                        params,
                        results,
                        interface.clone(),
                        func_name.clone(),
                    ))
                })?;
            }
        }
    }
    Ok(())
}

/// `logging.log(level, message)`: kept for the host's next step.
fn log_line(
    mut store: wasmtime::StoreContextMut<'_, BridgeState>,
    _ty: ComponentFunc,
    params: &[Val],
    _results: &mut [Val],
) -> wasmtime::Result<()> {
    let level = match params.first() {
        Some(Val::Enum(l)) => l.clone(),
        _ => "info".to_string(),
    };
    let message = match params.get(1) {
        Some(Val::String(m)) => m.clone(),
        _ => String::new(),
    };
    store
        .as_context_mut()
        .data()
        .exchange
        .lock()
        .logs
        .push((level, message));
    Ok(())
}

/// Hands the call to the host and waits, suspended, for its answer.
async fn suspend(
    store: wasmtime::StoreContextMut<'_, BridgeState>,
    ty: ComponentFunc,
    params: &[Val],
    results: &mut [Val],
    interface: String,
    func: String,
) -> wasmtime::Result<()> {
    let exchange = store.data().exchange.clone();
    let mut args = Vec::with_capacity(params.len());
    for (i, (param, (_, param_ty))) in params.iter().zip(ty.params()).enumerate() {
        args.push(
            to_json(param, &param_ty, &mut NoHandles, &format!("args[{i}]"))
                .map_err(wasmtime::Error::from_anyhow)?,
        );
    }
    exchange.lock().pending = Some(PendingImport {
        interface: interface.clone(),
        func: func.clone(),
        args,
    });
    let answer = Answer {
        exchange: exchange.clone(),
    }
    .await;
    if let (Some(slot), Some(result_ty)) = (results.first_mut(), ty.results().next()) {
        *slot = from_json(&answer, &result_ty, &NoHandles, "result")
            .with_context(|| format!("the host's answer to {interface}#{func}"))
            .map_err(wasmtime::Error::from_anyhow)?;
    }
    Ok(())
}

/// Ready when the driver has put the host's answer in the exchange.
struct Answer {
    exchange: SharedExchange,
}

impl Future for Answer {
    type Output = Value;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Value> {
        // No waker is kept: the driver polls again itself once it has the answer.
        match self.exchange.lock().answer.take() {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    }
}
