//! compose-go's `template/template_test.go` and `dotenv/godotenv_var_expansion_test.go`, case
//! by case (their names in the comments and messages), as tables.

use super::*;

/// template_test.go's `defaults`.
fn defaults(name: &str) -> Option<String> {
    match name {
        "FOO" => Some("first".into()),
        "BAR" => Some(String::new()),
        "JSON" => Some(r#"{"json":2}"#.into()),
        _ => None,
    }
}

fn run(template: &str) -> (Result<String, Error>, Vec<String>) {
    let mut warnings = Vec::new();
    (substitute(template, &defaults, &mut warnings), warnings)
}

fn ok(template: &str) -> String {
    run(template)
        .0
        .unwrap_or_else(|e| panic!("{template}: {e}"))
}

/// Cases whose result is given: (test name, template, expected).
const SUBSTITUTED: &[(&str, &str, &str)] = &[
    ("TestEscaped", "$${foo}", "${foo}"),
    ("TestSubstituteNoMatch", "foo", "foo"),
    ("TestUnescaped", "a $ string", "a $ string"),
    ("TestUnescaped", "^REGEX$", "^REGEX$"),
    ("TestUnescaped", "$}", "$}"),
    ("TestUnescaped", "$", "$"),
    ("TestNonBraced", "$FOO-bar", "first-bar"),
    ("TestNoValueNoDefault", "This ${missing} var", "This  var"),
    ("TestNoValueNoDefault", "This ${BAR} var", "This  var"),
    ("TestValueNoDefault", "This $FOO var", "This first var"),
    ("TestValueNoDefault", "This ${FOO} var", "This first var"),
    ("TestNoValueWithDefault", "ok ${missing:-def}", "ok def"),
    ("TestNoValueWithDefault", "ok ${missing-def}", "ok def"),
    ("TestEmptyValueWithSoftDefault", "ok ${BAR:-def}", "ok def"),
    ("TestValueWithSoftDefault", "ok ${FOO:-def}", "ok first"),
    ("TestEmptyValueWithHardDefault", "ok ${BAR-def}", "ok "),
    (
        "TestPresentValueWithUnset",
        "ok ${UNSET_VAR:+presence_value}",
        "ok ",
    ),
    (
        "TestPresentValueWithUnset2",
        "ok ${UNSET_VAR+presence_value}",
        "ok ",
    ),
    (
        "TestPresentValueWithNonEmpty",
        "ok ${FOO:+presence_value}",
        "ok presence_value",
    ),
    (
        "TestPresentValueAndNonEmptyWithNonEmpty",
        "ok ${FOO+presence_value}",
        "ok presence_value",
    ),
    (
        "TestPresentValueWithSet",
        "ok ${BAR+presence_value}",
        "ok presence_value",
    ),
    (
        "TestPresentValueAndNotEmptyWithSet",
        "ok ${BAR:+presence_value}",
        "ok ",
    ),
    (
        "TestNonAlphanumericDefault",
        "ok ${BAR:-/non:-alphanumeric}",
        "ok /non:-alphanumeric",
    ),
    (
        "TestInterpolationExternalInterference 0",
        "-ok ${BAR:-defaultValue}",
        "-ok defaultValue",
    ),
    (
        "TestInterpolationExternalInterference 1",
        "+ok ${UNSET:-${BAR-defaultValue}}",
        "+ok ",
    ),
    (
        "TestInterpolationExternalInterference 2",
        "-ok ${FOO:-defaultValue}",
        "-ok first",
    ),
    (
        "TestInterpolationExternalInterference 3",
        ":-ok ${UNSET-defaultValue}",
        ":-ok defaultValue",
    ),
    (
        "TestInterpolationExternalInterference 4",
        ":-ok ${BAR-defaultValue}",
        ":-ok ",
    ),
    (
        "TestInterpolationExternalInterference 5",
        ":?ok ${BAR-defaultValue}",
        ":?ok ",
    ),
    (
        "TestInterpolationExternalInterference 6",
        ":?ok ${BAR:-defaultValue}",
        ":?ok defaultValue",
    ),
    (
        "TestInterpolationExternalInterference 7",
        ":+ok ${BAR:-defaultValue}",
        ":+ok defaultValue",
    ),
    (
        "TestInterpolationExternalInterference 8",
        "+ok ${BAR-defaultValue}",
        "+ok ",
    ),
    (
        "TestInterpolationExternalInterference 9",
        "?ok ${BAR:-defaultValue}",
        "?ok defaultValue",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${UNSET_VAR-$FOO}",
        "ok first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${UNSET_VAR-${FOO}}",
        "ok first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${UNSET_VAR-${FOO} ${FOO}}",
        "ok first first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${BAR:-$FOO}",
        "ok first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${BAR:-${FOO}}",
        "ok first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${BAR:-${FOO} ${FOO}}",
        "ok first first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${BAR+$FOO}",
        "ok first",
    ),
    (
        "TestDefaultsWithNestedExpansion",
        "ok ${BAR+$FOO ${FOO:+second}}",
        "ok first second",
    ),
    (
        "TestDefaultsForMandatoryVariables",
        "ok ${FOO:?err}",
        "ok first",
    ),
    (
        "TestDefaultsForMandatoryVariables",
        "ok ${FOO?err}",
        "ok first",
    ),
    ("TestDefaultsForMandatoryVariables", "ok ${BAR?err}", "ok "),
    (
        "TestSubstituteWithReplacementFunc (default pattern)",
        "ok ${SUBDOMAIN:-redis}.${FOO:?}",
        "ok redis.first",
    ),
    ("TestPrecedence", "${UNSET_VAR-myerror?msg}", "myerror?msg"),
    ("TestPrecedence", "${FOO?bar-baz}", "first"),
    (
        "TestPrecedence",
        "${BAR:-default_value_for_empty_var}",
        "default_value_for_empty_var",
    ),
    (
        "TestPrecedence",
        "${UNSET_VAR-default_value_for_unset_var}",
        "default_value_for_unset_var",
    ),
    (
        "TestNoValueWithCurlyBracesDefault",
        r#"ok ${missing:-{"json":1}}"#,
        r#"ok {"json":1}"#,
    ),
    (
        "TestNoValueWithCurlyBracesDefault",
        r#"ok ${missing-{"json":1}}"#,
        r#"ok {"json":1}"#,
    ),
    (
        "TestValueWithCurlyBracesDefault",
        r#"ok ${JSON:-{"json":1}}"#,
        r#"ok {"json":2}"#,
    ),
    (
        "TestValueWithCurlyBracesDefault",
        r#"ok ${JSON-{"json":1}}"#,
        r#"ok {"json":2}"#,
    ),
];

#[test]
fn compose_go_substitutions() {
    for (name, template, want) in SUBSTITUTED {
        assert_eq!(ok(template), *want, "{name}: {template}");
    }
}

#[test]
fn compose_go_invalid_templates() {
    // TestInvalid
    for template in ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}"] {
        let err = run(template).0.unwrap_err();
        assert_eq!(
            err,
            Error::Invalid {
                template: template.into()
            }
        );
        assert!(err.to_string().contains("Invalid template"), "{template}");
    }
}

