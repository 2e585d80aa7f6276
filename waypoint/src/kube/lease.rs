//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's does it:
//! the holder renews `renewTime` every third of the lease's duration; another
//! replica takes the Lease over once it has gone a whole duration without
//! renewal. Every write is a compare-and-swap on the Lease's resourceVersion,
//! so two replicas never both believe they took it.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::json;
use std::time::Duration;

/// How long a Lease holds without renewal, by default.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

pub struct Lease {
    pub client: kube::Client,
    pub namespace: String,
    pub name: String,
    /// This replica, as the Lease's holderIdentity (the pod's name).
    pub identity: String,
    pub duration: Duration,
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    )
}

/// A Kubernetes timestamp (`MicroTime`) for now.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Lease {
    /// How often the holder renews, and the others look.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Takes or renews the Lease; true while this replica holds it.
    pub async fn lead(&self) -> Result<bool, kube::Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource());
        let seconds = self.duration.as_secs().max(1) as i64;
        let spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": seconds,
            "renewTime": now(),
        });
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            let mut obj = DynamicObject::new(&self.name, &resource());
            obj.metadata.namespace = Some(self.namespace.clone());
            let mut spec = spec;
            spec["acquireTime"] = json!(now());
            obj.data = json!({ "spec": spec });
            return match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let held = lease.data["spec"]["holderIdentity"].as_str() == Some(self.identity.as_str());
        let expired = lease.data["spec"]["renewTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_none_or(|t| {
                let duration = lease.data["spec"]["leaseDurationSeconds"]
                    .as_i64()
                    .unwrap_or(seconds);
                jiff::Timestamp::now().as_second() > t.as_second() + duration
            });
        if !held && !expired {
            return Ok(false);
        }
        if !held {
            lease.data["spec"]["acquireTime"] = json!(now());
        }
        for (k, v) in spec.as_object().expect("object") {
            lease.data["spec"][k] = v.clone();
        }
        // The resourceVersion read above makes this a compare-and-swap.
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `work` only while this replica holds the Lease: it starts once the
    /// Lease is taken and is dropped as soon as a renewal fails, so that two
    /// replicas never act at once. Returns only if `work` does.
    pub async fn while_leading<F, Fut>(&self, what: &str, mut work: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            loop {
                match self.lead().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => log::warn!("{what}: lease {}: {e}", self.name),
                }
                tokio::time::sleep(self.renew_every()).await;
            }
            log::info!(
                "{what}: this replica leads (lease {}/{})",
                self.namespace,
                self.name
            );
            let kept = async {
                loop {
                    tokio::time::sleep(self.renew_every()).await;
                    // A renewal that hangs past its turn is a renewal that failed.
                    match tokio::time::timeout(self.renew_every(), self.lead()).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => return,
                        Ok(Err(e)) => {
                            log::warn!("{what}: renewing lease {}: {e}", self.name);
                            return;
                        }
                        Err(_) => {
                            log::warn!("{what}: renewing lease {} timed out", self.name);
                            return;
                        }
                    }
                }
            };
            tokio::select! {
                () = work() => return,
                () = kept => log::warn!("{what}: lost the lease; stopping until it is ours again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renew_times_are_rfc3339_with_microseconds() {
        let t = super::now();
        assert_eq!(t.len(), "2026-12-06T14:10:00.123456Z".len(), "{t}");
        assert!(t.parse::<jiff::Timestamp>().is_ok(), "{t}");
    }
}
