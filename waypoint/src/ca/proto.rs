//! Istio's certificate messages (`waypoint/proto/ca.proto`) as prost structs, and
//! the one RPC, for both ends: our client and the in-process CA of the tests.
//!
//! Written by hand rather than generated. Three small messages do not pay for a
//! build script, and generating needs either a system `protoc` (a package for
//! `./dev setup` and the image's builder) or `protox` (a pure-Rust compiler whose
//! dozen crates would build on every clean build). prost's derive is what
//! generated code expands to anyway; `tests::field_numbers_match_the_proto` pins the
//! wire numbers to the `.proto`.

use http_body_util::BodyExt;
use tonic::transport::Channel;

pub const SERVICE: &str = "istio.v1.auth.IstioCertificateService";
pub const METHOD: &str = "CreateCertificate";
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    #[prost(string, tag = "1")]
    pub csr: String,
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<prost_types::Struct>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
    #[prost(message, optional, tag = "2")]
    pub root_cert: Option<Roots>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Roots {
    #[prost(string, repeated, tag = "1")]
    pub ca_cert: Vec<String>,
}

/// `CreateCertificate` over `channel`.
pub async fn create_certificate(
    channel: Channel,
    request: tonic::Request<IstioCertificateRequest>,
) -> Result<tonic::Response<IstioCertificateResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
    let mut request = request;
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new(SERVICE, METHOD));
    let path = http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE);
    grpc.unary(request, path, tonic_prost::ProstCodec::default())
        .await
}

/// The server side of `CreateCertificate`: answers one HTTP/2 request with
/// `handler`, and any other path with `Unimplemented`.
pub async fn serve_create_certificate<H, F>(
    request: http::Request<hyper::body::Incoming>,
    handler: H,
) -> http::Response<tonic::body::Body>
where
    H: Fn(tonic::Request<IstioCertificateRequest>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<
            Output = Result<tonic::Response<IstioCertificateResponse>, tonic::Status>,
        > + Send
        + 'static,
{
    if request.uri().path() != CREATE_CERTIFICATE {
        // Drain what the client sent so the stream ends cleanly.
        let path = request.uri().path().to_string();
        let _ = request.into_body().collect().await;
        return tonic::Status::unimplemented(format!("no method {path}")).into_http();
    }
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
    grpc.unary(Unary(handler), request).await
}

struct Unary<H>(H);

impl<H, F> tonic::server::UnaryService<IstioCertificateRequest> for Unary<H>
where
    H: Fn(tonic::Request<IstioCertificateRequest>) -> F,
    F: std::future::Future<
        Output = Result<tonic::Response<IstioCertificateResponse>, tonic::Status>,
    >,
{
    type Response = IstioCertificateResponse;
    type Future = F;

    fn call(&mut self, request: tonic::Request<IstioCertificateRequest>) -> F {
        (self.0)(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The first byte of each field is `number << 3 | wire type`: if a tag in the
    /// structs drifts from `ca.proto`, these bytes change.
    #[test]
    fn field_numbers_match_the_proto() {
        let request = IstioCertificateRequest {
            csr: "c".into(),
            validity_duration: 7,
            metadata: Some(prost_types::Struct::default()),
        };
        // csr = 1 (length-delimited), validity_duration = 3 (varint), metadata = 4.
        assert_eq!(request.encode_to_vec(), [0x0a, 1, b'c', 0x18, 7, 0x22, 0]);

        let response = IstioCertificateResponse {
            cert_chain: vec!["l".into(), "r".into()],
            root_cert: Some(Roots {
                ca_cert: vec!["x".into()],
            }),
        };
        // cert_chain = 1 (repeated), root_cert = 2 holding ca_cert = 1.
        assert_eq!(
            response.encode_to_vec(),
            [0x0a, 1, b'l', 0x0a, 1, b'r', 0x12, 3, 0x0a, 1, b'x']
        );
    }

    #[test]
    fn the_path_is_package_service_method() {
        assert_eq!(CREATE_CERTIFICATE, format!("/{SERVICE}/{METHOD}"));
    }
}
