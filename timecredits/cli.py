"""The `timecredits` command."""
from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

import stats
from infra.migrate import MigrationNotPermitted, upgrade_to_head
from api.auth import Principal, Role
from infra.services import running_services
from ledger.amounts import format_credits
from ledger.pg.repository import LedgerRepository
from ledger.pg.verify import VerifyReport, verify_ledger
from ledger.pg.verify_checks import UNITS
from timecredits.verify_timer import VerifyTimer
from producers.cli import EXIT_CODES_HELP
from timecredits.settings import Settings, get_settings

if TYPE_CHECKING:
    from producers.kafka import EventProducer
    from timecredits.supervisor import Supervised, Supervisor

app = typer.Typer(help="timecredits: a volunteering and time-credits ledger.", no_args_is_help=True)
console = Console()
#: Who the command line acts as: the programme's admin, seen in the audit log as `admin:cli` (docs/design.md §5.14).
CLI_ADMIN = Principal(Role.ADMIN, token_id="cli")

DEMO_AREAS = Path(stats.__file__).resolve().parent / "samples" / "areas-london-sample.csv"
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where embedded services keep their data.")]


def _data_dir(settings: Settings, data_dir: Path | None) -> Path:
    path = (data_dir or settings.data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _ledger_engine(settings: Settings, data_dir: Path) -> Iterator[Engine]:
    """An engine on DATABASE_URL, or on an embedded PostgreSQL started (and stopped) for the occasion."""
    with running_services(settings, data_dir, need_broker=False) as endpoints:
        engine = create_engine(endpoints.database_url, pool_pre_ping=True)
        try:
            yield engine
        finally:
            engine.dispose()


def _broker_of(settings: Settings, data_dir: Path, what: str) -> str:
    """KAFKA_BOOTSTRAP_SERVERS, or the broker of a `timecredits up` running on `data_dir`; exit 2 when neither."""
    from infra.embedded import running_broker

    bootstrap = settings.kafka_bootstrap_servers or running_broker(data_dir)
    if not bootstrap:
        console.print(f"[red]No broker to send {what} to[/red]: no `timecredits up` is running on {data_dir}. "
                      "Start it (with the same --data-dir), or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL.")
        raise typer.Exit(code=2)
    return bootstrap


def _runtime_role(owner_url: str, settings: Settings, data_dir: Path) -> str:
    """Grant the runtime role after a migration; its URL (docs/design.md §6.1). Exit 2 when it cannot be set up."""
    from infra.roles import RuntimeRoleError, prepare_runtime_role

    try:
        app_url = prepare_runtime_role(owner_url, settings.database_app_url, data_dir)
    except RuntimeRoleError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    console.print(f"runtime role {make_url(app_url).username} granted: the API and workers connect as it")
    return app_url


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Bring the database schema up to date, then grant the runtime role the API and workers connect as
    (created when DATABASE_URL's role may create roles; else DATABASE_APP_URL names an existing one)."""
    settings = get_settings()
    directory = _data_dir(settings, data_dir)
    with _ledger_engine(settings, directory) as engine:
        owner_url = engine.url.render_as_string(hide_password=False)
        upgrade_to_head(owner_url)
        console.print("schema is up to date")
        _runtime_role(owner_url, settings, directory)


def _print_verify(report: VerifyReport, *, heads: bool = True) -> None:
    console.print(
        f"checked {report.entries_checked} entries ({report.postings_checked} postings), {report.links_checked} batch "
        f"links in {len(report.heads)} chains, {report.checkpoints_checked} checkpoints; "
        f"{report.accounts_checked} account balances recomputed from postings"
    )
    if report.legacy.entries:
        console.print(f"  legacy chain: {report.legacy.entries} entries, head {report.legacy.head.hex()[:16]}…")
    for chain_key, head in sorted(report.heads.items()) if heads else ():
        console.print(f"  chain {chain_key}: seq {head.seq}, head {head.link.hex()[:16]}…")
    for check in report.checks:
        console.print(f"  {check.name}: {check.checked} {UNITS[check.name][check.checked != 1]} checked"
                      + (f"; {check.note}" if check.note else ""))
    if report.problem:
        console.print(f"[red]MISMATCH[/red] {report.problem}")
    for check in report.checks:
        if check.problem:
            console.print(f"[red]MISMATCH[/red] {check.name}: {check.problem}")
    if report.ok:
        console.print("[green]ledger verified: every hash, link, sum and balance matches, and every check holds"
                      "[/green]")


@app.command()
def verify(
    data_dir: DataDir = None,
    heads: Annotated[Path | None, typer.Option(
        "--heads", help="A heads file exported earlier: check that the ledger still holds every head in it.")] = None,
    export_heads: Annotated[Path | None, typer.Option(
        "--export-heads", help="Write the verified heads to this file, to keep outside the database.")] = None,
    status_file: Annotated[Path | None, typer.Option(
        "--status-file", help="Write the result to this file too, for an API with TIMECREDITS_VERIFY_STATUS_FILE "
                              "set to it to export as metrics.")] = None,
) -> None:
    """Recompute every entry hash, batch link and balance, and check the ledger's rules (approvals at the rate,
    reversals, bookings settled once, statistics facts); exit 1 on a mismatch.

    A heads file kept outside the database catches what the database alone cannot: a chain whose whole tail
    was rewritten or removed since the heads were exported.
    """
    from ledger.pg.verify import ExportedHeads, heads_of

    expected = None
    if heads is not None:
        try:
            expected = ExportedHeads.read(heads)
        except (OSError, ValueError, KeyError) as exc:
            console.print(f"[red]cannot read the heads file {heads}: {exc}[/red]")
            raise typer.Exit(code=2) from exc
    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        started = time.monotonic()
        report = verify_ledger(engine, on_entries=lambda n: console.print(f"… {n} entries", style="dim"),
                               expected=expected)
    if status_file is not None:
        from timecredits.verify_status import VerifyStatus, write_status

        write_status(status_file, VerifyStatus.of(report, time.time(), time.monotonic() - started))
    _print_verify(report)
    if not report.ok:
        raise typer.Exit(code=1)
    if heads is not None:
        console.print(f"every head in {heads} is in the ledger")
    if export_heads is not None:
        export_heads.write_text(heads_of(report).to_json())
        console.print(f"heads written to {export_heads}: keep the file outside the database")


def _wait_ready(url: str, api: Supervised, keep_going: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Until the API's /readyz answers 200 (database and broker reachable); `keep_going` supervises meanwhile."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not keep_going():
            raise _Interrupted
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the API at {url} was not ready within {timeout_s:.0f} s:\n{api.process.log_tail()}")


class _Interrupted(Exception):
    """`up` was asked to stop, or a child kept failing, before it was fully up."""


def _require(value: str | None, name: str) -> str:
    if not value:
        console.print(f"[red]{name} is not set[/red]: a worker runs against configured services "
                      "(`timecredits up` starts embedded ones and sets it for its children)")
        raise typer.Exit(code=2)
    return value


class WorkerPart(StrEnum):
    ledger = "ledger"
    statistics = "statistics"


@app.command()
def worker(
    data_dir: DataDir = None,
    loglevel: Annotated[str, typer.Option(help="faust log level: debug, info, warn, error")] = "warn",
    only: Annotated[WorkerPart | None, typer.Option(
        help="run one consumer only: the ledger (tc.activity, tc.admin) or the statistics (tc.ledger); "
             "default both")] = None,
) -> None:
    """Run a ledger worker (faust): apply tc.activity and tc.admin in batches, until Ctrl-C or SIGTERM.

    Needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS. Start as many as there are partitions to share them.
    The same process records the statistics from tc.ledger, unless --only says otherwise.
    """
    from consumers.worker import CONSUMERS, WorkerConfig, run_worker
    from ledger.intake import IntakePolicy
    from producers.kafka import ALL_TOPICS, ensure_topics, prefixed

    settings = get_settings()
    database_url = _require(settings.database_url, "DATABASE_URL")
    bootstrap = _require(settings.kafka_bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
    try:
        upgrade_to_head(database_url)  # as the runtime role, a check that the schema is current (§6.1)
    except MigrationNotPermitted as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    ensure_topics(bootstrap, settings.topic_partitions, prefixed(ALL_TOPICS, settings.topic_prefix))
    run_worker(
        WorkerConfig(
            bootstrap_servers=bootstrap,
            database_url=database_url,
            data_dir=_data_dir(settings, data_dir),
            topic_prefix=settings.topic_prefix,
            batch_size=settings.ledger_batch_size,
            batch_within_s=settings.batch_within_s,
            session_timeout_s=settings.worker_session_timeout_s,
            thread_timeout_s=settings.worker_thread_timeout_s,
            loglevel=loglevel,
            consumers=frozenset({only.value}) if only is not None else frozenset(CONSUMERS),
            policy=IntakePolicy(max_days_back=settings.max_days_back),
        )
    )


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default TIMECREDITS_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TIMECREDITS_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="API processes, each with a listening socket of its own.")] = 1,
) -> None:
    """Run the HTTP API alone (needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS)."""
    from api.serving import connection_options, serve

    settings = get_settings()
    _require(settings.database_url, "DATABASE_URL")
    _require(settings.kafka_bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
    serve(host or settings.api_host, port or settings.api_port, workers, **connection_options(settings))


@app.command()
def mailbox(
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Where to keep received messages (default DATA_DIR/mailbox).")] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to accept SMTP on.", min=1, max=65535)] = 8025,
    data_dir: DataDir = None,
) -> None:
    """Run the development mailbox: an SMTP server on 127.0.0.1 that keeps every message it receives as a file
    (docs/design.md §8.4), until Ctrl-C or SIGTERM. `up` starts one when TIMECREDITS_SMTP_HOST is not set."""
    from timecredits.mailbox import HOST, running_mailbox

    settings = get_settings()
    where = (directory or settings.dev_mailbox_dir or _data_dir(settings, data_dir) / "mailbox").resolve()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with running_mailbox(where, port):
            console.print(f"mailbox: SMTP on {HOST}:{port}, messages kept in {where}")
            stop.wait()
    except OSError as exc:
        console.print(f"[red]cannot listen on {HOST}:{port}: {exc.strerror or exc}[/red]")
        raise typer.Exit(code=1) from exc
    console.print("mailbox stopped")


tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="admin, lead, org or volunteer")],
    org: Annotated[str | None, typer.Option(help="the organisation of an org token")] = None,
    volunteer: Annotated[str | None, typer.Option(help="the volunteer of a volunteer token")] = None,
    label: Annotated[str, typer.Option(help="a note to recognise the token by")] = "",
    expires_in_days: Annotated[int, typer.Option(help="how many days the token works for, 1 to 3650")] = 365,
    data_dir: DataDir = None,
) -> None:
    """Create a token and print it (once: only its digest is stored)."""
    from api.auth import Role, expiry_after
    from api.errors import ApiError
    from api.routes.tokens import NewToken, check_scope, issue_token

    try:
        chosen = Role(role)
        check_scope(chosen, org, volunteer)
        expiry_after(expires_in_days)  # a lifetime out of range is refused here, before any database work
    except (ValueError, ApiError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        try:
            token, _, _ = issue_token(engine, NewToken(role=chosen, org_id=org, volunteer_id=volunteer, label=label,
                                                       expires_in_days=expires_in_days), CLI_ADMIN)
        except ApiError as exc:  # an unknown organisation or volunteer
            console.print(f"[red]could not create the token: {exc.message}[/red]")
            raise typer.Exit(code=1) from exc
        except Exception as exc:  # noqa: BLE001 - any other refusal, said in one line
            console.print(f"[red]could not create the token: {str(exc).splitlines()[0]}[/red]")
            raise typer.Exit(code=1) from exc
    print(token)


@tokens_app.command("list")
def tokens_list(data_dir: DataDir = None) -> None:
    """List every token: id, role, scope, label and dates (never the secret)."""
    from api.auth import Principal, Role
    from api.routes.tokens import list_tokens

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        listed = list_tokens(engine, Principal(Role.ADMIN))
    for t in listed:
        scope = t.org_id or t.volunteer_id or "-"
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else f"expires {t.expires_at:%Y-%m-%d}"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
        print(f"{t.id}\t{t.role.value}\t{scope}\t{state}\t{used}\t{t.label}")


people_app = typer.Typer(help="People who sign in to the web app (docs/design.md §8.1).", no_args_is_help=True)
app.add_typer(people_app, name="people")


@people_app.command("add")
def people_add(
    name: Annotated[str, typer.Option(help="what the app calls them")],
    role: Annotated[str, typer.Option(help="admin, lead, coordinator, front_desk or volunteer")],
    email: Annotated[str | None, typer.Option(help="where sign-in links go (none: a sign-in card only)")] = None,
    org: Annotated[str | None, typer.Option(help="the organisation of a coordinator or front desk")] = None,
    volunteer: Annotated[str | None, typer.Option(help="the volunteer id of a volunteer")] = None,
    data_dir: DataDir = None,
) -> None:
    """Let someone sign in to the web app; prints their id."""
    from web.people import PersonRole, add_person

    try:
        chosen = PersonRole(role)
    except ValueError as exc:
        console.print(f"[red]{role} is not a role: admin, lead, coordinator, front_desk or volunteer[/red]")
        raise typer.Exit(code=2) from exc
    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        try:
            person = add_person(engine, name, chosen, email=email, org_id=org, volunteer_id=volunteer)
        except Exception as exc:  # noqa: BLE001 - a check the database made: the message says which
            console.print(f"[red]could not add them: {str(exc).splitlines()[0]}[/red]")
            raise typer.Exit(code=1) from exc
    print(person.id)


@people_app.command("sign-in-link")
def people_sign_in_link(
    email: Annotated[str, typer.Argument(help="the person's e-mail address")],
    base_url: Annotated[str, typer.Option(help="where the web app is served")] = "http://127.0.0.1:8000",
    data_dir: DataDir = None,
) -> None:
    """Print a one-time sign-in link for someone (valid 15 minutes), without sending it."""
    from web.people import link_url, new_link, person_by_email

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        with engine.connect() as conn:
            person = person_by_email(conn, email)
        if person is None:
            console.print(f"[red]nobody who may sign in has the address {email}[/red]")
            raise typer.Exit(code=1)
        print(link_url(base_url, new_link(engine, person.id)))


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="the token's id (from `tokens list`)")],
                  data_dir: DataDir = None) -> None:
    """Revoke a token: every API process refuses it within a second."""
    import uuid

    from api.auth import Principal, Role
    from api.routes.tokens import revoke_token

    try:
        parsed = uuid.UUID(token_id)
    except ValueError as exc:
        console.print(f"[red]{token_id} is not a token id[/red]")
        raise typer.Exit(code=2) from exc
    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        if not revoke_token(engine, CLI_ADMIN, parsed):
            console.print(f"[red]no token {token_id}[/red]")
            raise typer.Exit(code=1)
    console.print(f"token {token_id} revoked")


