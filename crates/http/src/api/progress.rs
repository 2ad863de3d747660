//! `GET /hub/api/users/{name}/server/progress` and
//! `.../servers/{server}/progress`: server-sent events that follow a spawn, as JupyterHub's spawn-pending page reads them:
//! `{"progress": 0..100, "message": ..}`, ending with `"ready": true` and
//! the server's `url`, or `"failed": true`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use quorumhub_state::{normalize_username, HubState, Phase, Route, DEFAULT_SERVER};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::Ctx;
use quorumhub_core::scopes::Resource;

/// Where a spawn is, as one event; `None` when nothing changed.
fn event(s: &HubState, user: &str, server: &str, generation: u64) -> Value {
    let url = Route::prefix_for(user, server);
    match s
        .server(user, server)
        .filter(|sv| sv.generation == generation)
    {
        Some(sv) if sv.phase == Phase::Running => json!({
            "progress": 100, "ready": true, "url": url,
            "message": format!("Server ready at {url}"),
            "html_message": format!("Server ready at <a href=\"{url}\">{url}</a>"),
        }),
        Some(sv) if sv.phase == Phase::Stopping => {
            json!({"progress": 100, "failed": true, "message": "Spawn cancelled"})
        }
        Some(sv) if sv.spawner.is_some() => {
            json!({"progress": 50, "message": "Spawning server..."})
        }
        Some(_) => json!({"progress": 0, "message": "Server requested"}),
        None => match quorumhub_core::ops::servers::stop_reason(s, user, server, generation) {
            Some(reason) => {
                json!({"progress": 100, "failed": true, "message": format!("Spawn failed: {reason}")})
            }
            None => {
                json!({"progress": 100, "failed": true, "message": "Spawn failed: the server stopped; see the hub leader's log"})
            }
        },
    }
}

pub(crate) async fn default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    stream(hub, caller, raw, DEFAULT_SERVER.to_string()).await
}

pub(crate) async fn named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((raw, server)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    stream(hub, caller, raw, server).await
}

async fn stream(
    hub: Arc<Ctx>,
    caller: Caller,
    raw: String,
    server: String,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let user = normalize_username(&raw);
    crate::limits::check(
        &hub.config.limits,
        crate::limits::Field::ServerName(&server),
    )?;
    caller.require(
        "read:servers",
        Resource::Server {
            user: &user,
            name: &server,
        },
    )?;
    hub.linearize().await?;
    // The default server always exists; a named one once created.
    let (exists, generation) = hub.read(|s| {
        let u = s.user(&user);
        (
            u.is_some_and(|u| {
                server.is_empty()
                    || u.servers.contains_key(&server)
                    || u.stopped.contains_key(&server)
            }),
            s.server(&user, &server).map(|sv| sv.generation),
        )
    });
    let generation = match (exists, generation) {
        (_, Some(g)) => g,
        (true, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{user}'s server{} is not starting...",
                    super::servers::label(&server)
                ),
            ))
        }
        (false, None) if hub.read(|s| s.user(&user).is_none()) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No such user: {user}"),
            ))
        }
        (false, None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{user} has no server named '{server}'"),
            ))
        }
    };
    let mut rx = hub.subscribe();
    let stream = async_stream(move |tx| async move {
        let mut last = Value::Null;
        loop {
            if tx.is_closed() {
                return;
            }
            let ev = hub.read(|s| event(s, &user, &server, generation));
            if ev != last {
                let done = ev.get("ready").is_some() || ev.get("failed").is_some();
                if tx
                    .send(Event::default().data(ev.to_string()))
                    .await
                    .is_err()
                    || done
                {
                    return;
                }
                last = ev;
            }
            if tokio::time::timeout(Duration::from_secs(1), rx.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(8))))
}

/// A stream fed by a task through a small channel.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}
