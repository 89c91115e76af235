//! One instance of the component and the call in flight on it: the suspend-and-resume
//! driver.
//!
//! An export call runs on the store's fiber. Each time the guest calls an import the host
//! serves, the call's future stops with a [`PendingImport`] in the exchange; the driver
//! hands it out as a step and keeps the future. [`Instance::resume`] puts the host's
//! answer in the exchange and polls again. Nothing in the host ever blocks inside the
//! bridge waiting for itself, and nothing calls back into the host.
//!
//! After any trap (the deadline, the memory cap, a guest fault, a malformed answer) the
//! store is dropped with every handle in it; the next call starts on a fresh instance.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use wasmtime::component::{Func, ResourceAny, Val};
use wasmtime::{Store, UpdateDeadline};

use crate::canonical::{Handles, from_json, to_json};
use crate::runtime::Runtime;
use crate::state::{BridgeState, DeadlineExceeded, MemoryLimitExceeded, SharedExchange};

type CallOutput = (Store<BridgeState>, wasmtime::Result<Vec<Val>>);
type CallFuture = Pin<Box<dyn Future<Output = CallOutput> + Send>>;

/// The resources the host holds, by integer handle. Handles start at 1.
#[derive(Default)]
struct HandleTable {
    slots: Vec<Option<ResourceAny>>,
}

impl Handles for HandleTable {
    fn insert(&mut self, resource: ResourceAny) -> anyhow::Result<u64> {
        self.slots.push(Some(resource));
        Ok(self.slots.len() as u64)
    }

    fn get(&self, handle: u64) -> anyhow::Result<ResourceAny> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| h.checked_sub(1))
            .and_then(|i| self.slots.get(i))
            .and_then(|slot| *slot)
            .ok_or_else(|| anyhow!("no resource has handle {handle} in this instance"))
    }
}

impl HandleTable {
    fn take(&mut self, handle: u64) -> anyhow::Result<ResourceAny> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| h.checked_sub(1))
            .and_then(|i| self.slots.get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| anyhow!("no resource has handle {handle} in this instance"))
    }
}

/// A store with the component instantiated in it.
struct Live {
    store: Store<BridgeState>,
    instance: wasmtime::component::Instance,
    funcs: HashMap<(String, String), Func>,
}

/// A call whose store is inside its future.
struct Running {
    future: CallFuture,
    instance: wasmtime::component::Instance,
    funcs: HashMap<(String, String), Func>,
    /// The export called, for its result type; none for a resource drop.
    func: Option<Func>,
}

/// One instance of the component, with at most one call in flight.
pub struct Instance {
    runtime: Arc<Runtime>,
    exchange: SharedExchange,
    live: Option<Live>,
    running: Option<Running>,
    handles: HandleTable,
}

fn error_step(message: impl std::fmt::Display) -> Value {
    json!({"step": "error", "message": message.to_string()})
}

impl Instance {
    /// A fresh instance.
    pub fn new(runtime: Arc<Runtime>) -> anyhow::Result<Instance> {
        let mut instance = Instance {
            runtime,
            exchange: SharedExchange::new(),
            live: None,
            running: None,
            handles: HandleTable::default(),
        };
        instance.live = Some(instance.instantiate()?);
        Ok(instance)
    }