@app.command()
def reverse(
    entry: Annotated[str, typer.Argument(help="the event id of the entry to correct (from a statement)")],
    reason: Annotated[str, typer.Option(help="why, in words (1 to 500 characters): the volunteer reads it")],
    code: Annotated[str, typer.Option(help="the reason's code: approved_in_error, wrong_volunteer, wrong_amount, "
                                           "duplicate, made_by_mistake or other")] = "other",
    wait: Annotated[float, typer.Option(help="seconds to wait for the ledger worker's outcome (0: do not wait)")]
        = 30.0,
    data_dir: DataDir = None,
) -> None:
    """Correct a ledger entry with its mirror, as the programme's admin; the reason is kept and audited
    (docs/design.md §5.14). Finds a running `timecredits up` on the same data dir by itself."""
    import uuid

    from api.broker import BrokerLink
    from api.deps import Services
    from api.errors import ApiError
    from api.services import corrections
    from api.services.outcomes import wait_outcome
    from infra.embedded import running_broker
    from ledger.events import CORRECTION_REASONS

    try:
        target = uuid.UUID(entry)
    except ValueError as exc:
        console.print(f"[red]{entry} is not an entry's event id[/red]")
        raise typer.Exit(code=2) from exc
    if code not in CORRECTION_REASONS or not 1 <= len(reason.strip()) <= 500:
        console.print(f"[red]Give a reason of 1 to 500 characters and a code from: {', '.join(CORRECTION_REASONS)}"
                      "[/red]")
        raise typer.Exit(code=2)
    settings = get_settings()
    directory = _data_dir(settings, data_dir)
    bootstrap = settings.kafka_bootstrap_servers or running_broker(directory)
    if not bootstrap:
        console.print(f"[red]No broker to send the correction to[/red]: no `timecredits up` is running on {directory}. "
                      "Start it (with the same --data-dir), or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL.")
        raise typer.Exit(code=2)
    with _ledger_engine(settings, directory) as engine:
        services = Services(engine=engine, producer=BrokerLink(bootstrap, topic_prefix=settings.topic_prefix),
                            admin_token=None)
        try:
            event_id = corrections.reverse(services, CLI_ADMIN, target, reason.strip(), code)
        except ApiError as exc:
            console.print(f"[red]Not corrected[/red]: {exc.message} ({exc.code})")
            raise typer.Exit(code=1) from exc
        finally:
            services.producer.close()
        status, why = wait_outcome(services, event_id, wait) if wait > 0 else ("pending", None)
    if status == "rejected":
        console.print(f"[red]The ledger refused the correction[/red]: {why}")
        raise typer.Exit(code=1)
    said = "applied" if status == "applied" else "sent; the ledger worker applies it in a moment"
    console.print(f"Correction {event_id} of entry {target}: {said}.")


