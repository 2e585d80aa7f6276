//! `waypoint generate`: what it prints validates against the real schemas
//! (Gateway API CRDs in `tests/schemas/`, core kinds with kubernetes-validate),
//! and so do the install manifests in `docker/k8s/`.

use crate::common::proc::run;
use std::path::Path;
use std::process::Command;

fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/schemas/validate.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 (./dev setup installs kubernetes-validate)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn what_generate_prints_validates_against_the_published_schemas() {
    let out = run(&[
        "generate",
        "--standalone",
        "-n",
        "shop",
        "--name",
        "wp",
        "--for",
        "service",
        "--replicas",
        "2",
        "--max-replicas",
        "4",
    ]);
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{yaml}");
    let kinds: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(
        kinds,
        [
            "Gateway",
            "ServiceAccount",
            "ClusterRoleBinding",
            "RoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler"
        ]
    );
    let (ok, report) = validate(&yaml);
    assert!(ok, "{report}\n{yaml}");

    // The check can fail: a misspelt field and a wrong type are both caught.
    let broken = yaml
        .replace("protocol: HBONE", "protocoll: HBONE")
        .replace("maxReplicas: 4", "maxReplicas: four");
    let (ok, report) = validate(&broken);
    assert!(!ok);
    assert!(report.contains("Gateway shop/wp"), "{report}");
    assert!(
        report.contains("HorizontalPodAutoscaler shop/wp"),
        "{report}"
    );

    // So do the install manifests and the README's example, which the
    // waypoint's own check also accepts.
    let docker = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
    for file in [
        "k8s/rbac.yaml",
        "k8s/controller.yaml",
        "k8s/productpage.yaml",
    ] {
        let text = std::fs::read_to_string(docker.join(file)).unwrap();
        let (ok, report) = validate(&text);
        assert!(ok, "{file}: {report}");
    }
    let example = docker.join("k8s");
    let check = run(&["check", "--config-dir", example.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(table.contains("90%"), "{table}");

    let gateway_only = run(&["generate", "-n", "shop"]);
    let gw = String::from_utf8_lossy(&gateway_only.stdout);
    assert_eq!(gw.matches("kind: ").count(), 1, "{gw}");
    assert!(gw.contains("gatewayClassName: pingora-waypoint"), "{gw}");
}
