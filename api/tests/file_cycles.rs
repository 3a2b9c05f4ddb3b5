//! No source file imports a file that imports it back, directly or through
//! a longer chain, in the source trees listed in [`SRC_DIRS`].
//!
//! A file's imports are its `use` trees and the inline `crate::`, `self::`
//! and `super::` paths of its code (comments, strings and `mod tests`'
//! `use super::*` excluded). A path is charged to the file that defines
//! the item: `crate::store::Store` is `store.rs` (or `store/mod.rs`), and a
//! name that file only re-exports (`pub use hashes::SessionRecord`) is
//! followed to where it comes from. `mod x;` declarations are containment,
//! not imports. A cycle is a strongly connected set of two or more files.
//!
//! This is a text scan, not a compiler: `#[path]` attributes and macros
//! that build paths are not seen. It is a guard for the layering, not a
//! proof of it.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source trees held free of file cycles, relative to the workspace
/// root: the api, the worker and the stand-in.
const SRC_DIRS: &[&str] = &["api/src", "worker/src", "deploy/local/standin/src"];

#[test]
fn no_source_file_imports_a_file_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut report = String::new();
    for dir in SRC_DIRS {
        let sources = read_tree(&root.join(dir));
        assert!(sources.len() > 1, "{dir}: no sources found");
        for cycle in cycles(&sources) {
            report.push_str(&format!("{dir}: {}\n", cycle.describe()));
        }
    }
    assert!(report.is_empty(), "file import cycles:\n{report}");
}

/// The api's layers: `(folder, folders it must not import)`. The store is
/// what another binary (the gateway) reuses without the HTTP layer.
const API_LAYERS: &[(&str, &[&str])] = &[("store/", &["http/", "views/"]), ("views/", &["http/"])];

