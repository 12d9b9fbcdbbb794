//! The module graph of `src/` is a ladder: a module names (`use crate::X`, `crate::X::` or `super::`
//! paths in code) only modules on a lower rung, so no import loop can form. The ladder is declared
//! once, here, and drawn in ARCHITECTURE.md ("Layers").
//!
//! A file belongs to the longest node prefix of its module path: `src/review/tariff.rs` is the node
//! `review::tariff`, `src/review/queue.rs` is `review`. Unit-test modules (`#[cfg(test)] mod ...`)
//! are left out: they are not part of the built graph, and may build a demo district to test with.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom rung first. A rung holds nodes that must not name each other; a node is one module, or
/// several (`a | b`) that are one unit and may name each other.
const LADDER: &[&[&str]] = &[
    &["domain", "text", "csv_out", "auth", "clock"],
    &["vee"],
    &["store"],
    &["cycles"],
    &["sync", "cis", "billing"],
    // The settings of the web modules, which `config` assembles, and the field app's static files.
    &[
        "field",
        "review::settings | review::tariff | review::leak",
        "serve::settings",
    ],
    &["config"],
    // What every handler shares: the state (which holds the `Config`), extractors, errors.
    &["serve::state | serve::auth | serve::error | serve::signin | serve::health"],
    &["review"],
    &["serve"],
    &["demo"],
    &["cli"],
];

/// Where `path` (module segments) sits: (rung, node).
fn place(path: &[String]) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, &'static str, usize)> = None;
    for (rung, nodes) in LADDER.iter().enumerate() {
        for node in nodes.iter() {
            for prefix in node.split('|').map(str::trim) {
                let segments: Vec<&str> = prefix.split("::").collect();
                let matches = segments.len() <= path.len()
                    && segments.iter().zip(path).all(|(a, b)| *a == b.as_str());
                if matches && best.is_none_or(|(_, _, len)| segments.len() > len) {
                    best = Some((rung, node, segments.len()));
                }
            }
        }
    }
    best.map(|(rung, node, _)| (rung, node))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`src/a/mod.rs` and `src/a.rs` are `a`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file with comments, string and character literals blanked (newlines kept).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (c.get(i + 1) == Some(&'"') || c.get(i + 1) == Some(&'#'))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(c[i..j.min(c.len())].iter().map(|&ch| blank(ch)));
            i = j;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{1F}'), or a lifetime ('a), which stays code.
            if c.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                out.extend(std::iter::repeat_n(' ', j + 1 - i));
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The code without its `#[cfg(test)]` items (an inline `mod ... { }` or the item that follows), and
/// the names of test modules declared as files (`#[cfg(test)] mod tests;`).
fn without_tests(code: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(code.len());
    let mut test_files = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at the first `;` before any `{`, or at the `}` closing its first `{`.
        let brace = after.find('{');
        let semi = after.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => {
                let item = after[..s].trim();
                if let Some(name) = item.strip_prefix("mod ") {
                    test_files.push(name.trim().to_string());
                }
                s + 1
            }
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = after.len();
                for (k, ch) in after[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => after.len(),
        };
        out.extend(after[..end].chars().filter(|&c| c == '\n'));
        rest = &after[end..];
    }
    out.push_str(rest);
    (out, test_files)
}

