"""A small Kubernetes API over HTTP, in memory, for the official client: Kubeflow Trainer
TrainJobs (create, get, delete) and pods (list by label, read, logs). The code under test talks
to it through ``kubernetes.client`` exactly as it would to a cluster (a kubeconfig points at it).

A TrainJob does nothing on its own: a test's ``script(cluster, name, poll)`` runs at every GET of
the job (``poll`` counts them from 0) and moves the job and its pods along with the helpers here
(``add_pod``, ``log``, ``condition``). Every request is recorded (``requests``), and so is every
deletion (``deleted``), so a test can say what was asked and that nothing was left behind.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from qrewrite.cluster.trainjob import (
    GROUP,
    JOB_LABEL,
    NODE_INDEX_LABEL,
    PLURAL,
    TRAINER_CONTAINER,
    VERSION,
    ClusterApi,
)

Script = Callable[["FakeCluster", str, int], None]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeCluster:
    """The cluster's state, and the HTTP server in front of it (``with FakeCluster() as c``)."""

    def __init__(self, namespace: str = "kubeflow") -> None:
        self.namespace = namespace
        self.trainjobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[tuple[float, str]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without the query)
        self.created: list[dict[str, Any]] = []  # each TrainJob as it was sent
        self.deleted: list[str] = []
        self.polls: dict[str, int] = {}
        self.script: Script | None = None
        self.refuse: tuple[int, str, str] | None = None  # (code, reason, message) for a create
        self.unavailable = 0  # answer this many next GETs of a TrainJob with 503
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FakeCluster:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def api(self) -> ClusterApi:
        """The library's API adapter over the official client, pointed here."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        api = client.ApiClient(configuration)
        return ClusterApi(client.CustomObjectsApi(api), client.CoreV1Api(api))

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context is this cluster (for ``ClusterApi.connect``)."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake"}}],
                    "contexts": [
                        {
                            "name": "fake",
                            "context": {
                                "cluster": "fake",
                                "user": "fake",
                                "namespace": self.namespace,
                            },
                        }
                    ],
                    "current-context": "fake",
                }
            )
        )
        return path

    # --- what a script does -------------------------------------------------------------------

    def add_pod(
        self,
        job: str,
        index: int = 0,
        *,
        phase: str = "Running",
        waiting: tuple[str, str] | None = None,
        terminated: tuple[int, str] | None = None,
        unschedulable: str | None = None,
    ) -> str:
        """A worker pod of ``job`` (replacing one of the same index): ``waiting`` = (reason,
        message), ``terminated`` = (exit code, reason), ``unschedulable`` = the scheduler's
        message."""
        name = f"{job}-node-0-{index}-abcde"
        state: dict[str, Any] = {"running": {"startedAt": now()}}
        if waiting:
            state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        if terminated:
            state = {"terminated": {"exitCode": terminated[0], "reason": terminated[1]}}
        status: dict[str, Any] = {"phase": phase}
        if unschedulable:
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": unschedulable,
                }
            ]
        else:
            status["containerStatuses"] = [
                {
                    "name": TRAINER_CONTAINER,
                    "image": "ghcr.io/qrewrite/qrewrite-training:0.1.0",
                    "imageID": "",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "state": state,
                }
            ]
        with self.lock:
            self.pods[name] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {JOB_LABEL: job, NODE_INDEX_LABEL: str(index)},
                },
                "spec": {"containers": [{"name": TRAINER_CONTAINER, "image": "x"}]},
                "status": status,
            }
        return name

    def add_launcher_pod(self, pod: dict[str, Any]) -> None:
        """The step's own pod, which the launcher reads."""
        with self.lock:
            self.pods[pod["metadata"]["name"]] = pod

    def log(self, pod: str, *lines: str) -> None:
        with self.lock:
            self.logs.setdefault(pod, []).extend((time.time(), line) for line in lines)

    def condition(self, job: str, kind: str, reason: str, message: str = "") -> None:
        with self.lock:
            status = self.trainjobs[job].setdefault("status", {})
            status.setdefault("conditions", []).append(
                {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now(),
                }
            )

    # --- the API ------------------------------------------------------------------------------

    def handle(self, method: str, url: str, body: bytes) -> tuple[int, Any]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        with self.lock:
            self.requests.append((method, path))
        parts = path.strip("/").split("/")
        jobs = ["apis", GROUP, VERSION, "namespaces", self.namespace, PLURAL]
        if parts[:6] == jobs:
            return self._trainjobs(method, parts[6:], body)
        if parts[:4] == ["api", "v1", "namespaces", self.namespace] and parts[4:5] == ["pods"]:
            return self._pods(method, parts[5:], query)
        return _status(404, "NotFound", f"no route {method} {path}")

    def _trainjobs(self, method: str, rest: list[str], body: bytes) -> tuple[int, Any]:
        if method == "POST" and not rest:
            job = json.loads(body)
            if self.refuse:
                return _status(*self.refuse)
            name = job["metadata"]["name"]
            with self.lock:
                self.created.append(json.loads(body))
                if name in self.trainjobs:
                    return _status(409, "AlreadyExists", f'trainjobs "{name}" already exists')
                job["metadata"].update(uid=f"uid-{name}", creationTimestamp=now())
                self.trainjobs[name] = job
            return 201, job
        if not rest:
            return _status(405, "MethodNotAllowed", method)
        name = rest[0]
        if method == "GET":
            with self.lock:
                if self.unavailable:
                    self.unavailable -= 1
                    return _status(503, "ServiceUnavailable", "the API server is restarting")
                if name not in self.trainjobs:
                    return _status(404, "NotFound", f'trainjobs "{name}" not found')
                poll = self.polls.get(name, 0)
                self.polls[name] = poll + 1
            if self.script:
                self.script(self, name, poll)
            with self.lock:
                job = self.trainjobs.get(name)
            if job is None:
                return _status(404, "NotFound", f'trainjobs "{name}" not found')
            return 200, job
        if method == "DELETE":
            with self.lock:
                if self.trainjobs.pop(name, None) is None:
                    return _status(404, "NotFound", f'trainjobs "{name}" not found')
                self.deleted.append(name)
                # the JobSet and its pods go with their owner
                for pod in [p for p, v in self.pods.items() if _labels(v).get(JOB_LABEL) == name]:
                    del self.pods[pod]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return _status(405, "MethodNotAllowed", method)

    def _pods(self, method: str, rest: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
        if method != "GET":
            return _status(405, "MethodNotAllowed", method)
        with self.lock:
            if not rest:
                wanted = dict(
                    s.split("=", 1) for s in (query.get("labelSelector") or [""])[0].split(",") if s
                )
                items = [p for p in self.pods.values() if wanted.items() <= _labels(p).items()]
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            pod = self.pods.get(rest[0])
            if pod is None:
                return _status(404, "NotFound", f'pods "{rest[0]}" not found')
            if rest[1:] == ["log"]:
                since = float((query.get("sinceSeconds") or ["inf"])[0])
                cutoff = time.time() - since
                lines = [
                    f"{_stamp(t)} {line}" for t, line in self.logs.get(rest[0], []) if t >= cutoff
                ]
                return 200, "".join(f"{line}\n" for line in lines)
            return 200, pod


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(code: int, reason: str, message: str) -> tuple[int, Any]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, payload = cluster.handle(self.command, self.path, body)
            text = payload if isinstance(payload, str) else json.dumps(payload)
            data = text.encode()
            self.send_response(code)
            kind = "text/plain" if isinstance(payload, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: object) -> None:  # quiet
            pass

    return Handler


def launcher_pod(
    name: str = "query-rewrite-sft-launcher",
    *,
    namespace: str = "kubeflow",
    workspace: str = "/workspace",
    gpus: int = 0,
) -> dict[str, Any]:
    """A KFP step's pod as ``pipelines/platform.on_cluster`` shapes it: the MLflow ConfigMap and
    Secret as env references, the workspace claim, /dev/shm, non-root, and on a GPU profile the
    GPU limit, toleration and node selector."""
    limits = {"cpu": "8", "memory": "64G"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    spec: dict[str, Any] = {
        "serviceAccountName": "qrewrite-pipeline-runner",
        "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
        "containers": [
            {
                "name": "main",
                "image": "ghcr.io/qrewrite/qrewrite-training:0.1.0",
                "env": [
                    {
                        "name": "KFP_POD_NAME",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                    },
                    {
                        "name": "MLFLOW_TRACKING_URI",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "qrewrite-mlflow", "key": "tracking_uri"}
                        },
                    },
                    {
                        "name": "MLFLOW_TRACKING_PASSWORD",
                        "valueFrom": {
                            "secretKeyRef": {
                                "name": "qrewrite-mlflow-credentials",
                                "key": "mlflow_tracking_password",
                            }
                        },
                    },
                    {"name": "SOME_PLAIN_SETTING", "value": "not copied"},
                ],
                "resources": {"requests": dict(limits), "limits": dict(limits)},
                "volumeMounts": [
                    {"name": "kfp-launcher", "mountPath": "/kfp-launcher"},
                    {"name": "workspace", "mountPath": workspace},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "kfp-launcher", "emptyDir": {}},
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "qrewrite-workspace"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        ],
    }
    if gpus:
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        spec["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
        "status": {"phase": "Running"},
    }
