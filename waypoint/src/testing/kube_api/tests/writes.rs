//! Writes through the kube client: the answers and preconditions it relies on.

use super::*;

#[tokio::test]
async fn typed_writes_get_the_api_servers_answers() {
    let api = KubeApi::start().await;
    let services: Api<Service> = Api::default_namespaced(api.client());
    let created = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(service("a", json!({}))).unwrap(),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(
        (meta.generation, meta.resource_version.clone()),
        (Some(1), Some(api.resource_version().to_string()))
    );

    let again = services
        .create(&PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(api_error(&again), (409, "AlreadyExists".into()));
    assert_eq!(
        api_error(&services.get("missing").await.unwrap_err()),
        (404, "NotFound".into())
    );
    assert!(services.get_opt("missing").await.unwrap().is_none());

    let mut changed = created.clone();
    changed.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.2".into());
    let replaced = services
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    let stale = services
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(&stale), (409, "Conflict".into()));

    let labels = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    let patched = services
        .patch("a", &PatchParams::default(), &labels)
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );
    let same = services
        .patch("a", &PatchParams::default(), &labels)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, patched.metadata.resource_version,
        "a no-op write is not a write"
    );

    let pods: Api<Pod> = Api::namespaced(api.client(), "ns1");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod("ns1", "p", "10.0.0.1")).unwrap(),
    )
    .await
    .unwrap();
    let stored = api.get("pods", "ns1", "p").unwrap();
    assert!(
        stored["status"].is_null(),
        "status is the status subresource's to write"
    );

    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get("services", "default", "a").is_none());
    assert_eq!(
        api_error(
            &services
                .delete("a", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .0,
        404
    );
}

#[tokio::test]
async fn status_is_written_by_merge_patch_and_server_side_apply() {
    let api = KubeApi::start().await;
    api.apply(http_route("r"));
    let routes = http_routes(api.client());
    let accepted = json!({"parents": [{"parentRef": {"name": "reviews", "kind": "Service", "group": ""},
        "controllerName": "istio.io/gateway-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}]}]});
    let merged = routes
        .patch_status(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": accepted, "spec": {"rules": []}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["status"], accepted);
    assert_eq!(
        merged.data["spec"]["rules"].as_array().unwrap().len(),
        1,
        "a status write leaves spec alone"
    );
    assert_eq!(merged.metadata.generation, Some(1));

    let mut resolved = accepted.clone();
    resolved["parents"][0]["conditions"][0]["type"] = "ResolvedRefs".into();
    let applied = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                         "metadata": {"name": "r", "namespace": "default"}, "status": resolved});
    let params = PatchParams::apply("waypoint").force();
    let after = routes
        .patch_status("r", &params, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(after.data["status"], resolved);
    let managers = after.metadata.managed_fields.unwrap();
    assert!(managers
        .iter()
        .any(|m| m.manager.as_deref() == Some("waypoint")
            && m.subresource.as_deref() == Some("status")));

    let patches = api.requests_to(Verb::Patch, "httproutes/status");
    assert_eq!(patches.len(), 2);
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patches[1].body.as_ref().unwrap()["status"], resolved);
    assert_eq!(patches[1].field_manager.as_deref(), Some("waypoint"));
    assert!(
        api.requests_to(Verb::Patch, "httproutes").is_empty(),
        "only /status was patched"
    );

    // A test editing the spec keeps the status a controller wrote.
    let mut edited = http_route("r");
    edited["spec"]["rules"] = json!([]);
    let stored = api.apply(edited);
    assert_eq!(stored["status"], resolved);
    assert_eq!(stored["metadata"]["generation"], 2);

    // Writing the object leaves status as stored; apply creates what is missing.
    let mut spec_write = applied.clone();
    spec_write["status"] = json!({"parents": []});
    spec_write["metadata"]["name"] = "new".into();
    spec_write["spec"] = json!({"parentRefs": []});
    let created = routes
        .patch("new", &params, &Patch::Apply(&spec_write))
        .await
        .unwrap();
    assert!(created.data["status"].is_null());
    let missing = routes
        .patch_status("gone", &params, &Patch::Apply(&applied))
        .await
        .unwrap_err();
    assert_eq!(api_error(&missing).0, 404);
    let no_manager = routes
        .patch("new", &PatchParams::default(), &Patch::Apply(&spec_write))
        .await;
    assert!(no_manager.is_err());
}

#[tokio::test]
async fn leases_elect_a_leader_with_create_and_conditional_replace() {
    let api = KubeApi::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), "istio-system");
    let lease = |holder: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "waypoint-leader"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}))
        .unwrap()
    };
    let mine = leases
        .create(&PostParams::default(), &lease("a"))
        .await
        .unwrap();
    let theirs = leases
        .create(&PostParams::default(), &lease("b"))
        .await
        .unwrap_err();
    assert_eq!(api_error(&theirs), (409, "AlreadyExists".into()));

    let mut renewed = mine.clone();
    renewed.spec.as_mut().unwrap().lease_transitions = Some(1);
    let renewed = leases
        .replace("waypoint-leader", &PostParams::default(), &renewed)
        .await
        .unwrap();
    // Someone still holding the old version loses the race.
    let mut takeover = mine.clone();
    takeover.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let lost = leases
        .replace("waypoint-leader", &PostParams::default(), &takeover)
        .await
        .unwrap_err();
    assert_eq!(api_error(&lost), (409, "Conflict".into()));
    let held = leases.get("waypoint-leader").await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("a"));
    assert_eq!(
        held.metadata.resource_version,
        renewed.metadata.resource_version
    );
}

#[tokio::test]
async fn events_are_recorded() {
    let api = KubeApi::start().await;
    let reporter = kube::runtime::events::Reporter {
        controller: "waypoint".into(),
        instance: Some("w-0".into()),
    };
    let recorder = kube::runtime::events::Recorder::new(api.client(), reporter);
    let reference = ObjectReference {
        api_version: Some("gateway.networking.k8s.io/v1".into()),
        kind: Some("HTTPRoute".into()),
        name: Some("r".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "InvalidBackend".into(),
        note: Some("no such service".into()),
        action: "Translate".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events = api.list("events.events.k8s.io");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "InvalidBackend");
    assert_eq!(
        events[0]["series"]["count"], 2,
        "a repeat is a merge patch on the series"
    );
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let api = KubeApi::start().await;
    let services: Api<Service> = Api::default_namespaced(api.client());
    let mut held = service("held", json!({}));
    held["metadata"]["finalizers"] = json!(["example.dev/cleanup"]);
    api.apply(held);
    services.delete("held", &Default::default()).await.unwrap();
    let marked = services.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    services
        .patch("held", &PatchParams::default(), &release)
        .await
        .unwrap();
    assert!(services.get_opt("held").await.unwrap().is_none());
}
