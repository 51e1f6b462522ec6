"""infra/compose.yaml, the Dockerfile, Prometheus and Grafana checked against the code, since no Docker engine runs
here: every command is a real `timecredits` command line, every variable a setting the code reads, every scrape
target a port a service listens on, every metric of the dashboard one the code defines.
"""
from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import typer.core
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
DOCKERFILE = INFRA / "Dockerfile"
PROMETHEUS = INFRA / "prometheus" / "prometheus.yml"
GRAFANA = INFRA / "grafana"

#: What the compose file needs from the operator's environment (or infra/.env), with stand-in values.
OPERATOR_ENV = {"POSTGRES_PASSWORD": "pg-secret", "POSTGRES_APP_PASSWORD": "app-secret",
                "GRAFANA_ADMIN_PASSWORD": "gf-secret"}
APP_IMAGE = "timecredits"
#: Labels Prometheus adds to every scraped series, and `le` on histogram buckets.
TARGET_LABELS = {"job", "instance"}
PROMETHEUS_BUILTINS = {"up": TARGET_LABELS}


# --- compose variable interpolation (the subset compose documents: $$, $VAR, ${VAR}, :-, -, :?, ?) -----------------

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[^}]*)\})")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)


class MissingVariable(ValueError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["bare"]:
            return env.get(match["bare"], "")
        braced = _BRACED.match(match["braced"])
        if braced is None:
            raise ValueError(f"not a compose variable: ${{{match['braced']}}}")
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        present, non_empty = name in env, bool(env.get(name))
        if op in (":?", "?") and not (non_empty if op == ":?" else present):
            raise MissingVariable(f"{name}: {arg}")
        if op == ":-":
            return env[name] if non_empty else arg
        if op == "-":
            return env[name] if present else arg
        if op == ":+":
            return arg if non_empty else ""
        if op == "+":
            return arg if present else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(item, env) for key, item in node.items()}
    return node


def load_compose(env: Mapping[str, str] = OPERATOR_ENV) -> dict[str, Any]:
    return _interpolated(yaml.safe_load(COMPOSE.read_text()), env)  # type: ignore[no-any-return]


@cache
def compose() -> dict[str, Any]:
    return load_compose()


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run the project's image."""
    return {name: s for name, s in services().items() if str(s.get("image", "")).split(":")[0] == APP_IMAGE}


def as_argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


