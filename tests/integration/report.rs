//! `runner report`: the HTML page of a real run, rendered by headless Chromium, and the
//! Markdown summary of a fixed journal, pinned.

use std::path::Path;
use std::process::Command;

use crate::support::{Project, SENTINEL};
use crate::traffic::{access_log, clients};

/// A run with every kind of sample: real traffic judged by a verify and watched by a monitor
/// (with a health URL), then a step that fails (its error holds markup, non-ASCII and the
/// secret), so the steps before it are rolled back.
fn failed_run(p: &Project) -> crate::support::Run {
    let health = crate::support::serve(|_, _| (200, "{}", 2));
    p.write("marker.hbs", "deployed ✓\n");
    p.write(
        "run.toml",
        &format!(
            r#"[playbook]
name = "rapport-été"
phase = "démo"

[secrets]
DB_PASSWORD = {{ env = "DB_PASSWORD" }}

[[steps]]
id = "marker"
kind = "template"
template = "marker.hbs"
dest = "marker.txt"

[[steps]]
id = "probe"
kind = "verify"
traffic = {{ access_log = "logs/lb/access.log", window = "2s", min_requests = 20, wait = "5s" }}

[[steps]]
id = "watch"
kind = "monitor"
window = "3s"
interval = "500ms"
health_url = "http://127.0.0.1:{health}/health"
traffic = {{ access_log = "logs/lb/access.log", window = "2s", interval = "500ms", min_requests = 20 }}

[[steps]]
id = "break"
kind = "exec"
command = ["sh", "-c", "echo '<script>alert(1)</script> ünïcödé 🚀' >&2; echo pw=$PW >&2; exit 3"]
env = {{ PW = "{{{{secrets.DB_PASSWORD}}}}" }}
rollback = "none"
reason = "it changes nothing"
"#
        ),
    );
    p.run(&["apply", "--yes", "run.toml"])
}

/// Chromium's rendering of `page`: the DOM after load, and its log (console messages and
/// policy violations land there).
pub(crate) fn chromium(page: &Path, screenshot: &Path) -> (String, String) {
    let url = format!("file://{}", page.display());
    let run = |extra: &[&str]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1100,1800",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs (scripts/services.sh installs Debian's `chromium`)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (dom, log) = run(&["--dump-dom"]);
    let shot = format!("--screenshot={}", screenshot.display());
    let (_, shot_log) = run(&[&shot]);
    assert!(
        screenshot.metadata().is_ok_and(|m| m.len() > 10_000),
        "a screenshot"
    );
    (dom, log + &shot_log)
}

/// What in Chromium's log says the page is broken: a console message or a blocked resource.
pub(crate) fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Content Security Policy"))
        .collect()
}

