//! JWT issuers for RequestAuthentication tests: signing keys (RSA keys fixed
//! here, since ring cannot generate them; EC keys generated per test), real
//! signed tokens, and a JWKS server on loopback whose answer a test can change.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Two 2048-bit RSA keys (PKCS#1 DER, base64) and their moduli (base64url).
const RSA: [(&str, &str); 2] = [
    ("MIIEogIBAAKCAQEArYbuAiHwoUGlhfcWR27PvlfLIozFgUEdNdlZyW/z6B5b/uxp4PMsNWkW5eJDS2GflOFaATDekVSrItZwuM6AWTe0fQMZDpqwwTCd0y14V782/YVNEvN6Xy8LA8O51fB9ljmcu+UZhidXlZF6Ez7iWtIRmdiSgoVmOgBlAY9rQ5x/h3zDCc0//ix0Lur5EsaeJ4h4Sy17NQLsjn5eSq8b/tOpXsBpqKeGCrrEQrqdZCTikZVwwDNncTkAskAc7/zAPhjEZjkcAX9V2ZsQwHrubJi2ZKhbYzjuK1YMheoR7q8HQaec/eF3vzy48LuQuHEmVGgYLPXlKHjxptC4cgzvyQIDAQABAoIBAAzmN5mle72FA4CwpDGVsXA5FwLfu4vW8wyudk/02EkEPrr1yI4eDYZ/5CGdHvsCzAnVcasefqEHjfw2PCVkxmI7c5mKaimtgp+t1UGeQvCk6HnSl67ltg5O0S8LtOwMJ03MRRQrnOjd0lMuQAift1RggsnwsT1uHLIJlviVeHgLUeOmhfFag7tup1LIawIguWx/9W/fz5S6L1iZjZZ24DyqrEetyFLdSOP0CL3UWdOHKivA+70NzfpaBXsGhhklphzP88IuodpVCHeVqvf+TsCkYI7j+mHvtRhrtH7cQzmiNhlXbI3iUUF2l6wtZw14oCyJElDTYOfd4pFP/4PSGSECgYEA6ttSDn4JXxJBiHHSBM0CAeQauo8E+hNWLVGnHWipBmx4dtbS+7yxm7uZ/aBNmSboKbLvxk9WukXZ86aQGc56ngB+yqiXOte1r0B1oi5mOMcHWJGD+XKMU3ghfCheU+8B8Z765q4M7FDlEfilvF3Q2uSgRC/C89tjR9VO/n7AJRECgYEAvSYpSBSdeYlUrFEV+E2cl64RTLadUhYI3AuRwx8w/f0V7dG9oxDvelfoUO84PLisLcei3jYwqMy7jqBOR6TxnQ9lNrqGTZ+2COH/KUBk1QU8znXNVfoTWMj/NLtNz18KaRDGOsgr7KSXx50HbrTyUHJNmLG3iPD6rviIgD/NvzkCgYBjKxLeDbg1TccgLzeIUWyMkd37cpKeafXUkwrmrx/YF4tSWumh5I52fOPMJZk+lyAnI2h9q1iqtP4QFP/59abu+rSPLFsXPKh6BNTnE4KUbO4cJu28MfMw96PkAkO6W0zN0tyM9Wd9jbb8PKr2/AJJu4o04JoIUFX+qgJ+EdVekQKBgCzC3CAPqNh7FEuXAMD69OS8L6Hc0Uv8pOoV3s+zEO/6NXdLHDp7poBoTzTf94n/Fdfbl4JIhqlbkcMF0qCHuxm06/nQmDnEYtqlSLHlaDc0/xfIruf6vxtSrXo4HQjG7/q/GnoMpsBgjv6Q/ZJIRdOdyRkqbUl95YUEkaDv+GuZAoGAHgUiZJ83TDtFtkdMdmAzpB1C1QNJdZmNkEALXPRl/PsYmKWB0xxpwZItHglZtrFswpVaorwurTDTqkHAs6wf4HF3wn7d8Q6aLVi1APhmMaKn4uG3yWVTKCXxSPPAO7JRqMqGS3Zy7cs0OAZLMdMkzOHoy+QrqUWTXbYHuHPvovs=", "rYbuAiHwoUGlhfcWR27PvlfLIozFgUEdNdlZyW_z6B5b_uxp4PMsNWkW5eJDS2GflOFaATDekVSrItZwuM6AWTe0fQMZDpqwwTCd0y14V782_YVNEvN6Xy8LA8O51fB9ljmcu-UZhidXlZF6Ez7iWtIRmdiSgoVmOgBlAY9rQ5x_h3zDCc0__ix0Lur5EsaeJ4h4Sy17NQLsjn5eSq8b_tOpXsBpqKeGCrrEQrqdZCTikZVwwDNncTkAskAc7_zAPhjEZjkcAX9V2ZsQwHrubJi2ZKhbYzjuK1YMheoR7q8HQaec_eF3vzy48LuQuHEmVGgYLPXlKHjxptC4cgzvyQ"),
    ("MIIEpAIBAAKCAQEAwMLYID/U+LxEnSJ7COo9gi2zgFhgqlUllBdw9dKxiyZj8zKRIPtU5omEL22jKNrAMERpVPTHXEVzwM9rlHW4jfkVCLGQiXmPWyS1aEkEM7WK4hGGwyi6v/O/PcsH3lhy2xBtRbbEXk6W0edaz/Y65iglB0oIyIOvpOyuM+1NM3gBQLIrD6YnsX0Sp1l9surVbiyncdh824D2hbzGnoYjHr9bTrM1SUtl7xZ572PS1laYz8dCTcNR+EqvrgBM8rD9FesCUTYOg2uM24pwBJjYBhogXa516GcULGGTm4CK3W5gzKLd9yQCLmA9UIjUgNLQyEc5cx97pquGxQCwAQrw8QIDAQABAoIBACgzeqefKGeHvDeZTVeaoqFXrqwBwodDosaz7NcXzfdbVlUOIr5iLF64J11M3E5U8OggHGefdUSFJ5L6r1ETDB5v6Dcb8Sz6sS8tBLhvIfU203Q6e4SQJgKKb0QP5+AzSiDt2BxF9cZFVacJPSNKExaVIMPYaOSIskUPJ3Wk9AjbjXxFhZ+c8jY6rQHwmhZpU/L1jNv+MPpZyOGcp2U/Aotc3A76q9BPrQ6dw74qwp0f+aYiFXZYIeugeI0JAywnc9OOgDREVa7Cs75Mq6uwvZxrs63aIzpw6n2IvQgczUE40wpik+j/T5Y3cuBnWX4/5B3WsXaBQxlAzF21mwqxqcECgYEA6nPEGQiL/ICfjlYHBeBQGMYcsMafhwNovP7APFcTR96tX636uxFvhIHY3VcNLbVxvUuHtddBU1yew60ttKk4TBhARoctzCWYNy2UdszogRRWzECvjq3SqsdkM5Fwkwv17IPLKdGc55+eiOLYXfZ0VFAx4uGU/U8GERqZ+T8UkIUCgYEA0nopmI/bbUkMNL3ZsoDNo1QMq6U/KRQ0CMQXkTYFs9+CmQloL7E8811ODMA5Qw+dLrZzBqYNQ9aWpDO9Fs3hR4XTuBD4kIZGXTpG/+DsoB53IjAQ8EiDFnzUHxFx7+nuJdvN69Hbc8IYN2P7pY9c3ltC+iuZcohrvcQi+Psc4H0CgYABTzAzK5cMi/NYKibT45LO8JxMaG+Po3c8Rvfv3lSfPCEfvar+zHQg+1Cou8m5DaBa/Eb/vvoAay3/zcHJloBX/HKvciXRVAxrkneXykEqJ2DstxfD5jic94wZtaA5UgHHllzWGPOVX5DVFt86dxvjNKdyquvYFk7kXY+qkq2cuQKBgQCemb9OXtiR+UFhXM32XGiYcnU5wkNdyQOMt3aqzXJuoDXg692+UmgDWoO9x/teNR3UXVc/41CLld/dy77ouCrRol5vjRpAjW3oQknN9sdXwJ00/dNFvN5Ky7Vr09FvX288x+zbjj83c0KcOpMdpnHsfAh0SvZN/85wKKPRyidwYQKBgQCRmWWlA86K2Xyr8qNBU7lVx0yBxe8Bq7TZgKg3K8Wsw2kwYe98zl/pQLbbPv9M8+iL+2Pl5zohk5Uznb3+T7yC30HIFgmRs0RyEvA3sUy3JE11FKgmSOlUyWkOtf5U8OEg5wFZLd/rSpGzUQEYuAww9+4yd/eD4UjtlFAbpTC9/A==", "wMLYID_U-LxEnSJ7COo9gi2zgFhgqlUllBdw9dKxiyZj8zKRIPtU5omEL22jKNrAMERpVPTHXEVzwM9rlHW4jfkVCLGQiXmPWyS1aEkEM7WK4hGGwyi6v_O_PcsH3lhy2xBtRbbEXk6W0edaz_Y65iglB0oIyIOvpOyuM-1NM3gBQLIrD6YnsX0Sp1l9surVbiyncdh824D2hbzGnoYjHr9bTrM1SUtl7xZ572PS1laYz8dCTcNR-EqvrgBM8rD9FesCUTYOg2uM24pwBJjYBhogXa516GcULGGTm4CK3W5gzKLd9yQCLmA9UIjUgNLQyEc5cx97pquGxQCwAQrw8Q"),
];

