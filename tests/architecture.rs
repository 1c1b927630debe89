//! The intended picture of the code, kept as a test: it reads every `use` line under `src/`,
//! resolves each `crate::` / `super::` / `self::` path to the file it names, and fails naming
//! the file and the import when a rule of DESIGN.md §6 is broken:
//!
//! 1. the pure core (`routing`, `dialstring`, `causes`, `fsxml`) imports no I/O crate and
//!    nothing of the crate but the model and the core itself;
//! 2. `store` imports only the model (and itself);
//! 3. `xmlcurl`, the hot path, imports no `store`, `app`, `api`, `esl` or `status`;
//! 4. no handler file (one that defines an axum handler) imports another handler file: what two
//!    of them share lives in a file that is not a handler, or in a room below both;
//! 5. only the wiring (`src/app.rs`) names `AppState`;
//! 6. the files of `src/` import one another without a circle (a folder's `mod.rs` declaring
//!    and re-exporting its own files is not an import).
//!
//! Code under `#[cfg(test)]` is left out: a unit test may reach wherever it must.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its path under `src/`, its module path, and its code without tests.
struct Source {
    file: String,
    module: Vec<String>,
    code: String,
}

/// One `use` of the crate's own code, resolved.
struct Import {
    /// As written, for the failure message.
    written: String,
    /// The file it names (`src/...`), when it names a file of the crate.
    target: Option<String>,
    /// The first path segments of an external import (`tokio`, `std::fs`).
    external: Option<String>,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests sit at the end of a file, under `#[cfg(test)]`.
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            Source {
                module: module_of(&rel),
                file: format!("src/{rel}"),
                code,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// `api/carriers.rs` → `[api, carriers]`; `api/mod.rs` → `[api]`; `lib.rs` → `[]`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that holds module `path`, if there is one.
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    if path.is_empty() {
        return Some("src/lib.rs".into());
    }
    let joined = path.join("/");
    [format!("src/{joined}.rs"), format!("src/{joined}/mod.rs")]
        .into_iter()
        .find(|f| files.contains(f))
}

/// Every `use` statement of `code`, its tree expanded into single paths, each with the inline
/// modules (`mod testdata { … }`) it stands in, which `self` and `super` start from.
fn use_paths(code: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut inline: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let trimmed = line.trim_start();
        let bare = strip_visibility(trimmed);
        if statement.is_none() {
            if let Some(tree) = bare.strip_prefix("use ") {
                statement = Some(String::new());
                collect(tree, &mut statement, &inline, &mut out);
            } else if let Some(name) = bare.strip_prefix("mod ").and_then(|r| r.strip_suffix('{')) {
                inline.push((name.trim().to_string(), depth));
            }
        } else {
            collect(line, &mut statement, &inline, &mut out);
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        while inline.last().is_some_and(|(_, opened)| depth <= *opened) {
            inline.pop();
        }
    }
    out
}

/// Adds `text` to the statement being read; at its `;`, expands it into `out`.
fn collect(
    text: &str,
    statement: &mut Option<String>,
    inline: &[(String, i32)],
    out: &mut Vec<(Vec<String>, String)>,
) {
    let Some(current) = statement.as_mut() else {
        return;
    };
    match text.find(';') {
        Some(end) => {
            current.push_str(&text[..end]);
            let tree: String = current.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut paths = Vec::new();
            expand("", &tree, &mut paths);
            let modules: Vec<String> = inline.iter().map(|(m, _)| m.clone()).collect();
            out.extend(paths.into_iter().map(|p| (modules.clone(), p)));
            *statement = None;
        }
        None => {
            current.push_str(text);
            current.push(' ');
        }
    }
}

fn strip_visibility(line: &str) -> &str {
    for prefix in ["pub(crate) ", "pub(super) ", "pub "] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest;
        }
    }
    line
}

/// `a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        Some(open) => {
            let close = tree.rfind('}').expect("balanced braces in a use tree");
            let head = format!("{prefix}{}", &tree[..open]);
            let mut depth = 0;
            let mut start = open + 1;
            for (i, c) in tree.char_indices().take(close).skip(open + 1) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&head, &tree[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&head, &tree[start..close], out);
        }
        None if tree.is_empty() => {}
        None => {
            let name = tree.split(" as ").next().unwrap().trim();
            out.push(format!("{prefix}{name}"));
        }
    }
}