#[test]
fn the_html_report_of_a_real_run_renders_its_timeline_and_charts_in_chromium() {
    let p = Project::new();
    let _clients = clients(access_log(&p), 60, |elapsed, n| {
        (
            200,
            0.004 + (n % 7) as f64 / 1000.0 + elapsed.as_secs_f64() / 200.0,
        )
    });
    let run = failed_run(&p).expect(4);
    // apply says where the run's report is, and it is there.
    let said = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("apply names the report:\n{}", run.stderr));
    assert!(
        said.ends_with("/report.html") && said.contains("/.runner/runs/"),
        "{said}"
    );
    let left = std::fs::read_to_string(said).unwrap();

    p.run(&["report", "--format", "html", "--out", "report.html"])
        .expect(0);
    let page = p.read("report.html").unwrap();
    assert_eq!(page, left, "the command writes the page the run left");
    assert!(!page.contains(SENTINEL), "no secret in the page");
    assert!(!page.contains("<script>"), "the journal's text is escaped");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; ünïcödé 🚀"),
        "{page}"
    );
    assert!(
        !page.contains("http://") || !page.contains("src=\"http"),
        "nothing to fetch"
    );

    let shot = p.file("report.png");
    let (dom, log) = chromium(&p.file("report.html"), &shot);
    assert_eq!(console_errors(&log), Vec::<&str>::new(), "{log}");
    // The timeline: a bar per attempt and rollback, coloured by outcome.
    let timeline = &dom[dom.find("<svg id=\"timeline\"").expect("a timeline")..];
    let timeline = &timeline[..timeline.find("</svg>").unwrap()];
    for (class, at_least) in [
        ("bar ok", 3),
        ("bar failed", 1),
        ("bar rolled-back undo", 1),
    ] {
        let n = timeline.matches(&format!("class=\"{class}\"")).count();
        assert!(
            n >= at_least,
            "{at_least}+ `{class}` bars, got {n}:\n{timeline}"
        );
    }
    // The gates' charts: the monitor's traffic (error rate, three percentiles) and health.
    for title in [
        "real-traffic error rate",
        "real-traffic latency",
        "health checks",
    ] {
        assert!(
            dom.contains(&format!("aria-label=\"{title}\"")),
            "{title}:\n{dom}"
        );
    }
    let polylines = dom.matches("<polyline").count();
    assert!(polylines >= 4, "error rate + p50/p95/p99, got {polylines}");
    let points = dom
        .split("<polyline")
        .nth(1)
        .and_then(|l| l.split("points=\"").nth(1))
        .map(|p| p.split('"').next().unwrap().split(' ').count())
        .unwrap_or_default();
    // A point per traffic window and a mark per health probe the monitor journaled (how many
    // depends on how busy the machine is).
    let journal = p.journals();
    let windows = journal.matches("\"sample\":\"traffic t+").count();
    assert!(windows >= 2, "{journal}");
    assert_eq!(points, windows, "a point per traffic window");
    let probes = journal.matches("; health 200;").count();
    assert!(probes >= 2, "{journal}");
    assert_eq!(
        dom.matches("<circle class=\"pass\"").count(),
        probes,
        "a mark per probe"
    );
    // The checks the verify journaled, the rollback and the warnings.
    assert!(dom.contains("traffic.error_rate"), "{dom}");
    assert!(dom.contains("id=\"rollback\""), "{dom}");
    std::fs::copy(&shot, std::env::temp_dir().join("runner-report.png")).unwrap();
}

#[test]
fn the_console_check_trips_on_a_broken_page() {
    let p = Project::new();
    p.write(
        "broken.html",
        "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"><img src=\"http://127.0.0.1:9/x.png\"><p>broken</p>",
    );
    let (_, log) = chromium(&p.file("broken.html"), &p.file("broken.png"));
    assert!(
        !console_errors(&log).is_empty(),
        "a blocked fetch is caught:\n{log}"
    );
}

#[test]
fn the_markdown_summary_of_a_fixed_journal_is_pinned() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-state");
    let p = Project::new();
    let state = fixture.display().to_string();
    let run = p
        .run(&["report", "--state-dir", &state, "--format", "markdown"])
        .expect(0);
    insta::assert_snapshot!(run.stdout);
    // JSON is not a report format; an unknown run is named.
    let json = p
        .run(&["report", "--state-dir", &state, "--format", "json"])
        .expect(2);
    assert!(
        json.stderr.contains("a report is html or markdown"),
        "{}",
        json.stderr
    );
    let missing = p
        .run(&["report", "--state-dir", &state, "--run", "nope"])
        .expect(2);
    assert!(
        missing.stderr.contains("there is no run `nope`"),
        "{}",
        missing.stderr
    );
    let html = p.run(&["status", "--format", "html"]).expect(2);
    assert!(
        html.stderr.contains("--format html is for `runner report`"),
        "{}",
        html.stderr
    );
}

