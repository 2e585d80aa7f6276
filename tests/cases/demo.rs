//! The README's first command: the demo runs the bundled example and shows the split.

use crate::common::proc::{bin, free_addr};
use std::process::Command;

#[test]
fn demo_shows_the_seed_split() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("demo")
        .arg("--once")
        .args(["--requests", "2000"])
        .args(["--hbone-addr", &free_addr().to_string()])
        .args(["--http-addr", &free_addr().to_string()])
        .args(["--admin-addr", &free_addr().to_string()])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "  v2     203   10.2%   (productpage-v2 203)" after the no-header burst.
    let section = stdout
        .split("no header:")
        .nth(1)
        .and_then(|s| s.split("with header").next())
        .unwrap_or_else(|| panic!("no split in:\n{stdout}"));
    let v2: usize = section
        .lines()
        .find(|l| l.trim_start().starts_with("v2"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no v2 line in:\n{stdout}"));
    assert!((133..=267).contains(&v2), "v2 {v2}/2000:\n{stdout}");
    let header = stdout.split("with header").nth(1).unwrap();
    assert!(header.contains("v2     100  100.0%"), "{stdout}");
    assert!(stdout.contains("waypoint client --hbone"), "{stdout}");
    // The screen ends with the commands to try, not with the access log, which
    // the demo writes to a file it names.
    let log = dir.path().join("access.log");
    assert!(
        stdout.contains(&format!("access log {}", log.display())),
        "{stdout}"
    );
    assert!(!stdout.lines().any(|l| l.starts_with('{')), "{stdout}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.contains(&format!("tail -f {}", log.display())),
        "{stdout}"
    );
    // Every request's access-log line made it out before the process ended.
    let lines = std::fs::read_to_string(&log).unwrap();
    let logged = lines.lines().filter(|l| l.starts_with('{')).count();
    assert_eq!(logged, 2100);
    assert!(lines.contains(r#""route_name":"VirtualService default/productpage-routing"#));
}
