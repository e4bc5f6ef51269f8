"""Kubernetes settings of the pipeline's steps, applied by one helper so the pipeline reads cleanly.

KFP's local runner ignores all of these (with a warning); on a cluster they become the pods'
resources, GPU scheduling, shared memory, volumes and the MLflow credentials. The names here
are the ones ``k8s/`` creates (docs/operations.md); nothing secret is written into the pipeline,
only the names of the ConfigMap and Secret that hold it.

What one build chooses (the cluster profile, retries, the images) is a ``BuildOptions`` passed
to the helpers, never module state switched for the duration of a build.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask

from qrewrite.errors import ConfigError
from qrewrite_components.images import image_for

# ConfigMap key -> env: where MLflow and its artifact store are (not secret)
MLFLOW_CONFIG_MAP = "qrewrite-mlflow"
MLFLOW_CONFIG_ENV = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "s3_endpoint_url": "MLFLOW_S3_ENDPOINT_URL",
}
# Secret key -> env: credentials of MLflow and its S3-compatible artifact store
MLFLOW_SECRET = "qrewrite-mlflow-credentials"
MLFLOW_SECRET_ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "mlflow_tracking_username": "MLFLOW_TRACKING_USERNAME",
    "mlflow_tracking_password": "MLFLOW_TRACKING_PASSWORD",
}
WORKSPACE_PVC = "qrewrite-workspace"  # base model weights and shop exports
WORKSPACE_PATH = "/workspace"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")  # set by NVIDIA's GPU feature discovery
RUN_AS_USER = 1000  # the images' non-root user
RUNNER_SERVICE_ACCOUNT = "qrewrite-pipeline-runner"  # runs the steps; k8s/base/pipeline/rbac.yaml


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str


CPU_STEP = Resources(cpu="2", memory="8G")
GPU_STEP = Resources(cpu="8", memory="64G")


@dataclass(frozen=True)
class ClusterProfile:
    """What the steps ask of the cluster: GPUs or not, and the size of each kind of step."""

    gpus: bool
    cpu_step: Resources
    gpu_step: Resources
    # image name -> the image it runs in instead (components/images.py)
    images: tuple[tuple[str, str], ...] = ()
    # build and pretrain the small model in the run (no base model on the workspace volume)
    pretrain: bool = False


PROFILES = {
    # a GPU cluster: training steps on GPU nodes (docs/operations.md, "GPU nodes")
    "gpu": ClusterProfile(gpus=True, cpu_step=CPU_STEP, gpu_step=GPU_STEP),
    # a kind cluster on a laptop or CI runner: no GPUs, small steps, and training in the CPU
    # runtime image, not the CUDA one (k8s/kind/e2e.sh, tiny preset)
    "kind": ClusterProfile(
        gpus=False,
        cpu_step=Resources(cpu="1", memory="3G"),
        gpu_step=Resources(cpu="2", memory="6G"),
        images=(("qrewrite-training", "qrewrite-runtime"),),
        pretrain=True,
    ),
}


@dataclass(frozen=True)
class BuildOptions:
    """How one build of the pipeline is made: the cluster it is for, retries, the images.

    Passed explicitly to every step's helper (``on_cluster``, ``retry``) rather than kept in
    module state, so a build neither depends on nor leaves behind what an earlier build chose.
    """

    profile: str = "gpu"  # a key of PROFILES
    # False: no retry policies. kfp.local honours them, and on one machine a failed step fails
    # again (a bad path, a broken contract) after minutes of backoff.
    retries: bool = True
    image_registry: str | None = None  # None: images.REGISTRY
    image_tag: str | None = None  # None: the tag the component was defined with
    # image name -> the image it runs in instead; None: the profile's (ClusterProfile.images)
    image_rename: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(
                f"cluster profile {self.profile!r}: expected one of {', '.join(PROFILES)}"
            )

    @property
    def cluster(self) -> ClusterProfile:
        return PROFILES[self.profile]

    def image(self, defined: str) -> str:
        """The image a step runs in, given the one its component was defined with."""
        rename = self.cluster.images if self.image_rename is None else self.image_rename
        return image_for(
            defined, registry=self.image_registry, tag=self.image_tag, rename=dict(rename)
        )


# the checked-in package: a GPU cluster, retries, the images of this version
DEFAULT_BUILD = BuildOptions()


def on_cluster(
    task: PipelineTask,
    *,
    options: BuildOptions,
    mlflow: bool = True,
    gpus: object = None,
    resources: Resources = CPU_STEP,
    workspace: bool = False,
    shm_size: str = "16Gi",
) -> PipelineTask:
    """Apply the cluster settings of one step.

    - ``mlflow``: the tracking URI from the ConfigMap and the credentials from the Secret, as env;
    - ``gpus`` (a count or a pipeline parameter): accelerator type and limit, the GPU toleration,
      the GPU node selector, and a memory-backed ``/dev/shm`` for the data loaders and NCCL;
    - ``workspace``: the workspace volume (base model weights, shop exports) at ``/workspace``;
    - always: the step's image, CPU and memory requests/limits and a non-root security context.

    ``options`` says the cluster profile, which sizes the step and can turn the GPU settings off,
    and the images.
    """
    profile = options.cluster
    # set on the task, not the component: the component keeps its image for the next build
    task.set_container_image(options.image(task.component_spec.implementation.container.image))
    # the profile sizes the two standard kinds of step; any other size is taken as given
    resources = {CPU_STEP: profile.cpu_step, GPU_STEP: profile.gpu_step}.get(resources, resources)
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory)
    kubernetes.set_security_context(task, run_as_user=RUN_AS_USER, run_as_non_root=True)
    if mlflow:
        kubernetes.use_config_map_as_env(task, MLFLOW_CONFIG_MAP, MLFLOW_CONFIG_ENV)
        kubernetes.use_secret_as_env(task, MLFLOW_SECRET, MLFLOW_SECRET_ENV)
    if gpus is not None and profile.gpus:
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
        kubernetes.add_node_selector(task, *GPU_NODE_LABEL)
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=shm_size
        )
    if workspace:
        kubernetes.mount_pvc(task, pvc_name=WORKSPACE_PVC, mount_path=WORKSPACE_PATH)
    return task


def retry(task: PipelineTask, times: int = 2, *, options: BuildOptions) -> PipelineTask:
    """Retry a step that can fail transiently (storage, the MLflow server, a preempted node),
    unless the build has retries off (``BuildOptions.retries``)."""
    if not options.retries:
        return task
    return task.set_retry(num_retries=times, backoff_duration="30s", backoff_factor=2.0)