#[test]
fn compose_go_mandatory_variables() {
    let cases = [
        // TestMandatoryVariableErrors
        (
            "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
        ),
        (
            "not ok ${BAR:?Mandatory Variable Empty}",
            "required variable BAR is missing a value: Mandatory Variable Empty",
        ),
        (
            "not ok ${UNSET_VAR:?}",
            "required variable UNSET_VAR is missing a value",
        ),
        (
            "not ok ${UNSET_VAR?Mandatory Variable Unset}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
        ),
        (
            "not ok ${UNSET_VAR?}",
            "required variable UNSET_VAR is missing a value",
        ),
        // TestMandatoryVariableErrorsWithNestedExpansion
        (
            "not ok ${UNSET_VAR:?Mandatory Variable ${FOO}}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable first",
        ),
        (
            "not ok ${UNSET_VAR?Mandatory Variable ${FOO}}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable first",
        ),
    ];
    for (template, want) in cases {
        let err = run(template).0.unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{template}");
        assert_eq!(err.to_string(), want, "{template}");
    }
    // TestPrecedence: the first operator wins.
    assert_eq!(
        run("${UNSET_VAR?bar-baz}").0,
        Err(Error::Missing {
            variable: "UNSET_VAR".into(),
            reason: "bar-baz".into()
        })
    );
}

