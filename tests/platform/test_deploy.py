"""The deployment files, checked without Docker or a cluster: docker-compose.yml against the Compose
Specification's JSON schema and the Kubernetes manifests against Kubernetes' own schemas
(kubernetes-validate), then both against the code: every command, setting, port, volume and file they
name must exist."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml
from pydantic_settings import BaseSettings

from docvl.broker.celery_app import ALL_QUEUES
from docvl.cli.jobs import register as register_jobs
from docvl.cli.platform import register as register_platform
from docvl.namespace import redis_prefix
from docvl.observability.logs import LogSettings
from docvl.observability.tracing import TracingSettings
from docvl.settings import CoreSettings, FrontDoorSettings
from docvl.up.settings import UpSettings
from model_worker.settings import ModelWorkerSettings
from services.api.settings import ApiSettings
from services.gateway.settings import GatewaySettings
from services.worker.settings import WorkerSettings
from tests.support.helpers import ROOT
from workflows.settings import FlowSettings

COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "infra" / "k8s"
KUBERNETES_VERSION = "1.33.0"
SETTINGS: list[type[BaseSettings]] = [
    CoreSettings,
    FrontDoorSettings,
    ApiSettings,
    GatewaySettings,
    FlowSettings,
    WorkerSettings,
    ModelWorkerSettings,
    UpSettings,
    TracingSettings,
    LogSettings,
]
# Read by the libraries themselves, not by a docvl Settings class.
LIBRARY_VARIABLES = {
    "PREFECT_API_URL",
    "PREFECT_RUNNER_SERVER_ENABLE",
    "PREFECT_RUNNER_SERVER_HOST",
    "PREFECT_RUNNER_SERVER_PORT",
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_UI_API_URL",
    "HF_HUB_OFFLINE",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "GF_SECURITY_ADMIN_PASSWORD",
    "GF_USERS_ALLOW_SIGN_UP",
    "GF_ANALYTICS_REPORTING_ENABLED",
    "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
}
# The port each deployable serves /metrics on by default, by compose service / k8s component.
METRICS_PORTS = {
    "api": ApiSettings.model_fields["api_metrics_port"].default,
    "gateway": GatewaySettings.model_fields["metrics_port"].default,
    "model-worker": ModelWorkerSettings.model_fields["metrics_port"].default,
    "layout-worker": ModelWorkerSettings.model_fields["metrics_port"].default,  # DeepSeek-OCR-2
    "worker": WorkerSettings.model_fields["worker_metrics_port"].default,
    "job-runner": WorkerSettings.model_fields["worker_metrics_port"].default,
    "flow-runner": FlowSettings.model_fields["flows_metrics_port"].default,
}


def setting_names() -> set[str]:
    """Every environment variable a docvl Settings class reads."""
    names = set()
    for cls in SETTINGS:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def cli_commands() -> set[str]:
    """`docvl` commands, as `name` or `group name`."""
    from docvl.cli.serve import app

    full = typer.Typer()
    full.registered_commands = list(app.registered_commands)
    full.registered_groups = list(app.registered_groups)
    register_platform(full)
    register_jobs(full)
    commands = {c.name or c.callback.__name__ for c in full.registered_commands if c.callback}
    for group in full.registered_groups:
        assert group.typer_instance is not None
        commands |= {f"{group.name} {c.name}" for c in group.typer_instance.registered_commands}
    return commands


def names_a_command(args: list[str], commands: set[str]) -> bool:
    return args[0] in commands or " ".join(args[:2]) in commands


# -- docker compose -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"  # the schema must catch a typo
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_compose_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {
        *(
            "postgres",
            "redis",
            "minio",
            "prefect",
            "migrate",
            "api",
            "gateway",
            "flow-runner",
            "job-runner",
            "worker",
            "otel-collector",
            "jaeger",
            "prometheus",
            "grafana",
        )
    }
    assert expected | {"model-worker", "layout-worker"} == set(services)
    for name, service in services.items():
        if name not in ("migrate", "otel-collector"):  # the collector's image has nothing to probe with
            assert "test" in service["healthcheck"], name
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            wanted = "service_completed_successfully" if needed == "migrate" else "service_healthy"
            assert condition == {"condition": wanted}, (name, needed)
    for name in ("api", "gateway", "flow-runner", "worker"):
        assert "migrate" in services[name]["depends_on"], name  # migrations run once, before them
    for worker in ("model-worker", "layout-worker"):
        gpu = services[worker]["deploy"]["resources"]["reservations"]["devices"][0]
        assert gpu["capabilities"] == ["gpu"]
        assert services[worker]["volumes"][0].endswith(":/models/model:ro")
    assert services["worker"]["depends_on"]["layout-worker"] == {"condition": "service_healthy"}


def test_compose_names_only_what_exists(compose: dict[str, Any]) -> None:
    commands, settings = cli_commands(), setting_names()
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    text = COMPOSE.read_text()
    for variable, default in re.findall(r"\$\{(\w+)(?::?[-?]([^}]*))?\}", text):
        assert variable in example or default, f"${{{variable}}} is neither in .env.example nor defaulted"
    declared_volumes = set(compose["volumes"])
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name
            if service["image"].startswith("docvl/service") and "command" in service:
                assert names_a_command(service["command"], commands), (name, service["command"])
        for variable in service.get("environment", {}):
            assert variable in settings | LIBRARY_VARIABLES, (name, variable)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), (name, source)
            elif not source.startswith("$"):
                assert source in declared_volumes, (name, source)
        for port in service.get("ports", []):
            container_port = port.rsplit(":", 1)[1]
            assert container_port in " ".join(map(str, service.get("command", []))) or name in (
                "minio",
                "prefect",
                "jaeger",
                "grafana",
            ), (name, port)
    api = compose["services"]["api"]
    assert api["command"][-1] == str(ApiSettings().api_port)
    gateway = compose["services"]["gateway"]
    assert gateway["command"][-1] == str(GatewaySettings().port)


def test_compose_services_trace_to_the_collector_and_jaeger(compose: dict[str, Any]) -> None:
    services = compose["services"]
    docvl = {n: s for n, s in services.items() if s["image"].startswith("docvl/") and n != "migrate"}
    assert set(docvl) == {
        "api",
        "gateway",
        "flow-runner",
        "job-runner",
        "worker",
        "model-worker",
        "layout-worker",
    }
    names = set()
    for name, service in docvl.items():
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("-http://otel-collector:4318}"), name
        names.add(env["OTEL_SERVICE_NAME"])
        assert "otel-collector" not in service.get("depends_on", {}), name  # spans are best effort
    assert len(names) == len(docvl), "each service has its own name"
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector:")
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    mount = services["otel-collector"]["volumes"][0].split(":")
    assert services["otel-collector"]["command"] == [f"--config={mount[1]}"]
    collector = yaml.safe_load((ROOT / mount[0]).read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    assert [collector["exporters"][e]["endpoint"] for e in pipeline["exporters"]] == ["jaeger:4317"]
    assert set(pipeline["processors"]) <= set(collector["processors"])


def test_dockerfiles_are_multi_stage_non_root_and_pinned() -> None:
    for dockerfile in (ROOT / "infra" / "docker").glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert text.count("FROM ") >= 2, dockerfile.name
        assert re.search(r"^USER 10001", text, re.MULTILINE), dockerfile.name
        for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", text, re.MULTILINE):
            assert re.search(r":\d", image), f"{dockerfile.name}: {image} is not pinned"
        assert "torch==2.13.0" in text
        for copied in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
            assert (ROOT / copied).exists(), (dockerfile.name, copied)


# -- Kubernetes ---------------------------------------------------------------------------------------


def manifests() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for name in [*kustomization["resources"], "secret.example.yaml"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            found.append((name, doc))
    return found


def test_kubernetes_manifests_follow_the_kubernetes_schemas() -> None:
    docs = manifests()
    assert {d["kind"] for _, d in docs} == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
    }
    for _, doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kubernetes_manifests_name_only_what_exists() -> None:
    commands, settings = cli_commands(), setting_names()
    docs = manifests()
    deployments = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Deployment"}
    assert {"api", "gateway", "flow-runner", "model-worker"} <= set(deployments)
    assert {f"worker-{queue}" for queue in ALL_QUEUES} <= set(deployments)  # one per queue
    for _, doc in docs:
        if doc["kind"] in ("ConfigMap", "Secret"):
            for variable in {**doc.get("data", {}), **doc.get("stringData", {})}:
                assert variable in settings | LIBRARY_VARIABLES, variable
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert names_a_command(container["args"], commands), (name, container["args"])
        for variable in container.get("env", []):
            assert variable["name"] in settings | LIBRARY_VARIABLES, (name, variable["name"])
        if name.startswith("worker-"):
            assert container["args"][container["args"].index("--queue") + 1] in ALL_QUEUES
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    model = deployments["model-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert model["readinessProbe"]["grpc"]["port"] == ModelWorkerSettings.model_fields["port"].default


def test_keda_scaling_targets_the_worker_deployments() -> None:
    deployments = {d["metadata"]["name"] for _, d in manifests() if d["kind"] == "Deployment"}
    (config,) = [
        d for _, d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "docvl-config"
    ]
    prefix = redis_prefix(config["data"]["DOCVL_NAMESPACE"])  # Celery's keys are the stack's (kombu prefix)
    for scaled in yaml.safe_load_all((K8S / "keda-scaling.yaml").read_text()):
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        assert scaled["kind"] == "ScaledObject"
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
        trigger = scaled["spec"]["triggers"][0]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] in [prefix + queue for queue in ALL_QUEUES]
        assert int(trigger["metadata"]["listLength"]) > 0


# -- metrics: Prometheus and Grafana in compose, scrape annotations in k8s ---------------------------


def exported_metric_names() -> set[str]:
    """Every sample name docvl's processes can export, from the metric families themselves (imported here,
    as the processes import them), the platform gauges and the CUDA-only GPU gauges included."""
    from prometheus_client import REGISTRY

    from docvl.observability.metrics import api, gateway, jobs, model, worker  # noqa: F401  (registers them)
    from docvl.observability.metrics.platform import PlatformCollector

    families = [
        *REGISTRY.collect(),
        *PlatformCollector(CoreSettings().database_url, "redis://127.0.0.1:1/0", ["ocr"], 1.0).describe(),
        *model.GpuMemory(lambda: 0, lambda: 0).describe(),
    ]
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        f"{family.name}{suffix}"
        for family in families
        if family.name.startswith("docvl_")
        for suffix in suffixes[family.type]
    }


def test_prometheus_scrapes_every_docvl_service_on_its_metrics_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:v3")
    source, target = prometheus["volumes"][0].split(":")[:2]
    assert f"--config.file={target}" in prometheus["command"]
    config = yaml.safe_load((ROOT / source).read_text())
    scraped = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for address in static["targets"]:
                host, port = address.split(":")
                assert host in services, address
                scraped[host] = int(port)
    assert scraped == METRICS_PORTS  # every docvl service, each on its own setting's default port
    for name in METRICS_PORTS:
        env = services[name]["environment"]
        model = name in ("model-worker", "layout-worker")
        host = env["DOCVL_MODEL_WORKER_METRICS_HOST" if model else "DOCVL_METRICS_HOST"]
        assert host == "0.0.0.0", name  # reachable from the prometheus container
        assert not [v for v in env if v.endswith("METRICS_PORT")], name  # the defaults above hold


def test_grafana_provisions_prometheus_and_a_dashboard_of_real_metrics(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    by_target = {target: ROOT / source for source, target in mounts.items()}
    datasources = yaml.safe_load(by_target["/etc/grafana/provisioning/datasources/docvl.yaml"].read_text())
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(by_target["/etc/grafana/provisioning/dashboards/docvl.yaml"].read_text())
    folder = providers["providers"][0]["options"]["path"]
    dashboards = [path for target, path in by_target.items() if target.startswith(folder + "/")]
    assert len(dashboards) == 1
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in by_target

    dashboard = json.loads(dashboards[0].read_text())
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("throughput", "latency", "queue depth", "errors", "gpu memory"):
        assert topic in titles, topic
    exported = exported_metric_names()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == prometheus["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bdocvl_[a-z_]+\b", target["expr"]))
            assert names, target["expr"]
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    assert "docvl_model_gpu_memory_allocated_bytes" in used
    assert "docvl_platform_queue_length" in used


def test_kubernetes_pods_are_scraped_on_their_metrics_ports() -> None:
    docs = manifests()
    config = next(d for _, d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["DOCVL_METRICS_HOST"] == "0.0.0.0"
    for _, doc in docs:
        if doc["kind"] != "Deployment":
            continue
        name = doc["metadata"]["name"]
        template = doc["spec"]["template"]
        component = "worker" if name.startswith("worker-") else name
        annotations = template["metadata"]["annotations"]
        port = METRICS_PORTS[component]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }, name
        container = template["spec"]["containers"][0]
        assert {"name": "metrics", "containerPort": port} in container["ports"], name
        if name in ("model-worker", "layout-worker"):
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["DOCVL_MODEL_WORKER_METRICS_HOST"] == "0.0.0.0"