    fn instantiate(&self) -> anyhow::Result<Live> {
        let options = &self.runtime.options;
        let mut store = Store::new(
            &self.runtime.engine,
            BridgeState::new(options.memory_limit_bytes, self.exchange.clone()),
        );
        store.limiter(|state| &mut state.cap);
        let deadline = options.deadline;
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= ctx.data().exchange.lock().deadline {
                return Err(DeadlineExceeded { deadline }.into());
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        self.exchange.lock().deadline = Instant::now() + options.deadline;
        let instance = self
            .runtime
            .tokio
            .block_on(self.runtime.pre.instantiate_async(&mut store))?;
        Ok(Live {
            store,
            instance,
            funcs: HashMap::new(),
        })
    }

    /// Starts an export call (or a resource drop) and returns its first step.
    pub fn call(&mut self, request: &Value) -> Value {
        if self.running.is_some() {
            return error_step("a call is already in flight on this instance: resume it first");
        }
        if self.live.is_none() {
            match self.instantiate() {
                Ok(live) => self.live = Some(live),
                Err(e) => return error_step(format!("could not instantiate the component: {e:#}")),
            }
        }
        let Some(mut live) = self.live.take() else {
            return error_step("no instance");
        };
        let started = match self.start(&mut live, request) {
            Ok(started) => started,
            Err(e) => {
                self.live = Some(live);
                return error_step(format!("{e:#}"));
            }
        };
        let (func, params, result_count) = match started {
            Start::Drop(resource) => {
                let Live {
                    mut store,
                    instance,
                    funcs,
                } = live;
                let future: CallFuture = Box::pin(async move {
                    let r = resource
                        .resource_drop_async(&mut store)
                        .await
                        .map(|()| Vec::new());
                    (store, r)
                });
                return self.drive(Running {
                    future,
                    instance,
                    funcs,
                    func: None,
                });
            }
            Start::Call(func, params, result_count) => (func, params, result_count),
        };
        let Live {
            mut store,
            instance,
            funcs,
        } = live;
        {
            let mut exchange = self.exchange.lock();
            exchange.pending = None;
            exchange.answer = None;
            exchange.deadline = Instant::now() + self.runtime.options.deadline;
        }
        let future: CallFuture = Box::pin(async move {
            let mut results = vec![Val::Bool(false); result_count];
            let r = func
                .call_async(&mut store, &params, &mut results)
                .await
                .map(|()| results);
            (store, r)
        });
        self.drive(Running {
            future,
            instance,
            funcs,
            func: Some(func),
        })
    }

    fn start(&mut self, live: &mut Live, request: &Value) -> anyhow::Result<Start> {
        if let Some(handle) = request.get("drop") {
            let handle = handle
                .as_u64()
                .ok_or_else(|| anyhow!("\"drop\" takes a resource handle"))?;
            return Ok(Start::Drop(self.handles.take(handle)?));
        }
        let interface = request
            .get("interface")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the request names no \"interface\""))?;
        let name = request
            .get("func")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the request names no \"func\""))?;
        let args = match request.get("args") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => bail!("\"args\" must be an array"),
        };
        let key = (interface.to_string(), name.to_string());
        let func = match live.funcs.get(&key) {
            Some(f) => *f,
            None => {
                let iface = live
                    .instance
                    .get_export_index(&mut live.store, None, interface)
                    .ok_or_else(|| anyhow!("the component exports no interface {interface:?}"))?;
                let index = live
                    .instance
                    .get_export_index(&mut live.store, Some(&iface), name)
                    .ok_or_else(|| anyhow!("{interface} has no function {name:?}"))?;
                let f = live
                    .instance
                    .get_func(&mut live.store, index)
                    .ok_or_else(|| anyhow!("{interface}#{name} is not a function"))?;
                live.funcs.insert(key, f);
                f
            }
        };
        let ty = func.ty(&live.store);
        if ty.params().len() != args.len() {
            bail!(
                "{interface}#{name} takes {} argument(s), got {}",
                ty.params().len(),
                args.len()
            );
        }
        let mut params = Vec::with_capacity(args.len());
        for (i, (arg, (pname, pty))) in args.iter().zip(ty.params()).enumerate() {
            params.push(from_json(
                arg,
                &pty,
                &self.handles,
                &format!("args[{i}] ({pname})"),
            )?);
        }
        Ok(Start::Call(func, params, ty.results().len()))
    }

    /// Resumes the suspended call with the host's answer to its pending import.
    pub fn resume(&mut self, answer: Value) -> Value {
        let Some(running) = self.running.take() else {
            return error_step("no call is waiting for an answer on this instance");
        };
        {
            let mut exchange = self.exchange.lock();
            exchange.answer = Some(answer);
            // The guest's time starts again now: the host's time is not the guest's.
            exchange.deadline = Instant::now() + self.runtime.options.deadline;
        }
        self.drive(running)
    }

    /// Polls the call until it returns, traps, or waits for the host.
    fn drive(&mut self, mut running: Running) -> Value {
        let exchange = self.exchange.clone();
        let deadline = self.runtime.options.deadline;
        let polled = self.runtime.tokio.block_on(async {
            // WASI's own waits (none in practice) are driven by the event loop; a wait that
            // nothing would ever end is cut by the deadline instead of hanging the host.
            tokio::time::timeout(
                deadline,
                poll_fn(|cx| match running.future.as_mut().poll(cx) {
                    Poll::Ready(out) => Poll::Ready(Some(out)),
                    Poll::Pending if exchange.lock().pending.is_some() => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }),
            )
            .await
        });
        let logs = self.take_logs();
        match polled {
            Ok(Some((store, outcome))) => self.finish(store, outcome, running, logs),
            Ok(None) => {
                let pending = self.exchange.lock().pending.take();
                self.running = Some(running);
                match pending {
                    Some(p) => json!({
                        "step": "import",
                        "interface": p.interface,
                        "func": p.func,
                        "args": p.args,
                        "logs": logs,
                    }),
                    None => error_step("the call stopped without an import to answer"),
                }
            }
            Err(_) => {
                // The future still holds the store; dropping both discards the instance.
                drop(running);
                self.discard();
                json!({
                    "step": "trap",
                    "kind": "deadline",
                    "message": format!("deadline exceeded: the guest waited more than {} ms on something the host does not answer", deadline.as_millis()),
                    "logs": logs,
                })
            }
        }
    }

    fn finish(
        &mut self,
        store: Store<BridgeState>,
        outcome: wasmtime::Result<Vec<Val>>,
        running: Running,
        logs: Value,
    ) -> Value {
        let Running {
            instance,
            funcs,
            func,
            ..
        } = running;
        match outcome {
            Ok(results) => {
                let result = match (func, results.first()) {
                    (Some(f), Some(v)) => {
                        let ty = f.ty(&store);
                        match ty.results().next() {
                            Some(rty) => to_json(v, &rty, &mut self.handles, "result"),
                            None => Ok(Value::Null),
                        }
                    }
                    _ => Ok(Value::Null),
                };
                self.live = Some(Live {
                    store,
                    instance,
                    funcs,
                });
                match result {
                    Ok(result) => json!({"step": "done", "result": result, "logs": logs}),
                    Err(e) => error_step(format!("could not express the result: {e:#}")),
                }
            }
            Err(e) => {
                drop(store);
                self.discard();
                let (kind, message) = classify(&e);
                json!({"step": "trap", "kind": kind, "message": message, "logs": logs})
            }
        }
    }

    /// Throws the instance away: the next call instantiates afresh.
    fn discard(&mut self) {
        self.live = None;
        self.running = None;
        self.handles = HandleTable::default();
        let mut exchange = self.exchange.lock();
        exchange.pending = None;
        exchange.answer = None;
    }

    fn take_logs(&self) -> Value {
        let logs = std::mem::take(&mut self.exchange.lock().logs);
        Value::Array(
            logs.into_iter()
                .map(|(level, message)| json!([level, message]))
                .collect(),
        )
    }
}

enum Start {
    Call(Func, Vec<Val>, usize),
    Drop(ResourceAny),
}

/// Which kind of trap, and a message for people.
fn classify(e: &wasmtime::Error) -> (&'static str, String) {
    for cause in e.chain() {
        if let Some(d) = cause.downcast_ref::<DeadlineExceeded>() {
            return ("deadline", d.to_string());
        }
        if let Some(m) = cause.downcast_ref::<MemoryLimitExceeded>() {
            return ("memory", m.to_string());
        }
    }
    // Each cause's first line names the fault; wasmtime's backtrace frame is for
    // debuggers, not for the host's error message.
    let causes: Vec<String> = e
        .chain()
        .filter_map(|cause| cause.to_string().lines().next().map(str::to_string))
        .filter(|line| {
            !line.is_empty() && !line.starts_with("error while executing at wasm backtrace")
        })
        .collect();
    let what = if causes.is_empty() {
        "the guest trapped".to_string()
    } else {
        causes.join(": ")
    };
    ("trap", format!("the guest trapped: {what}"))
}