/// Every module path the code names from the crate root: `crate::a::b`, and `super::` paths
/// resolved from `module` (the file's module). Yields (line, path).
fn named_paths(code: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let ident = |s: &str| -> Vec<String> {
        // Segments `a::b::c` up to the first thing that is not an identifier or `::`.
        let mut segs = Vec::new();
        let mut rest = s;
        loop {
            let len = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            if len == 0 {
                break;
            }
            segs.push(rest[..len].to_string());
            rest = &rest[len..];
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        segs
    };
    // `base::a::b`, or each item of a group `base::{a, b::c}`.
    let mut push = |n: usize, base: Vec<String>, rest: &str| match rest.strip_prefix('{') {
        Some(group) => {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let mut path = base.clone();
                path.extend(ident(item.trim()));
                found.push((n, path));
            }
        }
        None => {
            let mut path = base;
            path.extend(ident(rest));
            found.push((n, path));
        }
    };
    let starts_path = |line: &str, at: usize, colon_too: bool| {
        let b = line.as_bytes();
        at == 0
            || !(b[at - 1].is_ascii_alphanumeric()
                || b[at - 1] == b'_'
                || b[at - 1] == b'$'
                || (colon_too && b[at - 1] == b':'))
    };
    for (n, line) in code.lines().enumerate() {
        for (at, _) in line.match_indices("crate::") {
            if starts_path(line, at, false) {
                push(n + 1, Vec::new(), &line[at + "crate::".len()..]);
            }
        }
        for (at, _) in line.match_indices("super::") {
            if !starts_path(line, at, true) {
                continue;
            }
            // `src/a/b.rs` (module `a::b`) and `src/a/mod.rs` (module `a`) alike: super is one up.
            let mut base: Vec<String> = module.to_vec();
            base.pop();
            let mut rest = &line[at + "super::".len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            push(n + 1, base, rest);
        }
    }
    found
}

/// Every edge that points up (or across a rung) in the tree under `src`.
fn upward_edges(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut test_files = BTreeSet::new();
    let mut parsed = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (code, tests) = without_tests(&code_only(&text));
        let dir = file.parent().unwrap();
        let here = if file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
        {
            dir.to_path_buf()
        } else {
            file.with_extension("")
        };
        for t in tests {
            test_files.insert(here.join(format!("{t}.rs")));
            test_files.insert(here.join(&t).join("mod.rs"));
        }
        parsed.push((file.clone(), code));
    }
    let mut bad = Vec::new();
    for (file, code) in parsed {
        let name = file.file_name().unwrap();
        if test_files.contains(&file) || name == "lib.rs" || name == "main.rs" {
            continue;
        }
        let module = module_of(src, &file);
        let Some((rung, node)) = place(&module) else {
            bad.push(format!(
                "{}: module `{}` is on no rung of the ladder",
                file.display(),
                module.join("::")
            ));
            continue;
        };
        for (line, path) in named_paths(&code, &module) {
            let Some((to_rung, to_node)) = place(&path) else {
                continue; // a crate-root item (a macro, `crate::Something`), or not a module path
            };
            if to_node == node {
                continue;
            }
            if to_rung >= rung {
                bad.push(format!(
                    "{}:{line}: `{node}` (rung {rung}) names `{}` (`{to_node}`, rung {to_rung})",
                    file.display(),
                    path.join("::")
                ));
            }
        }
    }
    bad
}

#[test]
fn every_module_names_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = upward_edges(&src);
    assert!(bad.is_empty(), "imports up the ladder:\n{}", bad.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::create_dir_all(src.join("review")).unwrap();
    std::fs::write(src.join("domain.rs"), "pub struct Id;\n").unwrap();
    std::fs::write(
        src.join("store/mod.rs"),
        "mod users;\nuse crate::domain::Id;\n#[cfg(test)]\nmod tests {\n    use crate::review::Page;\n}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("store/users.rs"),
        "// crate::cli is only named in a comment\nfn f() -> &'static str { \"crate::serve\" }\nuse super::super::config::Config;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("review/mod.rs"),
        "use crate::{store::Store, serve::AppState};\nuse crate::review::tariff::Tariff;\n",
    )
    .unwrap();
    std::fs::write(src.join("review/tariff.rs"), "use super::Page;\n").unwrap();
    let bad = upward_edges(src);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(
        bad[0].contains("`review` (rung 8) names `serve::AppState`"),
        "{bad:#?}"
    );
    assert!(bad[1].contains("(rung 5) names `review::Page`"), "{bad:#?}");
    assert!(
        bad[2].contains("`store` (rung 2) names `config::Config`"),
        "{bad:#?}"
    );
}
