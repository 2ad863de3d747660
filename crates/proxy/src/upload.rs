//! A client's request body on its way upstream, streamed and never
//! buffered: each attempt takes the body at its first poll, so when an
//! attempt fails before taking it (the connection was never made) the body
//! is still here for the next replica, and once taken it is never sent
//! twice. It also enforces a size limit and remembers why it failed.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use quorumhub_edge::RequestBody;

use crate::client::BoxError;

/// Why a body stopped short: the upstream's error then means this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// More bytes than the limit.
    TooLarge,
    /// The client paused longer than the body timeout.
    Stalled,
}

#[derive(Default)]
pub(crate) struct FailureCell(AtomicU8);

impl FailureCell {
    fn set(&self, f: Failure) {
        let v = match f {
            Failure::TooLarge => 1,
            Failure::Stalled => 2,
        };
        self.0.store(v, Ordering::Release);
    }

    pub(crate) fn get(&self) -> Option<Failure> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Failure::TooLarge),
            2 => Some(Failure::Stalled),
            _ => None,
        }
    }
}

type Slot = Arc<Mutex<Option<Pin<Box<RequestBody>>>>>;

/// The body, until an attempt takes it.
pub(crate) struct Upload {
    slot: Slot,
    limit: u64,
    failure: Arc<FailureCell>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
struct TooLarge(u64);

#[derive(Debug, thiserror::Error)]
#[error("the request body was already sent on an earlier attempt")]
struct AlreadySent;

impl Upload {
    pub(crate) fn new(body: RequestBody, limit: u64) -> (Upload, Arc<FailureCell>) {
        let failure = Arc::new(FailureCell::default());
        let upload = Upload {
            slot: Arc::new(Mutex::new(Some(Box::pin(body)))),
            limit,
            failure: failure.clone(),
        };
        (upload, failure)
    }

    /// The body for one attempt.
    pub(crate) fn attempt(&self) -> Attempt {
        Attempt {
            slot: self.slot.clone(),
            body: None,
            seen: 0,
            limit: self.limit,
            failure: self.failure.clone(),
        }
    }

    /// No attempt has taken the body: nothing of it was sent.
    pub(crate) fn unsent(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

pub(crate) struct Attempt {
    slot: Slot,
    body: Option<Pin<Box<RequestBody>>>,
    seen: u64,
    limit: u64,
    failure: Arc<FailureCell>,
}

impl Attempt {
    fn peek<T>(&self, f: impl FnOnce(&RequestBody) -> T, otherwise: T) -> T {
        match &self.body {
            Some(b) => f(b),
            None => match self.slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                Some(b) => f(b),
                None => otherwise,
            },
        }
    }
}

impl Body for Attempt {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.body.is_none() {
            this.body = this.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(AlreadySent))));
        };
        match ready!(body.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        this.failure.set(Failure::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(TooLarge(this.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                if e.is::<tower_http::timeout::TimeoutError>() {
                    this.failure.set(Failure::Stalled);
                }
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peek(|b| b.is_end_stream(), true)
    }

    fn size_hint(&self) -> SizeHint {
        self.peek(|b| b.size_hint(), SizeHint::with_exact(0))
    }
}