@app.command("export-volunteer")
def export_volunteer(
    volunteer: Annotated[str, typer.Argument(help="the volunteer's id, like v-2957f17abc4b")],
    out: Annotated[Path, typer.Option(help="where to write it: a .json file, or a .zip of CSV files")],
    data_dir: DataDir = None,
) -> None:
    """Write everything held about a volunteer, for their subject access request (docs/design.md §5.7)."""
    from api.auth import Principal, Role
    from api.errors import ApiError
    from api.services import subject_access

    if out.suffix not in (".json", ".zip"):
        console.print(f"[red]{out} should end in .json (one JSON file) or .zip (CSV files)[/red]")
        raise typer.Exit(code=2)
    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        try:
            sections = subject_access.export(engine, Principal(Role.ADMIN), volunteer)
        except ApiError as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(code=1) from exc
    body = subject_access.as_csv_bundle(sections) if out.suffix == ".zip" else subject_access.as_json(sections)
    out.write_bytes(body)
    counts = ", ".join(f"{len(rows)} {name.replace('_', ' ')}" for name, rows in sections.items() if name != "profile")
    console.print(f"Wrote everything held about {volunteer} to {out} ({counts}).")


@app.command("erase")
def erase_volunteer(
    volunteer: Annotated[str, typer.Argument(help="the volunteer's id, like v-2957f17abc4b")],
    yes: Annotated[bool, typer.Option("--yes", help="erase without asking to confirm")] = False,
    data_dir: DataDir = None,
) -> None:
    """Erase a volunteer's personal data, for their erasure request (docs/design.md §5.15): their name, e-mail,
    sign-in, references and reasons in words go; the pseudonymous ledger, the statistics and the audit log stay."""
    from api.errors import ApiError
    from api.services import erasure

    if not yes:
        console.print(f"This erases the personal data of volunteer {volunteer}:")
        for what in erasure.DELETED.values():
            console.print(f"  - {what}")
        console.print("It keeps:")
        for what in erasure.KEPT:
            console.print(f"  - {what}")
        if not typer.confirm("Erase it? This cannot be undone"):
            console.print("Nothing was erased.")
            raise typer.Exit(code=1)
    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        try:
            done = erasure.erase(engine, CLI_ADMIN, volunteer)
        except ApiError as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(code=1) from exc
    counts = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in done.counts.items() if count)
    console.print(f"Erased the personal data of {volunteer} ({counts or 'nothing else was held'}).")


@app.command("import-areas")
def import_areas(
    file: Annotated[Path, typer.Argument(help="Areas CSV: code, name, need_decile, population[, source].")],
    data_dir: DataDir = None,
) -> None:
    """Load the areas a programme reports on, with their need (e.g. deprivation decile) and population."""
    from stats.cli import import_areas_command

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        code = import_areas_command(file, engine, console)
    raise typer.Exit(code=code)


