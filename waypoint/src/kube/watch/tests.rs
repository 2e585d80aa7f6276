use super::*;
use crate::kube::scope::GatewayRef;
use crate::testing::kube_api::KubeApi;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc::{self, UnboundedReceiver};

fn namespace(name: &str, waypoint: Option<&str>) -> Value {
    let mut labels = json!({"team": "x"});
    if let Some(w) = waypoint {
        labels["istio.io/use-waypoint"] = w.into();
    }
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}})
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap()
}

/// The next update of the current run, named: `listed a`, `applied a`, ...
async fn next(rx: &mut UnboundedReceiver<Tagged>) -> String {
    let (_, u) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an update within 5 s")
        .expect("the watch runs");
    match u {
        Update::Listed(_, o) => format!("listed {}", name(&o)),
        Update::ListDone(_) => "list done".into(),
        Update::Applied(_, o) => format!("applied {}", name(&o)),
        Update::Dropped(_, o) => format!("dropped {}", name(&o)),
        Update::Deleted(_, o) => format!("deleted {}", name(&o)),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn a_watch_sends_only_what_its_keep_keeps() {
    let api = KubeApi::start().await;
    // `mine` names this waypoint, `wanted` matters to it, `other` does not.
    api.apply_all([
        namespace("mine", Some("wp")),
        namespace("other", None),
        namespace("wanted", None),
    ]);
    let gateway: GatewayRef = "mine/wp".parse().unwrap();
    let wanted: BTreeSet<String> = ["wanted".to_string()].into();
    let filters = BTreeMap::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watches = Watches::new(api.client(), tx);
    let id = WatchId {
        kind: Kind::Namespace,
        namespace: None,
    };
    watches.ensure(id.clone(), None);

    let Some((_, Update::Listing(listing, answer))) = rx.recv().await else {
        panic!("a list begins first");
    };
    assert_eq!(listing, id);
    answer
        .send(Keep::new(&id, &filters, &wanted, &gateway, "istio-system").into_owned())
        .unwrap();
    assert_eq!(next(&mut rx).await, "listed mine");
    assert_eq!(next(&mut rx).await, "listed wanted");
    assert_eq!(next(&mut rx).await, "list done");

    // A change the watch keeps comes as such; one it does not keep comes as
    // Dropped, so a held object that stops matching goes from the store.
    api.apply(namespace("other", Some("someone-else")));
    assert_eq!(next(&mut rx).await, "dropped other");
    api.apply(namespace("mine", None));
    assert_eq!(next(&mut rx).await, "dropped mine");
    api.apply(namespace("wanted", Some("wp")));
    assert_eq!(next(&mut rx).await, "applied wanted");
}

#[tokio::test]
async fn a_run_the_source_loop_no_longer_answers_ends() {
    let api = KubeApi::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watches = Watches::new(api.client(), tx);
    let id = WatchId {
        kind: Kind::Namespace,
        namespace: None,
    };
    watches.ensure(id.clone(), None);
    let Some((_, Update::Listing(_, answer))) = rx.recv().await else {
        panic!("a list begins first");
    };
    drop(answer);
    let (_, task) = watches.running.remove(&id).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watch task ends")
        .unwrap();
}

#[test]
fn each_watch_keeps_what_the_source_loop_would() {
    let gateway: GatewayRef = "mine/wp".parse().unwrap();
    let wanted = BTreeSet::new();
    let filters = BTreeMap::new();
    let keep = |kind, namespace: Option<&str>| {
        let id = WatchId {
            kind,
            namespace: namespace.map(str::to_string),
        };
        Keep::new(&id, &filters, &wanted, &gateway, "istio-system")
    };
    // A namespace without a filter keeps none of its Pods; a namespaced
    // Service or Gateway watch keeps all it lists.
    let pod = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"app": "a"}}});
    assert!(!keep(Kind::Pod, Some("n")).keeps(&pod));
    assert!(!keep(Kind::EndpointSlice, Some("n")).keeps(&pod));
    assert_eq!(keep(Kind::Service, Some("n")), Keep::All);
    assert_eq!(keep(Kind::Gateway, Some("mine")), Keep::All);
    let other = json!({"metadata": {"name": "s", "namespace": "elsewhere"}});
    assert!(!keep(Kind::Service, None).keeps(&other));
    assert!(!keep(Kind::DestinationRule, None).keeps(&other));
}
