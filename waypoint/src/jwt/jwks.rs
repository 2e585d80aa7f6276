//! Public keys for RequestAuthentication: parsed key sets, and the fetcher
//! that keeps `jwksUri` (and OpenID-discovered) sets fresh.
//!
//! Istio's default (`PILOT_JWT_ENABLE_REMOTE_JWKS=false`) has istiod fetch
//! every `jwksUri` and inline the keys into the proxy's config, refetching
//! every `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` (20 min); after a failed round it
//! retries in 1 min, doubling up to 60 min, and keeps the keys it had. Until a
//! first fetch succeeds it inlines a key whose private half was discarded
//! (`PublicOnlyJwks`), so every token of that issuer is refused. The waypoint
//! has no istiod between it and the key server, so it does istiod's part
//! itself, with istiod's timings; the `envoy`/`hybrid` modes (Envoy fetching
//! through a mesh cluster, cached 5 min) have no equivalent here.
//!
//! Invariants: the data path only reads (`keys`); fetching happens in
//! [`Jwks::run`], one task per waypoint. A source's keys are replaced only by
//! a successful fetch.

use crate::state::State;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::DecodingKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use waypoint_ir::{JwksSource, JwtRule, Snapshot};

/// A key server's answer larger than this is refused.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// istiod's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(20 * 60);
/// istiod's `JwtPubKeyRefreshIntervalOnFailure` and its backoff cap.
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(60 * 60);

/// One usable key, with what the token's header is matched against.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub key: DecodingKey,
}

/// A parsed JWKS. Keys this waypoint cannot use are skipped, as Envoy skips
/// them; a set without one usable key is an error.
pub struct KeySet(pub Vec<Key>);

impl KeySet {
    pub fn parse(text: &str) -> Result<KeySet, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let keys = v
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("no \"keys\" array")?;
        let usable: Vec<Key> = keys
            .iter()
            .filter_map(|raw| {
                let text = |f: &str| raw.get(f).and_then(|v| v.as_str()).map(str::to_string);
                let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some(Key {
                    kid: text("kid"),
                    alg: text("alg"),
                    key,
                })
            })
            .collect();
        if usable.is_empty() {
            return Err("Jwks doesn't have any valid public key".into());
        }
        Ok(KeySet(usable))
    }
}