@app.command("rebuild-statistics")
def rebuild_statistics(data_dir: DataDir = None) -> None:
    """Work the statistics' rollups out again from the facts, as the database's owner: when verify finds them
    different from the facts (new statistics facts wait until it is done)."""
    from stats.cli import rebuild_statistics_command

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        upgrade_to_head(engine.url.render_as_string(hide_password=False))
        code = rebuild_statistics_command(engine, console)
    raise typer.Exit(code=code)


@app.command()
def report(
    period: Annotated[str, typer.Option(help="2026-Q3, 2026-07 or 2026")],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("report.html"),
    data_dir: DataDir = None,
) -> None:
    """Write a one-page committee report (figures, charts, cold spots) as a self-contained HTML file."""
    from stats.cli import report_command

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        code = report_command(period, out, engine, console)
    raise typer.Exit(code=code)


@app.command("import-hours", epilog=EXIT_CODES_HELP)
def import_hours(
    file: Annotated[Path, typer.Argument(help="The organisation's monthly sheet (.csv, or Excel .xlsx).")],
    org: Annotated[str, typer.Option(help="The organisation whose sheet it is.")],
    approve: Annotated[bool, typer.Option(
        help="The organisation approves the rows as it submits them (nothing to add where it approves by itself).")]
        = False,
    report: Annotated[Path | None, typer.Option(
        help="Where to write the rows not imported and why (default: FILE.report.csv next to FILE, e.g. "
             "hours-2026-10.report.csv).")] = None,
    keep_duplicates: Annotated[bool, typer.Option(
        help="Import a row that repeats an earlier one exactly (same volunteer, date, hours and activity) as a "
             "second session, rather than holding it back as a possible duplicate.")] = False,
    as_admin: Annotated[bool, typer.Option(
        help="Log the hours as the programme's admin, who may log hours older than TIMECREDITS_MAX_DAYS_BACK days.")]
        = False,
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for the ledger worker's outcome of every row (0: produce and do not wait).")] = 120.0,
    data_dir: DataDir = None,
) -> None:
    """Check a spreadsheet of hours against the registry, produce the good rows, wait for the ledger worker and say
    what happened in credits; re-running it adds nothing. Each row's volunteer is the organisation's own reference
    for them, or their volunteer id. Finds a running `timecredits up` on the same data dir by itself, else uses
    DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS."""
    from ledger.intake import IntakePolicy
    from producers.cli import import_hours_command

    settings = get_settings()
    directory = _data_dir(settings, data_dir)
    bootstrap = _broker_of(settings, directory, "the hours")
    with running_services(settings, directory, need_broker=False) as endpoints:
        assert endpoints.database_url is not None
        code = import_hours_command(file, org, approve, report, bootstrap, settings.topic_partitions,
                                    topic_prefix=settings.topic_prefix, console=console,
                                    database_url=endpoints.database_url, keep_duplicates=keep_duplicates,
                                    wait_timeout_s=wait if wait > 0 else None, as_admin=as_admin,
                                    policy=IntakePolicy(max_days_back=settings.max_days_back))
    raise typer.Exit(code=code)


bench_app = typer.Typer(help="Benchmarks of the whole stack: figures, and the soak with its checks.")
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(help="Activity events for the ingest figure.")] = 200_000,
    rate: Annotated[float, typer.Option(help="Steady events/s behind the latency figure.")] = 2_000.0,
    latency_seconds: Annotated[float, typer.Option(help="How long the latency figure runs.")] = 30.0,
    read_seconds: Annotated[float, typer.Option(help="How long each balance-read figure runs.")] = 15.0,
    ingest: Annotated[bool, typer.Option(help="Figures 1 and 2: ingest with one and two workers, the ceiling.")] = True,
    api: Annotated[bool, typer.Option(help="Figures 3 and 4: latency and balance reads through the API.")] = True,
    statistics: Annotated[bool, typer.Option(
        help="Figure 5: every breakdown of a year of a large programme, beside the scan ceiling.")] = True,
    statistics_volunteers: Annotated[int, typer.Option(help="Volunteers of figure 5's programme.")] = 100_000,
    statistics_years: Annotated[int, typer.Option(help="Years of figure 5's facts.")] = 10,
    data_dir: DataDir = None,
) -> None:
    """Benchmark the whole stack: ingest with one and two workers, the INSERT ceiling, produce-to-balance latency,
    API balance reads idle and under ingest, and the statistics of a programme of 100,000 volunteers over ten
    years. Prints figures; asserts nothing. Takes several minutes.

    Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set (it creates and drops databases of its own there),
    else embedded services with durable PostgreSQL settings. `timecredits bench soak` is the long load test.
    """
    if ctx.invoked_subcommand is not None:
        return
    from timecredits.benchmark.run import run_all

    run_all(get_settings(), events=events, latency_seconds=latency_seconds, read_seconds=read_seconds, rate=rate,
            data_dir=data_dir, console=console, ingest_figures=ingest, api_figures=api,
            statistics_programme=(statistics_volunteers, statistics_years) if statistics else None)


