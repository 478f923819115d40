"""What every trial of a search run shares (`TrialInputs`), built from the job's records: the
parent, the datasets, the evaluation settings, the step cache. The search's worker builds
it once, and so does each process that runs trials for it (service/search/trial_process.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressors.base import ProgressFn
from service.jobs.job_inputs import job_evaluation_settings, load_job_inputs, parent_artifact
from service.search.spec import uses_memory
from service.search.step_cache import StepCache
from service.search.trial import TrialInputs
from service.settings import Settings
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import JobRecord


def search_inputs(
    repo: Repository,
    blobs: BlobStore,
    job: JobRecord,
    spec: dict[str, Any],
    settings: Settings,
    work_dir: Path,
    is_cancelled: Callable[[], bool],
    progress: ProgressFn,
) -> TrialInputs:
    parent, datasets, parent_sha256 = load_job_inputs(repo, blobs, job)
    evaluation = job_evaluation_settings(
        repo,
        blobs,
        job,
        settings,
        (parent, parent_sha256),
        is_cancelled,
        measure_memory=uses_memory(spec),
    )
    shas = {r: repo.get_dataset(n).sha256 for r, n in job.datasets.items()}
    return TrialInputs(
        parent=parent,
        parent_key=parent_sha256,
        datasets=datasets,
        datasets_key=hashlib.sha256(json.dumps(shas, sort_keys=True).encode()).hexdigest(),
        settings=evaluation,
        budget=dict(job.quality_budget),
        spec=spec,
        cache=StepCache(blobs.root / "search-cache"),
        work_dir=work_dir,
        threads=settings.job_threads,
        is_cancelled=is_cancelled,
        progress=progress,
        models=lambda name: parent_artifact(blobs, repo.get_model(name, 0)),
    )
