//! The structure docs/architecture.md describes, checked: no import circle
//! among the engine's modules, at any depth, except a parent and its own
//! children; and no part but the wiring (`server`) takes the top-level
//! `Config`. A grep of `crate::…` and `super::…` paths, as a reader sees
//! them — no compiler internals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `dispatch/mod.rs` → `["dispatch"]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its trailing
/// `#[cfg(test)]` module (tests may reach anywhere).
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names: `crate::a::b`, `crate::{a, b::c}`,
/// `super::x`.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let path_at = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = s;
        loop {
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            out.push(rest[..end].to_string());
            rest = &rest[end..];
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        out
    };
    let mut refs = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let after = &code[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let p = path_at(item.trim());
                if !p.is_empty() {
                    refs.push(p);
                }
            }
        } else {
            refs.push(path_at(after));
        }
    }
    // `super::` from `a/b.rs` and from `a/b/mod.rs` is `a`.
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with("::") {
            continue;
        }
        let mut p = parent.clone();
        p.extend(path_at(&code[i + "super::".len()..]));
        refs.push(p);
    }
    refs
}

/// The longest prefix of `path`, at most `depth` long, that is a module.
fn normalise(
    path: &[String],
    depth: usize,
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    (1..=depth.min(path.len()))
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

/// The module graph at `depth`, without parent–child edges.
fn graph(depth: usize) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut modules = BTreeSet::new();
    for f in &all {
        let m = module_of(&root, f);
        for n in 1..=m.len() {
            modules.insert(m[..n].to_vec());
        }
    }
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in &all {
        let m = module_of(&root, f);
        let Some(from) = normalise(&m, depth, &modules) else {
            continue;
        };
        let text = std::fs::read_to_string(f).expect("readable");
        for r in references(&m, &code(&text)) {
            let Some(to) = normalise(&r, depth, &modules) else {
                continue;
            };
            if !is_prefix(&from, &to) && !is_prefix(&to, &from) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// One cycle of the graph, if there is one.
fn cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        v: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(v.clone(), Mark::Open);
        stack.push(v.clone());
        for w in edges.get(v).into_iter().flatten() {
            match marks.get(w) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|s| s == w).unwrap_or(0);
                    let mut c = stack[start..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(w, edges, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(v.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for v in edges.keys() {
        if !marks.contains_key(v) {
            let mut stack = Vec::new();
            if let Some(c) = visit(v, edges, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_import_circle_at_any_depth() {
    for depth in 1..=4 {
        let edges = graph(depth);
        assert!(
            edges.len() > 5,
            "depth {depth}: the scan found too few modules to mean anything"
        );
        if let Some(c) = cycle(&edges) {
            let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            panic!(
                "import circle at depth {depth}: {} (see docs/architecture.md)",
                names.join(" → ")
            );
        }
    }
}

/// The scan does see a circle when there is one (it would otherwise pass
/// whatever the code did).
#[test]
fn the_scan_finds_a_circle() {
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let m = |s: &str| vec![s.to_string()];
    edges.entry(m("a")).or_default().insert(m("b"));
    edges.entry(m("b")).or_default().insert(m("c"));
    assert_eq!(cycle(&edges), None);
    edges.entry(m("c")).or_default().insert(m("a"));
    assert!(cycle(&edges).is_some());
    let refs = references(
        &["dispatch".into(), "pipeline".into()],
        "use crate::{ingest::claim, model};\nuse super::hold;",
    );
    assert!(refs.contains(&vec!["ingest".to_string(), "claim".to_string()]));
    assert!(refs.contains(&vec!["model".to_string()]));
    assert!(refs.contains(&vec!["dispatch".to_string(), "hold".to_string()]));
}

#[test]
fn only_the_wiring_takes_the_top_level_config() {
    let edges = graph(1);
    let takers: Vec<String> = edges
        .iter()
        .filter(|(_, to)| to.contains(&vec!["config".to_string()]))
        .map(|(from, _)| from.join("::"))
        .collect();
    assert_eq!(
        takers,
        ["server"],
        "parts take their own section, not Config"
    );
}
