//! Reading the caller's trace context and passing ours on. W3C `traceparent` /
//! `tracestate` always go upstream; B3 goes too, in the caller's encoding, when
//! the caller sent B3 (apps that only know B3 keep working, as under Envoy).

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3Propagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pingora::http::RequestHeader;

/// Which B3 headers the caller sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3 {
    Single,
    Multi,
    Both,
}

impl B3 {
    fn detect(headers: &http::HeaderMap) -> Option<B3> {
        match (
            headers.contains_key("b3"),
            headers.contains_key("x-b3-traceid"),
        ) {
            (true, true) => Some(B3::Both),
            (true, false) => Some(B3::Single),
            (false, true) => Some(B3::Multi),
            (false, false) => None,
        }
    }

    fn encoding(self) -> B3Encoding {
        match self {
            B3::Single => B3Encoding::SingleHeader,
            B3::Multi => B3Encoding::MultipleHeader,
            B3::Both => B3Encoding::SingleAndMultiHeader,
        }
    }
}

/// The caller's span as a parent context (empty when it sent none that parses),
/// and the B3 encoding to answer in. W3C wins when both are present.
pub fn extract(headers: &http::HeaderMap) -> (Context, Option<B3>) {
    let b3 = B3::detect(headers);
    let w3c = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if w3c.span().span_context().is_valid() {
        return (w3c, b3);
    }
    let parent = match b3 {
        Some(_) => B3Propagator::new().extract(&HeaderExtractor(headers)),
        None => Context::new(),
    };
    (parent, b3)
}

/// Writes `cx`'s span into the upstream request's headers.
pub fn inject(cx: &Context, b3: Option<B3>, req: &mut RequestHeader) {
    let mut headers = PingoraInjector(req);
    TraceContextPropagator::new().inject_context(cx, &mut headers);
    if let Some(b3) = b3 {
        // The propagator does not write a parent id; the caller's one is stale now.
        headers.0.remove_header("x-b3-parentspanid");
        B3Propagator::with_encoding(b3.encoding()).inject_context(cx, &mut headers);
    }
}

/// Through pingora's own setter, which keeps its header-case map in step.
struct PingoraInjector<'a>(&'a mut RequestHeader);

impl Injector for PingoraInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let Err(e) = self.0.insert_header(key.to_string(), value) {
            log::debug!("not propagating {key}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn w3c_is_read_and_wins_over_b3() {
        let h = headers(&[
            ("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01")),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ]);
        let (cx, b3) = extract(&h);
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), TRACE);
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(b3, Some(B3::Multi));
    }

    #[test]
    fn b3_single_and_multi_are_read() {
        let single = headers(&[("b3", &format!("{TRACE}-e457b5a2e4d86bd1-1"))]);
        let multi = headers(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]);
        for (h, sampled, enc) in [(single, true, B3::Single), (multi, false, B3::Multi)] {
            let (cx, b3) = extract(&h);
            let sc = cx.span().span_context().clone();
            assert_eq!(sc.trace_id().to_string(), TRACE);
            assert_eq!(sc.span_id().to_string(), "e457b5a2e4d86bd1");
            assert_eq!(sc.is_sampled(), sampled);
            assert_eq!(b3, Some(enc));
        }
    }

    #[test]
    fn garbage_gives_no_parent() {
        let h = headers(&[("traceparent", "00-zz-yy-01"), ("x-b3-traceid", "nope")]);
        let (cx, _) = extract(&h);
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn injects_w3c_and_the_callers_b3_encoding() {
        let sc = SpanContext::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex("1111111111111111").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let cx = Context::new().with_remote_span_context(sc);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-b3-parentspanid", "2222222222222222")
            .unwrap();
        inject(&cx, Some(B3::Multi), &mut req);
        let get = |k: &str| req.headers.get(k).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            get("traceparent").unwrap(),
            format!("00-{TRACE}-1111111111111111-01")
        );
        assert_eq!(get("tracestate").unwrap(), "vendor=x");
        assert_eq!(get("x-b3-traceid").unwrap(), TRACE);
        assert_eq!(get("x-b3-spanid").unwrap(), "1111111111111111");
        assert_eq!(get("x-b3-sampled").unwrap(), "1");
        assert_eq!(get("x-b3-parentspanid"), None);
        assert_eq!(get("b3"), None);

        let mut plain = RequestHeader::build("GET", b"/", None).unwrap();
        inject(&cx, None, &mut plain);
        assert!(plain.headers.get("x-b3-traceid").is_none());
        assert!(plain.headers.get("traceparent").is_some());
    }
}
