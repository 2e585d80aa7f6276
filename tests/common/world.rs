//! A config directory plus the echo backends its pods stand for. Pods listen on
//! ephemeral loopback ports behind a named `targetPort`, so tests run in parallel
//! without fixed ports.

use std::collections::BTreeMap;
use std::path::Path;
use tempfile::TempDir;
use waypoint::echo::Echo;
use waypoint::testing::{pods_yaml, PRODUCTPAGE};

pub use waypoint::testing::PRODUCTPAGE_VIP;
pub const REVIEWS_VIP: &str = "10.96.0.20:9080";

pub struct World {
    dir: TempDir,
    pub backends: BTreeMap<String, Echo>,
}

/// A pod: name, `app` label, `version` label.
pub struct Pod(pub &'static str, pub &'static str, pub &'static str);

impl World {
    pub async fn new(pods: &[Pod], manifests: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut backends = BTreeMap::new();
        let mut specs = Vec::new();
        for Pod(name, app, version) in pods {
            let echo = Echo::start("127.0.0.1:0".parse().unwrap(), name)
                .await
                .unwrap();
            specs.push(waypoint::testing::Pod {
                name,
                app,
                version,
                port: echo.addr.port(),
            });
            backends.insert(name.to_string(), echo);
        }
        std::fs::write(dir.path().join("pods.yaml"), pods_yaml(&specs)).unwrap();
        std::fs::write(dir.path().join("world.yaml"), manifests).unwrap();
        World { dir, backends }
    }

    /// The seed world: productpage with v1 (two pods) and v2, the brief's
    /// VirtualService and a DestinationRule with the two subsets.
    pub async fn productpage() -> World {
        World::new(
            &[
                Pod("productpage-v1-a", "productpage", "v1"),
                Pod("productpage-v1-b", "productpage", "v1"),
                Pod("productpage-v2", "productpage", "v2"),
            ],
            PRODUCTPAGE,
        )
        .await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn requests(&self, pod: &str) -> u64 {
        self.backends[pod].requests()
    }
}