#[test]
fn quiet_shows_the_outcome_verbose_every_line_and_the_summary_wraps_long_notes() {
    let p = Project::new();
    p.write(
        "say.toml",
        r#"[playbook]
name = "say"

[[steps]]
id = "say"
kind = "exec"
command = ["sh", "-c", "echo première ligne; echo runner.app_password is not set: give it in the sql step settings >/dev/null"]
rollback = "none"
reason = "it changes nothing"
"#,
    );
    let normal = p.run(&["apply", "--yes", "say.toml"]).expect(0);
    // The step's note (its command, 100+ characters) is wrapped in the table, not cut.
    let table: String = normal
        .stdout
        .lines()
        .filter(|l| l.contains('┆'))
        .filter_map(|l| l.rsplit('┆').next())
        .skip(1)
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect();
    let note = "`sh -c 'echo première ligne; echo runner.app_password is not set: give it in the sql step settings >/dev/null'` exited 0";
    let whole: String = note.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(table, whole, "{}", normal.stdout);
    assert!(
        !normal.stdout.contains("  say: première ligne"),
        "{}",
        normal.stdout
    );

    let verbose = p.run(&["apply", "--yes", "-v", "say.toml"]).expect(0);
    assert!(
        verbose.stdout.contains("  say: première ligne"),
        "{}",
        verbose.stdout
    );

    let quiet = p.run(&["apply", "--yes", "--quiet", "say.toml"]).expect(0);
    let lines: Vec<&str> = quiet.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the outcome:\n{}", quiet.stdout);
    assert!(
        lines[0].starts_with("run succeeded in "),
        "{}",
        quiet.stdout
    );
    let both = p.run(&["apply", "--yes", "-q", "-v", "say.toml"]).expect(2);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
}

#[test]
fn the_report_hides_what_the_playbooks_secrets_now_cover() {
    let p = Project::new();
    let step = format!(
        "[[steps]]\nid = \"say\"\nkind = \"exec\"\ncommand = [\"echo\", \"{SENTINEL}\"]\nrollback = \"none\"\nreason = \"it changes nothing\"\n"
    );
    p.write("say.toml", &format!("[playbook]\nname = \"say\"\n\n{step}"));
    p.run(&["apply", "--yes", "say.toml"]).expect(0);
    let before = p.run(&["report", "--format", "markdown"]).expect(0);
    assert!(
        before.stdout.contains(SENTINEL),
        "not a secret then:\n{}",
        before.stdout
    );
    // The value became a secret of the playbook: the report of the old run hides it too.
    p.write(
        "say.toml",
        &format!("[playbook]\nname = \"say\"\n\n[secrets]\nDB_PASSWORD = {{ env = \"DB_PASSWORD\" }}\n\n{step}"),
    );
    for format in ["markdown", "html"] {
        let after = p.run(&["report", "--format", format]).expect(0);
        assert!(
            !after.stdout.contains(SENTINEL),
            "{format}:\n{}",
            after.stdout
        );
        assert!(
            after.stdout.contains("redacted"),
            "{format}:\n{}",
            after.stdout
        );
    }
}

#[test]
fn rollback_leaves_the_runs_report_updated_and_json_names_it_in_a_line() {
    let p = Project::new();
    p.write("marker.hbs", "deployed\n").write(
        "mark.toml",
        "[playbook]\nname = \"mark\"\n\n[[steps]]\nid = \"marker\"\nkind = \"template\"\ntemplate = \"marker.hbs\"\ndest = \"marker.txt\"\n",
    );
    let run = p
        .run(&["apply", "--yes", "--format", "json", "mark.toml"])
        .expect(0);
    let said: serde_json::Value = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["event"] == "report")
        .unwrap_or_else(|| panic!("a report line:\n{}", run.stdout));
    let path = said["path"].as_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("status succeeded")
    );

    let undone = p.run(&["rollback", "--yes"]).expect(0);
    assert!(
        undone.stderr.contains(&format!("report: {path}")),
        "{}",
        undone.stderr
    );
    let page = std::fs::read_to_string(&path).unwrap();
    assert!(page.contains("class=\"bar rolled-back undo\""), "{page}");
    assert!(page.contains("id=\"rollback\""), "{page}");
}
