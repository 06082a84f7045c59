//! report.html and `cellnets serve` in a real browser: headless Chromium, driven over
//! the DevTools protocol by tests/tools/browser.py. The page must show its runs and
//! curves with no console error and no request beyond itself; report.html offline from
//! disk, with its tables and figures also without JavaScript; the served page while a
//! study trains, seeing a new epoch arrive without a reload. Screenshots land in the
//! folder each test prints.

use crate::common;

use common::outputs::{cellnets, cellnets_command, study_dir};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Two stages: a stepwise one and a 2x2 grid, so the page has curves, a sortable table,
/// a heat map and run pages to show.
const STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 4}
    grid: {hidden: [4, 8]}
  - name: grid
    model: {kind: cnn, kernels: 2, kernel_size: 3}
    training: {epochs: 1}
    grid: {kernels: [2, 4], kernel_size: [3, 5]}
";

/// A manifest path that would load an image from elsewhere, link out, or end
/// report.html's script and run one of its own, if any part of the page quoted it as
/// markdown or HTML.
const HOSTILE_PATH: &str = "![p](http://127.0.0.1:9/leak.png)[l](https://example.org/)<img src=http://127.0.0.1:9/i.png>x</script><script>window.injected=1</script><!--/m.yaml";

fn screenshots(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("screenshots of {test}: {}", dir.display());
    dir
}

/// Runs browser.py on `url` with `steps` ([name, JavaScript to wait for, screenshot
/// file or ""]) and returns what it reported.
fn browse(chromium: &Path, url: &str, shots: &Path, steps: &[[&str; 3]], flags: &[&str]) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|[name, wait, shot]| serde_json::json!({"name": name, "wait": wait, "shot": shot, "timeout": 60}))
        .collect();
    let output = Command::new("python3")
        .arg(common::tools::script("browser.py"))
        .arg(chromium)
        .arg(url)
        .arg(shots)
        .arg(serde_json::to_string(&steps).unwrap())
        .args(flags)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser.py failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Each step's value by its name.
fn value<'a>(report: &'a Value, step: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|found| found["name"] == step)
        .map(|found| &found["value"])
        .unwrap_or_else(|| panic!("no step {step} in {report}"))
}

fn assert_quiet(report: &Value) {
    assert_eq!(
        report["console_errors"],
        serde_json::json!([]),
        "console errors"
    );
}