@bench_app.command()
def soak(
    clients: Annotated[int, typer.Option(help="Concurrent clients, each on a keep-alive connection.", min=1)] = 256,
    minutes: Annotated[float, typer.Option(help="How long the clients run.", min=0.05)] = 5.0,
    ceiling_seconds: Annotated[float, typer.Option(help="How long the ceiling (balance reads) runs.", min=1)] = 10.0,
    data_dir: DataDir = None,
) -> None:
    """Many clients on a mix of reads and writes against the real stack (two API processes, the workers,
    PostgreSQL, the broker), then check: no 5xx, every accepted write decided exactly once, verify clean.
    Prints the figures beside a ceiling measured in the same run; exits 1 when a check fails.

    Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set (it creates and drops a database of its own there),
    else embedded services with durable PostgreSQL settings.
    """
    from timecredits.benchmark.soak import run_soak

    result = run_soak(get_settings(), clients=clients, seconds=minutes * 60, ceiling_seconds=ceiling_seconds,
                      data_dir=data_dir, console=console)
    if result.problems():
        raise typer.Exit(code=1)


def _start_mailbox(supervisor: Supervisor, directory: Path, logs: Path, avoid: frozenset[int]) -> dict[str, str]:
    """Start `timecredits mailbox` as a supervised child on a free port; the SMTP settings that send to it.

    The port is chosen here, not by the child, so that a restarted mailbox listens where the API already sends.
    """
    from timecredits.mailbox import HOST, free_port

    mailbox_dir = directory / "mailbox"
    port = free_port(avoid)
    supervisor.start("mailbox", ["mailbox", "--dir", str(mailbox_dir), "--port", str(port)],
                     {"TIMECREDITS_DATA_DIR": str(directory)}, logs / "mailbox.log")
    return {
        "TIMECREDITS_SMTP_HOST": HOST,
        "TIMECREDITS_SMTP_PORT": str(port),
        "TIMECREDITS_SMTP_STARTTLS": "false",  # a server on this machine, without TLS (docs/design.md §8.4)
        "TIMECREDITS_SMTP_USERNAME": "",  # the mailbox asks for no login; empty is unset
        "TIMECREDITS_SMTP_PASSWORD": "",
        "TIMECREDITS_DEV_MAILBOX_DIR": str(mailbox_dir),
    }


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Load a synthetic programme through the event pipeline.")] = False,
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(help="API port (default TIMECREDITS_API_PORT, 8000).")] = None,
    drain_timeout: Annotated[float, typer.Option(
        help="On Ctrl-C or SIGTERM, how long to wait for the workers to apply what the broker holds.")] = 120.0,
) -> None:
    """Run everything in one process tree: PostgreSQL and broker (embedded unless configured), migrations,
    the runtime role, topics, the ledger worker, the statistics worker and the API (the last three connected as
    the runtime role), a development mailbox for the API's mail unless TIMECREDITS_SMTP_HOST is set; optionally
    the demo programme.

    A child that dies is restarted (backoff 1 s doubling to 30 s); `up` gives up, exiting 1, only on a child that
    keeps failing. Ctrl-C or SIGTERM drains: the API stops first, then `up` waits (at most --drain-timeout)
    until the workers have applied everything on the broker, then stops them, the broker and PostgreSQL.
    A second Ctrl-C stops at once.
    """
    from api.auth import Role, create_token, new_token
    from api.serving import port_is_free
    from producers.kafka import ALL_TOPICS, EventProducer, ensure_topics, prefixed
    from timecredits.demo_loader import LoadInterrupted, load_demo
    from timecredits.drain import drain_groups, shut_down
    from timecredits.supervisor import Supervisor

    settings = get_settings()
    directory = _data_dir(settings, data_dir)
    stop, hurry = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        if stop.is_set():
            hurry.set()
            console.print("[yellow]second interrupt: stopping at once[/yellow]")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    supervisor = Supervisor(console)
    api_port = port or settings.api_port
    if not port_is_free(settings.api_host, api_port):
        console.print(f"[red]Port {api_port} on {settings.api_host} is already in use.[/red] Stop what is using it, "
                      "or choose another port with --port or TIMECREDITS_API_PORT.")
        raise typer.Exit(1)
    with running_services(settings, directory, reserved_ports=frozenset({api_port})) as endpoints:
        assert endpoints.database_url and endpoints.kafka_bootstrap_servers
        console.print(f"PostgreSQL: {endpoints.database_url}")
        console.print(f"Kafka bootstrap servers: {endpoints.kafka_bootstrap_servers}")
        supervisor.services.update(endpoints.embedded)
        upgrade_to_head(endpoints.database_url)
        app_database_url = _runtime_role(endpoints.database_url, settings, directory)
        ensure_topics(endpoints.kafka_bootstrap_servers, settings.topic_partitions,
                      prefixed(ALL_TOPICS, settings.topic_prefix))
        # The children connect as the runtime role only; the owner's URL stays with `up` (docs/design.md §6.1).
        env = {
            "DATABASE_URL": app_database_url,
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
            "TIMECREDITS_DATA_DIR": str(directory),
        }
        admin_token = settings.admin_token or new_token()
        url = f"http://{settings.api_host}:{api_port}"
        logs = directory / "logs"
        # Verify's result reaches the API's /metrics through this file (docs/design.md §3.3); none until the
        # first run of this `up`.
        status_file = settings.verify_status_file or directory / "verify-status.json"
        status_file.unlink(missing_ok=True)
        api_env = {**env, "TIMECREDITS_ADMIN_TOKEN": admin_token, "TIMECREDITS_VERIFY_STATUS_FILE": str(status_file)}
        if settings.smtp_host is None:
            # No mail server configured: the API sends to a development mailbox of our own (docs/design.md §8.4),
            # started first so that it is stopped last, after the API.
            api_env.update(_start_mailbox(supervisor, directory, logs, avoid=frozenset({api_port})))
        supervisor.start("ledger worker", ["worker", "--only", "ledger"], env, logs / "ledger-worker.log")
        supervisor.start("statistics worker", ["worker", "--only", "statistics"], env, logs / "statistics-worker.log")
        api_child = supervisor.start("api", ["api", "--port", str(api_port)], api_env, logs / "api.log")

        def keep_going() -> bool:
            return supervisor.poll() and not stop.is_set()

        engine = create_engine(endpoints.database_url)
        verify_timer: VerifyTimer | None = None
        try:
            _wait_ready(url, api_child, keep_going)
            if demo:
                from stats.areas import import_areas as load_areas

                load_areas(engine, DEMO_AREAS)
                with EventProducer(endpoints.kafka_bootstrap_servers, topic_prefix=settings.topic_prefix) as producer:
                    loaded = load_demo(producer, engine, console, keep_going)
                console.print(f"demo programme loaded through the event pipeline: {loaded} events")
                repository = LedgerRepository(engine)
                from timecredits.demo import volunteering

                who = volunteering()
                for volunteer in who.ids[:3]:
                    balance = repository.volunteer_balance(volunteer)
                    console.print(f"  {volunteer}: {format_credits(balance.available)} available, "
                                  f"{format_credits(balance.held)} held; member of {', '.join(who.orgs[volunteer])}")
                from timecredits.demo import PARTNERS
                from timecredits.demo_spend import print_spend_code, show_spend_code

                print_spend_code(console, show_spend_code(url, engine, who.ids[3:30], PARTNERS[1][0]))
                from timecredits.demo_loader import await_statistics

                await_statistics(engine, keep_going)
                from timecredits.demo_people import demo_sign_in_links

                console.print("sign-in links for the web app (each works once, within 15 minutes; "
                              "`timecredits people sign-in-link EMAIL` makes another):")
                for label, link in demo_sign_in_links(engine, url, who.ids[0]):
                    console.print(f"  {label}: {link}", soft_wrap=True)
            verify_once = _scheduled_verify(engine, status_file)
            verify_once(print_all=True)
            verify_timer = VerifyTimer(verify_once, settings.verify_interval_s)
            console.print(f"[bold]API: {url}[/bold]  (OpenAPI: {url}/docs)")
            console.print(f"[bold]admin token: {admin_token}[/bold]")
            if demo:
                lead_token, _ = create_token(engine, Role.LEAD, label="demo dashboard")
                console.print(f"[bold]lead token (sign in to the dashboard at {url}/): {lead_token}[/bold]")
            console.print("running; press Ctrl-C to stop")
            with EventProducer(endpoints.kafka_bootstrap_servers, topic_prefix=settings.topic_prefix) as producer:
                jobs = [(settings.waitlist_interval_s, lambda: _offer_places_once(engine, settings)),
                        (settings.hold_release_interval_s, lambda: _expire_holds_once(engine, producer, settings)),
                        (settings.sweep_interval_s, lambda: _sweep_once(engine, settings))]
                due = [0.0] * len(jobs)
                while keep_going():
                    for index, (interval_s, job) in enumerate(jobs):
                        if time.monotonic() >= due[index]:
                            job()
                            due[index] = time.monotonic() + interval_s
                    verify_timer.tick()
                    stop.wait(0.5)
        except (_Interrupted, LoadInterrupted) as exc:
            if supervisor.failure is None and not stop.is_set():
                raise
            if isinstance(exc, LoadInterrupted):
                console.print(f"[yellow]{exc}[/yellow]")
        finally:
            if verify_timer is not None:
                verify_timer.join(5.0)  # a run in progress: its queries end with the connections below
            engine.dispose()
            shut_down(supervisor, api_child, endpoints.kafka_bootstrap_servers, drain_groups(settings.topic_prefix),
                      embedded_broker="broker" in endpoints.embedded, drain_timeout_s=drain_timeout,
                      hurry=hurry.is_set)
    if supervisor.failure is not None:
        console.print(f"[red]stopped: {supervisor.failure}[/red]")
        raise typer.Exit(code=1)
    console.print("stopped")


