//! Reading in pieces on several threads against reading one document after
//! the other: the same resources, the same diagnostics, in the same order.

use super::{cuts, each, Event, Split};
use crate::parse::{in_order, parse_split, Resources};
use crate::{Diagnostic, Source};
use std::collections::BTreeMap;

fn src(file: &str, content: &str) -> Source {
    Source {
        file: file.into(),
        content: content.into(),
    }
}

/// The resources and diagnostics, as text.
fn dump(res: &Resources, diags: &[Diagnostic]) -> String {
    format!("{res:#?}\n{diags:#?}")
}

/// Every file from its first document, one after the other: how files were
/// read before pieces.
fn one_by_one(sources: &[Source]) -> String {
    let (mut out, mut seen, mut diags) = (Resources::default(), BTreeMap::new(), Vec::new());
    for s in sources {
        in_order(s, 0, &mut out, &mut seen, &mut diags);
    }
    dump(&out, &diags)
}

/// Each way of sharing out: whole files on one thread, and a piece at every
/// `---` line that may be cut, on one thread and on several.
fn assert_same(sources: &[Source]) -> String {
    let expected = one_by_one(sources);
    for (threads, piece) in [(1, usize::MAX), (1, 1), (2, 1), (3, 1), (2, 200)] {
        let mut diags = Vec::new();
        let res = parse_split(sources, &Split { threads, piece }, &mut diags);
        assert_eq!(
            dump(&res, &diags),
            expected,
            "threads {threads}, pieces of {piece}"
        );
    }
    expected
}

fn service(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: n}}\nspec: {{ports: [{{port: 80}}], selector: {{app: s{i}}}}}\n"
    )
}

fn pod(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: n, labels: {{app: s{i}}}}}\nstatus: {{podIP: 10.0.0.{i}}}\n"
    )
}

/// Documents joined with `---` lines, the first without one.
fn join(docs: &[String]) -> String {
    docs.join("---\n")
}

#[test]
fn a_file_is_cut_only_before_a_later_document_start() {
    let text = "# c\n---\na: 1\n---\nb: 2\n--- \nc: 3\n---x\n----\n  ---\n---";
    let pieces: Vec<_> = cuts(text, 1).collect();
    assert_eq!(
        pieces,
        [(0, 13), (13, 22), (22, 48), (48, 51)],
        "{:?}",
        pieces.iter().map(|&(a, b)| &text[a..b]).collect::<Vec<_>>()
    );
    // A file starting with `---`: its next `---` line is the first cut.
    let pieces: Vec<_> = cuts("---\na: 1\n---\nb: 2\n", 1).collect();
    assert_eq!(pieces, [(0, 9), (9, 18)]);
    // Pieces are `piece` long at least, the last one too.
    let text = "---\na: 1\n---\nb: 2\n---\nc: 3\n";
    assert_eq!(
        cuts(text, 9).collect::<Vec<_>>(),
        [(0, 9), (9, 18), (18, 27)]
    );
    assert_eq!(cuts(text, 10).collect::<Vec<_>>(), [(0, 27)]);
    assert_eq!(cuts("", 1).collect::<Vec<_>>(), [(0, 0)]);
}

#[test]
fn every_test_world_reads_the_same_in_pieces() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata"));
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_str().is_some_and(|p| p.ends_with(".in.yaml")) {
            let content = std::fs::read_to_string(&path).unwrap();
            sources.push(src(&path.display().to_string(), &content));
        }
    }
    sources.sort_by(|a, b| a.file.cmp(&b.file));
    assert!(sources.len() >= 5, "test worlds went missing");
    // File by file, and all of them as one file.
    for s in &sources {
        assert_same(std::slice::from_ref(s));
    }
    assert_same(&sources);
    let all: Vec<String> = sources.iter().map(|s| s.content.clone()).collect();
    assert_same(&[src("all.yaml", &all.join("\n---\n"))]);
}

/// Several files, one with a YAML error in its middle and one with a field
/// of the wrong type: every diagnostic, in order, and the documents before
/// each error placed, as before.
#[test]
fn errors_in_a_middle_piece_read_as_before() {
    let good: Vec<String> = (0..20)
        .map(|i| [service(i), pod(i)].join("---\n"))
        .collect();
    let mut syntax = good.clone();
    syntax.insert(
        7,
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: n\n".into(),
    );
    let mut typed = good.clone();
    typed.insert(
        12,
        "apiVersion: v1\nkind: Service\nmetadata: {name: t, namespace: n}\nspec: {ports: [{port: \"80\"}]}\n".into(),
    );
    // The same Service twice, in different pieces and files: the first wins,
    // and the warning names the file of the first.
    let mut twice = vec![service(3)];
    twice.extend((100..110).map(pod));
    twice.push(service(3));
    let sources = [
        src("a.yaml", &join(&good[..10])),
        src("b.yaml", &join(&syntax)),
        src("c.yaml", &join(&typed)),
        src("d.yaml", &join(&twice)),
        src("e.yaml", &join(&good[10..])),
    ];
    let out = assert_same(&sources);
    assert!(
        out.contains("b.yaml") && out.contains("not valid YAML"),
        "{out}"
    );
    assert!(
        out.contains("c.yaml") && out.contains("spec.ports[0].port"),
        "{out}"
    );
    assert!(out.contains("already defined in a.yaml"), "{out}");
    // The clean files were read in pieces, not handed back: otherwise the
    // comparison above would hold with pieces never used.
    let mut handed_back = Vec::new();
    let split = Split {
        threads: 2,
        piece: 1,
    };
    each(&sources, &split, |src, event| {
        if let Event::Rest { .. } = event {
            handed_back.push(src.file.clone());
        }
    });
    assert_eq!(handed_back, ["b.yaml", "c.yaml"]);
}

