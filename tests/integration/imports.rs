//! Imports go one way: no top-level module of `src/` uses one that (through others) uses it
//! back. The graph is read from the source (`crate::` and `super::` paths, `use` groups
//! included; comments, strings and `#[cfg(test)]` items skipped, since a test may drive its
//! module through the whole pipeline), and the README's module picture is drawn from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it uses, each with where (file:line) it first does.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph(&src());
    if let Some(cycle) = cycle(&graph) {
        panic!("{}", describe(&graph, &cycle));
    }
}

#[test]
fn the_readme_shows_the_module_picture_as_it_is() {
    let picture = picture(&graph(&src()));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains(&picture),
        "the README's module picture is out of date; it is now:\n\n{picture}"
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = synthetic(&[
        ("cli", "engine", "src/cli.rs:3"),
        ("engine", "steps", "src/engine/mod.rs:9"),
        ("steps", "error", "src/steps/mod.rs:4"),
        ("steps", "journal", "src/steps/sql.rs:12"),
        ("journal", "engine", "src/journal/mod.rs:15"),
    ]);
    let found = cycle(&graph).expect("a cycle");
    assert_eq!(found, ["engine", "steps", "journal", "engine"]);
    assert_eq!(
        describe(&graph, &found),
        "modules import each other in a cycle: engine -> steps (src/engine/mod.rs:9) -> \
         journal (src/steps/sql.rs:12) -> engine (src/journal/mod.rs:15)"
    );
    let acyclic = synthetic(&[("cli", "engine", "a"), ("engine", "steps", "b")]);
    assert_eq!(cycle(&acyclic), None);
}

#[test]
fn paths_are_read_as_the_compiler_resolves_them() {
    let modules: BTreeSet<String> = [
        "cli", "engine", "journal", "plan", "report", "steps", "template",
    ]
    .map(String::from)
    .into();
    let text = r##"
        //! Uses crate::report in a comment only.
        use crate::{engine::Event, journal::{self, Journal}};
        use super::template;
        const S: &str = "crate::plan";
        /* crate::plan /* nested */ crate::plan */
        fn f<'a>(c: char) -> bool { c == '"' || c == '{' }
        mod inner {
            use super::*;
            use super::super::plan::Plan;
            fn g() { crate::steps::apply(); crate::report::show(); let _ = r#"crate::plan"#; }
        }
        #[cfg(test)]
        mod tests {
            fn t() { crate::cli::run(); }
        }
        #[cfg(test)]
        use crate::cli;
    "##;
    let used: Vec<(String, usize)> = uses(text, &["steps".into()], &modules);
    assert_eq!(
        used,
        [
            ("engine".into(), 3),
            ("journal".into(), 3),
            ("template".into(), 4),
            ("plan".into(), 10),
            ("report".into(), 11),
        ]
    );
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn synthetic(edges: &[(&str, &str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to, at) in edges {
        graph.entry(to.to_string()).or_default();
        graph
            .entry(from.to_string())
            .or_default()
            .insert(to.to_string(), at.to_string());
    }
    graph
}

/// The import graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, &mut files);
    files.sort();
    // Modules declared `#[cfg(test)] mod name;` (a top-level one in `lib.rs`, or a module's
    // tests in their own file) are test code: left out, with what is under them.
    let test_only: Vec<Vec<String>> = files
        .iter()
        .flat_map(|f| {
            let parent = module_path(src, f);
            test_only(&std::fs::read_to_string(f).unwrap())
                .into_iter()
                .map(move |m| parent.iter().cloned().chain([m]).collect())
        })
        .collect();
    let is_test = |path: &[String]| test_only.iter().any(|t| path.starts_with(t));
    files.retain(|f| !is_test(&module_path(src, f)));
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(src, f).into_iter().next())
        .collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for file in &files {
        let path = module_path(src, file);
        let Some(from) = path.first().filter(|m| modules.contains(*m)) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(src.parent().unwrap()).unwrap().display();
        for (to, line) in uses(&text, &path, &modules) {
            let at = format!("{shown}:{line}");
            graph.get_mut(from).unwrap().entry(to).or_insert(at);
        }
    }
    graph
}

/// The modules a file declares `#[cfg(test)]` in a file of their own (`mod fuzz_tests;`).
fn test_only(root: &str) -> BTreeSet<String> {
    let tokens = tokens(&code(root));
    (0..tokens.len())
        .filter(|&i| test_only_at(&tokens, i) && tokens.get(i + 7).is_some_and(|t| t.0 == "mod"))
        .filter_map(|i| tokens.get(i + 8).map(|t| t.0.clone()))
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// `src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`; `lib.rs` and `main.rs` are the root.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let mut path: Vec<String> = file
        .strip_prefix(src)
        .unwrap()
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(
        path.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        path.pop();
    }
    path
}

/// The top-level modules (of `modules`) that the text of the file of module `path` uses,
/// with the line of each use, in order.
fn uses(text: &str, path: &[String], modules: &BTreeSet<String>) -> Vec<(String, usize)> {
    let tokens = tokens(&code(text));
    let mut found = Vec::new();
    // The inline modules (`mod tests { .. }`) we are in, with the brace depth they opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = (tokens[i].0.as_str(), tokens[i].1);
        if test_only_at(&tokens, i) {
            i = item_end(&tokens, i + TEST_ONLY.len());
            continue;
        }
        match token {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.0 == "{") => {
                inline.push((tokens[i + 1].0.clone(), depth));
            }
            "crate" | "super" if tokens.get(i + 1).is_some_and(|t| t.0 == "::") => {
                let mut here: Vec<String> = path
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(m, _)| m.clone()))
                    .collect();
                if token == "crate" {
                    here.clear();
                    i += 2;
                } else {
                    while tokens.get(i).is_some_and(|t| t.0 == "super")
                        && tokens.get(i + 1).is_some_and(|t| t.0 == "::")
                    {
                        here.pop();
                        i += 2;
                    }
                }
                let heads = match here.first() {
                    Some(top) => vec![top.clone()],
                    None => heads(&tokens, i),
                };
                found.extend(
                    heads
                        .into_iter()
                        .filter(|m| modules.contains(m) && path.first() != Some(m))
                        .map(|m| (m, line)),
                );
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

const TEST_ONLY: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];

