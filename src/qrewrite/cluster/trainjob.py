"""Kubeflow Trainer v2 ``TrainJob``s: render one, run it to its end, and always delete it.

A ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``, Trainer v2.3.0) names a
``ClusterTrainingRuntime`` (``torch-distributed``) and says what to run on how many nodes; the
Trainer controller turns it into a JobSet whose pods run the command, with torchrun's settings
(``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``) in their
environment. :func:`render_trainjob` builds the object (pure); :func:`run_trainjob` creates it,
follows it (conditions ``Complete``/``Failed``, and the pods, to fail early on what never
heals), streams the workers' logs, and deletes it whatever happens, so no job outlives its step.

Every failure is a :class:`TrainJobError` whose message is one line with the cause.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from qrewrite.errors import EnvironmentProblem

log = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
RUNTIME_KIND = "ClusterTrainingRuntime"
# the replicated job and its container that the torch runtime runs the trainer in
TRAINER_JOB = "node"
TRAINER_CONTAINER = "node"
# every pod of a TrainJob carries its JobSet's name, which is the TrainJob's
JOB_LABEL = "jobset.sigs.k8s.io/jobset-name"
NODE_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
GPU_RESOURCE = "nvidia.com/gpu"
PATCH_MANAGER = "qrewrite.io/launcher"  # who owns our runtime patch (Trainer's multi-owner API)
# torchrun's settings, which the torch plugin sets and refuses from a TrainJob's env
TORCHRUN_ENV = frozenset(
    {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
)
# a container waiting for one of these will not start by waiting longer (ErrImagePull is
# retried, and becomes ImagePullBackOff when the retry fails too)
NEVER_STARTS = frozenset(
    {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)
MESSAGE_LIMIT = 400  # characters of one error line
# consecutive failed polls (the API server restarting, a dropped connection) before giving up
API_RETRIES = 5


class TrainJobError(EnvironmentProblem):
    """The TrainJob could not be created, failed, never started or ran out of time; the message
    is one line naming the job and the cause. The job is deleted by then."""

    def __init__(self, job: str, message: str) -> None:
        self.job = job
        super().__init__(one_line(f"trainjob {job}: {message}"))


class TrainJobFailed(TrainJobError):
    """A worker failed (a crash, an OOM kill) or the job was refused."""


class TrainJobNeverStarted(TrainJobError):
    """A worker cannot start: its image cannot be pulled, no node can take it, a Secret or
    ConfigMap it reads is missing."""


class TrainJobTimeout(TrainJobError):
    """The job did not finish within its timeout."""


def say(line: str) -> None:
    """The default log sink: stdout, flushed, so the step's log shows the workers as they go."""
    print(line, flush=True)


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class TrainJobSpec:
    """What a TrainJob runs and where; :func:`render_trainjob` turns it into the object.

    ``env``, ``volumes``, ``volume_mounts``, ``tolerations`` and the security contexts are
    Kubernetes objects as plain mappings (``{"name": ..., "valueFrom": {...}}``), copied into
    the job as they are.
    """

    name: str
    namespace: str
    image: str
    command: Sequence[str]  # run on every node: torchrun and the step's entry point
    nodes: int = 1
    processes_per_node: int = 1
    gpus_per_node: int = 0  # 0: CPU processes (gloo)
    runtime: str = "torch-distributed"
    env: Sequence[Mapping[str, Any]] = ()
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # requests, limits
    volumes: Sequence[Mapping[str, Any]] = ()
    volume_mounts: Sequence[Mapping[str, Any]] = ()
    pod_security_context: Mapping[str, Any] | None = None
    container_security_context: Mapping[str, Any] | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    image_pull_secrets: Sequence[Mapping[str, Any]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # the object whose deletion takes the job with it (the launching pod): a launcher that dies
    # before its cleanup still leaves nothing behind
    owner: Mapping[str, Any] | None = None
    # the controller stops the job itself after this long, should its launcher be gone
    active_deadline_s: int | None = None


def render_trainjob(spec: TrainJobSpec) -> dict[str, Any]:
    """The ``TrainJob`` object for ``spec`` (pure; validates against the v2.3.0 CRD schema)."""
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", spec.name) or len(spec.name) > 63:
        raise ValueError(f"TrainJob name {spec.name!r} is not an RFC 1035 label of <= 63 chars")
    if spec.nodes < 1 or spec.processes_per_node < 1 or spec.gpus_per_node < 0:
        raise ValueError(f"TrainJob {spec.name}: nodes and processes must be >= 1, GPUs >= 0")
    reserved = sorted({e["name"] for e in spec.env} & TORCHRUN_ENV)
    if reserved:  # the torch plugin sets these; the webhook refuses a job that does
        raise ValueError(f"TrainJob {spec.name}: env sets torchrun's {', '.join(reserved)}")
    requests = dict(spec.resources.get("requests", {}))
    limits = dict(spec.resources.get("limits", {}))
    if spec.gpus_per_node:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(spec.gpus_per_node)
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "numNodes": spec.nodes,
        "numProcPerNode": spec.processes_per_node,
    }
    if spec.env:
        trainer["env"] = [dict(e) for e in spec.env]
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    if resources:
        trainer["resourcesPerNode"] = resources
    job: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": spec.name, "namespace": spec.namespace},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": RUNTIME_KIND, "name": spec.runtime},
            "trainer": trainer,
        },
    }
    if spec.labels:
        job["metadata"]["labels"] = dict(spec.labels)
    if spec.owner:
        job["metadata"]["ownerReferences"] = [dict(spec.owner)]
    if spec.active_deadline_s:
        job["spec"]["activeDeadlineSeconds"] = int(spec.active_deadline_s)
    pod = _pod_patch(spec)
    if pod:
        job["spec"]["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": TRAINER_JOB,
                                    "template": {"spec": {"template": {"spec": pod}}},
                                }
                            ]
                        }
                    }
                },
            }
        ]
    return job