/// A key that signs tokens, and its public JWK.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    pub jwk: serde_json::Value,
}

impl SigningKey {
    /// RSA key 0 or 1, RS256.
    pub fn rsa(which: usize, kid: &str) -> SigningKey {
        let (der, n) = RSA[which];
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .unwrap();
        SigningKey {
            alg: Algorithm::RS256,
            kid: kid.into(),
            key: EncodingKey::from_rsa_der(&der),
            jwk: serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}),
        }
    }

    /// A fresh P-256 key, ES256.
    pub fn ec(kid: &str) -> SigningKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = kp.public_key_raw();
        assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
        SigningKey {
            alg: Algorithm::ES256,
            kid: kid.into(),
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwk: serde_json::json!({"kty": "EC", "kid": kid, "crv": "P-256",
                "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..])}),
        }
    }

    /// A token with `claims`; `exp` an hour ahead unless given.
    pub fn sign(&self, claims: serde_json::Value) -> String {
        let mut claims = claims;
        if claims.get("exp").is_none() {
            claims["exp"] = (now() + 3600).into();
        }
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWKS document of these keys.
pub fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Serves `/jwks` with whatever status and body it is set to.
pub struct JwksServer {
    pub addr: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(status: u16, body: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new((status, body)));
        let shared = answer.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let answer = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let (status, body) = answer.lock().unwrap().clone();
                        async move {
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        JwksServer { addr, answer, task }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn set(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