def _offer_places_once(engine: Engine, settings: Settings) -> None:
    """One run of the waiting lists' offer job inside `up`; a failure is reported and the next run tries again."""
    from ledger.pg.waitlist import offer_places

    try:
        run = offer_places(engine, datetime.now(UTC), settings.waitlist_offer_hours)
    except Exception as exc:  # noqa: BLE001 - the job must not stop the programme; it runs again on the timer
        console.print(f"[yellow]waiting lists: offers not made this time ({type(exc).__name__}: {exc})[/yellow]")
        return
    for offer in run.offered:
        console.print(f"waiting list: a place on {offer.opportunity_id} offered to {offer.volunteer_id} "
                      f"until {offer.offered_until:%Y-%m-%d %H:%M} UTC")


def _scheduled_verify(engine: Engine, status_file: Path) -> Callable[..., None]:
    """One run of verify inside `up`: its result written for the API's metrics, and said when it differs from
    the run before (the first run in full). A run that fails to finish is reported and leaves the last result."""
    from timecredits.verify_status import VerifyStatus, write_status

    said: list[tuple[str | None, ...]] = []

    def run(print_all: bool = False) -> None:
        started = time.monotonic()
        try:
            report = verify_ledger(engine)
        except Exception as exc:  # noqa: BLE001 - the job must not stop the programme; it runs again on the timer
            console.print(f"[yellow]verify: not finished this time ({type(exc).__name__}: {exc})[/yellow]")
            return
        write_status(status_file, VerifyStatus.of(report, time.time(), time.monotonic() - started))
        problems = (report.problem, *(check.problem for check in report.checks))
        if print_all:
            _print_verify(report, heads=False)
        elif not said or said[-1] != problems:
            if report.ok:
                console.print("verify: ledger verified: every hash, link, sum and balance matches, and every "
                              "check holds")
            for name, problem in zip(report.results(), problems):
                if problem:
                    console.print(f"[red]verify: MISMATCH[/red] {name}: {problem}")
        said[:] = [problems]

    return run