# --- the Dockerfile ----------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def dockerfile_exec_form(keyword: str) -> list[str]:
    """The last ENTRYPOINT or CMD of the final stage, in exec (JSON) form."""
    values = [rest for key, rest in dockerfile_instructions() if key == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{keyword} must be in exec form (a JSON list)"
    return [str(part) for part in parsed]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for key, rest in dockerfile_instructions():
        if key == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def service_argv(service: Mapping[str, Any]) -> list[str]:
    entrypoint = as_argv(service["entrypoint"]) if "entrypoint" in service else dockerfile_exec_form("ENTRYPOINT")
    command = as_argv(service["command"]) if "command" in service else dockerfile_exec_form("CMD")
    return entrypoint + command


# --- the `timecredits` command line, as click parses it -----------------------------------------------------------

#: The click that typer runs on: vendored as typer._click since typer 0.2x, the click package before.
click = getattr(typer.core, "_click", None) or __import__("click")
UsageError = click.exceptions.UsageError


def parse_timecredits(args: list[str]) -> tuple[str, ...]:
    """The command path of `timecredits ARGS` (e.g. ("tokens", "create")); click.UsageError when click would refuse
    the command line: an unknown command or option, a bad value, a missing required option. Nothing is run."""
    from timecredits.cli import app

    command: Any = typer.main.get_command(app)
    path: list[str] = []
    remaining = list(args)
    while hasattr(command, "get_command"):  # a group
        if not remaining or remaining[0].startswith("-"):
            raise UsageError(f"`timecredits {' '.join(path)}` needs a subcommand, got {remaining}")
        name = remaining.pop(0)
        sub = command.get_command(click.Context(command), name)
        if sub is None:
            raise UsageError(f"no command {name!r} in `timecredits {' '.join(path)}`")
        path.append(name)
        command = sub
    command.make_context(" ".join(["timecredits", *path]), remaining)
    return tuple(path)


def option_value(argv: list[str], option: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


# --- settings the code reads ---------------------------------------------------------------------------------------

def project_packages() -> list[Path]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return [ROOT / pattern.rstrip("*") for pattern in include]


_ENV_READ = re.compile(r"""os\.(?:environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']|os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]""")


def known_settings() -> set[str]:
    """Every variable the project reads: the aliases of `Settings`, and names read with os.environ in its packages."""
    from timecredits.settings import Settings

    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    names |= {field.validation_alias for field in Settings.model_fields.values()
              if isinstance(field.validation_alias, str)}
    for package in project_packages():
        for source in package.rglob("*.py"):
            for match in _ENV_READ.finditer(source.read_text()):
                names.add(match[1] or match[2])
    return names


# --- Prometheus and Grafana ------------------------------------------------------------------------------------------

def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS.read_text())  # type: ignore[no-any-return]


def scrape_targets() -> dict[str, list[str]]:
    return {job["job_name"]: [target for static in job.get("static_configs", []) for target in static["targets"]]
            for job in prometheus_config()["scrape_configs"]}


def host_path(service: Mapping[str, Any], container_path: str) -> Path | None:
    """Where a path inside a container comes from on the host, through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = (volume.split(":") + [""])[:2]
        if not source.startswith((".", "/")):
            continue  # a named volume
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return (COMPOSE.parent / source / wanted.relative_to(target_path)).resolve()
    return None


def grafana_files(kind: str) -> list[dict[str, Any]]:
    folder = GRAFANA / "provisioning" / kind
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    assert files, f"no provisioning file in {folder}"
    return [yaml.safe_load(f.read_text()) for f in files]


def dashboards() -> dict[Path, dict[str, Any]]:
    grafana = services()["grafana"]
    found: dict[Path, dict[str, Any]] = {}
    for provisioning in grafana_files("dashboards"):
        for provider in provisioning["providers"]:
            folder = host_path(grafana, provider["options"]["path"])
            assert folder is not None, f"{provider['options']['path']} is not mounted into the grafana service"
            for path in sorted(folder.glob("*.json")):
                found[path] = json.loads(path.read_text())
    return found


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def expressions(dashboard: Mapping[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", []) if target.get("expr")]


@cache
def defined_metrics() -> dict[str, set[str]]:
    """Every series name the API and the worker export, with its labels: counters as `_total`, histograms as
    `_bucket` (with `le`), `_sum` and `_count`, as Prometheus stores them."""
    from prometheus_client.metrics import MetricWrapperBase

    import api.middleware
    import consumers.metrics

    series: dict[str, set[str]] = {}
    for module in (consumers.metrics, api.middleware):
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            labels = set(value._labelnames)  # noqa: SLF001 - the label names of a metric family
            for family in value.describe():
                suffixes = {"counter": {"_total": labels, "_created": labels},
                            "histogram": {"_bucket": labels | {"le"}, "_sum": labels, "_count": labels,
                                          "_created": labels},
                            "summary": {"_sum": labels, "_count": labels, "_created": labels},
                            }.get(family.type, {"": labels})
                for suffix, names in suffixes.items():
                    series[family.name + suffix] = names | TARGET_LABELS
    assert series, "no metric found in consumers.metrics and api.middleware"
    return series


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}


def promql_metrics_and_labels(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression refers to. Enough PromQL for dashboards: selectors,
    grouping clauses, functions and aggregations, binary operators."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    labels: set[str] = set()
    for clause in _GROUPING.finditer(expr):
        labels |= {name.strip() for name in clause[2].split(",") if name.strip()}
    no_groups = _GROUPING.sub(" ", expr)
    for selector in re.finditer(r"\{([^}]*)\}", _STRING.sub('""', no_groups)):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", selector[1]))
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", _STRING.sub('""', no_groups))
    metrics = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*(?![\w:])", bare):
        called = bare[m.end():].lstrip().startswith("(")
        if not called and m[0] not in _KEYWORDS and m[0].lower() not in ("inf", "nan"):
            metrics.add(m[0])
    return metrics, labels


# === the tests =========================================================================================================

def test_compose_needs_only_the_documented_operator_variables() -> None:
    raw = COMPOSE.read_text()
    used = {m["bare"] or _BRACED.match(m["braced"])["name"]  # type: ignore[index]
            for m in _VARIABLE.finditer(raw) if not m["escaped"]}
    assert used >= set(OPERATOR_ENV), used
    for required in OPERATOR_ENV:
        with pytest.raises(MissingVariable, match=required):
            load_compose({k: v for k, v in OPERATOR_ENV.items() if k != required})
    assert "pg-secret" in environment(services()["postgres"])["POSTGRES_PASSWORD"]


def test_the_stack_has_every_part_of_a_production_deployment() -> None:
    names = set(services())
    assert {"kafka", "postgres", "migrate", "api", "prometheus", "grafana"} <= names, names
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    assert services()["postgres"]["image"].startswith("postgres:")
    assert services()["prometheus"]["image"].startswith("prom/prometheus:")
    assert services()["grafana"]["image"].startswith("grafana/grafana")
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert services()[name].get("image", "").split(":")[1] not in ("", "latest"), f"{name}: pin the image version"


def test_every_app_service_runs_a_real_timecredits_command_line() -> None:
    assert dockerfile_exec_form("ENTRYPOINT") == ["timecredits"]
    commands: dict[str, tuple[str, ...]] = {}
    for name, service in app_services().items():
        assert "command" in service, f"{name}: say which timecredits command it runs"
        argv = service_argv(service)
        assert argv[0] == "timecredits", f"{name}: runs {argv}"
        try:
            commands[name] = parse_timecredits(argv[1:])
        except UsageError as exc:
            pytest.fail(f"{name}: `{shlex.join(argv)}` is not a valid command line: {exc.format_message()}")
    assert commands.get("migrate") == ("migrate",)
    assert commands.get("api") == ("api",)
    workers = [name for name, path in commands.items() if path == ("worker",)]
    replicas = sum(int(app_services()[name].get("deploy", {}).get("replicas", 1)) for name in workers)
    assert replicas >= 2, f"two ledger workers wanted, found {workers}"


@pytest.mark.parametrize("argv", [["wroker"], ["api", "--prot", "8000"], ["api", "--port", "eighty"],
                                  ["tokens"], ["tokens", "create"], ["--help"], []])
def test_the_command_line_check_refuses_what_click_refuses(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_timecredits(argv)


def test_the_command_line_check_accepts_nested_commands() -> None:
    assert parse_timecredits(["tokens", "create", "--role", "admin"]) == ("tokens", "create")
    assert parse_timecredits(["worker", "--loglevel", "info"]) == ("worker",)


def test_app_services_set_only_variables_the_code_reads() -> None:
    known = known_settings()
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "TIMECREDITS_WORKER_METRICS_PORT"} <= known
    for name, service in app_services().items():
        unknown = set(environment(service)) - known
        assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"
    image_env = {k for k in dockerfile_env() if not k.startswith(("PYTHON", "PIP_"))}
    assert not image_env - known, f"the Dockerfile sets variables no code reads: {sorted(image_env - known)}"


def test_app_services_agree_on_the_database_the_broker_and_the_topics() -> None:
    shared = ("KAFKA_BOOTSTRAP_SERVERS", "TIMECREDITS_TOPIC_PARTITIONS", "TIMECREDITS_TOPIC_PREFIX")
    for variable in shared:
        values = {name: environment(s).get(variable) for name, s in app_services().items()}
        assert len(set(values.values())) == 1, f"{variable} differs between services: {values}"
    env = environment(next(iter(app_services().values())))

    # docs/design.md §6.1: the owner migrates; every other service connects as the runtime role migrate grants.
    migrate = environment(services()["migrate"])
    owner, runtime = make_url(migrate["DATABASE_URL"]), make_url(migrate["DATABASE_APP_URL"])
    postgres = environment(services()["postgres"])
    for url in (owner, runtime):
        assert url.drivername == "postgresql+psycopg2"
        assert (url.host, url.port or 5432, url.database) == ("postgres", 5432, postgres["POSTGRES_DB"])
    assert (owner.username, owner.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]), \
        "migrate's DATABASE_URL vs postgres"
    assert runtime.username not in ("", None, postgres["POSTGRES_USER"]), "the runtime role is a role of its own"
    assert runtime.password == OPERATOR_ENV["POSTGRES_APP_PASSWORD"]
    for name, service in app_services().items():
        if name == "migrate":
            continue
        assert environment(service)["DATABASE_URL"] == migrate["DATABASE_APP_URL"], f"{name} must connect as the runtime role"
        assert "DATABASE_APP_URL" not in environment(service), f"{name} needs no second URL"
        assert postgres["POSTGRES_PASSWORD"] not in environment(service).values(), f"{name} holds the owner's password"

    kafka = environment(services()["kafka"])
    advertised = {listener.split("://", 1)[1] for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for server in env["KAFKA_BOOTSTRAP_SERVERS"].split(","):
        assert server in advertised, f"{server} is not an advertised listener of kafka: {advertised}"

    workers = sum(1 for s in app_services().values() if service_argv(s)[1:2] == ["worker"])
    assert int(env["TIMECREDITS_TOPIC_PARTITIONS"]) >= workers, "more workers than partitions: some would idle"


def test_kafka_runs_in_kraft_mode_with_its_data_on_a_volume() -> None:
    kafka = services()["kafka"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] in {voter.split("@")[0] for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID: kafka-storage.sh random-uuid"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics are created by the workers, with their partitions"
    declared = set(compose().get("volumes") or {})
    for name, container_path in (("kafka", env["KAFKA_LOG_DIRS"]), ("postgres", "/var/lib/postgresql/data")):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services()[name]["volumes"]}
        assert mounts.get(container_path) in declared, f"{name}: {container_path} must be a named volume"


def test_start_up_order_is_guarded_by_health_and_completion() -> None:
    for name, service in services().items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services(), f"{name} depends on an unknown service {dependency}"
            condition = spec["condition"]
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in services()[dependency], f"{dependency} has no healthcheck for {name} to wait on"
            if condition == "service_completed_successfully":
                assert services()[dependency].get("restart") == "no", f"{dependency} is one-shot: restart: \"no\""
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in app_services().items():
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
            assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        deps = services()[start].get("depends_on") or {}
        return goal in deps or any(reaches(d, goal, seen | {start}) for d in deps if d not in seen)

    assert not [name for name in services() if reaches(name, name)], "depends_on has a cycle"


def listening_port(name: str) -> int:
    """The port a service of ours listens on: the API's --port, a worker's metrics port."""
    service = services()[name]
    argv = service_argv(service)
    if argv[1:2] == ["api"]:
        assert option_value(argv, "--host") == "0.0.0.0" or dockerfile_env().get("TIMECREDITS_API_HOST") == "0.0.0.0"
        return int(option_value(argv, "--port") or environment(service).get("TIMECREDITS_API_PORT") or 8000)
    if argv[1:2] == ["worker"]:
        env = environment(service)
        assert env.get("TIMECREDITS_WORKER_METRICS_HOST") == "0.0.0.0", f"{name}: metrics unreachable from Prometheus"
        return int(env["TIMECREDITS_WORKER_METRICS_PORT"])
    raise AssertionError(f"{name} serves no metrics")


def test_healthchecks_probe_the_ports_the_services_listen_on() -> None:
    for name, service in app_services().items():
        if name == "migrate":
            continue
        probe = " ".join(as_argv(service["healthcheck"]["test"]))
        ports = {int(p) for p in re.findall(r"//(?:127\.0\.0\.1|localhost):(\d+)/", probe)}
        assert ports == {listening_port(name)}, f"{name}: healthcheck probes {ports}"
    paths = set(__import__("api.app", fromlist=["create_app"]).create_app().openapi()["paths"])
    assert "/readyz" in paths and "/metrics" in paths


def test_prometheus_scrapes_the_api_and_both_workers() -> None:
    targets = scrape_targets()
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    scraped = {}
    for job, addresses in targets.items():
        for address in addresses:
            host, port = address.rsplit(":", 1)
            assert host in services(), f"job {job}: {host} is not a compose service"
            assert int(port) == listening_port(host), f"job {job}: {host} listens on {listening_port(host)}, not {port}"
            assert jobs[job].get("metrics_path", "/metrics") == "/metrics"
            scraped[host] = job
    commands = {name: service_argv(s)[1] for name, s in app_services().items()}
    assert sorted(h for h in scraped if commands.get(h) == "api") == ["api"]
    workers = sorted(name for name, command in commands.items() if command == "worker")
    assert len(workers) >= 2 and sorted(h for h in scraped if commands.get(h) == "worker") == workers, scraped
    mounted = host_path(services()["prometheus"], "/etc/prometheus/prometheus.yml")
    assert mounted == PROMETHEUS.resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in as_argv(services()["prometheus"]["command"])


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = services()["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == (GRAFANA / "provisioning").resolve()
    sources = [s for f in grafana_files("datasources") for s in f["datasources"]]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus", sources
    url = urlsplit(sources[0]["url"])
    assert url.hostname == "prometheus" and url.port == 9090, url
    found = dashboards()
    assert [p.name for p in found] == ["timecredits.json"], found
    for path, dashboard in found.items():
        assert dashboard["uid"] and dashboard["title"], path
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in panels(dashboard):
            for holder in [panel, *panel.get("targets", [])]:
                if "datasource" in holder:
                    assert holder["datasource"]["uid"] == sources[0]["uid"], f"{path.name}: {panel['title']}"


def test_the_dashboard_shows_what_an_operator_watches() -> None:
    (dashboard,) = dashboards().values()
    exprs = expressions(dashboard)
    used = set().union(*(promql_metrics_and_labels(e)[0] for e in exprs))
    wanted = {"timecredits_events_applied_total", "timecredits_consumer_lag", "timecredits_events_rejected_total",
              "timecredits_http_request_seconds_bucket", "timecredits_http_requests_total",
              "timecredits_batch_seconds_bucket", "timecredits_database_retries_total"}
    assert wanted <= used, f"missing from the dashboard: {sorted(wanted - used)}"
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(re.search(rf"histogram_quantile\({quantile},.*timecredits_http_request_seconds_bucket", e)
                   for e in exprs), f"no API latency p{quantile}"
    assert any("by (reason)" in e and "timecredits_events_rejected_total" in e for e in exprs)
    assert any("by (status)" in e and "timecredits_http_requests_total" in e for e in exprs)
    for selector in re.findall(r'job=~"([^"]+)"', " ".join(exprs)):
        assert all(re.fullmatch(selector, job) for job in scrape_targets()), f"job=~{selector!r} misses a job"


def test_every_metric_and_label_of_the_dashboard_is_defined_by_the_code() -> None:
    (dashboard,) = dashboards().values()
    series = {**defined_metrics(), **PROMETHEUS_BUILTINS}
    for expr in expressions(dashboard):
        metrics, labels = promql_metrics_and_labels(expr)
        assert metrics, f"no metric in {expr}"
        unknown = metrics - set(series)
        assert not unknown, f"{expr}: no such metric {sorted(unknown)} (defined: {sorted(defined_metrics())})"
        available = set().union(*(series[m] for m in metrics))
        assert labels <= available, f"{expr}: no label {sorted(labels - available)} on {sorted(metrics)}"


@pytest.mark.parametrize("expr", ['sum by (type) (rate(timecredits_events_applyed_total[5m]))',
                                  'sum by (reasons) (rate(timecredits_events_rejected_total[5m]))',
                                  'timecredits_consumer_lag{partiton="1"}',
                                  'histogram_quantile(0.9, sum by (le) (rate(timecredits_http_request_seconds[5m])))'])
def test_the_metric_check_refuses_unknown_names_and_labels(expr: str) -> None:
    metrics, labels = promql_metrics_and_labels(expr)
    series = defined_metrics()
    assert not (metrics <= set(series) and labels <= set().union(*(series.get(m, set()) for m in metrics)))


def test_the_image_is_built_from_python_slim_with_the_project_installed() -> None:
    froms = [rest.split()[0] for key, rest in dockerfile_instructions() if key == "FROM"]
    assert froms and froms[-1] == "python:3.11-slim", froms
    runs = " ".join(rest for key, rest in dockerfile_instructions() if key == "RUN")
    assert "pip install" in runs
    build = services()["migrate"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert dockerfile_exec_form("ENTRYPOINT")[0] in scripts


def test_the_build_context_keeps_what_pip_install_needs() -> None:
    import fnmatch

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "re-inclusions are not checked here"

    def excluded(relative: str) -> bool:
        parts = PurePosixPath(relative).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(prefix, p.removeprefix("**/")) or fnmatch.fnmatch(prefix, p)
                   for p in patterns for prefix in prefixes)

    needed = ["pyproject.toml", "README.md"]
    for package in project_packages():
        needed += [str(f.relative_to(ROOT)) for f in package.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    assert len(needed) > 20
    dropped = [path for path in needed if excluded(path) and not path.startswith(("infra/grafana", "infra/prometheus"))
               and path not in ("infra/compose.yaml", "infra/Dockerfile")]
    assert not dropped, f".dockerignore leaves out files the package needs: {dropped[:10]}"
    assert excluded(".venv/bin/python") and excluded(".git/config") and excluded("tests/conftest.py")
