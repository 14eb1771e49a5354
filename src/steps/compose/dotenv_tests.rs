//! compose-go's `dotenv/parser_test.go` and `dotenv/godotenv_test.go`, case by case (their
//! names in the comments), with its fixtures copied under `tests/fixtures/compose-go/dotenv/`.

use super::*;

fn none(_: &str) -> Option<String> {
    None
}

fn env(text: &str) -> HashMap<String, String> {
    read(text, &none, &mut Vec::new()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/compose-go/dotenv/", $name))
    };
}

/// `loadEnvAndCompareValues`: each expected key has its value (CRLF read as LF).
fn compare(text: &str, lookup: Lookup<'_>, expected: &[(&str, &str)]) {
    let got = read(text, lookup, &mut Vec::new()).unwrap();
    for (k, want) in expected {
        let value = got.get(*k).map(|v| v.replace("\r\n", "\n"));
        assert_eq!(value.as_deref(), Some(*want), "{k} in {text:?}");
    }
}

#[test]
fn parser_test_go() {
    // TestParseBytes
    let input = "\na=b\na[1]=c\na.propertyKey=d\nárvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép\n";
    let out = env(input);
    assert_eq!(out.len(), 4);
    for (k, v) in [
        ("a", "b"),
        ("a[1]", "c"),
        ("a.propertyKey", "d"),
        ("árvíztűrő-TÜKÖRFÚRÓGÉP", "ÁRVÍZTŰRŐ-tükörfúrógép"),
    ] {
        assert_eq!(out[k], v);
    }
    // TestParseVariable: the same error, without the line's text (it may hold a secret).
    let err = read("%!(EXTRA string)=foo", &none, &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: unexpected character in variable name"
    );
    // TestMemoryExplosion: 1000 lines, 1000 keys (memory is Go's to measure).
    let input: Vec<String> = (0..1000).map(|i| format!("KEY{i}=VALUE{i}")).collect();
    assert_eq!(env(&input.join("\n")).len(), 1000);
}

#[test]
fn godotenv_fixtures() {
    // TestReadPlainEnv, TestLoadPlainEnv (compose keeps `456`: only godotenv's `Read` drops
    // keys that start with a digit, and compose never calls it)
    let plain = [
        ("OPTION_A", "1"),
        ("OPTION_B", "2"),
        ("OPTION_C", "3"),
        ("OPTION_D", "4"),
        ("OPTION_E", "5"),
        ("OPTION_F", ""),
        ("OPTION_G", ""),
        ("OPTION_H", "my string"),
        ("456", "ABC"),
    ];
    compare(fixture!("plain.env"), &none, &plain);
    assert_eq!(env(fixture!("plain.env")).len(), plain.len());
    // TestLoadExportedEnv
    compare(
        fixture!("exported.env"),
        &none,
        &[("OPTION_A", "2"), ("OPTION_B", "\\n")],
    );
    // TestLoadEqualsEnv
    compare(
        fixture!("equals.env"),
        &none,
        &[(
            "OPTION_A",
            "postgres://localhost:5432/database?sslmode=disable",
        )],
    );
    // TestLoadQuotedEnv
    compare(
        fixture!("quoted.env"),
        &none,
        &[
            ("OPTION_A", "1"),
            ("OPTION_B", "2"),
            ("OPTION_C", ""),
            ("OPTION_D", "\\n"),
            ("OPTION_E", "1"),
            ("OPTION_F", "2"),
            ("OPTION_G", ""),
            ("OPTION_H", "\n"),
            ("OPTION_I", "echo 'asd'"),
            ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
            ("OPTION_K", "Let's go!"),
            ("OPTION_Z", "last value"),
        ],
    );
    // TestLoadUnquotedEnv
    compare(
        fixture!("unquoted.env"),
        &none,
        &[
            ("OPTION_A", "some quoted phrase"),
            ("OPTION_B", "first one with an unquoted phrase"),
            ("OPTION_C", "then another one with an unquoted phrase"),
            (
                "OPTION_D",
                "then another one with an unquoted phrase special è char",
            ),
            ("OPTION_E", "then another one quoted phrase"),
        ],
    );
    // TestSubstitutions
    let substituted = [
        ("OPTION_A", "1"),
        ("OPTION_B", "1"),
        ("OPTION_C", "1"),
        ("OPTION_D", "1_1"),
        ("OPTION_E", ""),
    ];
    compare(fixture!("substitutions.env"), &none, &substituted);
    // TestUTF8BOM
    assert!(fixture!("utf8-bom.env").starts_with('\u{feff}'));
    compare(fixture!("utf8-bom.env"), &none, &plain[..5]);
    // TestDash
    compare(
        fixture!("special.env"),
        &none,
        &[
            ("VAR-WITH-DASHES", "dashes"),
            ("VAR.WITH.DOTS", "dots"),
            ("VAR_WITH_UNDERSCORES", "underscores"),
        ],
    );
    // TestErrorParsing
    let err = read(fixture!("invalid1.env"), &none, &mut Vec::new()).unwrap_err();
    assert_eq!(err.to_string(), "line 7: key cannot contain a space");
    // TestSubstitutionsWithUnsetVarEnvFileDefaultValuePrecedence
    compare(fixture!("substitutions-default.env"), &none, &substituted);
    assert_eq!(env(fixture!("substitutions-default.env")).len(), 5);
}