fn imports(source: &Source, files: &BTreeSet<String>) -> Vec<Import> {
    use_paths(&source.code)
        .into_iter()
        .map(|(inline, written)| {
            let segments: Vec<&str> = written.split("::").filter(|s| !s.is_empty()).collect();
            let here: Vec<String> = source.module.iter().chain(&inline).cloned().collect();
            let (mut module, rest): (Vec<String>, &[&str]) = match segments.first() {
                Some(&"crate") => (Vec::new(), &segments[1..]),
                Some(&"self") => (here, &segments[1..]),
                Some(&"super") => {
                    let mut m = here;
                    let mut rest = &segments[..];
                    while rest.first() == Some(&"super") {
                        m.pop();
                        rest = &rest[1..];
                    }
                    (m, rest)
                }
                _ => {
                    let external = segments
                        .iter()
                        .take(2)
                        .copied()
                        .collect::<Vec<_>>()
                        .join("::");
                    return Import {
                        written,
                        target: None,
                        external: Some(external),
                    };
                }
            };
            let mut target = (0..=module.len())
                .rev()
                .find_map(|n| file_of(&module[..n], files));
            for segment in rest.iter().filter(|s| **s != "self" && **s != "*") {
                module.push((*segment).to_string());
                match file_of(&module, files) {
                    Some(f) => target = Some(f),
                    None => break,
                }
            }
            Import {
                written,
                target,
                external: None,
            }
        })
        .collect()
}

fn room_of(file: &str) -> &str {
    let rel = file.trim_start_matches("src/");
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

/// A file that defines an axum handler: an OpenAPI-annotated route, or an async fn taking the
/// `State` extractor.
fn is_handler_file(source: &Source) -> bool {
    let under_http = ["api", "status", "xmlcurl"].contains(&room_of(&source.file));
    under_http && (source.code.contains("#[utoipa::path") || source.code.contains("State(state)"))
}

struct Checked {
    sources: Vec<Source>,
    imports: BTreeMap<String, Vec<Import>>,
}

fn checked() -> Checked {
    let sources = sources();
    let files: BTreeSet<String> = sources.iter().map(|s| s.file.clone()).collect();
    let imports = sources
        .iter()
        .map(|s| (s.file.clone(), imports(s, &files)))
        .collect();
    Checked { sources, imports }
}

fn fail_on(broken: Vec<String>, rule: &str) {
    assert!(broken.is_empty(), "{rule}:\n  {}", broken.join("\n  "));
}

const PURE_CORE: &[&str] = &["routing", "dialstring", "causes", "fsxml"];
/// Crates that do I/O (or run it), and the parts of `std` that do.
const IO_CRATES: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "hyper",
    "hyper_util",
    "reqwest",
    "freeswitch_esl_tokio",
    "tower",
    "tower_http",
];
const IO_STD: &[&str] = &["std::fs", "std::io", "std::process", "std::thread"];

fn is_io(external: &str) -> bool {
    let first = external.split("::").next().unwrap_or("");
    IO_CRATES.contains(&first) || IO_STD.contains(&external)
}

#[test]
fn the_pure_core_imports_no_io_crate_and_no_room_but_the_model_and_itself() {
    let c = checked();
    let mut broken = Vec::new();
    for (file, imports) in &c.imports {
        if !PURE_CORE.contains(&room_of(file)) {
            continue;
        }
        for import in imports {
            let bad_crate = import.external.as_deref().is_some_and(is_io);
            let bad_room = import.target.as_deref().is_some_and(|t| {
                let room = room_of(t);
                room != "model" && !PURE_CORE.contains(&room)
            });
            if bad_crate || bad_room {
                broken.push(format!("{file}: use {}", import.written));
            }
        }
    }
    fail_on(broken, "the pure core does I/O or reaches an I/O room");
}

#[test]
fn the_store_imports_only_the_model() {
    let c = checked();
    let mut broken = Vec::new();
    for (file, imports) in &c.imports {
        if room_of(file) != "store" {
            continue;
        }
        for import in imports {
            if let Some(t) = &import.target
                && !["model", "store"].contains(&room_of(t))
            {
                broken.push(format!("{file}: use {}", import.written));
            }
        }
    }
    fail_on(broken, "the store imports more than the model");
}

#[test]
fn the_xmlcurl_hot_path_imports_no_store_app_api_esl_or_status() {
    let c = checked();
    let mut broken = Vec::new();
    for (file, imports) in &c.imports {
        if room_of(file) != "xmlcurl" {
            continue;
        }
        for import in imports {
            if let Some(t) = &import.target
                && ["store", "app", "api", "esl", "status"].contains(&room_of(t))
            {
                broken.push(format!("{file}: use {}", import.written));
            }
        }
    }
    fail_on(broken, "the xml_curl endpoint reaches what it must not");
}

