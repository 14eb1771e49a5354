//! Fuzzing the playbook loader, the validator and the template checker through the real
//! binary: random TOML-ish text, structured random playbooks and random handlebars (partials,
//! inline partials, recursion). Properties: `runner validate` never panics, never hangs (10 s
//! per case), and exits 0 or 2; every rejection is a diagnostic with its place (file, line,
//! column). The case count is proptest's (`PROPTEST_CASES`, default 256).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::support::Project;

/// Runs `runner validate pb.toml` in `p`, at most 10 s; returns (exit code, stderr).
fn validate(p: &Project) -> (i32, String) {
    let out = std::fs::File::create(p.file("stdout")).unwrap();
    let err = std::fs::File::create(p.file("stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["validate", "pb.toml"])
        .current_dir(p.path())
        .env("DB_PASSWORD", crate::support::SENTINEL)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "validate hangs on:\n{}\n--- t.hbs:\n{}",
                p.read("pb.toml").unwrap_or_default(),
                p.read("t.hbs").unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    (
        status.code().unwrap_or(-1),
        p.read("stderr").unwrap_or_default(),
    )
}

/// The properties every case must have.
fn check(p: &Project) -> Result<(), TestCaseError> {
    let (code, stderr) = validate(p);
    let shown = || {
        format!(
            "exit {code}\n{stderr}\n--- pb.toml:\n{}\n--- t.hbs:\n{}",
            p.read("pb.toml").unwrap_or_default(),
            p.read("t.hbs").unwrap_or_default()
        )
    };
    prop_assert!(code == 0 || code == 2, "{}", shown());
    prop_assert!(!stderr.contains("panicked"), "{}", shown());
    if code == 2 {
        let place = regex::Regex::new(r"\[(pb\.toml|t\.hbs|p\.hbs):\d+:\d+\]").unwrap();
        prop_assert!(
            place.is_match(&stderr),
            "a rejection without a place: {}",
            shown()
        );
    }
    Ok(())
}

/// Pieces of TOML and of playbooks, some broken, some hostile.
fn toml_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[playbook]\n".to_string()),
        Just("[[steps]]\n".to_string()),
        Just("[vars]\n".to_string()),
        Just("[secrets]\n".to_string()),
        Just("name = \"p\"\n".to_string()),
        Just("id = \"s\"\n".to_string()),
        Just("kind = \"template\"\n".to_string()),
        Just("kind = \"env\"\n".to_string()),
        Just("kind = \"exec\"\n".to_string()),
        Just("template = \"t.hbs\"\n".to_string()),
        Just("dest = \"out\"\n".to_string()),
        Just("set = { A = 1 }\n".to_string()),
        Just("command = [\"true\"]\n".to_string()),
        Just("rollback = \"none\"\n".to_string()),
        Just("S = { env = \"DB_PASSWORD\" }\n".to_string()),
        Just("x = \"{{vars.x}}\"\n".to_string()),
        Just("\"".to_string()),
        Just("'''".to_string()),
        Just("=".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{feff}".to_string()),
        Just("🔑".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "[a-z_]{1,8}".prop_map(|s| format!("{s} = ")),
        any::<i64>().prop_map(|n| n.to_string()),
        "\\PC{0,12}",
    ]
}

/// Handlebars: well-formed blocks nested at random (if, each, with, raw, partial blocks, inline
/// partials whose bodies include partials, so that they include each other or themselves),
/// with now and then a piece that breaks it.
fn handlebars() -> impl Strategy<Value = String> {
    let name = || prop_oneof![Just("p"), Just("q"), Just("r")];
    let leaf = prop_oneof![
        "\\PC{0,10}",
        Just("{{vars.a}}".to_string()),
        Just("{{vars.missing}}".to_string()),
        Just("{{secrets.S}}".to_string()),
        Just("{{run.id}}".to_string()),
        Just("{{{vars.a}}}".to_string()),
        Just("{{!-- c --}}".to_string()),
        Just("\\{{vars.a}}".to_string()),
        Just("{{lookup vars \"a\"}}".to_string()),
        Just("{{eq 1 2}}".to_string()),
        Just("{{> (concat \"p\")}}".to_string()),
        Just("\n".to_string()),
        name().prop_map(|n| format!("{{{{> {n}}}}}")),
    ];
    let tree = leaf.prop_recursive(4, 48, 4, move |inner| {
        let body = prop::collection::vec(inner, 0..4).prop_map(|v| v.concat());
        prop_oneof![
            body.clone()
                .prop_map(|b| format!("{{{{#if vars.a}}}}{b}{{{{else}}}}-{{{{/if}}}}")),
            body.clone()
                .prop_map(|b| format!("{{{{#each vars}}}}{{{{@key}}}}{b}{{{{/each}}}}")),
            body.clone()
                .prop_map(|b| format!("{{{{#with vars}}}}{b}{{{{/with}}}}")),
            body.clone()
                .prop_map(|b| format!("{{{{{{{{raw}}}}}}}}{b}{{{{{{{{/raw}}}}}}}}")),
            (name(), body.clone())
                .prop_map(|(n, b)| format!("{{{{#*inline \"{n}\"}}}}{b}{{{{/inline}}}}")),
            (name(), body).prop_map(|(n, b)| format!("{{{{#> {n}}}}}{b}{{{{/{n}}}}}")),
        ]
    });
    let broken = prop_oneof![
        Just("{{"),
        Just("}}"),
        Just("{{/if}}"),
        Just("{{#each vars}}"),
        Just("{{#*inline \"p\"}}"),
        Just("{{{{raw}}}}"),
    ]
    .prop_map(str::to_string);
    prop::collection::vec(prop_oneof![12 => tree, 1 => broken], 0..6).prop_map(|v| v.concat())
}

fn joined(piece: impl Strategy<Value = String>, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(piece, 0..max).prop_map(|v| v.concat())
}

/// A playbook with a template step whose template is `t.hbs`, and random other steps.
fn playbook() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just(String::new()),
        Just("{{vars.a}}".to_string()),
        Just("{{vars.nope}}".to_string()),
        Just("{{secrets.S}}".to_string()),
        Just("{{".to_string()),
        Just("out/ü 🔑.conf".to_string()),
        Just(".".to_string()),
        Just("/dev/null".to_string()),
        Just("x".repeat(5000)),
        "\\PC{0,12}",
    ];
    let step = (
        prop_oneof![
            Just("template"),
            Just("env"),
            Just("exec"),
            Just("backup"),
            Just("http_check"),
            Just("notify"),
            Just("sql"),
            Just("lb_switch"),
            Just("nope"),
        ],
        field.clone(),
        field.clone(),
        prop_oneof![
            Just(""),
            Just("timeout = \"5s\"\n"),
            Just("timeout = \"soon\"\n"),
            Just("retries = -1\n"),
            Just("mode = \"0999\"\n"),
            Just("mode = \"0600\"\n"),
            Just("extra = 1\n")
        ],
    )
        .prop_map(|(kind, a, b, more)| {
            let (a, b) = (toml_string(&a), toml_string(&b));
            let body = match kind {
                "template" => format!("template = {a}\ndest = {b}\n"),
                "env" => format!("file = {a}\nset = {{ K = {b} }}\n"),
                "exec" => format!("command = [{a}, {b}]\nrollback = \"none\"\nreason = {b}\n"),
                "backup" => format!("paths = [{a}, {b}]\n"),
                "http_check" => format!("url = {a}\nheaders = {{ X = {b} }}\n"),
                "notify" => format!("title = {a}\nwebhook = {b}\n"),
                "sql" => format!("url = {a}\nfiles = [{b}]\n"),
                "lb_switch" => format!("file = {a}\ncontent = {b}\ncontainer = \"lb\"\n"),
                _ => format!("x = {a}\n"),
            };
            format!("kind = \"{kind}\"\n{body}{more}")
        });
    (prop::collection::vec(step, 0..5), any::<bool>()).prop_map(|(steps, with_template)| {
        let mut text = "[playbook]\nname = \"fuzz\"\n\n[vars]\na = \"ä\"\n\n[secrets]\nS = { env = \"DB_PASSWORD\" }\n".to_string();
        if with_template {
            text += "\n[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"out.txt\"\n";
        }
        for (i, step) in steps.iter().enumerate() {
            text += &format!("\n[[steps]]\nid = \"s{i}\"\n{step}");
        }
        text
    })
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

proptest! {
    #[test]
    fn random_toml_text_is_refused_with_a_place_never_a_panic(text in joined(toml_piece(), 40)) {
        let p = Project::new();
        p.write("pb.toml", &text).write("t.hbs", "x\n");
        check(&p)?;
    }

    #[test]
    fn random_playbooks_are_validated_or_refused_with_a_place(
        text in playbook(),
        template in handlebars(),
    ) {
        let p = Project::new();
        p.write("pb.toml", &text).write("t.hbs", &template);
        check(&p)?;
    }

    #[test]
    fn random_handlebars_with_partials_is_rendered_or_refused_with_a_place(
        template in handlebars(),
    ) {
        let p = Project::new();
        p.write(
            "pb.toml",
            "[playbook]\nname = \"hbs\"\n\n[vars]\na = \"ä\"\n\n[secrets]\nS = { env = \"DB_PASSWORD\" }\n\n[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"out.txt\"\n",
        )
        .write("t.hbs", &template);
        check(&p)?;
    }
}