#[test]
fn report_html_opens_offline_showing_runs_and_curves_without_errors_or_requests() {
    let Some(chromium) = common::tools::chromium() else {
        return;
    };
    let dir = study_dir(STUDY);
    let manifest = dir.path().join(HOSTILE_PATH);
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::rename(dir.path().join("experiments.yaml"), &manifest).unwrap();
    let trained = cellnets(dir.path()).arg(HOSTILE_PATH).output().unwrap();
    assert!(trained.status.success(), "{trained:?}");
    let reported = cellnets_command(dir.path())
        .args(["report", HOSTILE_PATH, "--device", "cpu"])
        .output()
        .unwrap();
    assert!(reported.status.success(), "{reported:?}");
    let page = dir.path().join("out/report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let url = format!("file://{}", page.display());
    let shots = screenshots("report_html");

    let report = browse(
        &chromium,
        &url,
        &shots,
        &[
            ["curves", "document.querySelectorAll('#app .uplot').length", "report.png"],
            ["runs", "Array.from(document.querySelectorAll('table.hparams tbody td:first-child')).map(e => e.textContent).join(',')", ""],
            ["series", "Array.from(document.querySelectorAll('#app .u-legend .u-series th')).map(e => e.textContent.trim()).join(',')", ""],
            ["pick the grid", "(() => { const pick = document.querySelector('select[aria-label=stage]'); pick.value = 'grid'; pick.dispatchEvent(new Event('change')); return true; })()", ""],
            ["heat map", "document.querySelectorAll('table.heat td.cell a').length", "grid.png"],
            ["open a run", "(() => { location.hash = '#run=width/hidden=8'; return true; })()", ""],
            ["run page", "document.querySelector('section.run h2') && document.querySelectorAll('#app .uplot').length === 2 && document.querySelectorAll('table.confusion').length === 1 && document.querySelector('section.run h2').textContent", "run.png"],
            ["title", "typeof window.injected === 'undefined' ? document.title : 'INJECTED'", ""],
            ["foreign links and images", "Array.from(document.querySelectorAll('a[href], img')).map(e => e.getAttribute('href') || e.getAttribute('src')).filter(target => target.includes(':') && !target.startsWith('data:')).join(' ') || 'none'", ""],
            ["quoted path", "document.querySelector('main h1').textContent", ""],
        ],
        &["--offline"],
    );
    assert_quiet(&report);
    assert_eq!(
        report["requests"],
        serde_json::json!([url]),
        "only the page itself"
    );
    assert_eq!(value(&report, "curves"), 1);
    assert_eq!(value(&report, "runs"), "hidden=4,hidden=8");
    assert_eq!(value(&report, "series"), "epoch,hidden=4,hidden=8");
    assert_eq!(value(&report, "heat map"), 4);
    assert_eq!(value(&report, "run page"), "width / hidden=8");
    assert_eq!(
        value(&report, "title"),
        &format!("cellnets report: {HOSTILE_PATH}"),
        "the hostile path is shown, not run"
    );
    assert_eq!(value(&report, "foreign links and images"), "none");
    assert_eq!(
        value(&report, "quoted path"),
        &format!("cellnets report: {HOSTILE_PATH}"),
        "the report's heading quotes the path as text"
    );
    eprintln!(
        "report.html: {} bytes, loaded in {} s",
        html.len(),
        report["load_seconds"]
    );

    let without_script = browse(
        &chromium,
        &url,
        &shots,
        &[
            [
                "tables",
                "document.querySelectorAll('main table').length",
                "without-script.png",
            ],
            [
                "figures",
                "document.querySelectorAll('main svg').length",
                "",
            ],
            [
                "script ran",
                "document.getElementById('app').children.length === 0 ? 'no' : 'yes'",
                "",
            ],
        ],
        &["--offline", "--no-script"],
    );
    assert_quiet(&without_script);
    assert_eq!(value(&without_script, "script ran"), "no");
    assert!(value(&without_script, "tables").as_u64().unwrap() >= 4);
    // Two stepwise or grid charts and six runs' curves, at least.
    assert!(value(&without_script, "figures").as_u64().unwrap() >= 8);
}

/// A process stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_served_page_shows_a_new_epoch_while_the_study_trains() {
    let Some(chromium) = common::tools::chromium() else {
        return;
    };
    let dir = study_dir(
        "  - name: slow
    model: {kind: cnn, kernels: 32, kernel_size: 3}
    training: {epochs: 200}
",
    );
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let mut server = cellnets_command(dir.path())
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let server = Running(server);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let training = Running(
        cellnets(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let shots = screenshots("serve");
    let epochs = "Number(document.getElementById('app').dataset.epochs || 0)";
    let report = browse(
        &chromium,
        &url,
        &shots,
        &[
            ["first epoch", &format!("(() => {{ const n = {epochs}; if (n >= 1) {{ window.firstSeen = n; return n; }} return 0; }})()"), "serve-first.png"],
            ["a later epoch", &format!("{epochs} > window.firstSeen && {epochs}"), "serve-later.png"],
            ["training", "document.querySelector('table.hparams tbody').textContent.includes('training (epoch')", ""],
            ["polls", "Number(document.getElementById('app').dataset.polls)", ""],
        ],
        &[],
    );
    drop(training);
    drop(server);
    assert_quiet(&report);
    let first = value(&report, "first epoch").as_u64().unwrap();
    let later = value(&report, "a later epoch").as_u64().unwrap_or(0);
    assert!(first >= 1 && later > first, "{report}");
    assert_eq!(value(&report, "training"), true);
    assert!(value(&report, "polls").as_u64().unwrap() >= 2);
    let origin = &url[..url.find("/?token=").expect("a token in the URL") + 1];
    for request in report["requests"].as_array().unwrap() {
        let request = request.as_str().unwrap();
        assert!(
            request.starts_with(origin),
            "a request beyond the server: {request}"
        );
        assert!(
            request == url || !request.contains("token="),
            "the token left the address bar for the cookie: {request}"
        );
    }
}