def _pod_patch(spec: TrainJobSpec) -> dict[str, Any]:
    """What the workers' pods add to the runtime's pod template (only what is set)."""
    container: dict[str, Any] = {}
    if spec.volume_mounts:
        container["volumeMounts"] = [dict(m) for m in spec.volume_mounts]
    if spec.container_security_context:
        container["securityContext"] = dict(spec.container_security_context)
    pod: dict[str, Any] = {}
    if container:
        pod["containers"] = [{"name": TRAINER_CONTAINER, **container}]
    if spec.volumes:
        pod["volumes"] = [dict(v) for v in spec.volumes]
    if spec.pod_security_context:
        pod["securityContext"] = dict(spec.pod_security_context)
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [dict(s) for s in spec.image_pull_secrets]
    return pod


class ClusterApi:
    """The few Kubernetes calls a TrainJob needs, through the official client
    (``CustomObjectsApi``, ``CoreV1Api``); objects come back as plain mappings in the API's own
    field names (``containerStatuses``), the way a TrainJob is written."""

    def __init__(self, custom: Any, core: Any) -> None:
        self.custom = custom
        self.core = core

    @classmethod
    def connect(cls) -> ClusterApi:
        """The cluster this process runs in (its pod's service account), else the current
        context of ``$KUBECONFIG`` / ``~/.kube/config``."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            try:
                # $KUBECONFIG as it is now (the client reads it once, when first imported)
                config.load_kube_config(
                    config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
                )
            except (config.ConfigException, OSError) as e:
                raise EnvironmentProblem(
                    f"no Kubernetes API to launch a TrainJob with: not in a pod, and no "
                    f"kubeconfig ({one_line(str(e), 160)})"
                ) from None
        api = client.ApiClient(configuration)
        return cls(client.CustomObjectsApi(api), client.CoreV1Api(api))

    def _plain(self, obj: Any) -> Any:
        return self.core.api_client.sanitize_for_serialization(obj)

    def create_trainjob(self, job: Mapping[str, Any]) -> dict[str, Any]:
        meta = job["metadata"]
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, dict(job)
        )

    def get_trainjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The job with its status, or None when it is not there."""
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except Exception as e:
            if getattr(e, "status", None) == 404:
                return None
            raise

    def delete_trainjob(self, namespace: str, name: str) -> bool:
        """Delete the job and, through their owner references, its JobSet and pods; False when
        it was not there."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background"
            )
        except Exception as e:
            if getattr(e, "status", None) == 404:
                return False
            raise
        return True

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector)
        return self._plain(pods).get("items") or []

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(self.core.read_namespaced_pod(name, namespace))

    def pod_log(
        self, namespace: str, pod: str, container: str, *, since_seconds: int | None = None
    ) -> str:
        """The container's log, each line prefixed with its RFC 3339 timestamp."""
        kwargs: dict[str, Any] = {"container": container, "timestamps": True}
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        return self.core.read_namespaced_pod_log(pod, namespace, **kwargs) or ""


def api_error(error: Exception) -> str:
    """An API exception as one line: its status and the server's message."""
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    message = ""
    body = getattr(error, "body", None)
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = str(body)
    head = " ".join(str(x) for x in (status, reason) if x)
    return one_line(f"{head}: {message}" if message else head or str(error), 300)


@dataclass(frozen=True)
class TrainJobResult:
    """A TrainJob that completed (it has been deleted since)."""

    name: str
    namespace: str
    seconds: float
    pods: tuple[str, ...]  # the workers' pods, by name
    log_lines: int  # worker log lines streamed