#[test]
fn the_api_store_and_views_import_nothing_above_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let graph = graph(&read_tree(&root.join("api/src")));
    let mut wrong = Vec::new();
    for (layer, above) in API_LAYERS {
        assert!(graph.keys().any(|f| f.starts_with(layer)), "api/src/{layer} has files");
        for (from, imports) in graph.iter().filter(|(f, _)| f.starts_with(layer)) {
            for (to, line) in imports.iter().filter(|(t, _)| above.iter().any(|a| t.starts_with(a))) {
                wrong.push(format!("api/src/{from}:{line} imports {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "a lower layer imports a higher one: {wrong:#?}");
}

/// Every `.rs` file under `dir`, by path relative to `dir` (`/`-separated).
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The module path a file defines: `lib.rs` → `[]`, `a/mod.rs` → `[a]`, `a/b.rs` → `[a, b]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod")) || (parts.len() == 1 && is_root(file)) {
        parts.pop();
    }
    parts
}

fn is_root(file: &str) -> bool {
    file == "lib.rs" || file == "main.rs"
}

/// One import found in a file: the absolute module path it names and its line.
#[derive(Debug, Clone)]
struct Import {
    path: Vec<String>,
    line: usize,
    public: bool,
}

/// Blanks out comments, string and char literals, keeping newlines (so
/// line numbers survive) and everything else.
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&b, i) {
            // Raw string r"..." / r#"..."#; `r#ident` is a raw identifier.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                out.extend(std::iter::repeat_n(' ', j + 1 - i));
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Tokens of stripped source: identifiers, `::` and single punctuation,
/// each with its line.
fn tokens(src: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((chars[start..i].iter().collect(), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(("::".to_owned(), line));
            i += 2;
        } else {
            out.push((c.to_string(), line));
            i += 1;
        }
    }
    out
}

/// Flattens a `use` tree starting at `toks[*i]` into full paths (relative
/// as written); stops after the closing `;`.
fn use_tree(toks: &[(String, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    // `{self, ..}` names the prefix itself.
    let mut named_self = false;
    while *i < toks.len() {
        let t = toks[*i].0.as_str();
        match t {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                loop {
                    use_tree(toks, i, &path, out);
                    match toks.get(*i).map(|t| t.0.as_str()) {
                        Some(",") => *i += 1,
                        Some("}") => {
                            *i += 1;
                            break;
                        }
                        _ => return,
                    }
                    if toks.get(*i).map(|t| t.0.as_str()) == Some("}") {
                        *i += 1;
                        break;
                    }
                }
                return;
            }
            "*" => {
                *i += 1;
                out.push(path);
                return;
            }
            "as" => {
                *i += 2;
                out.push(path);
                return;
            }
            "," | "}" | ";" => {
                if path.len() > prefix.len() || named_self {
                    out.push(path);
                }
                return;
            }
            "self" if path.len() == prefix.len() && !path.is_empty() => {
                named_self = true;
                *i += 1;
            }
            _ => {
                path.push(t.to_owned());
                *i += 1;
            }
        }
    }
}

/// Turns a path as written in module `module` into an absolute one; `None`
/// for paths into other crates.
fn absolute(module: &[String], written: &[String], local_children: &BTreeSet<String>) -> Option<Vec<String>> {
    let first = written.first()?;
    match first.as_str() {
        "crate" => Some(written[1..].to_vec()),
        "self" => Some(module.iter().chain(&written[1..]).cloned().collect()),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = written;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        _ if local_children.contains(first) => Some(module.iter().chain(written).cloned().collect()),
        _ => None,
    }
}

/// The imports of one file (absolute paths).
fn imports(file: &str, src: &str, files: &BTreeMap<Vec<String>, String>) -> Vec<Import> {
    let toks = tokens(&strip(src));
    let file_module = module_of(file);
    // Inline modules: (name, brace depth at which its body opened).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let module: Vec<String> = file_module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect();
        let children: BTreeSet<String> = files
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(&module))
            .map(|m| m[module.len()].clone())
            .collect();
        let t = toks[i].0.as_str();
        let line = toks[i].1;
        match t {
            "mod" if toks.get(i + 2).map(|t| t.0.as_str()) == Some("{") => {
                inline.push((toks[i + 1].0.clone(), depth + 1));
                depth += 1;
                i += 3;
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            "use" => {
                let public = i > 0 && (toks[i - 1].0 == "pub" || toks[i - 1].0 == ")");
                i += 1;
                let mut written = Vec::new();
                use_tree(&toks, &mut i, &[], &mut written);
                for w in written {
                    if let Some(path) = absolute(&module, &w, &children) {
                        out.push(Import { path, line, public });
                    }
                }
            }
            "crate" | "self" | "super"
                if toks.get(i + 1).map(|t| t.0.as_str()) == Some("::")
                    && (i == 0 || toks[i - 1].0 != "::" && toks[i - 1].0 != "$") =>
            {
                let mut written = vec![t.to_owned()];
                let mut j = i + 1;
                while toks.get(j).map(|t| t.0.as_str()) == Some("::")
                    && toks.get(j + 1).is_some_and(|t| t.0.chars().all(|c| c.is_alphanumeric() || c == '_'))
                {
                    written.push(toks[j + 1].0.clone());
                    j += 2;
                }
                if let Some(path) = absolute(&module, &written, &children) {
                    out.push(Import { path, line, public: false });
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// The file that defines what `path` names, following re-exports.
fn resolve(
    path: &[String],
    files: &BTreeMap<Vec<String>, String>,
    reexports: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    hops: usize,
) -> Option<String> {
    let k = (0..=path.len()).rev().find(|k| files.contains_key(&path[..*k]))?;
    let file = files[&path[..k]].clone();
    if let (Some(name), Some(map)) = (path.get(k), reexports.get(&file))
        && let Some(target) = map.get(name)
        && hops < 8
    {
        let rest: Vec<String> = target.iter().chain(&path[k + 1..]).cloned().collect();
        return resolve(&rest, files, reexports, hops + 1);
    }
    Some(file)
}

/// A strongly connected set of files, with the imports that tie it.
#[derive(Debug)]
struct Cycle {
    files: Vec<String>,
    edges: Vec<(String, String, usize)>,
}

impl Cycle {
    fn describe(&self) -> String {
        let edges: Vec<String> =
            self.edges.iter().map(|(from, to, line)| format!("{from}:{line} imports {to}")).collect();
        format!("{} form a cycle ({})", self.files.join(", "), edges.join("; "))
    }
}

/// File → the files it imports (with the line of the first import).
type Graph = BTreeMap<String, BTreeMap<String, usize>>;

/// The import graph of one source tree.
fn graph(sources: &BTreeMap<String, String>) -> Graph {
    // Module path → file; lib.rs wins over main.rs for the crate root.
    let mut files: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for file in sources.keys() {
        let module = module_of(file);
        if file != "main.rs" || !files.contains_key(&module) {
            files.insert(module, file.clone());
        }
    }
    let found: BTreeMap<&String, Vec<Import>> = sources.iter().map(|(f, src)| (f, imports(f, src, &files))).collect();
    let mut reexports: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (file, list) in &found {
        for imp in list.iter().filter(|i| i.public) {
            if let Some(name) = imp.path.last() {
                reexports.entry((*file).clone()).or_default().insert(name.clone(), imp.path.clone());
            }
        }
    }
    let mut graph = Graph::new();
    for (file, list) in &found {
        let node = graph.entry((*file).clone()).or_default();
        for imp in list {
            if let Some(to) = resolve(&imp.path, &files, &reexports, 0)
                && to != **file
            {
                node.entry(to).or_insert(imp.line);
            }
        }
    }
    graph
}

/// Every file cycle in one source tree.
fn cycles(sources: &BTreeMap<String, String>) -> Vec<Cycle> {
    let graph = graph(sources);
    strongly_connected(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            let set: BTreeSet<&String> = scc.iter().collect();
            let edges = scc
                .iter()
                .flat_map(|from| {
                    graph[from].iter().filter(|(to, _)| set.contains(to)).map(|(to, l)| (from.clone(), to.clone(), *l))
                })
                .collect();
            Cycle { files: scc, edges }
        })
        .collect()
}

/// Tarjan's algorithm; components in discovery order, members sorted.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        for to in w.graph.get(v).into_iter().flat_map(|m| m.keys()) {
            let to = to.as_str();
            if !w.index.contains_key(to) {
                visit(w, to);
                let l = w.low[to].min(w.low[v]);
                w.low.insert(v, l);
            } else if w.on_stack.contains(to) {
                let l = w.index[to].min(w.low[v]);
                w.low.insert(v, l);
            }
        }
        if w.low[v] == w.index[v] {
            let mut scc = Vec::new();
            while let Some(x) = w.stack.pop() {
                w.on_stack.remove(x);
                scc.push(x.to_owned());
                if x == v {
                    break;
                }
            }
            scc.sort();
            w.out.push(scc);
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.out
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files.iter().map(|(f, s)| ((*f).to_owned(), (*s).to_owned())).collect()
}

#[test]
fn a_two_file_cycle_is_found() {
    let src = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;"),
        ("a.rs", "use crate::b::Thing;\n"),
        ("b.rs", "pub struct Thing;\nfn f() { super::a::g() }\n"),
    ]);
    let found = cycles(&src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].files, ["a.rs", "b.rs"]);
    assert!(found[0].describe().contains("b.rs:2 imports a.rs"), "{}", found[0].describe());
}

#[test]
fn a_longer_cycle_through_folders_and_use_groups_is_found() {
    let src = tree(&[
        ("lib.rs", "pub mod http;\npub mod store;"),
        ("http/mod.rs", "pub mod handlers;"),
        ("http/handlers.rs", "use crate::{store::{self, Store}, http};\n"),
        ("store/mod.rs", "mod enqueue;\npub use enqueue::Enqueue;\npub struct Store;"),
        ("store/enqueue.rs", "pub struct Enqueue;\npub(crate) use crate::http::handlers::Input as I;\n"),
    ]);
    let found = cycles(&src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].files, ["http/handlers.rs", "store/enqueue.rs", "store/mod.rs"]);
}

#[test]
fn comments_strings_tests_and_reexports_are_not_cycles() {
    let src = tree(&[
        ("lib.rs", "pub mod store;\npub mod hashes;\npub use store::Store;"),
        (
            "store.rs",
            "//! See [`crate::hashes`].\nuse crate::hashes::Record;\npub struct Store;\n\
             #[cfg(test)]\nmod tests { use super::*; fn t() { let _ = \"crate::hashes::x\"; } }",
        ),
        // `crate::Store` is defined in store.rs and only re-exported by lib.rs.
        (
            "hashes.rs",
            "pub struct Record;\n/* use crate::store; */\nfn f(_: &crate::Store) {}\nfn g(c: char) { c == '\"'; }",
        ),
    ]);
    let found = cycles(&src);
    assert_eq!(found.len(), 1, "hashes.rs uses Store, store.rs uses Record: {found:?}");
    let without_use = tree(&[
        ("lib.rs", "pub mod store;\npub mod hashes;\npub use store::Store;"),
        ("store.rs", "//! See [`crate::hashes`].\npub struct Store;\nmod tests { use super::*; }"),
        ("hashes.rs", "pub struct Record;\n/* use crate::store; */\nfn f(_: &crate::Store) {}"),
    ]);
    assert!(cycles(&without_use).is_empty(), "{:?}", cycles(&without_use));
}
