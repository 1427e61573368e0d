//! Holds the library to its layers: reads every source file, collects the `crate::…` paths it
//! names (in `use` lines and in code), and checks that no module reaches above its layer, that
//! the two transports never reach into each other, and that no import cycle exists, neither
//! among the top-level modules nor among the files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may import only from its own layer or below.
const LAYERS: &[(&str, u8)] = &[
    ("http", 6),
    ("realtime", 6),
    ("state", 5),
    ("push", 4),
    ("secrets", 4),
    ("service", 3),
    ("db", 2),
    ("seed", 2),
    ("views", 2),
    ("domain", 2),
    ("auth", 2),
    ("config", 1),
    ("error", 1),
    ("telemetry", 1),
];

/// Modules of one layer that must not import each other at all.
const STRANGERS: &[(&str, &str)] = &[("http", "realtime"), ("realtime", "http")];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// `src/http/chats.rs` → `["http", "chats"]`; `src/http/mod.rs` → `["http"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads the `a::b::c` that starts at `text` (after `crate::` or `super::`), expanding one
/// level of braces: `crate::{a, b::c}` names `a` and `b::c`.
fn read_paths(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            return inner[..end]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "self")
                .map(|p| {
                    let mut path = segments.clone();
                    path.extend(read_paths(p).into_iter().next().unwrap_or_default());
                    path
                })
                .collect();
        }
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        segments.push(rest[..len].to_owned());
        match rest[len..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![segments]
}

/// The modules (as known files) a source file names, resolved against the file's own path.
fn imports(own: &[String], text: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        // `pub use events::Event;` in a `mod.rs`: a path relative to the module itself.
        if let Some(relative) = code
            .trim_start()
            .strip_prefix("pub use ")
            .or_else(|| code.trim_start().strip_prefix("use "))
        {
            for path in read_paths(relative) {
                let mut full = own.to_vec();
                full.extend(path.into_iter().take(1));
                if full.len() > own.len() && known.contains(&full) {
                    found.insert(full);
                }
            }
        }
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(own))] {
            let mut from = 0;
            while let Some(i) = code[from..].find(prefix) {
                let start = from + i;
                from = start + prefix.len();
                if code[..start].ends_with(|c: char| is_ident(c) || c == ':') {
                    continue;
                }
                for path in read_paths(&code[from..]) {
                    let mut full = base.clone();
                    full.extend(path);
                    // The longest prefix that is a module of its own.
                    while !full.is_empty() && !known.contains(&full) {
                        full.pop();
                    }
                    if !full.is_empty() && full != own {
                        found.insert(full);
                    }
                }
            }
        }
    }
    found
}

/// `super` of a module: its parent; `super` of a `mod.rs` is the directory's parent.
fn parent(own: &[String]) -> Vec<String> {
    own[..own.len().saturating_sub(1)].to_vec()
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .into_iter()
        .map(|f| (module_path(&src, &f), f))
        // The crate root declares the modules; this test is no part of the product.
        .filter(|(m, _)| !m.is_empty() && m[0] != "lib" && m[0] != "layering")
        .collect();
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, file)| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            // Tests may reach anywhere; the layers are about the product's code.
            let product = text.split("#[cfg(test)]").next().unwrap_or("");
            (module.clone(), imports(module, product, &known))
        })
        .collect()
}

/// A cycle in `edges`, if there is one, as the nodes along it.
fn find_cycle<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        node: &N,
        edges: &BTreeMap<N, BTreeSet<N>>,
        path: &mut Vec<N>,
        done: &mut BTreeSet<N>,
    ) -> Option<Vec<N>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            return Some(path[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn every_top_level_module_has_a_layer() {
    for module in graph().keys() {
        assert!(
            layer(&module[0]).is_some(),
            "{module:?} has no layer in LAYERS"
        );
    }
}

#[test]
fn no_module_imports_from_above_its_layer() {
    let mut wrong = Vec::new();
    for (module, imports) in graph() {
        let own = layer(&module[0]).unwrap_or(0);
        for import in imports {
            let theirs = layer(&import[0]).unwrap_or(u8::MAX);
            let strangers = STRANGERS.contains(&(module[0].as_str(), import[0].as_str()));
            if theirs > own || strangers {
                wrong.push(format!(
                    "{} imports {}",
                    module.join("::"),
                    import.join("::")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle_among_modules_or_files() {
    let files = graph();
    if let Some(cycle) = find_cycle(&files) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        panic!("files import each other in a circle: {}", names.join(" → "));
    }
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, imports) in &files {
        let edges = top.entry(module[0].clone()).or_default();
        edges.extend(
            imports
                .iter()
                .map(|i| i[0].clone())
                .filter(|i| *i != module[0]),
        );
    }
    if let Some(cycle) = find_cycle(&top) {
        panic!(
            "modules import each other in a circle: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_reader_sees_imports_of_every_shape() {
    let known: BTreeSet<Vec<String>> = [
        vec!["db"],
        vec!["db", "users"],
        vec!["views"],
        vec!["service"],
        vec!["service", "chats"],
    ]
    .into_iter()
    .map(|m| m.into_iter().map(str::to_owned).collect())
    .collect();
    let own: Vec<String> = vec!["service".into(), "users".into()];
    let text = "use crate::{db::users::UserRow, views};\n\
                let x = crate::service::chats::leave(1);\n\
                use super::Outcome; // crate::nothing\n";
    let found = imports(&own, text, &known);
    let names: BTreeSet<String> = found.iter().map(|m| m.join("::")).collect();
    let expected: BTreeSet<String> = ["db::users", "views", "service::chats", "service"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected);
    let service = vec!["service".to_owned()];
    let found = imports(&service, "pub use chats::{leave, Removal};\n", &known);
    assert_eq!(
        found,
        BTreeSet::from([vec!["service".to_owned(), "chats".to_owned()]])
    );
}