@dataclass
class _Logs:
    """The workers' logs, streamed once each: per pod, the newest timestamp printed and how many
    lines carried it (a later read from a second earlier skips them)."""

    sink: Callable[[str], None]
    clock: Callable[[], float]
    newest: dict[str, tuple[str, int]] = field(default_factory=dict)
    read_at: dict[str, float] = field(default_factory=dict)
    last_line: dict[str, str] = field(default_factory=dict)
    lines: int = 0

    def stream(self, api: ClusterApi, namespace: str, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            name = pod["metadata"]["name"]
            if (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded", "Failed"):
                continue
            since = None
            if name in self.read_at:  # a margin: the kubelet's clock is not ours
                since = int(self.clock() - self.read_at[name]) + 5
            try:
                text = api.pod_log(namespace, name, TRAINER_CONTAINER, since_seconds=since)
            except Exception as e:  # a pod going away between the list and the read
                log.debug("log of %s: %s", name, e)
                continue
            self.read_at[name] = self.clock()
            self._emit(pod, text)

    def _emit(self, pod: dict[str, Any], text: str) -> None:
        name = pod["metadata"]["name"]
        labels = pod["metadata"].get("labels") or {}
        prefix = f"[node {labels[NODE_INDEX_LABEL]}]" if NODE_INDEX_LABEL in labels else f"[{name}]"
        old_key, old_count = self.newest.get(name, ("", 0))
        key_now, count_now, repeated = old_key, old_count, 0
        for raw in text.splitlines():
            stamp, _, line = raw.partition(" ")
            key = _sortable(stamp)
            if key < old_key:
                continue
            if key == old_key:
                repeated += 1
                if repeated <= old_count:  # printed by an earlier read
                    continue
            key_now, count_now = (key, count_now + 1) if key == key_now else (key, 1)
            self.sink(f"{prefix} {line}")
            self.lines += 1
            if line.strip():
                self.last_line[name] = line.strip()
        self.newest[name] = (key_now, count_now)


def _sortable(stamp: str) -> str:
    """An RFC 3339 timestamp that sorts as text (the API trims the nanoseconds' zeros)."""
    head, dot, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{(frac if dot else '').ljust(9, '0')}"


def _condition(job: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def _containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it cannot place the pod."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        scheduled = (c.get("type"), c.get("status"), c.get("reason"))
        if scheduled == ("PodScheduled", "False", "Unschedulable"):
            return c.get("message") or "Unschedulable"
    return None


def _crashed(pod: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(container, terminated state) of a container that exited with an error."""
    for c in _containers(pod):
        for state in ((c.get("state") or {}), (c.get("lastState") or {})):
            done = state.get("terminated")
            if done and done.get("exitCode", 0) != 0:
                return c.get("name", "?"), done
    return None


@dataclass
class _Watch:
    """What one poll learns: the job's end, or a pod that will never start or keeps crashing."""

    name: str
    unschedulable_s: float
    clock: Callable[[], float]
    logs: _Logs
    pending_since: dict[str, float] = field(default_factory=dict)

    def check(self, job: Mapping[str, Any], pods: list[dict[str, Any]]) -> bool:
        """True when the job completed; raises when it failed or cannot start."""
        if _condition(job, "Complete"):
            return True
        failed = _condition(job, "Failed")
        if failed:
            cause = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
            raise TrainJobFailed(self.name, f"failed ({cause}){self.worker_cause(pods)}")
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            for c in _containers(pod):
                waiting = (c.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                if reason in NEVER_STARTS:
                    raise TrainJobNeverStarted(
                        self.name,
                        f"pod {pod_name} cannot start: {reason}: {waiting.get('message', '')}",
                    )
                if reason == "CrashLoopBackOff":
                    raise TrainJobFailed(
                        self.name, f"pod {pod_name} keeps crashing{self.worker_cause([pod])}"
                    )
            message = _unschedulable(pod)
            if message is None:
                self.pending_since.pop(pod_name, None)
                continue
            since = self.pending_since.setdefault(pod_name, self.clock())
            if self.clock() - since >= self.unschedulable_s:
                raise TrainJobNeverStarted(
                    self.name,
                    f"pod {pod_name} unschedulable for {self.clock() - since:.0f} s: {message}",
                )
        return False

    def worker_cause(self, pods: list[dict[str, Any]]) -> str:
        """``; pod P: container C exited 1 (Error): <its last log line>`` for the first worker
        that exited with an error, else empty."""
        for pod in pods:
            crashed = _crashed(pod)
            if crashed:
                name = pod["metadata"]["name"]
                container, done = crashed
                last = self.logs.last_line.get(name, "")
                return (
                    f"; pod {name}: container {container} exited {done.get('exitCode')} "
                    f"({done.get('reason', 'Error')})" + (f": {last}" if last else "")
                )
        return ""


def _progress(pods: list[dict[str, Any]]) -> str:
    phases: dict[str, int] = {}
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase") or "Unknown"
        phases[phase] = phases.get(phase, 0) + 1
    return ", ".join(f"{n} {p}" for p, n in sorted(phases.items())) or "no pods yet"


def _transient(error: Exception) -> bool:
    """An API error that a later poll may not see: no answer, overload, a server error."""
    status = getattr(error, "status", None)
    return status is None or status == 429 or status >= 500


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Kubernetes stops a pod (a terminated KFP run) with SIGTERM, which ends Python without
    running ``finally`` blocks; raise ``SystemExit`` instead, so the job is deleted first."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_trainjob(
    api: ClusterApi,
    job: Mapping[str, Any],
    *,
    timeout_s: float,
    poll_s: float = 15.0,
    unschedulable_s: float = 600.0,
    log_sink: Callable[[str], None] = say,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainJobResult:
    """Create ``job``, wait for it and stream its workers' logs to ``log_sink``; delete it on the
    way out, whether it completed, failed, timed out or this process was interrupted (SIGTERM
    included).

    Fails early, instead of waiting for the timeout, on what will not heal: a worker that exits
    with an error (the job's ``Failed`` condition, or ``CrashLoopBackOff``), an image that cannot
    be pulled, a missing Secret or ConfigMap, a pod the scheduler cannot place for
    ``unschedulable_s`` (a cluster autoscaler adding a GPU node takes minutes, so not at once).
    A poll the API does not answer is retried (:data:`API_RETRIES` in a row).
    """
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    started = clock()
    deadline = started + timeout_s
    logs = _Logs(sink=log_sink, clock=clock)
    watch = _Watch(name=name, unschedulable_s=unschedulable_s, clock=clock, logs=logs)
    try:
        api.create_trainjob(job)
    except Exception as e:
        # nothing was created (the webhook refused it, RBAC, no such runtime): nothing to delete
        raise TrainJobFailed(name, f"could not be created: {api_error(e)}") from None
    log_sink(f"trainjob {name}: created in {namespace}; waiting up to {timeout_s:g} s")
    pods: list[dict[str, Any]] = []
    error: BaseException | None = None
    failures = 0
    try:
        with _sigterm_raises():
            while True:
                try:
                    current = api.get_trainjob(namespace, name)
                    pods = api.list_pods(namespace, f"{JOB_LABEL}={name}")
                except Exception as e:
                    failures += 1
                    if not _transient(e) or failures > API_RETRIES:
                        raise TrainJobError(name, f"cannot follow it: {api_error(e)}") from None
                    log_sink(f"trainjob {name}: the API did not answer ({api_error(e)}); again")
                    sleep(min(poll_s, max(0.0, deadline - clock())))
                    continue
                failures = 0
                if current is None:
                    raise TrainJobFailed(name, "deleted while running, by someone else")
                result = _poll(api, current, pods, watch=watch, logs=logs, started=started)
                if result is not None:
                    return result
                left = deadline - clock()
                if left <= 0:
                    raise TrainJobTimeout(
                        name,
                        f"not finished after {timeout_s:g} s ({_progress(pods)}); raise "
                        "trainjob_timeout_s, or see in the workers' logs why it is slow",
                    )
                sleep(min(poll_s, left))
    except BaseException as e:
        error = e
        raise
    finally:
        _delete(api, namespace, name, log_sink, error)


def _poll(
    api: ClusterApi,
    job: Mapping[str, Any],
    pods: list[dict[str, Any]],
    *,
    watch: _Watch,
    logs: _Logs,
    started: float,
) -> TrainJobResult | None:
    """Stream the new log lines and check the job: its result once it completed, else None."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    logs.stream(api, namespace, pods)
    if not watch.check(job, pods):
        return None
    logs.stream(api, namespace, pods)  # the last lines
    seconds = round(logs.clock() - started, 1)
    logs.sink(f"trainjob {name}: complete in {seconds} s")
    return TrainJobResult(
        name=name,
        namespace=namespace,
        seconds=seconds,
        pods=tuple(p["metadata"]["name"] for p in pods),
        log_lines=logs.lines,
    )


def _delete(
    api: ClusterApi,
    namespace: str,
    name: str,
    log_sink: Callable[[str], None],
    error: BaseException | None,
) -> None:
    """Delete the job; a failure to do so is an error of its own unless one is on its way."""
    try:
        deleted = api.delete_trainjob(namespace, name)
    except Exception as e:
        message = f"could not be deleted ({api_error(e)}); delete it by hand"
        if error is None:
            raise TrainJobError(name, message) from None
        log.error("trainjob %s: %s", name, message)
        return
    log_sink(f"trainjob {name}: deleted" if deleted else f"trainjob {name}: already gone")
