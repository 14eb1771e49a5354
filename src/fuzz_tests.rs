//! Fuzzing the env-file editor (`steps::env::edit`) with random existing files and edits.
//! Properties: it ends (no hang, 5 s per case) without a panic; an edit is idempotent; what a
//! dotenv reader sees afterwards is exactly the file's assignments with the edit applied (so
//! every other line, comment and multi-line value is kept); lines that are not assignments
//! stay, in order. The case count is proptest's (`PROPTEST_CASES`, default 256).

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

/// The editor's result (`None`: it refuses the file).
fn edit(text: &str, set: &BTreeMap<String, String>) -> Option<String> {
    crate::steps::env::edit(text, set).ok()
}

/// Runs `f` on a thread of its own; a case that takes over 5 s is a hang.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the env editor hangs (or panicked)")
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("A".to_string()),
        Just("B".to_string()),
        Just("PASSWORD".to_string()),
        "[A-Z_][A-Z0-9_]{0,6}",
    ]
}

/// Values as hostile as a secret can be: quotes, `$`, `\`, `#`, spaces, `=`, non-ASCII,
/// line breaks, empty.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("plain".to_string()),
        Just("it's \"q\" $HOME \\n #x".to_string()),
        Just("a=b c".to_string()),
        Just("line1\nline2".to_string()),
        Just("ü ✓ 🔑".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,8}",
    ]
}

/// A value written the way a person writes one in a .env file (read back by dotenvy).
fn written(value: &str, style: u8) -> Option<String> {
    match style % 3 {
        0 if value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@,+-".contains(c)) =>
        {
            Some(value.to_string())
        }
        1 if !value.contains('\'') => Some(format!("'{value}'")),
        _ => Some(format!(
            "\"{}\"",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
        )),
    }
}

/// One line of an existing env file: an assignment (maybe `export`, spaces, quoted, a
/// multi-line double-quoted value), a comment or a blank line.
fn line() -> impl Strategy<Value = (String, Option<(String, String)>)> {
    prop_oneof![
        (key(), value(), any::<u8>(), any::<bool>()).prop_filter_map(
            "a value that style cannot hold",
            |(k, v, style, export)| {
                let text = written(&v, style)?;
                let export = if export { "export " } else { "" };
                Some((format!("{export}{k}={text}"), Some((k, v))))
            }
        ),
        "# [ -~]{0,12}".prop_map(|c| (c, None)),
        Just((String::new(), None)),
        Just(("# A=commented out".to_string(), None)),
    ]
}

/// The file as Compose reads it.
fn dotenv(text: &str) -> Option<BTreeMap<String, String>> {
    crate::steps::compose::dotenv::read(text, &|_| None, &mut Vec::new())
        .ok()
        .map(|vars| vars.into_iter().collect())
}

proptest! {
    #[test]
    fn the_env_editor_keeps_every_other_line_and_sets_exactly_the_edit(
        lines in prop::collection::vec(line(), 0..12),
        set in prop::collection::btree_map(key(), value(), 1..4),
        final_newline in any::<bool>(),
    ) {
        let mut text = lines.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join("\n");
        if final_newline && !text.is_empty() {
            text.push('\n');
        }
        // Only files a dotenv reader reads: what it sees is the property.
        let expected = dotenv(&text);
        prop_assume!(expected.is_some());
        let mut expected = expected.unwrap();
        // A `\` in single quotes is literal to compose, an escape to dotenvy (which refuses
        // `'\'`): an edit setting such a value is checked by the other properties only.
        let read_back = !set.values().any(|v| v.contains('\\'));
        expected.extend(set.clone());
        let (input, edit_set) = (text.clone(), set.clone());
        let once = within(move || edit(&input, &edit_set));
        let once = once.expect("a file dotenv reads is edited");
        let (again_input, edit_set) = (once.clone(), set.clone());
        let twice = within(move || edit(&again_input, &edit_set));
        prop_assert_eq!(twice.as_ref(), Some(&once), "an edit is idempotent");
        if read_back {
            prop_assert_eq!(dotenv(&once), Some(expected), "from:\n{}\nto:\n{}", text, once);
        }
        let kept = |t: &str| -> Vec<String> {
            t.lines().filter(|l| l.trim_start().starts_with('#') || l.trim().is_empty()).map(str::to_string).collect()
        };
        prop_assert_eq!(kept(&once), kept(&text), "comments and blank lines stay, in order");
    }

    #[test]
    fn the_env_editor_ends_on_any_text(
        text in "\\PC{0,200}|[A-Z=\"'\\\\ \n#$]{0,200}",
        set in prop::collection::btree_map(key(), value(), 1..4),
    ) {
        let (input, edit_set) = (text.clone(), set.clone());
        // A file the editor refuses is a refusal, not a failure.
        if let Some(once) = within(move || edit(&input, &edit_set)) {
            let edit_set = set.clone();
            let again = once.clone();
            let twice = within(move || edit(&again, &edit_set));
            prop_assert_eq!(twice, Some(once), "an edit is idempotent");
        }
    }
}