#[test]
fn compose_go_warnings() {
    // TestLazyDefaultDoesNotWarn
    let (result, warnings) = run("${A:+${A},}B");
    assert_eq!(result.unwrap(), "B");
    assert!(warnings.is_empty(), "{warnings:?}");
    // TestLazyDefaultWarnsWhenUsed
    let (result, warnings) = run("${A:-${B}}");
    assert_eq!(result.unwrap(), "");
    assert_eq!(
        warnings,
        ["The \"B\" variable is not set. Defaulting to a blank string."]
    );
    // TestLazyRequiredMessageDoesNotWarn (`${A?${B}}` failed before, with A set)
    let a_only = |k: &str| (k == "A").then(|| "value".to_string());
    let mut warnings = Vec::new();
    assert_eq!(
        substitute("${A?${B}}", &a_only, &mut warnings).unwrap(),
        "value"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // A plain reference that is not set warns once per use.
    assert_eq!(run("$NOPE ${NOPE}").1.len(), 2);
}

#[test]
fn compose_go_operator_choice() {
    // TestSubstitutionFunctionChoice
    let cases = [
        ("Error when EMPTY or UNSET", "VARNAME:?val?ue", ":?"),
        ("Error when UNSET 1", "VARNAME?val:?ue", "?"),
        ("Error when UNSET 2", "VARNAME?va-lu+e:?e", "?"),
        ("Error when UNSET 3", "VARNAME?va+lu-e:?e", "?"),
        ("Default when EMPTY or UNSET", "VARNAME:-value", ":-"),
        ("Default when UNSET 1", "VARNAME-va:-lu:?e", "-"),
        ("Default when UNSET 2", "VARNAME-va+lu?e", "-"),
        ("Default when UNSET 3", "VARNAME-va?lu+e", "-"),
        ("Default when NOT EMPTY", "VARNAME:+va:?lu:-e", ":+"),
        ("Default when SET 1", "VARNAME+va:+lue", "+"),
        ("Default when SET 2", "VARNAME+va?lu-e", "+"),
        ("Default when SET 3", "VARNAME+va-lu?e", "+"),
    ];
    for (name, input, symbol) in cases {
        assert_eq!(operator(input), symbol, "{name}");
    }
}

/// godotenv_var_expansion_test.go: `expandVariables` is `substitute` over the file's values.
#[test]
fn compose_go_dotenv_expansion() {
    let env = |k: &str| match k {
        "EMPTY_VAR" => Some(String::new()),
        "TEST_VAR" => Some("Test Value".to_string()),
        _ => None,
    };
    let expand = |t: &str| substitute(t, &env, &mut Vec::new());
    let results = [
        // TestExpandIfEmptyOrUnset
        ("RESULT=${UNSET_VAR:-Default Value}", "RESULT=Default Value"),
        ("RESULT=${EMPTY_VAR:-Default Value}", "RESULT=Default Value"),
        ("RESULT=${TEST_VAR:-Default Value}", "RESULT=Test Value"),
        // TestExpandIfUnset
        ("RESULT=${UNSET_VAR-Default Value}", "RESULT=Default Value"),
        ("RESULT=${EMPTY_VAR-Default Value}", "RESULT="),
        ("RESULT=${TEST_VAR-Default Value}", "RESULT=Test Value"),
        // TestErrorIfEmptyOrUnset, TestErrorIfUnset: those that hold
        ("RESULT=${TEST_VAR:?Default Value}", "RESULT=Test Value"),
        ("RESULT=${EMPTY_VAR?Test error}", "RESULT="),
        ("RESULT=${TEST_VAR?Default Value}", "RESULT=Test Value"),
    ];
    for (input, want) in results {
        assert_eq!(expand(input).unwrap(), want, "{input}");
    }
    for (input, variable) in [
        ("RESULT=${UNSET_VAR:?Test error}", "UNSET_VAR"),
        ("RESULT=${EMPTY_VAR:?Test error}", "EMPTY_VAR"),
        ("RESULT=${UNSET_VAR?Test error}", "UNSET_VAR"),
    ] {
        assert_eq!(
            expand(input),
            Err(Error::Missing {
                variable: variable.into(),
                reason: "Test error".into()
            }),
            "{input}"
        );
    }
}

#[test]
fn hostile_templates_neither_panic_nor_change_plain_text() {
    for text in [
        "ünïcödé ✓ 🚀 $ ${",
        "$$$$",
        "${A:-${B:-${C:-x}}}",
        "}{}{${",
        "\u{0}\u{7f}",
        "${ü}",
        "${A:-\n}",
    ] {
        let _ = run(text);
    }
    assert_eq!(ok("🚀 cost $5 ü"), "🚀 cost $5 ü");
    assert_eq!(ok("${UNSET:-🚀}"), "🚀");
    let deep = format!("{}x{}", "${A:-".repeat(200), "}".repeat(200));
    assert_eq!(ok(&deep), "x");
}

#[test]
fn a_tree_names_the_path_of_each_warning_and_error() {
    let vars: HashMap<String, String> = [("TAG".to_string(), "1".to_string())].into();
    let mut value: Value = serde_yaml::from_str(
        "services:\n  app:\n    image: a:$TAG\n    environment: [\"K=$NOPE\"]\n",
    )
    .unwrap();
    let warnings = tree(&mut value, &vars).unwrap();
    assert_eq!(
        warnings,
        [
            "services.app.environment[0]: The \"NOPE\" variable is not set. Defaulting to a blank string."
        ]
    );
    assert_eq!(value["services"]["app"]["image"], "a:1");
    let mut value: Value =
        serde_yaml::from_str("services:\n  app:\n    image: ${NOPE:?give a tag}\n").unwrap();
    let err = tree(&mut value, &vars).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error while interpolating services.app.image: required variable NOPE is missing a value: give a tag"
    );
    assert_eq!(err.template, "${NOPE:?give a tag}");
}
