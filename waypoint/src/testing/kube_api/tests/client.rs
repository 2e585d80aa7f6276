//! Reading through the kube client: configuration, lists, paging, discovery, scale.

use super::*;

#[tokio::test]
async fn a_client_from_the_kubeconfig_talks_plain_http() {
    let api = KubeApi::start().await;
    api.apply(service("reviews", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(api.kubeconfig(dir.path())).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.scheme_str(), Some("http"));
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();

    let services: Api<Service> = Api::default_namespaced(client.clone());
    let listed = services.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );
    assert_eq!(
        listed.metadata.resource_version,
        Some(api.resource_version().to_string())
    );
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");
    let list = &api.requests_to(Verb::List, "services")[0];
    assert_eq!(
        (list.path.as_str(), list.code),
        ("/api/v1/namespaces/default/services", 200)
    );
}

#[tokio::test]
async fn dynamic_objects_are_served_at_every_version_of_their_kind() {
    let api = KubeApi::start().await;
    api.apply_yaml(crate::testing::PRODUCTPAGE);
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let vs: Api<DynamicObject> = Api::all_with(
        api.client(),
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    );
    let listed = vs.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let item = &listed.items[0];
    assert_eq!(
        item.types.as_ref().unwrap().api_version,
        "networking.istio.io/v1"
    );
    assert_eq!(
        item.metadata.namespace.as_deref(),
        Some("default"),
        "applied without a namespace"
    );
    assert_eq!(item.data["spec"]["hosts"], json!(["productpage"]));
    let (ar, caps) = kube::discovery::pinned_kind(&api.client(), &gvk)
        .await
        .unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("virtualservices", kube::discovery::Scope::Namespaced)
    );
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let api = KubeApi::start().await;
    api.apply_all((0..1200).map(|i| pod(&format!("ns{}", i % 3), &format!("p{i:04}"), "10.0.0.1")));
    let pods: Api<Pod> = Api::all(api.client());
    let first = pods.list(&ListParams::default().limit(1000)).await.unwrap();
    assert_eq!(first.items.len(), 1000);
    let token = first.metadata.continue_.clone().unwrap();
    let rest = pods
        .list(&ListParams::default().limit(1000).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 200);
    assert_eq!(rest.metadata.continue_, None);
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );

    let in_ns1: Api<Pod> = Api::namespaced(api.client(), "ns1");
    assert_eq!(
        in_ns1
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        400
    );

    // The watcher pages by 500.
    let pods_again = pods.clone();
    let mirror = Mirror::start(pods, watcher::Config::default());
    eventually("1200 pods", || mirror.store.len() == 1200).await;
    let lists = api.requests_to(Verb::List, "pods");
    assert_eq!(
        lists.len(),
        2 + 1 + 3,
        "two pages, one namespaced list, three watcher pages"
    );

    api.apply(pod("ns1", "later", "10.0.0.2"));
    api.compact();
    let stale = pods_again
        .list(&ListParams::default().continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(api_error(&stale), (410, "Expired".into()));
}

#[tokio::test]
async fn bulk_loads_and_lists_at_benchmark_scale() {
    let api = KubeApi::start().await;
    let services =
        (0..10_000).map(|i| service(&format!("svc-{i}"), json!({"app": format!("app-{i}")})));
    let pods: Vec<Value> = (0..50_000)
        .map(|i| pod(&format!("ns-{}", i % 100), &format!("pod-{i}"), "10.0.0.1"))
        .collect();
    let started = Instant::now();
    api.apply_all(services);
    api.apply_all(pods);
    let loaded = started.elapsed();

    let started = Instant::now();
    let request = http::Request::get("/api/v1/pods").body(Vec::new()).unwrap();
    let text = api.client().request_text(request).await.unwrap();
    let listed = started.elapsed();
    assert_eq!(text.matches("\"kind\":\"Pod\"").count(), 50_000);
    eprintln!(
        "loaded 60,000 objects in {loaded:?}; listed 50,000 pods ({} MB) in {listed:?}",
        text.len() >> 20
    );
    // Generous for an unoptimized build on a shared machine; the bench build is ~10x faster.
    assert!(loaded < Duration::from_secs(10) && listed < Duration::from_secs(10));
}
