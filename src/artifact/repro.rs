//! `crashsim repro`: re-judge the held image, and rebuild it from the workload to check that
//! the harness is still deterministic.

use std::sync::Arc;

use crate::check::Violation;
use crate::crash::{RecoveryCrash, Replay, judge_image, replay_run};
use crate::pmem::{Backing, View};
use crate::target::{Target, WorkloadError};

use super::{ArtifactError, IMAGE_FILE, INPUT_FILE, InputKind, Loaded, MANIFEST_FILE};

/// What replaying an artifact found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReproReport {
    /// The violation the artifact records.
    pub expected: Violation,
    /// What the oracles say now, on the held image (or the rebuilt one if none is held).
    pub found: Vec<Violation>,
    /// A violation of the recorded class was found.
    pub reproduced: bool,
    /// The image rebuilt from `input.bin` equals `crash.img` byte for byte (`None`: no image).
    pub image_identical: Option<bool>,
}

/// The workload `input.bin` encodes; it must be the one the manifest records.
pub fn workload_of<T: Target>(target: &T, loaded: &Loaded) -> Result<T::Workload, ArtifactError> {
    let m = &loaded.manifest;
    let path = loaded.dir.join(INPUT_FILE);
    if m.target != target.name() {
        return Err(ArtifactError::WrongTarget {
            path: loaded.dir.join(MANIFEST_FILE).display().to_string(),
            found: m.target.clone(),
            expected: target.name().to_string(),
        });
    }
    let workload = match m.input.kind {
        InputKind::Raw => target.workload_from_bytes(&loaded.input),
        InputKind::Json => serde_json::from_slice(&loaded.input).map_err(WorkloadError::new),
    }
    .and_then(|w| target.validate_workload(&w).map(|()| w))
    .map_err(|e| ArtifactError::corrupt(&path, format!("bad workload: {e}")))?;
    let value = serde_json::to_value(&workload).map_err(|e| ArtifactError::Replay(e.to_string()))?;
    if value != m.workload {
        return Err(ArtifactError::corrupt(
            &path,
            "decodes to a different workload than manifest.json records",
        ));
    }
    Ok(workload)
}

/// The rebuilt crash image of a crash-oracle artifact, with the run it came from.
pub(super) fn rebuild<T: Target>(
    target: &T,
    loaded: &Loaded,
) -> Result<(Replay<T::Record>, Option<View>), ArtifactError> {
    let m = &loaded.manifest;
    let workload = workload_of(target, loaded)?;
    let replay = replay_run(target, &workload).map_err(ArtifactError::Replay)?;
    let manifest_path = loaded.dir.join(MANIFEST_FILE);
    let view = match (m.crash_point, &m.choice) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ArtifactError::corrupt(&manifest_path, "crash point without a choice"));
        }
        (Some(point), Some(choice)) => {
            let (_, view) = replay
                .view_at(m.crash.model, point, choice)
                .map_err(|e| ArtifactError::corrupt(&manifest_path, e))?;
            Some(with_fault(view, m.violation.evidence.media_fault, &manifest_path)?)
        }
    };
    Ok((replay, view))
}

/// `view` with the artifact's media fault, if any (checked to lie inside the device).
fn with_fault(
    view: View,
    fault: Option<crate::pmem::MediaFault>,
    manifest_path: &std::path::Path,
) -> Result<View, ArtifactError> {
    use crate::pmem::Backing as _;
    match fault {
        None => Ok(view),
        Some(f)
            if f.addr % 8 == 0
                && f.addr.checked_add(8).is_some_and(|e| e <= view.size_bytes())
                && f.bit < 64 =>
        {
            Ok(view.with_media_fault(f))
        }
        Some(f) => {
            Err(ArtifactError::corrupt(manifest_path, format!("media fault {f:?} is outside the device")))
        }
    }
}

/// Replays `loaded` on `target` (which must be the target the manifest names).
pub fn repro<T: Target>(target: &T, loaded: &Loaded) -> Result<ReproReport, ArtifactError> {
    let m = &loaded.manifest;
    let (replay, view) = rebuild(target, loaded)?;
    let Some(view) = view else {
        let found = replay.run_violations;
        let reproduced = found.iter().any(|v| v.class == m.class());
        return Ok(ReproReport { expected: m.violation.clone(), found, reproduced, image_identical: None });
    };
    let point = m.crash_point.expect("a view implies a crash point");
    let (image, image_identical): (Arc<dyn Backing>, Option<bool>) = match &loaded.image {
        Some(mapped) => {
            if mapped.size_bytes() != view.size_bytes() {
                let problem = format!(
                    "{} bytes, but the target's device is {} bytes",
                    mapped.size_bytes(),
                    view.size_bytes()
                );
                return Err(ArtifactError::corrupt(&loaded.dir.join(IMAGE_FILE), problem));
            }
            let identical = same_bytes(&view, mapped.bytes());
            (Arc::clone(mapped) as Arc<dyn Backing>, Some(identical))
        }
        None => (Arc::new(view), None),
    };
    let recovery = match (m.recovery_crash_point, &m.recovery_choice) {
        (Some(point), Some(choice)) => Some(RecoveryCrash { point, choice }),
        _ => None,
    };
    let torn = m.choice.as_ref().is_some_and(|c| c.torn > 0);
    let found = judge_image(target, m.crash.model, image, &replay.record, (point, torn), recovery)
        .map_err(|e| ArtifactError::corrupt(&loaded.dir.join(MANIFEST_FILE), e))?;
    let reproduced = found.iter().any(|v| v.class == m.class());
    Ok(ReproReport { expected: m.violation.clone(), found, reproduced, image_identical })
}

/// Compares a view with bytes, a megabyte at a time (no second full-size copy).
fn same_bytes(view: &View, bytes: &[u8]) -> bool {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    bytes.chunks(CHUNK).enumerate().all(|(i, want)| {
        let got = &mut buf[..want.len()];
        view.read_at((i * CHUNK) as u64, got);
        got == want
    })
}
