"""`pareto.v1.JobService`: thin adapter over job validation, the repository and the scheduler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from pareto.v1 import jobs_pb2, jobs_pb2_grpc
from pareto_core import names
from pareto_core.errors import InvalidArgument, NotFound
from service.api.convert import event_to_proto, job_to_proto, recipe_from_proto
from service.api.search_convert import result_to_proto, search_from_proto, spec_to_proto
from service.jobs.create import JobRequest, validate_job
from service.jobs.scheduler import JobScheduler
from service.search.create import create_search_job
from service.store.interfaces import Repository
from service.store.records import JOB_FINAL_STATES, JobRecord

WATCH_POLL_S = 0.2
# A job final in the DB but whose final event has not shown up yet gets this long.
WATCH_FINAL_GRACE_S = 1.0


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, repo: Repository, scheduler: JobScheduler) -> None:
        self._repo = repo
        self._scheduler = scheduler

    def CreateJob(self, request: jobs_pb2.CreateJobRequest, context) -> jobs_pb2.Job:
        _check_names(request)
        job_request = job_request_from_proto(request)
        max_queued = self._scheduler.max_queued_jobs
        admit = self._scheduler.check_can_start  # e.g. Ray unreachable: nothing is stored
        if job_request.search is not None:
            stored = create_search_job(self._repo, job_request, max_queued, admit)
        else:
            record = validate_job(self._repo, job_request)
            admit()
            stored = self._repo.create_job(record, max_queued)
        self._scheduler.wake()
        return self._job(stored)

    def GetJob(self, request: jobs_pb2.GetJobRequest, context) -> jobs_pb2.Job:
        return self._job(self._repo.get_job(names.job_id(request.id)))

    def ListJobs(self, request: jobs_pb2.ListJobsRequest, context) -> jobs_pb2.ListJobsResponse:
        jobs = self._repo.list_jobs(names.check_optional(names.MODEL_NAME, request.model, "model"))
        return jobs_pb2.ListJobsResponse(jobs=[self._job(j) for j in jobs])

    def CancelJob(self, request: jobs_pb2.CancelJobRequest, context) -> jobs_pb2.Job:
        return self._job(self._scheduler.cancel(names.job_id(request.id)))

    def GetSearch(self, request: jobs_pb2.GetSearchRequest, context) -> jobs_pb2.SearchResult:
        if request.id:
            job = self._repo.get_job(names.job_id(request.id))
            search = self._repo.get_search(job.id)
            if search is None:
                raise InvalidArgument(f"id: job {job.id!r} is not a search")
        else:
            if not request.model:
                raise InvalidArgument("give the search job's id, or a model (its latest search)")
            model = names.model_name(request.model, "model")
            search = self._repo.latest_search(model)
            if search is None:
                raise NotFound(f"model {model!r} has no search; start one with `pareto search`")
            job = self._repo.get_job(search.job_id)
        return result_to_proto(job, search)

    def _job(self, record: JobRecord) -> jobs_pb2.Job:
        """The Job message, with its search spec when it is a search."""
        message = job_to_proto(record)
        search = self._repo.get_search(record.id)
        if search is not None:
            message.search.CopyFrom(spec_to_proto(search.spec))
        return message

    def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.JobEvent]:
        """Every event from `from_sequence` on, then new ones until the job's final event."""
        self._repo.get_job(names.job_id(request.id))  # NotFound before the stream starts
        next_sequence = max(0, request.from_sequence)
        final_since: float | None = None
        while context.is_active():
            for event in self._repo.list_events(request.id, next_sequence):
                yield event_to_proto(event)
                next_sequence = event.sequence + 1
                if event.state in JOB_FINAL_STATES:
                    return
            if self._repo.get_job(request.id).state in JOB_FINAL_STATES:
                final_since = final_since or time.monotonic()
                if time.monotonic() - final_since > WATCH_FINAL_GRACE_S:
                    return
            time.sleep(WATCH_POLL_S)


def _check_names(request: jobs_pb2.CreateJobRequest) -> None:
    """Names the request refers to ("" is left to validate_job: "is required")."""
    names.check_optional(names.MODEL_NAME, request.model, "model")
    for role, dataset in request.datasets.items():
        names.check_optional(names.DATASET_NAME, dataset, f"datasets[{names.shown(role)}]")


def job_request_from_proto(request: jobs_pb2.CreateJobRequest) -> JobRequest:
    evaluation: dict[str, Any] = {
        "batch_sizes": [int(b) for b in request.evaluation.batch_sizes],
        "iterations": int(request.evaluation.iterations),
        "runtime": request.evaluation.runtime,
    }
    return JobRequest(
        model=request.model,
        model_version=int(request.model_version),
        recipes=[recipe_from_proto(r, f"recipes[{i}]") for i, r in enumerate(request.recipes)],
        datasets=dict(request.datasets),
        quality_budget=MessageToDict(request.quality_budget, preserving_proto_field_name=True),
        evaluation=evaluation,
        search=search_from_proto(request.search) if request.HasField("search") else None,
    )
