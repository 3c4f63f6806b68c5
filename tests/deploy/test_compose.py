"""ops/docker-compose.yml, checked without a Docker daemon: the file against the Compose
Specification's own JSON schema (tests/deploy/compose-spec.json, from compose-spec/compose-spec at
170098ba, Apache-2.0), every file it mounts or builds from present in the repository, every
command of our image parsed by the program that will run it (our argparse parsers, Dagster's click
commands, found through their console-script entry points), and the environment it gives our
processes read by our settings without a problem."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
COMPOSE = OPS / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
#: the services running our image, and the ones that are third-party images
OUR_SERVICES = {"ib-sim", "code-location", "webserver", "daemon", "mcp"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_stack_holds_every_part_the_service_needs(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert {"postgres", "prometheus", "grafana", "pushgateway", "ib-gateway"} | OUR_SERVICES <= (
        services
    )
    assert compose["services"]["ib-gateway"]["profiles"] == ["ib"], "IB's gateway is opt-in"
    for name in OUR_SERVICES:
        assert compose["services"][name]["image"] == "ibkr-agent:latest"


def test_every_published_port_binds_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to every interface"


def test_files_it_builds_from_and_mounts_exist(compose: dict[str, Any]) -> None:
    build = compose["services"]["code-location"]["build"]
    context = (OPS / build["context"]).resolve()
    assert context == ROOT
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (OPS / source).exists(), f"{name} mounts missing {source}"
    for name, secret in compose["secrets"].items():
        # secrets are made by the operator (README), never committed: ops/.gitignore keeps them out
        assert secret["file"].startswith("./secrets/"), name
    assert "secrets/" in (OPS / ".gitignore").read_text().split()


def _parse_dagster(command: list[str]) -> None:
    """Parse ``command`` with the click command its console script runs (each of Dagster's
    scripts is a ``main`` calling its module's ``cli``), subcommand by subcommand (``dagster
    code-server start ...``), without running it."""
    (script,) = importlib.metadata.entry_points(group="console_scripts", name=command[0])
    cli = importlib.import_module(script.module).cli
    args = command[1:]
    while isinstance(cli, click.Group):
        ctx = cli.make_context(command[0], list(args), resilient_parsing=True)
        cli = cli.get_command(ctx, args[0])
        assert cli is not None, f"{command[0]} has no subcommand {args[0]!r}"
        args = args[1:]
    cli.make_context(command[0], list(args))


def _parse_ours(command: list[str]) -> None:
    if command[0] == "ibkr-sim":
        from ibkr_sim.cli import build_parser

        build_parser().parse_args(command[1:])
    else:
        assert command[:3] == ["ibkr-agent", "mcp", "serve"], command
        from mcp_server.cli import build_parser as mcp_parser

        mcp_parser().parse_args(command[2:])


@pytest.mark.parametrize("service", sorted(OUR_SERVICES))
def test_each_command_parses(compose: dict[str, Any], service: str) -> None:
    command = compose["services"][service]["command"]
    # the image's workspace file is ops/workspace.docker.yaml (Dagster checks that it exists)
    image_workspace = "/opt/ibkr-agent/workspace.docker.yaml"
    copy = f"COPY ops/workspace.docker.yaml {image_workspace}"
    assert copy in (OPS / "Dockerfile").read_text()
    command = [str(OPS / "workspace.docker.yaml") if a == image_workspace else a for a in command]
    if command[0].startswith("dagster"):
        _parse_dagster(command)
    else:
        _parse_ours(command)


def test_the_workspace_points_at_the_code_location(compose: dict[str, Any]) -> None:
    workspace = yaml.safe_load((OPS / "workspace.docker.yaml").read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    command = compose["services"]["code-location"]["command"]
    assert grpc["host"] == "code-location"
    assert str(grpc["port"]) == command[command.index("-p") + 1]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'code_location_name = "{grpc["location_name"]}"' in pyproject
    assert command[command.index("-m") + 1] == "ibkr_assets.definitions"


def _known_variables() -> set[str]:
    """Every variable our settings read (section prefix + field, and aliases), every secret's
    name and its ``_FILE``, and every ``IBKR_`` name the package spells out."""
    from ibkr_assets.settings.secret import SECRETS
    from ibkr_assets.settings.tree import env_sections, section_prefix

    known: set[str] = set()
    for section in env_sections().values():
        prefix = section_prefix(section)
        for field_name, field in section.model_fields.items():
            known.add((prefix + field_name).upper())
            alias = field.validation_alias
            choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
            known |= {c.upper() for c in choices if isinstance(c, str)}
    for secret in SECRETS:
        known |= {secret.variable, secret.variable + "_FILE", *secret.file_aliases}
    for path in (ROOT / "ibkr_assets").rglob("*.py"):
        known |= set(re.findall(r"\bIBKR_[A-Z0-9_]+[A-Z0-9]", path.read_text()))
    return known


def test_our_processes_read_the_environment_it_gives_them(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ibkr_assets.settings import clear_settings_cache, load_settings

    known = _known_variables()
    for service in sorted(OUR_SERVICES - {"ib-sim"}):
        environment = {
            k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
            for k, v in compose["services"][service]["environment"].items()
        }
        # a name nothing of ours reads is a typo the container would silently ignore
        unknown = sorted(n for n in environment if n not in known and n != "DAGSTER_HOME")
        assert not unknown, f"{service}: nothing reads {unknown}"
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        clear_settings_cache()
        try:
            settings = load_settings()
            assert not settings.problems, settings.problems
            assert settings.broker.backend == "tws" and settings.broker.host == "ib-sim"
        finally:
            clear_settings_cache()


def test_prometheus_scrapes_services_of_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = yaml.safe_load((OPS / "prometheus.yml").read_text())
    mounted = {f"/run/secrets/{name}" for name in services["prometheus"].get("secrets", [])}
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, port = target.rsplit(":", 1)
                assert host in services, f"{job['job_name']} scrapes {target}: no such service"
                command = services[host].get("command", [])
                if services[host].get("image") == "ibkr-agent:latest":
                    # our processes listen where their command says
                    assert port in command, f"{host} does not listen on {port}: {command}"
        credentials = job.get("authorization", {}).get("credentials_file")
        assert credentials is None or credentials in mounted, f"{credentials} is not mounted"