/// What could make a `---` line something other than a document start, or a
/// piece read differently from the same text in the whole file.
#[test]
fn unusual_text_reads_the_same_in_pieces() {
    let s = service(1);
    let cases = [
        // Comments, blank lines and a `...` end before the first document.
        format!("# header\n\n---\n{s}---\n{s}"),
        format!("...\n---\n{s}---\n{}", pod(1)),
        format!("{s}...\n---\n{}...\n", pod(1)),
        // A block scalar whose lines look like document starts, indented.
        format!("{s}data: |\n  ---\n  --- x\n---\n{}", pod(1)),
        // A block scalar, kept newlines and all, ended by a `---` line.
        format!("{s}data: |+\n  a\n\n\n---\n{}", pod(1)),
        // Multi-line plain and quoted scalars across a `---` line.
        format!("{s}note: a\n  b\n---\n{}", pod(1)),
        format!("{s}note: \"a\n---\nb\"\n---\n{}", pod(1)),
        format!("{s}note: 'a\n--- b'\n---\n{}", pod(1)),
        // A flow collection left open across a `---` line.
        format!("{s}extra: [a,\n---\n]\n---\n{}", pod(1)),
        // A mapping key still waiting for its value.
        format!("{s}? key\n---\n{}", pod(1)),
        // Directives: tags declared for one document only.
        format!(
            "%TAG !x! tag:example.com:\n---\n{s}extra: !x!y z\n---\n{}",
            pod(1)
        ),
        format!("{s}---\n{}%YAML 1.1\n---\n{}", pod(1), pod(2)),
        format!(
            "{s}%TAG !x! tag:example.com:\n---\n{}---\n{}extra: !x!y z\n",
            pod(1),
            pod(2)
        ),
        // Anchors are per document; an alias to another document's fails.
        format!("{s}extra: &a x\n---\n{}more: *a\n", pod(1)),
        // Windows line ends.
        format!("{s}---\r\n{}---\r\n{}", pod(1), pod(2))
            .replace('\n', "\r\n")
            .replace("\r\r", "\r"),
        // Empty documents, and text that is no object.
        format!("---\n---\n{s}---\n---\njust text\n---\n"),
        // `---` with something after it on the line.
        format!(
            "--- # first\n{s}--- {{apiVersion: v1, kind: Pod, metadata: {{name: q}}}}\n---\t\n{}",
            pod(1)
        ),
        // A byte order mark.
        format!("\u{feff}{s}---\n{}", pod(1)),
        // A document that reads only through `Value`, after the first piece.
        format!(
            "{s}---\napiVersion: v1\nmetadata: {{name: k}}\nkind: Service\n---\n{}",
            pod(1)
        ),
    ];
    for case in &cases {
        assert_same(&[src("t.yaml", case)]);
        // The same, after other documents, so the case starts a later piece.
        let before: Vec<String> = (10..14).map(pod).collect();
        assert_same(&[src("t.yaml", &format!("{}---\n{case}", join(&before)))]);
    }
}

#[test]
fn a_file_falls_back_from_the_piece_that_fails() {
    let text = join(&(0..50).map(service).collect::<Vec<_>>());
    let split = Split {
        threads: 2,
        piece: 500,
    };
    assert!(cuts(&text, split.piece).count() > 5);
    let events = |text: &str| {
        let (mut docs, mut rest) = (0, Vec::new());
        each(&[src("a.yaml", text)], &split, |_, event| match event {
            Event::Doc(_) => docs += 1,
            Event::Rest { skip } => rest.push(skip),
        });
        (docs, rest)
    };
    assert_eq!(events(&text), (50, vec![]));
    // A syntax error in the 26th document: the pieces before its piece are
    // handed on, then the file is read in order from that piece's first.
    let broken = text.replacen("{name: s25,", "{name: [s25,", 1);
    let (docs, rest) = events(&broken);
    assert!(docs > 0 && docs <= 25, "{docs}");
    assert_eq!(rest, [docs]);
}
