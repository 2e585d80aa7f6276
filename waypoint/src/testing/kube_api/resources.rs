//! The kinds the fake API server serves, addressed the way the real one does: by
//! group, version and plural, namespaced or not.

/// One kind of object. Every served version shares one store, as the API server's
/// storage version does: the kinds here differ between versions only in
/// `apiVersion`, so converting is rewriting that one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// `""` for the core group (`/api/v1`).
    pub group: String,
    /// Served versions; the first is the one [`super::KubeApi::get`] reports.
    pub versions: Vec<String>,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the object then keep the stored
    /// `status`, and writes to `/status` change only `status`.
    pub status: bool,
}

impl ResourceType {
    pub fn new(
        group: &str,
        versions: &[&str],
        plural: &str,
        kind: &str,
        namespaced: bool,
        status: bool,
    ) -> Self {
        ResourceType {
            group: group.to_string(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
            status,
        }
    }

    /// `plural` for the core group, else `plural.group`: the CRD's name and what
    /// `kubectl get` accepts.
    pub fn name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub(crate) fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The served version an `apiVersion` names, if it names this kind's group.
    pub(crate) fn version_of<'a>(&self, api_version: &'a str) -> Option<&'a str> {
        let version = match api_version.split_once('/') {
            Some((group, version)) if group == self.group => version,
            None if self.group.is_empty() => api_version,
            _ => return None,
        };
        self.serves(version).then_some(version)
    }
}

/// What an Istio ambient waypoint reads and writes, plus what leader election and
/// event recording touch.
pub(crate) fn builtins() -> Vec<ResourceType> {
    const ISTIO: &str = "networking.istio.io";
    const ISTIO_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
    const GATEWAY: &str = "gateway.networking.k8s.io";
    const GATEWAY_VERSIONS: &[&str] = &["v1", "v1beta1"];
    let r = ResourceType::new;
    vec![
        r("", &["v1"], "namespaces", "Namespace", false, true),
        r("", &["v1"], "services", "Service", true, true),
        r("", &["v1"], "pods", "Pod", true, true),
        r("", &["v1"], "events", "Event", true, false),
        r(
            "discovery.k8s.io",
            &["v1"],
            "endpointslices",
            "EndpointSlice",
            true,
            false,
        ),
        r(
            ISTIO,
            ISTIO_VERSIONS,
            "virtualservices",
            "VirtualService",
            true,
            true,
        ),
        r(
            ISTIO,
            ISTIO_VERSIONS,
            "destinationrules",
            "DestinationRule",
            true,
            true,
        ),
        r(
            ISTIO,
            ISTIO_VERSIONS,
            "serviceentries",
            "ServiceEntry",
            true,
            true,
        ),
        r(
            ISTIO,
            ISTIO_VERSIONS,
            "workloadentries",
            "WorkloadEntry",
            true,
            true,
        ),
        r(
            GATEWAY,
            GATEWAY_VERSIONS,
            "httproutes",
            "HTTPRoute",
            true,
            true,
        ),
        r(GATEWAY, &["v1"], "grpcroutes", "GRPCRoute", true, true),
        // Gateway API 1.6's experimental channel: v1, and the deprecated v1alpha2.
        r(
            GATEWAY,
            &["v1", "v1alpha2"],
            "tcproutes",
            "TCPRoute",
            true,
            true,
        ),
        r(GATEWAY, GATEWAY_VERSIONS, "gateways", "Gateway", true, true),
        r(
            GATEWAY,
            GATEWAY_VERSIONS,
            "gatewayclasses",
            "GatewayClass",
            false,
            true,
        ),
        r(
            GATEWAY,
            GATEWAY_VERSIONS,
            "referencegrants",
            "ReferenceGrant",
            true,
            false,
        ),
        r(
            "gateway.envoyproxy.io",
            &["v1alpha1"],
            "backendtrafficpolicies",
            "BackendTrafficPolicy",
            true,
            true,
        ),
        r(
            "security.istio.io",
            &["v1", "v1beta1"],
            "authorizationpolicies",
            "AuthorizationPolicy",
            true,
            true,
        ),
        r(
            "security.istio.io",
            &["v1", "v1beta1"],
            "requestauthentications",
            "RequestAuthentication",
            true,
            true,
        ),
        r(
            "coordination.k8s.io",
            &["v1"],
            "leases",
            "Lease",
            true,
            false,
        ),
        r("events.k8s.io", &["v1"], "events", "Event", true, false),
        // What the controller deploys for a waypoint Gateway.
        r(
            "rbac.authorization.k8s.io",
            &["v1"],
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            false,
        ),
        r(
            "rbac.authorization.k8s.io",
            &["v1"],
            "rolebindings",
            "RoleBinding",
            true,
            false,
        ),
        r(
            "",
            &["v1"],
            "serviceaccounts",
            "ServiceAccount",
            true,
            false,
        ),
        r("", &["v1"], "configmaps", "ConfigMap", true, false),
        r("apps", &["v1"], "deployments", "Deployment", true, true),
        r(
            "policy",
            &["v1"],
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            true,
        ),
        r(
            "autoscaling",
            &["v2"],
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            true,
        ),
    ]
}