/// Where a rule's keys are fetched from; `None` for inline and no keys.
fn remote(rule: &JwtRule) -> Option<Remote> {
    match &rule.jwks {
        JwksSource::Uri(u) => Some(Remote::Uri(u.clone())),
        JwksSource::Discover => Some(Remote::Discover(rule.issuer.clone())),
        JwksSource::Inline(_) | JwksSource::RejectAll => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    Uri(String),
    /// OpenID discovery from this issuer.
    Discover(String),
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<
        hyper_util::client::legacy::connect::HttpConnector<super::blocked::Resolver>,
    >,
    Empty<Bytes>,
>;

pub struct Jwks {
    fetched: RwLock<HashMap<Remote, Arc<KeySet>>>,
    /// Inline sets, parsed once per text.
    inline: RwLock<HashMap<String, Option<Arc<KeySet>>>>,
    refresh: Duration,
}

impl Jwks {
    pub fn new(refresh: Duration) -> Arc<Jwks> {
        Arc::new(Jwks {
            fetched: Default::default(),
            inline: Default::default(),
            refresh,
        })
    }

    /// The rule's keys as last fetched (or inline); `None` until a fetch has
    /// succeeded, and for stand-ins that refuse every token.
    pub fn keys(&self, rule: &JwtRule) -> Option<Arc<KeySet>> {
        match &rule.jwks {
            JwksSource::RejectAll => None,
            JwksSource::Inline(text) => {
                if let Some(k) = self.inline.read().expect("jwks lock").get(text) {
                    return k.clone();
                }
                let parsed = KeySet::parse(text)
                    .map_err(|e| log::warn!("{}: inline jwks: {e}", rule.source))
                    .ok()
                    .map(Arc::new);
                let mut inline = self.inline.write().expect("jwks lock");
                // Texts of an older config go; bounded by the config's size.
                if inline.len() > 1024 {
                    inline.clear();
                }
                inline.insert(text.clone(), parsed.clone());
                parsed
            }
            _ => {
                let r = remote(rule)?;
                self.fetched.read().expect("jwks lock").get(&r).cloned()
            }
        }
    }

    /// Fetches what each new config needs at once, and everything every
    /// refresh interval (sooner after a failure), until shutdown.
    pub async fn run(
        self: Arc<Self>,
        state: Arc<State>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let client = match client() {
            Ok(c) => c,
            Err(e) => return log::error!("JWKS fetcher: {e}; remote JWKS will not be fetched"),
        };
        let mut changed = state.subscribe();
        let mut retry: Option<Duration> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            let wanted = wanted(&state.current().snapshot);
            self.fetched
                .write()
                .expect("jwks lock")
                .retain(|r, _| wanted.contains_key(r));
            let due = tokio::time::Instant::now() >= next;
            let todo: Vec<(Remote, Duration)> = {
                let have = self.fetched.read().expect("jwks lock");
                wanted
                    .into_iter()
                    .filter(|(r, _)| due || !have.contains_key(r))
                    .collect()
            };
            let results =
                futures::future::join_all(todo.iter().map(|(r, t)| fetch(&client, r, *t))).await;
            let mut failed = false;
            for ((r, _), result) in todo.into_iter().zip(results) {
                match result {
                    Ok(keys) => {
                        log::info!("JWKS {r:?}: {} keys", keys.0.len());
                        self.fetched
                            .write()
                            .expect("jwks lock")
                            .insert(r, Arc::new(keys));
                    }
                    Err(e) => {
                        failed = true;
                        log::warn!("JWKS {r:?}: {e}; keeping the keys it had, if any");
                    }
                }
            }
            if due || failed {
                let wait = if failed {
                    let w = retry.map_or(RETRY_FIRST, |r| (r * 2).min(RETRY_MAX));
                    retry = Some(w);
                    w.min(self.refresh)
                } else {
                    retry = None;
                    self.refresh
                };
                next = tokio::time::Instant::now() + wait;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                r = changed.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Every remote source the snapshot's rules use, with the longest timeout
/// any of them asks for.
fn wanted(s: &Snapshot) -> HashMap<Remote, Duration> {
    let mut out: HashMap<Remote, Duration> = HashMap::new();
    let rules = s
        .jwt
        .iter()
        .chain(s.services.iter().flat_map(|svc| &svc.jwt));
    for rule in rules {
        if let Some(r) = remote(rule) {
            let t = out.entry(r).or_default();
            *t = (*t).max(rule.timeout);
        }
    }
    out
}

fn client() -> Result<Client, String> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
        super::blocked::Resolver::new(),
    );
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| format!("TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

async fn fetch(client: &Client, r: &Remote, timeout: Duration) -> Result<KeySet, String> {
    let fetch = async {
        let uri = match r {
            Remote::Uri(u) => u.clone(),
            Remote::Discover(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc: serde_json::Value =
                    serde_json::from_slice(&get(client, &url).await?).map_err(|e| e.to_string())?;
                doc.get("jwks_uri")
                    .and_then(|u| u.as_str())
                    .ok_or_else(|| format!("{url}: no jwks_uri"))?
                    .to_string()
            }
        };
        let body = get(client, &uri).await?;
        KeySet::parse(&String::from_utf8_lossy(&body))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn get(client: &Client, url: &str) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    // An address written in the URI is never resolved: check it here.
    let literal = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    if let Some(ip) = literal.and_then(|h| h.parse::<std::net::IpAddr>().ok()) {
        if let Some(why) = super::blocked::blocked(ip) {
            return Err(format!(
                "{url}: {ip} is {why}, which a jwksUri may not reach"
            ));
        }
    }
    let resp = client
        .get(uri)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("GET {url}: {e} (at most {MAX_JWKS_BYTES} bytes)"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("GET {url}: status {status}"));
    }
    Ok(body)
}
