"""Pod requests as the scheduler counts them: quantities, init containers, sidecars, overhead."""

from __future__ import annotations

from nanokube.scheduler.requests import host_ports, milli_value, pod_requests, value


def c(cpu: str | None = None, memory: str | None = None, **extra: object) -> dict:
    reqs = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": "c", "image": "x", "resources": {"requests": reqs}, **extra}


def test_quantities_round_up_like_upstream() -> None:
    assert milli_value("100m") == 100
    assert milli_value("1.5") == 1500
    assert milli_value("2e3") == 2_000_000
    assert milli_value("0.0001") == 1  # MilliValue rounds up
    assert value("128Mi") == 128 * 1024 * 1024
    assert value("1G") == 1_000_000_000
    assert value("1.5k") == 1500
    assert value("nonsense") == 0


def test_sum_of_containers() -> None:
    r = pod_requests({"containers": [c("100m", "64Mi"), c("200m", "64Mi")]})
    assert (r.cpu, r.memory) == (300, 128 * 1024 * 1024)


def test_init_containers_take_the_max_rule() -> None:
    spec = {"containers": [c("100m")], "initContainers": [c("500m"), c("200m")]}
    assert pod_requests(spec).cpu == 500


def test_sidecars_add_to_the_app_and_to_later_init_containers() -> None:
    spec = {
        "containers": [c("100m")],
        "initContainers": [c("50m", restartPolicy="Always"), c("300m")],
    }
    # app + sidecar = 150m; the init container runs beside the sidecar: 350m.
    assert pod_requests(spec).cpu == 350


def test_overhead_is_added() -> None:
    spec = {"containers": [c("100m", "10Mi")], "overhead": {"cpu": "250m", "memory": "5Mi"}}
    r = pod_requests(spec)
    assert (r.cpu, r.memory) == (350, 15 * 1024 * 1024)


def test_non_zero_requests_for_scoring() -> None:
    r = pod_requests({"containers": [c(), c("300m")]})
    assert (r.cpu, r.memory) == (300, 0)
    assert r.nonzero_cpu == 100 + 300
    assert r.nonzero_memory == 2 * 200 * 1024 * 1024


def test_extended_resources_and_ephemeral_storage() -> None:
    spec = {
        "containers": [
            {
                "name": "c",
                "resources": {"requests": {"nvidia.com/gpu": "2", "ephemeral-storage": "1Gi"}},
            }
        ]
    }
    r = pod_requests(spec)
    assert r.scalar == {"nvidia.com/gpu": 2}
    assert r.ephemeral == 1024**3


def test_host_ports() -> None:
    spec = {
        "containers": [
            {
                "name": "c",
                "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}],
            },
            {
                "name": "d",
                "ports": [
                    {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}
                ],
            },
        ]
    }
    assert host_ports(spec) == [("0.0.0.0", "TCP", 8080), ("10.0.0.1", "UDP", 53)]
