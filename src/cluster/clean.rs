//! `cellnets clean`: the resume files of runs that will not continue, dropped. A run
//! keeps its last weights and optimizer state (its resume slots: about 90 MB for a
//! ResNet-18 run) while it may continue; a halving stage's runs keep them after they
//! end, halted at a rung or finished, so that a larger budget could continue them. A
//! run of the manifest with a committed result continues only if a later manifest
//! raises its budget; without its slots it then trains from its start.

use crate::cluster::claim::{self, Attempt};
use crate::outputs::run_folder::RunFolder;
use crate::outputs::winners;
use crate::study::manifest::Manifest;
use crate::study::plan::RunId;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// A run whose resume files can go.
pub struct Droppable {
    pub run: RunId,
    pub folder: RunFolder,
    /// The bytes its resume files take.
    pub bytes: u64,
}

/// The runs `manifest` plans whose result is committed, for their planned settings,
/// and that still hold resume files, in plan order. Runs of other settings (another
/// manifest's) and runs without a result are left alone.
pub fn droppable(manifest: &Manifest, out_dir: &Path) -> Result<Vec<Droppable>> {
    let mut found = Vec::new();
    for (stage, _) in winners::plan_with_recorded_winners(manifest, out_dir)? {
        for run in &stage.runs {
            let folder = RunFolder::of(out_dir, run);
            if !folder.has_result_of(run) {
                continue;
            }
            let files = folder.resume_files();
            if !files.is_empty() {
                found.push(Droppable {
                    run: run.id(),
                    bytes: files.iter().map(|(_, size)| size).sum(),
                    folder,
                });
            }
        }
    }
    Ok(found)
}

/// Removes a droppable run's resume files under its claim, so no process continues it
/// meanwhile; false, leaving them, when a live process holds the run.
pub fn drop_resume(run: &Droppable, claim_timeout: Duration) -> Result<bool> {
    let mut taken_over = None;
    match claim::try_claim(&run.folder.claim_file(), claim_timeout, &mut taken_over)? {
        Attempt::Claimed(_claim) => {
            run.folder.clear_resume()?;
            Ok(true)
        }
        Attempt::Held(_) => Ok(false),
    }
}