#[test]
fn no_handler_file_imports_another_handler_file() {
    let c = checked();
    let handlers: BTreeSet<&str> = c
        .sources
        .iter()
        .filter(|s| is_handler_file(s))
        .map(|s| s.file.as_str())
        .collect();
    assert!(
        handlers.contains("src/api/carriers.rs") && handlers.contains("src/xmlcurl/mod.rs"),
        "the handler files are found: {handlers:?}"
    );
    let mut broken = Vec::new();
    for (file, imports) in &c.imports {
        if !handlers.contains(file.as_str()) {
            continue;
        }
        for import in imports {
            if let Some(t) = &import.target
                && t != file
                && handlers.contains(t.as_str())
            {
                broken.push(format!(
                    "{file}: use {} (a handler file: {t})",
                    import.written
                ));
            }
        }
    }
    fail_on(broken, "a handler file imports another handler file");
}

#[test]
fn only_the_wiring_names_the_application_state() {
    let c = checked();
    let broken: Vec<String> = c
        .sources
        .iter()
        .filter(|s| s.file != "src/app.rs")
        .flat_map(|s| {
            s.code
                .lines()
                .enumerate()
                .filter(|(_, l)| {
                    let code = l.split("//").next().unwrap_or("");
                    code.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|word| word == "AppState")
                })
                .map(|(n, l)| format!("{}:{}: {}", s.file, n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    fail_on(broken, "a file other than src/app.rs names AppState");
}

/// Whether `file` is the `mod.rs` of a folder that holds `target`: a folder's `mod.rs` declares
/// and re-exports its own files, which is not an arrow between rooms.
fn declares(file: &str, target: &str) -> bool {
    file.strip_suffix("mod.rs")
        .is_some_and(|folder| target.starts_with(folder))
}

#[test]
fn the_files_of_src_import_one_another_without_a_circle() {
    let c = checked();
    let edges: BTreeMap<&str, BTreeSet<&str>> = c
        .imports
        .iter()
        .map(|(file, imports)| {
            let targets = imports
                .iter()
                .filter_map(|i| i.target.as_deref())
                .filter(|t| t != file && *t != "src/lib.rs" && !declares(file, t))
                .collect();
            (file.as_str(), targets)
        })
        .collect();
    // Depth-first search; a back edge is a circle, reported as its files in order.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut stack: Vec<&str> = Vec::new();
    let mut circles = Vec::new();
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        circles: &mut Vec<String>,
    ) {
        state.insert(node, 1);
        stack.push(node);
        for &next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                None => visit(next, edges, state, stack, circles),
                Some(1) => {
                    let from = stack.iter().position(|n| *n == next).unwrap();
                    let mut circle: Vec<&str> = stack[from..].to_vec();
                    circle.push(next);
                    circles.push(circle.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node, 2);
    }
    for &node in edges.keys() {
        if !state.contains_key(node) {
            visit(node, &edges, &mut state, &mut stack, &mut circles);
        }
    }
    fail_on(circles, "files import one another in a circle");
}

#[test]
fn the_reader_expands_use_trees_and_resolves_relative_paths() {
    let mut out = Vec::new();
    expand("", "crate::a::{b, c::{d, e as f}, self}", &mut out);
    assert_eq!(
        out,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a::self"
        ]
    );
    let files: BTreeSet<String> = [
        "src/lib.rs",
        "src/api/mod.rs",
        "src/api/error.rs",
        "src/model/mod.rs",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let source = Source {
        file: "src/api/carriers.rs".into(),
        module: module_of("api/carriers.rs"),
        code: "use super::error::{ApiError, FieldErrors};\nuse crate::model::{Carrier, Host};\npub(crate) use tokio::sync::watch;\n".into(),
    };
    let found = imports(&source, &files);
    let targets: Vec<_> = found.iter().map(|i| i.target.clone()).collect();
    assert_eq!(
        targets,
        [
            Some("src/api/error.rs".to_string()),
            Some("src/api/error.rs".to_string()),
            Some("src/model/mod.rs".to_string()),
            Some("src/model/mod.rs".to_string()),
            None
        ]
    );
    assert_eq!(found[4].external.as_deref(), Some("tokio::sync"));
    assert!(is_io("tokio::sync") && is_io("std::fs") && !is_io("std::collections"));
    let inline = use_paths(
        "pub mod testdata {\n    use super::writer::line;\n}\nuse self::answer::{\n    Outcome,\n};\n",
    );
    assert_eq!(
        inline,
        [
            (
                vec!["testdata".to_string()],
                "super::writer::line".to_string()
            ),
            (vec![], "self::answer::Outcome".to_string()),
        ]
    );
}
