//! Fuzzing the env-file editor (`steps::env::edit`) with random existing files and edits.
//! Properties: it ends (no hang, 5 s per case) without a panic; an edit is idempotent; what a
//! dotenv reader sees afterwards is exactly the file's assignments with the edit applied (so
//! every other line, comment and multi-line value is kept); lines that are not assignments
//! stay, in order. Then Compose's interpolation and compose-file loader: random references
//! give what a model of Compose's rules gives, any text ends without a panic (text without `$`
//! unchanged), and a hostile compose file is loaded or refused with a message naming the file.
//! The case count is proptest's (`PROPTEST_CASES`, default 256).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
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
        .expect("the case hangs (or panicked)")
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

/// A value written the way a person writes one in a .env file (read back as Compose reads it).
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

/// One piece of a compose string: literal text, `$$`, `${NAME}` or `${NAME:-default}`, with
/// what Compose makes of it when `A` and `B` are set (`B` to "") and `UNSET` is not.
fn piece() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![Just("A"), Just("B"), Just("UNSET")];
    let var = |name: &str| match name {
        "A" => "va lue ü 🔑".to_string(),
        _ => String::new(),
    };
    prop_oneof![
        "[^$]{0,6}".prop_map(|s| (s.clone(), s)),
        Just(("$$".to_string(), "$".to_string())),
        name.clone()
            .prop_map(move |n| (format!("${{{n}}}"), var(n))),
        (name, "[a-z ./:]{0,5}").prop_map(move |(n, d)| {
            let set = var(n);
            let expected = if set.is_empty() { d.clone() } else { set };
            (format!("${{{n}:-{d}}}"), expected)
        }),
    ]
}

/// Compose strings made of hostile bits: references, broken braces, operators, nesting.
fn compose_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[${}:?+\\-AB_ a]{0,40}",
        prop::collection::vec(
            prop_oneof![
                Just("${"),
                Just("}"),
                Just("$"),
                Just("$$"),
                Just("${A:-"),
                Just("${UNSET?"),
                Just("${B:+"),
                Just(":-"),
                Just("x"),
                Just("ü"),
            ],
            0..30
        )
        .prop_map(|bits| bits.concat()),
    ]
}

/// A compose file with hostile values in the places that are cast, merged or split.
fn compose_file() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        compose_text(),
        Just("3000".to_string()),
        Just("\"127.0.0.1:8080-8090:80/udp\"".to_string()),
        Just("${R:-3}".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("~".to_string()),
        Just("*anchor".to_string()),
        "[ -~]{0,12}",
    ];
    let field = prop_oneof![
        "ports",
        "expose",
        "cpus",
        "mem_limit",
        "restart",
        "profiles",
        "volumes",
        "tmpfs",
        "extra_hosts",
        "depends_on",
        "environment",
        "env_file",
        "healthcheck",
        "ulimits",
        "sysctls",
        "build",
        "image",
        "command",
        "networks",
        "<<",
    ];
    prop::collection::vec((field, scalar, any::<bool>()), 0..8).prop_map(|fields| {
        let mut text = "x-base: &anchor\n  image: redis\nservices:\n  s:\n".to_string();
        for (field, value, listed) in fields {
            if listed {
                text.push_str(&format!("    {field}:\n      - {value}\n"));
            } else {
                text.push_str(&format!("    {field}: {value}\n"));
            }
        }
        text
    })
}

proptest! {
    #[test]
    fn compose_interpolation_gives_what_compose_gives(
        pieces in prop::collection::vec(piece(), 0..10),
    ) {
        let template: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
        let expected: String = pieces.iter().map(|(_, e)| e.as_str()).collect();
        let input = template.clone();
        let got = within(move || {
            let vars = BTreeMap::from([("A", "va lue ü 🔑"), ("B", "")]);
            let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
            crate::steps::compose::interpolate::substitute(&input, &lookup, &mut Vec::new())
        });
        prop_assert_eq!(got, Ok(expected), "from {:?}", template);
    }

    #[test]
    fn compose_interpolation_ends_on_any_text(text in compose_text()) {
        let input = text.clone();
        let (result, warnings) = within(move || {
            let mut warnings = Vec::new();
            let lookup = |n: &str| (n == "A").then(|| "a".to_string());
            let result =
                crate::steps::compose::interpolate::substitute(&input, &lookup, &mut warnings);
            (result, warnings)
        });
        if !text.contains('$') {
            prop_assert_eq!(result, Ok(text), "text without `$` stays as it is");
            prop_assert!(warnings.is_empty());
        }
    }

    #[test]
    fn the_compose_loader_ends_on_any_file(text in compose_file()) {
        let input = text.clone();
        // A file it refuses is an error message, not a panic or a hang.
        let loaded = within(move || {
            let vars = HashMap::from([("R".to_string(), "x".to_string())]);
            let selection = crate::steps::compose::model::Selection { profiles: &[], named: &[] };
            crate::steps::compose::model::load(
                "compose.yml", &input, &vars, Some("fuzz"), Path::new("/nonexistent"), &selection,
            )
            .map(|p| p.services.len())
        });
        if let Err(message) = loaded {
            prop_assert!(message.starts_with("`compose.yml`"), "{}", message);
        }
    }
}
