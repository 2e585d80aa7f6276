//! The one table from a failure to what the client sees: a status and an Envoy
//! response flag. Filters decide local replies themselves; this covers what
//! Pingora reports when proxying fails.

use pingora::{Error, ErrorSource, ErrorType};
use waypoint_filters::retry::TryOutcome;
use waypoint_filters::ResponseFlag;

/// `(status, flag)` for a failed proxy attempt. Status 0: the downstream is gone,
/// nothing can be written. `flag` keeps a flag a hook already set.
pub fn classify(e: &Error, flag: ResponseFlag) -> (u16, ResponseFlag) {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(code)) => (*code, flag),
        (ErrorSource::Downstream, _) => (0, ResponseFlag::DownstreamConnectionTermination),
        (_, ConnectTimedout) | (_, ConnectRefused) | (_, ConnectNoRoute) | (_, ConnectError) => {
            (503, ResponseFlag::UpstreamConnectionFailure)
        }
        (_, ReadTimedout) | (_, WriteTimedout) => (504, ResponseFlag::UpstreamRequestTimeout),
        (ErrorSource::Upstream, _) => (503, ResponseFlag::UpstreamConnectionTermination),
        _ => (500, flag),
    }
}

/// The error type of a gRPC answer turned into a retry.
pub const GRPC_STATUS: &str = "grpc-status";

/// How a failed try ended, for the retry decision; `None` for failures that are
/// not the upstream's (the downstream went away, an internal error).
pub fn try_outcome(e: &Error) -> Option<TryOutcome> {
    use ErrorType::*;
    Some(match e.etype() {
        HTTPStatus(s) => TryOutcome::Status(*s),
        CustomCode(GRPC_STATUS, code) => TryOutcome::GrpcStatus(*code as u8),
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure => {
            TryOutcome::ConnectFailure
        }
        ReadTimedout | WriteTimedout => TryOutcome::Timeout,
        _ if e.esource() == &ErrorSource::Upstream => TryOutcome::Reset,
        _ => return None,
    })
}

/// The body of a local error reply, worded as Envoy words it.
pub fn describe(flag: ResponseFlag) -> &'static str {
    match flag {
        ResponseFlag::UpstreamConnectionFailure => {
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
        }
        ResponseFlag::UpstreamConnectionTermination => {
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        }
        ResponseFlag::UpstreamRequestTimeout => "upstream request timeout",
        ResponseFlag::UpstreamOverflow => {
            "upstream connect error or disconnect/reset before headers. reset reason: overflow"
        }
        ResponseFlag::NoHealthyUpstream => "no healthy upstream",
        ResponseFlag::NoRouteFound => "route not found",
        _ => "internal error",
    }
}
