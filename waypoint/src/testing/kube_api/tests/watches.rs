//! kube-runtime's watcher against the fake: events, selectors, recovery.

use super::*;

#[tokio::test]
async fn a_watcher_lists_then_sees_added_modified_and_deleted() {
    let api = KubeApi::start().await;
    api.apply(service("a", json!({})));
    let services: Api<Service> = Api::all(api.client());
    let mut events = watcher(services, watcher::Config::default()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(s) if s.metadata.name.as_deref() == Some("a"))
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));

    // The watch starts on the next poll, from the list's resourceVersion, so these
    // are replayed to it whenever it connects.
    api.apply(service("b", json!({})));
    let mut changed = service("a", json!({}));
    changed["spec"]["clusterIP"] = "10.96.0.9".into();
    api.apply(changed);
    api.delete("services", "default", "b");
    let added = next(&mut events).await.unwrap();
    assert!(matches!(added, watcher::Event::Apply(s) if s.metadata.name.as_deref() == Some("b")));
    let modified = next(&mut events).await.unwrap();
    assert!(
        matches!(modified, watcher::Event::Apply(s) if s.spec.as_ref().unwrap().cluster_ip.as_deref() == Some("10.96.0.9"))
    );
    let deleted = next(&mut events).await.unwrap();
    assert!(
        matches!(deleted, watcher::Event::Delete(s) if s.metadata.name.as_deref() == Some("b"))
    );

    let watch = &api.requests_to(Verb::Watch, "services")[0];
    for param in [
        "watch=true",
        "allowWatchBookmarks=true",
        "timeoutSeconds=290",
        "resourceVersion=",
    ] {
        assert!(watch.query.contains(param), "{param} in {}", watch.query);
    }
    assert!(api.requests_to(Verb::List, "services")[0]
        .query
        .contains("limit=500"));
}

#[tokio::test]
async fn label_selectors_filter_on_the_server() {
    let api = KubeApi::start().await;
    api.apply_all([
        service("in", json!({"app": "a", "tier": "web"})),
        service("out", json!({"app": "b"})),
    ]);
    let services: Api<Service> = Api::all(api.client());
    let names = |list: kube::core::ObjectList<Service>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect()
    };
    for (selector, want) in [
        ("app=a", vec!["in"]),
        ("app!=a", vec!["out"]),
        ("tier", vec!["in"]),
        ("!tier", vec!["out"]),
        ("app in (a,b),app notin (b)", vec!["in"]),
    ] {
        let listed = services
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(listed), want, "{selector}");
    }
    let bad = services
        .list(&ListParams::default().labels("app in a"))
        .await
        .unwrap_err();
    assert_eq!(api_error(&bad), (400, "BadRequest".into()));

    let mirror = Mirror::start(services, watcher::Config::default().labels("app=a"));
    mirror.converges_to(&["in"]).await;
    api.wait_for_watchers("services", 1).await;
    api.apply(service("late", json!({"app": "a"})));
    api.apply(service("ignored", json!({"app": "c"})));
    mirror.converges_to(&["in", "late"]).await;
    // Leaving the selector reads as a deletion to this watch.
    api.apply(service("in", json!({"app": "c"})));
    mirror.converges_to(&["late"]).await;
    assert!(mirror.errors().is_empty(), "{:?}", mirror.errors());
}

#[tokio::test]
async fn compaction_makes_the_watcher_list_again_and_converge() {
    let api = KubeApi::start().await;
    api.apply_all([service("a", json!({})), service("b", json!({}))]);
    let mirror = Mirror::start(
        Api::<Service>::all(api.client()),
        watcher::Config::default(),
    );
    mirror.converges_to(&["a", "b"]).await;
    api.wait_for_watchers("services", 1).await;

    // An open watch gets 410 and the watcher lists again.
    api.compact();
    eventually("a second list", || {
        api.requests_to(Verb::List, "services").len() == 2
    })
    .await;
    assert!(
        mirror
            .errors()
            .iter()
            .any(|e| e.contains("410") || e.contains("too old")),
        "{:?}",
        mirror.errors()
    );

    // Missed while away, then too old to replay: only a list can show the deletion.
    api.wait_for_watchers("services", 1).await;
    api.pause();
    api.delete("services", "default", "a");
    api.apply(service("c", json!({})));
    api.compact();
    api.resume();
    mirror.converges_to(&["b", "c"]).await;
    assert_eq!(api.requests_to(Verb::List, "services").len(), 3);
}

#[tokio::test]
async fn after_a_pause_the_watcher_resumes_and_loses_nothing() {
    let api = KubeApi::start().await;
    api.apply_all([service("a", json!({})), service("b", json!({}))]);
    let mirror = Mirror::start(
        Api::<Service>::all(api.client()),
        watcher::Config::default(),
    );
    mirror.converges_to(&["a", "b"]).await;
    api.wait_for_watchers("services", 1).await;

    api.pause();
    assert_eq!(api.watchers("services"), 0);
    api.delete("services", "default", "a");
    api.apply(service("c", json!({})));
    eventually("the watcher to notice", || !mirror.errors().is_empty()).await;
    let direct = Api::<Service>::all(api.client())
        .list(&ListParams::default())
        .await;
    assert!(direct.is_err(), "a paused server answers nothing");
    api.resume();

    mirror.converges_to(&["b", "c"]).await;
    assert_eq!(
        api.requests_to(Verb::List, "services").len(),
        1,
        "resumed without listing again"
    );
    assert!(
        api.requests_to(Verb::Watch, "services").len() >= 2,
        "the watch was resumed"
    );
}

