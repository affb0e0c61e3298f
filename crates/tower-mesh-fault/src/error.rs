use std::fmt;

/// A request was aborted by fault injection, not by the service behind it.
///
/// The error to `downcast_ref` to when a call through a
/// [`FaultLayer`](crate::FaultLayer) fails on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInjectedError {
    pub(crate) status: Option<u16>,
}

impl FaultInjectedError {
    /// The HTTP status the fault asked for, when it asked for one and the layer
    /// could not answer with a response.
    pub fn status(&self) -> Option<u16> {
        self.status
    }
}

impl fmt::Display for FaultInjectedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "fault injected: abort with status {status}"),
            None => f.write_str("fault injected: request aborted"),
        }
    }
}

impl std::error::Error for FaultInjectedError {}