/// Whether `#[cfg(test)]` starts at `tokens[i]`.
fn test_only_at(tokens: &[(String, usize)], i: usize) -> bool {
    tokens[i..]
        .iter()
        .take(7)
        .map(|t| t.0.as_str())
        .eq(TEST_ONLY)
}

/// Where the item that starts at `tokens[i]` ends: after its `;` or its `{ .. }` block.
fn item_end(tokens: &[(String, usize)], mut i: usize) -> usize {
    let mut depth = 0;
    while i < tokens.len() {
        match tokens[i].0.as_str() {
            ";" if depth == 0 => return i + 1,
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// The first segment of the path at `tokens[i]`, or of each path of the group there.
fn heads(tokens: &[(String, usize)], i: usize) -> Vec<String> {
    let Some((first, _)) = tokens.get(i) else {
        return Vec::new();
    };
    if first != "{" {
        return vec![first.clone()];
    }
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    for (token, _) in &tokens[i..] {
        match token.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect_head = true,
            _ if depth == 1 && expect_head => {
                heads.push(token.clone());
                expect_head = false;
            }
            _ => {}
        }
    }
    heads
}

/// Identifiers, `::` and single punctuation characters, each with its line.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
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
            tokens.push((chars[start..i].iter().collect(), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(("::".into(), line));
            i += 2;
        } else {
            tokens.push((c.to_string(), line));
            i += 1;
        }
    }
    tokens
}

/// The source with comments and the contents of string and character literals blanked out
/// (newlines kept, so lines still count).
fn code(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    };
    while i < chars.len() {
        let rest = &chars[i..];
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            block_comment(rest)
        } else if rest[0] == '"' {
            quoted(rest, '"')
        } else if rest[0] == 'r' && !ident_before && matches!(rest.get(1), Some('#' | '"')) {
            raw_string(rest)
        } else if rest[0] == '\'' && (rest.get(1) == Some(&'\\') || rest.get(2) == Some(&'\'')) {
            quoted(rest, '\'')
        } else {
            0
        };
        if end == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            blank(&mut out, &rest[..end]);
            i += end;
        }
    }
    out
}

fn block_comment(rest: &[char]) -> usize {
    let (mut depth, mut i) = (0, 0);
    while i < rest.len() {
        if rest[i..].starts_with(&['/', '*']) {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with(&['*', '/']) {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    rest.len()
}

/// The length of a literal opened by `quote` at `rest[0]`, up to its closing quote.
fn quoted(rest: &[char], quote: char) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

/// The length of `r"..."` or `r#"..."#` (any number of `#`); 0 if `rest` is not one.
fn raw_string(rest: &[char]) -> usize {
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    if rest.get(1 + hashes) != Some(&'"') {
        return 0;
    }
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let body = 2 + hashes;
    (body..rest.len())
        .find(|&i| rest[i..].starts_with(&close))
        .map_or(rest.len(), |i| i + close.len())
}

/// A cycle, as the modules along it with the first one again at the end.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    // Depth-first, with the modules on the current path: an edge back to one of them closes
    // a cycle.
    fn visit(
        graph: &Graph,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}

fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut text = format!("modules import each other in a cycle: {}", cycle[0]);
    for pair in cycle.windows(2) {
        text += &format!(" -> {} ({})", pair[1], graph[&pair[0]][&pair[1]]);
    }
    text
}

/// The modules, each above those it uses: one line per module with what it imports.
fn picture(graph: &Graph) -> String {
    // A module's layer is one above the highest layer of what it uses; leaves are layer 0.
    fn layer(graph: &Graph, module: &str, layers: &mut BTreeMap<String, usize>) -> usize {
        if let Some(&known) = layers.get(module) {
            return known;
        }
        // Provisional, so that a cycle (reported by its own test) ends the recursion.
        layers.insert(module.to_string(), 0);
        let below = graph[module]
            .keys()
            .map(|m| layer(graph, m, layers) + 1)
            .max()
            .unwrap_or(0);
        layers.insert(module.to_string(), below);
        below
    }
    let mut layers = BTreeMap::new();
    let mut order: Vec<(usize, &String)> = graph
        .keys()
        .map(|m| (layer(graph, m, &mut layers), m))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let width = graph.keys().map(String::len).max().unwrap_or(0);
    let mut text = String::from("```\n");
    for (_, module) in order {
        let uses: Vec<&str> = graph[module].keys().map(String::as_str).collect();
        let line = if uses.is_empty() {
            format!("{module}\n")
        } else {
            format!("{module:width$} ─▶ {}\n", uses.join(", "))
        };
        text += &line;
    }
    text + "```\n"
}
