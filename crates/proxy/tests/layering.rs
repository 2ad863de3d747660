//! The proxy's modules import each other without a cycle (issue 11: a code
//! map a newcomer can hold in their head). Each `src/*.rs` is a module; an
//! edge is a `crate::<module>` path in its code (comments aside). A cycle
//! fails the test with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_string();
        modules.insert(name, std::fs::read_to_string(&path).expect("read"));
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, text)| {
            let mut deps = BTreeSet::new();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or_default();
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    let dep: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if dep != *name && names.contains(&dep) {
                        deps.insert(dep);
                    }
                }
                // `use crate::{a, b::C}`
                if let Some(group) = code.split("crate::{").nth(1) {
                    for part in group.split([',', '}']) {
                        let dep: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if dep != *name && names.contains(&dep) {
                            deps.insert(dep);
                        }
                    }
                }
            }
            (name.clone(), deps)
        })
        .collect()
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_checker_finds_a_cycle_and_accepts_a_tree() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
            m.entry(b.to_string()).or_default();
        }
        m
    };
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn the_proxy_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    // The checker reads real edges (so an empty graph cannot pass).
    assert!(
        graph["forward"].contains("shared") && graph["health"].contains("client"),
        "{graph:?}"
    );
    if let Some(c) = cycle(&graph) {
        panic!(
            "the proxy's modules import each other in a cycle: {}; move what both need into a module \
             of its own (as client.rs, drain.rs and shared.rs are)",
            c.join(" -> ")
        );
    }
}