#[test]
fn godotenv_lookups() {
    let os_env =
        |k: &str| (k == "VAR_TO_BE_LOADED_FROM_OS_ENV").then(|| "SOME_RANDOM_VALUE".to_string());
    // TestInheritedEnvVariableSameSize
    let got = read(
        fixture!("inherited-multi-var.env"),
        &os_env,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(got.len(), 3);
    compare(
        fixture!("inherited-multi-var.env"),
        &os_env,
        &[
            ("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE"),
            ("foo", "bar"),
            ("bar", "baz"),
        ],
    );
    // TestInheritedEnvVariableSingleVar
    let got = read(
        fixture!("inherited-single-var.env"),
        &os_env,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["VAR_TO_BE_LOADED_FROM_OS_ENV"], "SOME_RANDOM_VALUE");
    // TestInheritedEnvVariableNotFound, TestInheritedEnvVariableNotFoundWithLookup
    let asked = std::cell::RefCell::new(Vec::new());
    let recording = |k: &str| {
        asked.borrow_mut().push(k.to_string());
        None
    };
    let got = read(
        fixture!("inherited-not-found.env"),
        &recording,
        &mut Vec::new(),
    )
    .unwrap();
    assert!(!got.contains_key("VARIABLE_NOT_FOUND"));
    assert_eq!(*asked.borrow(), ["VARIABLE_NOT_FOUND"]);
    // TestExpandingEnvironmentWithLookup
    let me = |k: &str| (k == "ME").then(|| "YES".to_string());
    assert_eq!(
        read("TEST=$ME", &me, &mut Vec::new()).unwrap()["TEST"],
        "YES"
    );
    // TestSubstitutionsWithEnvFilePrecedence
    let five = |k: &str| (k == "OPTION_A").then(|| "5".to_string());
    let precedence = [
        ("OPTION_A", "1"),
        ("OPTION_B", "5"),
        ("OPTION_C", "5"),
        ("OPTION_D", "5_5"),
        ("OPTION_E", ""),
    ];
    compare(fixture!("substitutions.env"), &five, &precedence);
    // TestSubstitutionsWithEnvFileDefaultValuePrecedence
    compare(
        fixture!("substitutions-default.env"),
        &five,
        &[
            ("OPTION_A", "5"),
            ("OPTION_B", "5"),
            ("OPTION_C", "5"),
            ("OPTION_D", "5_5"),
            ("OPTION_E", ""),
        ],
    );
    // TestMultipleFiles: each file looks up the environment, then what is read so far.
    let base = "\nENV_HOSTNAME=localhost\nENV_MY_URL=\"http://${ENV_HOSTNAME}\"\n";
    let over = "\nENV_HOSTNAME=dev.my-company.com\nENV_MY_URL=\"http://${ENV_HOSTNAME}\"\n";
    let files = |os: &HashMap<String, String>| {
        let mut all = HashMap::new();
        for text in [base, over] {
            read_into(text, &|k| os.get(k).cloned(), &mut all, &mut Vec::new()).unwrap();
        }
        all
    };
    let got = files(&HashMap::new());
    assert_eq!(got["ENV_HOSTNAME"], "dev.my-company.com");
    assert_eq!(got["ENV_MY_URL"], "http://dev.my-company.com");
    let os = HashMap::from([("ENV_HOSTNAME".to_string(), "host.local".to_string())]);
    let got = files(&os);
    assert_eq!(got["ENV_HOSTNAME"], "dev.my-company.com");
    assert_eq!(got["ENV_MY_URL"], "http://host.local");
}

/// A TestExpanding case: name, input, expected values.
type Expanding = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn godotenv_parse_and_expanding() {
    // TestParse
    let got = env("ONE=1\nTWO='2'\nTHREE = \"3\"");
    assert_eq!(
        (&*got["ONE"], &*got["TWO"], &*got["THREE"]),
        ("1", "2", "3")
    );
    // TestExpanding
    let cases: &[Expanding] = &[
        (
            "expands variables found in values",
            "FOO=test\nBAR=$FOO",
            &[("FOO", "test"), ("BAR", "test")],
        ),
        (
            "parses variables wrapped in brackets",
            "FOO=test\nBAR=${FOO}bar",
            &[("FOO", "test"), ("BAR", "testbar")],
        ),
        (
            "expands undefined variables to an empty string",
            "BAR=$FOO",
            &[("BAR", "")],
        ),
        (
            "expands variables in double quoted strings",
            "FOO=test\nBAR=\"quote $FOO\"",
            &[("FOO", "test"), ("BAR", "quote test")],
        ),
        (
            "does not expand variables in single quoted strings",
            "BAR='quote $FOO'",
            &[("BAR", "quote $FOO")],
        ),
        (
            "does not expand escaped variables 1",
            r#"FOO="foo\$BAR""#,
            &[("FOO", "foo$BAR")],
        ),
        (
            "does not expand escaped variables 2",
            r#"FOO="foo\${BAR}""#,
            &[("FOO", "foo${BAR}")],
        ),
        (
            "does not expand escaped variables 3",
            "FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"",
            &[("FOO", "test"), ("BAR", "foo${FOO} test")],
        ),
    ];
    for (name, input, expected) in cases {
        let got = env(input);
        for (k, v) in *expected {
            assert_eq!(got[*k], *v, "{name}");
        }
    }
    // The undefined variable is Compose's warning, with the line.
    let mut warnings = Vec::new();
    read("A=1\nBAR=$FOO", &none, &mut warnings).unwrap();
    assert_eq!(
        warnings,
        ["line 2: The \"FOO\" variable is not set. Defaulting to a blank string."]
    );
    // TestVariableStringValueSeparator
    let got = env(
        "TEST_URLS=\"stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443\"",
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got["TEST_URLS"],
        "stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443"
    );
}

/// TestParsing's `parseAndCompare` lines.
const PARSING: &[(&str, &str, &str)] = &[
    ("FOO=bar", "FOO", "bar"),
    ("FOO =bar", "FOO", "bar"),
    ("FOO= bar", "FOO", "bar"),
    (r#"FOO="bar""#, "FOO", "bar"),
    ("FOO='bar'", "FOO", "bar"),
    (r#"FOO="escaped\"bar""#, "FOO", r#"escaped"bar"#),
    (r#"FOO="\"quoted\"""#, "FOO", r#""quoted""#),
    (r#"FOO="'d'""#, "FOO", "'d'"),
    ("OPTION_A: 1", "OPTION_A", "1"),
    ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
    ("OPTION_A=1:B", "OPTION_A", "1:B"),
    ("export OPTION_A=2", "OPTION_A", "2"),
    (r"export OPTION_B='\n'", "OPTION_B", "\\n"),
    ("export exportFoo=2", "exportFoo", "2"),
    ("exportFOO=2", "exportFOO", "2"),
    ("export_FOO =2", "export_FOO", "2"),
    ("export.FOO= 2", "export.FOO", "2"),
    ("export\tOPTION_A=2", "OPTION_A", "2"),
    ("  export OPTION_A=2", "OPTION_A", "2"),
    ("\texport OPTION_A=2", "OPTION_A", "2"),
    (r#"export OPTION_A="export A""#, "OPTION_A", "export A"),
    (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
    (r"FOO=a\tb", "FOO", r"a\tb"),
    (r#"FOO="a\tb""#, "FOO", "a\tb"),
    (
        r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
        "KEY",
        "Z\x07Z\x08Z\x0CZ\nZ\rZ\tZ\x0BZ\\ZSZ",
    ),
    ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
    ("FOO=foobar=", "FOO", "foobar="),
    ("FOO=bar ", "FOO", "bar"),
    ("FOO=bar # this is foo", "FOO", "bar"),
    ("FOO=bar #this is foo", "FOO", "bar"),
    ("FOO=bar #", "FOO", "bar"),
    (
        "FOO=123#not-an-inline-comment",
        "FOO",
        "123#not-an-inline-comment",
    ),
    (r#"FOO="bar#baz""#, "FOO", "bar#baz"),
    (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
    (r#"FOO="bar#baz" # comment"#, "FOO", "bar#baz"),
    ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
    (r#"FOO="bar#baz#bang" # comment"#, "FOO", "bar#baz#bang"),
    (r#"FOO="ba#r""#, "FOO", "ba#r"),
    ("FOO='ba#r'", "FOO", "ba#r"),
    (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\x07z"),
    (r#"FOO="bar\\\n\ b\az""#, "FOO", "bar\\\n\\ b\x07z"),
    (r#"FOO="bar\\r\ b\az""#, "FOO", "bar\\r\\ b\x07z"),
    (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
    (r#"="value""#, "", "value"),
    (" KEY =value", "KEY", "value"),
    ("   KEY=value", "KEY", "value"),
    ("\tKEY=value", "KEY", "value"),
    (r#"KEY="\0123""#, "KEY", "S"),
    (r#"KEY="\x07""#, "KEY", r"\x07"),
    (r#"KEY="\u12e4""#, "KEY", r"\u12e4"),
    (r#"KEY="\U00101234""#, "KEY", r"\U00101234"),
];

#[test]
fn godotenv_parsing() {
    for (line, key, want) in PARSING {
        let got = env(line);
        assert_eq!(got.get(*key).map(String::as_str), Some(*want), "{line}");
    }
    // "throws an error if line format is incorrect"
    assert!(read("lol$wut", &none, &mut Vec::new()).is_err());
    // TestUnterminatedQuotes
    for text in [
        r#"KEY=""#,
        r#"KEY="value"#,
        r#"KEY="value\""#,
        r#"KEY="value'"#,
        "KEY='",
        "KEY='value",
        r"KEY='value\'",
        r#"KEY='value""#,
    ] {
        let err = read(text, &none, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: unterminated quoted value",
            "{text}"
        );
    }
    // TestLinesToIgnore
    for text in ["\n", "\r\n", "\t\t ", "# Comment", "\t # comment"] {
        assert_eq!(parse(text, &none, &mut Vec::new()).unwrap(), [], "{text:?}");
    }
    assert_eq!(env(r"export OPTION_B='\n'")["OPTION_B"], "\\n");
}

#[test]
fn spans_cover_each_statement_as_written() {
    let text = "\u{feff}# c\nA=1 # one\r\nexport B = 'x y' # two\nC=\"q\"\n";
    let entries = parse(text, &none, &mut Vec::new()).unwrap();
    let spans: Vec<(&str, usize, &str)> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.line, &text[e.span.clone()]))
        .collect();
    assert_eq!(
        spans,
        [
            ("A", 2, "A=1"),
            ("B", 3, "export B = 'x y'"),
            ("C", 4, "C=\"q\"")
        ]
    );
}

#[test]
fn errors_never_quote_the_line() {
    let secret = "hunter2-S3CRET-ü";
    for text in [
        format!("PASSWORD={secret}\n{secret} oops\n"),
        format!("PASSWORD=\"{secret}\n"),
        format!("{secret}$=x"),
        format!("A=x${{{secret}"),
    ] {
        let err = read(&text, &none, &mut Vec::new()).unwrap_err();
        assert!(!err.to_string().contains("S3CRET"), "{err}");
    }
}

#[test]
fn hostile_input_never_panics() {
    for text in [
        "\u{feff}",
        "export",
        "export ",
        "export\n",
        "=",
        "'",
        "A=\"\\",
        "A='\\",
        "🚀=1",
        "A=🚀 #🚀",
        "A=\"\\0377\\0\\08\"",
        "\u{85}\u{a0}A\u{2028}=1",
        "A\tB=1",
        "K",
    ] {
        let _ = parse(text, &none, &mut Vec::new());
    }
    assert_eq!(env("A=\"\\0377\"")["A"], "ÿ");
    assert_eq!(env("FOO")[""], "FOO");
}

/// The relay's own `.env.example` (Wei-Shaw/claude-relay-service 8479c7c, MIT), which its
/// README has users copy to `.env`: every value as docker-compose v1.29 reads it.
#[test]
fn the_relays_env_example_reads_as_docker_compose_reads_it() {
    let text = include_str!("../../../tests/fixtures/relay/env.example");
    let mut warnings = Vec::new();
    let vars = read(text, &none, &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(vars["WEB_TITLE"], "Claude Relay Service");
    assert_eq!(vars["REQUEST_TIMEOUT"], "600000");
    let seen = super::docker_compose_reads(text, vars.keys());
    for (k, v) in &vars {
        assert_eq!(seen[k].as_deref(), Some(v.as_str()), "{k}");
    }
    assert!(vars.len() > 30, "{}", vars.len());
}