#[tokio::test]
async fn a_missing_crd_is_a_404_until_installed() {
    let api = KubeApi::start().await;
    api.remove_crd("httproutes.gateway.networking.k8s.io");
    let routes = http_routes(api.client());
    assert_eq!(
        api_error(&routes.list(&ListParams::default()).await.unwrap_err()),
        (404, "NotFound".into())
    );
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    assert!(kube::discovery::pinned_kind(&api.client(), &gvk)
        .await
        .is_err());

    // Each attempt is an Init, then the failed list.
    let mut events = watcher(routes.clone(), watcher::Config::default()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    match next(&mut events).await {
        Err(watcher::Error::InitialListFailed(e)) => assert_eq!(api_error(&e).0, 404),
        other => panic!("expected the initial list to fail, got {other:?}"),
    }
    api.install_crd("httproutes.gateway.networking.k8s.io");
    api.apply(http_route("r"));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(r) if r.metadata.name.as_deref() == Some("r"))
    );
    assert!(kube::discovery::pinned_kind(&api.client(), &gvk)
        .await
        .is_ok());

    // Removing it again deletes its objects for the watcher, then its watches end.
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));
    let remove = async {
        api.wait_for_watchers("httproutes", 1).await;
        api.remove_crd("httproutes");
    };
    let ((), deleted) = tokio::join!(remove, next(&mut events));
    assert!(
        matches!(deleted.unwrap(), watcher::Event::Delete(r) if r.metadata.name.as_deref() == Some("r"))
    );
    assert!(matches!(
        next(&mut events).await,
        Err(watcher::Error::WatchStartFailed(_))
    ));
}

#[tokio::test]
async fn raw_watches_carry_bookmarks_and_streaming_lists_work() {
    let api = KubeApi::start().await;
    api.apply(service("a", json!({})));
    let services: Api<Service> = Api::default_namespaced(api.client());
    let from = api.resource_version().to_string();
    let mut events = services
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    api.wait_for_watchers("services", 1).await;
    api.bookmark();
    match next(&mut events).await.unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, from),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    api.apply(service("b", json!({})));
    assert!(
        matches!(next(&mut events).await.unwrap(), WatchEvent::Added(s) if s.metadata.name.as_deref() == Some("b"))
    );

    // Bookmarks also come unasked, and `timeoutSeconds` ends the stream cleanly.
    api.set_bookmark_interval(Duration::from_millis(50));
    let wp = WatchParams::default().timeout(1);
    let mut short = services
        .watch(&wp, &api.resource_version().to_string())
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next(&mut short).await.unwrap(),
        WatchEvent::Bookmark(_)
    ));
    let started = Instant::now();
    while let Some(event) = tokio::time::timeout(TIMEOUT, short.next()).await.unwrap() {
        assert!(matches!(event.unwrap(), WatchEvent::Bookmark(_)));
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // Resuming from before a compaction: a 200 whose stream is one 410 ERROR event.
    api.compact();
    let mut stale = services
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match next(&mut stale).await.unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }

    let mirror = Mirror::start(
        Api::<Service>::all(api.client()),
        watcher::Config::default().streaming_lists(),
    );
    mirror.converges_to(&["a", "b"]).await;
    assert!(
        api.requests_to(Verb::List, "services").is_empty(),
        "a streaming list is a watch"
    );
    assert!(api
        .requests_to(Verb::Watch, "services")
        .iter()
        .any(|w| w.query.contains("sendInitialEvents=true")));
}

#[tokio::test]
async fn watchers_see_a_bulk_load_as_events() {
    let api = KubeApi::start().await;
    let mirror = Mirror::start(Api::<Pod>::all(api.client()), watcher::Config::default());
    api.wait_for_watchers("pods", 1).await;
    api.apply_all((0..5_000).map(|i| pod("default", &format!("pod-{i}"), "10.0.0.1")));
    eventually("5000 pods", || mirror.store.len() == 5_000).await;
    assert!(mirror.errors().is_empty());
}

#[tokio::test]
async fn metadata_only_clients_get_partial_object_metadata() {
    let api = KubeApi::start().await;
    api.apply(pod("default", "p", "10.0.0.1"));
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let listed = pods.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.types.kind, "PartialObjectMetadataList");
    let item = &listed.items[0];
    assert_eq!(item.types.as_ref().unwrap().kind, "PartialObjectMetadata");
    assert_eq!(item.metadata.labels.as_ref().unwrap()["app"], "a");

    let meta: Api<PartialObjectMeta<Pod>> = Api::all(api.client());
    let mirror = Mirror::start(meta, watcher::Config::default());
    mirror.converges_to(&["p"]).await;
    api.apply(pod("default", "q", "10.0.0.2"));
    mirror.converges_to(&["p", "q"]).await;
    let watch = &api.requests_to(Verb::Watch, "pods")[0];
    assert_eq!(watch.code, 200);
}