def _expire_holds_once(engine: Engine, producer: EventProducer, settings: Settings) -> None:
    """One run of the hold-release job inside `up`; a failure is reported and the next run tries again."""
    from timecredits.expiry import expire_holds

    try:
        count = expire_holds(engine, producer, datetime.now(UTC), settings.hold_release_hours)
    except Exception as exc:  # noqa: BLE001 - the job must not stop the programme; it runs again on the timer
        console.print(f"[yellow]holds: lapsed bookings not released this time ({type(exc).__name__}: {exc})[/yellow]")
        return
    if count:
        console.print(f"holds: {count} bookings not attended within {settings.hold_release_hours:g} hours released")


def _sweep_once(engine: Engine, settings: Settings) -> None:
    """One run of the retention sweep inside `up`; a failure is reported and the next run tries again."""
    from timecredits.retention import SWEPT, sweep

    try:
        counts = sweep(engine, datetime.now(UTC), settings)
    except Exception as exc:  # noqa: BLE001 - the job must not stop the programme; it runs again on the timer
        console.print(f"[yellow]retention: nothing swept this time ({type(exc).__name__}: {exc})[/yellow]")
        return
    if any(counts.values()):
        console.print("retention: deleted " + ", ".join(f"{count} {SWEPT[name]}" for name, count in counts.items()
                                                        if count))


@app.command("sweep")
def sweep_command(data_dir: DataDir = None) -> None:
    """Run the retention sweep once (docs/design.md §5.15): delete idempotency keys, ended sessions, expired sign-in
    links, old sign-in requests, expired unused spend codes and wrong spend codes older than the TIMECREDITS_KEEP_*
    settings say."""
    from timecredits.retention import SWEPT, sweep

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        counts = sweep(engine, datetime.now(UTC), settings)
    for name, count in counts.items():
        console.print(f"{count} {SWEPT[name]} deleted")


@app.command("expire-holds")
def expire_holds_command(data_dir: DataDir = None) -> None:
    """Run the hold-release job once (docs/design.md §5.11): every booking neither attended nor cancelled within
    TIMECREDITS_HOLD_RELEASE_HOURS after its session gives its credits back. Finds a running `timecredits up` on
    the same data dir by itself, else uses DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS."""
    from producers.kafka import EventProducer
    from timecredits.expiry import expire_holds

    settings = get_settings()
    directory = _data_dir(settings, data_dir)
    bootstrap = _broker_of(settings, directory, "the releases")
    with _ledger_engine(settings, directory) as engine, \
            EventProducer(bootstrap, topic_prefix=settings.topic_prefix) as producer:
        count = expire_holds(engine, producer, datetime.now(UTC), settings.hold_release_hours)
    console.print(f"{count} bookings not attended within {settings.hold_release_hours:g} hours of their session "
                  "released: their credits go back to the volunteers once the ledger worker applies them")


@app.command("waitlist-offers")
def waitlist_offers(data_dir: DataDir = None) -> None:
    """Run the waiting lists' offer job once (docs/design.md §5.8): lapse offers whose time ran out, then offer
    each full opportunity's freed places to the first volunteers waiting, for TIMECREDITS_WAITLIST_OFFER_HOURS."""
    from ledger.pg.waitlist import offer_places

    settings = get_settings()
    with _ledger_engine(settings, _data_dir(settings, data_dir)) as engine:
        run = offer_places(engine, datetime.now(UTC), settings.waitlist_offer_hours)
    for opportunity_id, volunteer_id in run.lapsed:
        console.print(f"lapsed: the place on {opportunity_id} held for {volunteer_id}")
    for offer in run.offered:
        console.print(f"offered: a place on {offer.opportunity_id} to {offer.volunteer_id} "
                      f"until {offer.offered_until:%Y-%m-%d %H:%M} UTC")
    console.print(f"{len(run.lapsed)} offers lapsed, {len(run.offered)} made")


if __name__ == "__main__":
    app()
