//! Engine benchmarks, printed as figures (not a timed test):
//! - `runner plan` on generated 1,000- and 10,000-step playbooks (targets: < 100 ms, < 1 s);
//! - apply cost per step, split into journal fsyncs and the engine's own overhead
//!   (target: < 2 ms per step plus the fsyncs).
//!
//! Run with `cargo bench --bench engine`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 1000;
const RUNS: usize = 5;

fn runner(dir: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(dir)
        .env("BENCH_SECRET", "bench-secret-value")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runner starts");
    assert!(status.success(), "runner {args:?} failed");
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `runner plan` sizes, with their targets.
const PLAN_SIZES: [(usize, Duration); 2] = [
    (1_000, Duration::from_millis(100)),
    (10_000, Duration::from_secs(1)),
];

/// A playbook `name` of `steps` steps, every kind represented (the exec steps are never run
/// here).
fn mixed_playbook(dir: &Path, name: &str, steps: usize) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("templates/t.hbs"),
        "port={{vars.port}}\npassword={{secrets.PW}}\nphase={{run.phase}}\n",
    )
    .unwrap();
    let mut text = String::from(
        "[playbook]\nname = \"bench\"\n\n[vars]\nport = 3000\n\n[secrets]\nPW = { env = \"BENCH_SECRET\" }\n",
    );
    for i in 0..steps {
        let step = match i % 4 {
            0 => format!("kind = \"backup\"\npaths = [\"out/f{i}.conf\"]"),
            1 => format!(
                "kind = \"template\"\ntemplate = \"templates/t.hbs\"\ndest = \"out/f{i}.conf\""
            ),
            2 => format!(
                "kind = \"env\"\nfile = \"out/e{i}.env\"\nset = {{ A = \"{{{{vars.port}}}}\", B = \"x\" }}"
            ),
            _ => "kind = \"exec\"\ncommand = [\"true\"]\nrollback = \"none\"\nreason = \"bench\""
                .to_string(),
        };
        text.push_str(&format!("\n[[steps]]\nid = \"s{i}\"\n{step}\n"));
    }
    std::fs::write(dir.join(name), text).unwrap();
}

/// A playbook of `STEPS` steps that do no work, so apply measures the engine and journal.
fn empty_steps_playbook(dir: &Path) {
    let mut text = String::from("[playbook]\nname = \"bench-apply\"\n");
    for i in 0..STEPS {
        text.push_str(&format!(
            "\n[[steps]]\nid = \"s{i}\"\nkind = \"backup\"\npaths = []\n"
        ));
    }
    std::fs::write(dir.join("apply.toml"), text).unwrap();
}

/// The cost of one journal-sized append + fdatasync on this disk.
fn fsync_cost(dir: &Path) -> Duration {
    let path = dir.join("fsync.jsonl");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let line = br#"{"seq":1,"at":"2026-01-01T00:00:00.000Z","event":"step_started","step":"s1","kind":"backup","index":1,"attempt":1}"#;
    let n = 2000;
    let started = Instant::now();
    for _ in 0..n {
        file.write_all(line).unwrap();
        file.write_all(b"\n").unwrap();
        file.sync_data().unwrap();
    }
    started.elapsed() / n
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    empty_steps_playbook(root);

    let noop = median((0..RUNS).map(|_| runner(root, &["--help"])).collect());
    for (steps, target) in PLAN_SIZES {
        let name = format!("pb{steps}.toml");
        mixed_playbook(root, &name, steps);
        let plan: Vec<Duration> = (0..RUNS)
            .map(|_| runner(root, &["plan", &name, "--format", "json"]))
            .collect();
        let validate = median(
            (0..RUNS)
                .map(|_| runner(root, &["validate", &name]))
                .collect(),
        );
        println!(
            "runner plan, {steps}-step playbook: median {:.1} ms, min {:.1} ms over {RUNS} runs (process start alone: {:.1} ms; validate: {:.1} ms) — target < {:.0} ms",
            ms(median(plan.clone())),
            ms(*plan.iter().min().unwrap()),
            ms(noop),
            ms(validate),
            ms(target)
        );
    }

    let fsync = fsync_cost(root);
    let applies: Vec<Duration> = (0..3)
        .map(|i| {
            runner(
                root,
                &[
                    "apply",
                    "apply.toml",
                    "--yes",
                    "--format",
                    "json",
                    "--state-dir",
                    &format!("state{i}"),
                ],
            )
        })
        .collect();
    let apply = median(applies);
    let per_step = apply / STEPS as u32;
    // Each step journals three events (started, prepared, succeeded), each fsync'd.
    let overhead = per_step.saturating_sub(fsync * 3);
    println!("journal append + fdatasync: {:.3} ms per event", ms(fsync));
    println!(
        "apply, {STEPS} no-op steps: {:.0} ms total, {:.3} ms per step = 3 fsync'd events ({:.3} ms) + engine overhead {:.3} ms — target < 2 ms",
        ms(apply),
        ms(per_step),
        ms(fsync * 3),
        ms(overhead)
    );
}
