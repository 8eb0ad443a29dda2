"""What every step gets wherever it runs: one CPU and 512 MiB, the same limit on Docker and Kubernetes."""

STEP_CPUS = 1
STEP_MEMORY_MIB = 512

DOCKER_NANO_CPUS = STEP_CPUS * 1_000_000_000
DOCKER_MEMORY = f"{STEP_MEMORY_MIB}m"

# Requests equal to limits: the scheduler places a step only where its whole share is free, and
# the step never runs slower than on the host it was measured on (Guaranteed QoS class).
K8S_RESOURCES = {
    "requests": {"cpu": str(STEP_CPUS), "memory": f"{STEP_MEMORY_MIB}Mi"},
    "limits": {"cpu": str(STEP_CPUS), "memory": f"{STEP_MEMORY_MIB}Mi"},
}

# On every asset and check op: k8s_job_executor reads it for that step's Job; other executors
# ignore it, and the UI shows it beside the op.
STEP_TAGS = {"dagster-k8s/config": {"container_config": {"resources": K8S_RESOURCES}}}
