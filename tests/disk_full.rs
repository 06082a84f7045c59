//! A disk that fills while a study writes: out/ on a small tmpfs, sized a page larger
//! each time, so that the disk fills at every write point in turn (the claim, the epoch
//! row, the resume point, the best checkpoint, the result, the test tables, the summary
//! under its stage lock; the winner is written the same way as the summary, under the
//! same lock, and needs no more pages than the summary just freed).
//! Each time cellnets stops with an error that says the disk is full and where, without
//! a panic; what it had committed stays whole; and once the tmpfs grows, the same
//! command resumes and ends exactly as a study that never stopped. The report, too.
//!
//! Mounting needs root: elsewhere the test says so and passes without running.

use crate::common;

use common::outputs::{cellnets, cellnets_command, check_consistent, metrics, study_dir};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

const STUDY: &str = "  - name: s
    model: {kind: mlp, hidden: 4}
    training: {epochs: 3}
    grid: {hidden: [4, 5]}
";

/// A tmpfs mounted at a folder of its own, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kilobytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let size = format!("size={kilobytes}k");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(Tmpfs { dir })
    }

    fn grow(&self, kilobytes: u64) {
        let size = format!("remount,size={kilobytes}k");
        let status = Command::new("mount")
            .args(["-o", &size])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The file the error says could not be written, as the write point it belongs to.
fn write_point(message: &str) -> &'static str {
    let points = [
        ("epochs.csv", "epoch row"),
        ("state.yaml", "resume point"),
        ("resume-", "resume point"),
        ("best.safetensors", "best checkpoint"),
        ("result.yaml", "result"),
        ("summary.csv", "summary"),
        ("winner.yaml", "winner"),
        ("stage.lock", "summary"),
        (".claim", "claim"),
        ("confusion.csv", "test tables"),
        ("per_class.csv", "test tables"),
    ];
    points
        .iter()
        .find(|(file, _)| message.contains(file))
        .map_or("elsewhere", |(_, point)| point)
}

fn train(dir: &Path, out: &Path) -> std::process::Output {
    cellnets(dir)
        .args(["--threads", "1", "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_at_each_write_point_stops_cleanly_and_the_study_resumes() {
    let Some(probe) = Tmpfs::mount(64) else {
        eprintln!("skipped: cannot mount a tmpfs here (the test needs root)");
        return;
    };
    drop(probe);
    let study = study_dir(STUDY);
    let straight = study.path().join("straight");
    assert!(train(study.path(), &straight).status.success());
    let expected = metrics(&straight);

    let mut hit = BTreeSet::new();
    let mut kilobytes = 4;
    loop {
        let disk = Tmpfs::mount(kilobytes).unwrap();
        let out = disk.path().join("out");
        let output = train(study.path(), &out);
        if output.status.success() {
            assert_eq!(metrics(&out), expected, "{kilobytes} KB, never full");
            break;
        }
        let message = String::from_utf8_lossy(&output.stderr).into_owned();
        let context = format!("{kilobytes} KB:\n{message}");
        assert!(message.contains("error: the disk is full"), "{context}");
        assert!(!message.contains("panic"), "{context}");
        hit.insert(write_point(&message));
        // What was committed is whole: epoch tables of whole rows, numbered from 1, that
        // agree with any result; summaries of finished runs, each once.
        check_consistent(&out);

        disk.grow(64 * 1024);
        let resumed = train(study.path(), &out);
        assert!(
            resumed.status.success(),
            "{context}\nthe rerun:\n{}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(metrics(&out), expected, "{context}");
        assert_eq!(check_consistent(&out), 2);
        kilobytes += 4;
        assert!(kilobytes < 1024, "the study never fit");
    }
    finish_after_a_kill_on_a_full_disk(study.path(), kilobytes + 64, &expected, &mut hit);
    for point in [
        "claim",
        "epoch row",
        "resume point",
        "best checkpoint",
        "result",
        "summary",
    ] {
        assert!(hit.contains(point), "never full at the {point}: {hit:?}");
    }
    eprintln!("full at: {hit:?}; the study fits in {kilobytes} KB");
}

/// A study whose runs all finished, killed before it wrote its summary and winner, on a
/// disk filled to the last page; pages are freed one at a time, and each rerun must
/// stop cleanly until the summary and the winner fit.
fn finish_after_a_kill_on_a_full_disk(
    dir: &Path,
    kilobytes: u64,
    expected: &[(String, Vec<Vec<String>>)],
    hit: &mut BTreeSet<&'static str>,
) {
    let disk = Tmpfs::mount(kilobytes).unwrap();
    let out = disk.path().join("out");
    assert!(train(dir, &out).status.success());
    fs::remove_file(out.join("s/summary.csv")).unwrap();
    fs::remove_file(out.join("s/winner.yaml")).unwrap();
    let filler = disk.path().join("filler");
    fs::create_dir(&filler).unwrap();
    let mut pages = Vec::new();
    while fs::write(filler.join(pages.len().to_string()), [0; 4096]).is_ok() {
        pages.push(filler.join(pages.len().to_string()));
    }
    loop {
        let output = train(dir, &out);
        if output.status.success() {
            break;
        }
        let message = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            message.contains("error: the disk is full") && !message.contains("panic"),
            "{message}"
        );
        hit.insert(write_point(&message));
        check_consistent(&out);
        let page = pages.pop().expect("the study fits once the filler is gone");
        fs::remove_file(page).unwrap();
    }
    assert_eq!(metrics(&out), expected);
    assert_eq!(check_consistent(&out), 2);
    assert!(out.join("s/winner.yaml").is_file());
}

#[test]
fn a_full_disk_while_writing_the_report_keeps_the_outputs_and_a_rerun_writes_it() {
    let Some(disk) = Tmpfs::mount(1024) else {
        eprintln!("skipped: cannot mount a tmpfs here (the test needs root)");
        return;
    };
    let study = study_dir(STUDY);
    let out = disk.path().join("out");
    assert!(train(study.path(), &out).status.success());
    let before = metrics(&out);
    let report = || {
        cellnets_command(study.path())
            .args(["report", "--device", "cpu", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    // Shrunk to what the study already takes, and a page more.
    let used_kilobytes = String::from_utf8(
        Command::new("du")
            .args(["-sk"])
            .arg(disk.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .split_whitespace()
    .next()
    .unwrap()
    .parse::<u64>()
    .unwrap();
    disk.grow(used_kilobytes + 4);
    let full = report();
    let message = String::from_utf8_lossy(&full.stderr);
    assert!(!full.status.success(), "{message}");
    assert!(
        message.contains("error: the disk is full") && !message.contains("panic"),
        "{message}"
    );
    assert!(!out.join("report.md").exists(), "no half report");
    assert!(!out.join("report.html").exists(), "no half report page");
    assert_eq!(metrics(&out), before);
    check_consistent(&out);

    disk.grow(64 * 1024);
    let rerun = report();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert!(fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("## Stage `s`"));
    assert!(fs::read_to_string(out.join("report.html"))
        .unwrap()
        .contains("<h2>Stage <code>s</code></h2>"));
}
