//! The direct reader against the `serde_json::Value` route it replaces: same
//! resources, same diagnostics, same refusals.

use super::{parse_all, parse_all_via_values};
use crate::{Diagnostic, Source};

fn both(content: &str) -> (String, String) {
    let src = [Source {
        file: "t.yaml".into(),
        content: content.into(),
    }];
    let run = |f: fn(&[Source], &mut Vec<Diagnostic>) -> super::Resources| {
        let mut diags = Vec::new();
        let res = f(&src, &mut diags);
        format!("{res:#?}\n{diags:#?}")
    };
    (run(parse_all), run(parse_all_via_values))
}

#[test]
fn every_test_world_reads_the_same_either_way() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata"));
    let (mut n, mut read_directly) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_str().is_some_and(|p| p.ends_with(".in.yaml")) {
            let content = std::fs::read_to_string(&path).unwrap();
            let (direct, values) = both(&content);
            assert_eq!(direct, values, "{}", path.display());
            n += 1;
            read_directly += usize::from(read_directly_whole(&content));
        }
    }
    assert!(n >= 5, "test worlds went missing");
    assert!(
        read_directly * 2 > n,
        "{read_directly} of {n} read directly"
    );
}

/// YAML reads any scalar as a string when asked for one; the `Value` route
/// did not, and neither does the direct reader.
#[test]
fn what_json_would_refuse_is_still_refused() {
    let cases = [
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {version: 2}}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: 8080, port: 80}]}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: \"80\"}]}\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [123]}\n",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: h, subsets: [{name: v1, labels: {version: 1.5}}]}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: true}\n",
    ];
    for case in cases {
        let (direct, values) = both(case);
        assert_eq!(direct, values, "{case}");
        assert!(direct.contains("severity: Error"), "{case}: {direct}");
        assert!(!read_directly_whole(case), "{case}");
    }
}

#[test]
fn unusual_documents_read_the_same_either_way() {
    let cases = [
        // `kind` after `spec`: collected into a `Value`.
        "apiVersion: v1\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\nkind: Service\n",
        // A repeated key: `Value` keeps the last.
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n",
        "apiVersion: v1\nkind: Service\nspec: {}\nspec: {ports: [{port: 80}]}\nmetadata: {name: s}\n",
        // A custom tag where nothing reads it.
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nextra: !Thing x\n",
        // Anchors and aliases.
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: &l {app: a}}\nspec: {selector: *l}\n",
        // Empty documents, a bare map, a scalar.
        "---\n---\n{}\n",
        "just text\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: null, ports: ~}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: http}, {port: 81, targetPort: 8081}]}\n",
    ];
    for case in cases {
        let (direct, values) = both(case);
        assert_eq!(direct, values, "{case}");
    }
}

fn read_directly_whole(content: &str) -> bool {
    serde_yaml_ng::Deserializer::from_str(content).all(|doc| super::direct::read(doc).is_ok())
}

#[test]
fn pairs_iterate_as_the_map_would() {
    let mut d = serde_json::Deserializer::from_str(r#"{"b": 1, "a": 2, "b": 3}"#);
    let got: Vec<(String, u8)> = super::pairs(&mut d).unwrap();
    assert_eq!(got, [("a".to_string(), 2), ("b".to_string(), 3)]);
    let mut d = serde_json::Deserializer::from_str("[1]");
    let err = super::pairs::<_, u8>(&mut d).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid type: sequence, expected a map"),
        "{err}"
    );
}
