"""The `mcp-memalpha` command: serve, token, demo, export, import, doctor, compact, eval-retrieval, hooks.

Imports stay light here (click, pydantic): `--help` and the stdio handshake must be fast, and
heavy modules (LanceDB, the embedding model) load only when a command needs them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from mcp_memalpha import __version__
from mcp_memalpha.launch import launch_command as launch_command  # re-exported: tests and benchmarks spawn with it
from mcp_memalpha.settings import Settings
from mcp_memalpha.validation import validation_problems

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcp_memalpha.access import AccessList


def _settings(**options: Any) -> Settings:
    """Settings from the command line over `MEMALPHA_*` variables; errors name the option."""
    given = {key: value for key, value in options.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problem = validation_problems(exc)[0]
        field = str(problem.loc[0]) if problem.loc else "settings"
        hint = f"--{field.replace('_', '-')}"
        raise click.BadParameter(problem.message, param_hint=hint) from None


def _logging(level: str) -> None:
    # stderr only: on the stdio transport stdout carries the protocol and nothing else.
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder [env MEMALPHA_DATA_DIR; default: the per-user data folder].",
)
namespace_option = click.option(
    "--namespace", default=None, help="Namespace to act in [env MEMALPHA_NAMESPACE; default 'default']."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcp-memalpha")
def main() -> None:
    """A long-term memory (core, episodic, semantic) for MCP clients."""
    from mcp_memalpha.files import private_umask

    private_umask()  # what any command writes (the ledger's WAL, the index, export -o) is the user's only


def policy_options(command: Any) -> Any:
    """The curator's options, shared by `serve` and `worker`."""
    options = [
        click.option(
            "--policy",
            default=None,
            metavar="default|untrained|PATH|off",
            help="Curator model behind the memorize tools: 'default' (embedded SmolLM2 with its trained adapter "
            "when one ships), 'untrained' (SmolLM2 alone), a GGUF model or LoRA adapter file, or 'off' (no "
            "memorize tools) [env MEMALPHA_POLICY; default off]. Needs the 'policy' extra.",
        ),
        click.option(
            "--policy-format",
            default=None,
            help="Wire format of the curator model's tool calls [env MEMALPHA_POLICY_FORMAT; default: chosen "
            "for the model].",
        ),
        click.option(
            "--policy-prompt",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="JSON file with the memalpha format's instruction texts, e.g. the paper's (docs/curator.md) "
            "[env MEMALPHA_POLICY_PROMPT; default: the project's own].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


log_level_option = click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default=None,
    help="[default INFO]",
)


def _check_policy(settings: Settings, needs_llama: bool) -> None:
    """Refuse a curator this process cannot run, before anything starts."""
    if settings.policy_prompt is not None:
        _check_policy_prompt(settings.policy_prompt)
    if needs_llama and not policy_runtime_installed():
        raise click.BadParameter(
            f"{settings.policy!r} needs llama.cpp, which is not installed: pip install 'mcp-memalpha[policy]' "
            "(or serve without --policy, or with --no-curation and a worker elsewhere)",
            param_hint="--policy",
        )


@main.command()
@data_dir_option
@namespace_option
@click.option(
    "--database-url",
    default=None,
    help="PostgreSQL ledger shared by several servers (postgresql://…; the 'postgres' extra) "
    "[env MEMALPHA_DATABASE_URL; default: memory.db in the data folder].",
)
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    envvar="MEMALPHA_TRANSPORT",
    help="stdio for clients that launch the server; http for streamable HTTP at /mcp.",
)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="MEMALPHA_HOST", help="HTTP bind address.")
@click.option("--port", default=8765, show_default=True, type=int, envvar="MEMALPHA_PORT", help="HTTP port.")
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTTP: access tokens (TOML/JSON), required to serve a non-loopback address [env MEMALPHA_AUTH_FILE].",
)
@click.option(
    "--allowed-origins",
    default=None,
    help="HTTP: comma-separated browser origins allowed to call [env MEMALPHA_ALLOWED_ORIGINS; default loopback].",
)
@click.option("--max-request-bytes", type=int, default=None, help="HTTP: largest request body [default 1 MiB].")
@click.option(
    "--rate-limit-per-minute", type=int, default=None, help="HTTP: requests per minute per token [default 600]."
)
@click.option("--core-capacity-tokens", type=int, default=None, help="Core memory capacity [default 512].")
@log_level_option
@policy_options
@click.option(
    "--curation/--no-curation",
    default=None,
    help="With --policy: run the memorize jobs in this server (loading the model), or only queue them for "
    "`mcp-memalpha worker` processes on the same data, needing no llama.cpp here [env MEMALPHA_CURATION; "
    "default: run them].",
)
@click.option(
    "--stateless",
    "http_stateless",
    flag_value=True,
    default=None,
    help="HTTP: keep no session between requests, so any server on the same data (a replica behind a load "
    "balancer) answers any request [env MEMALPHA_HTTP_STATELESS].",
)
@click.option(
    "--index-poll-seconds",
    type=float,
    default=None,
    help="Catch the search index up with other processes' writes this often, in the background (replicas) "
    "[env MEMALPHA_INDEX_POLL_SECONDS; default: only after own writes and before searches].",
)
@click.option(
    "--health-max-index-lag",
    type=int,
    default=None,
    help="HTTP: /healthz answers 503 when the search index is more than this many operations behind the "
    "ledger [env MEMALPHA_HEALTH_MAX_INDEX_LAG; default: lag reported only].",
)
def serve(transport: str, host: str, port: int, **options: Any) -> None:
    """Run the MCP server (stdio by default)."""
    settings = _settings(**options)
    _check_policy(settings, needs_llama=settings.curates_here)
    _logging(settings.log_level)
    access = _http_access(settings, host) if transport == "http" else None
    _check_data_dir(settings)
    from mcp_memalpha.files import warn_if_exposed

    for path, what in ((settings.data_dir, "data directory"), (settings.ledger_path, "memory database")):
        warn_if_exposed(path, what)
    if settings.auth_file is not None:
        warn_if_exposed(settings.auth_file, "auth file")
    from mcp_memalpha.server import build_server

    server = build_server(settings, open_on_demand=transport == "stdio")
    if transport == "stdio":
        server.run("stdio")
    else:
        _serve_http(server, settings, access, host, port)


@main.command()
@data_dir_option
@policy_options
@log_level_option
@click.option(
    "--once", is_flag=True, help="Run every job that is runnable now, then exit (instead of waiting for more)."
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.05, max=3600),
    default=1.0,
    show_default=True,
    help="How often the queue is checked for jobs left by a dead worker, and for new ones on SQLite "
    "(on PostgreSQL a new job wakes the worker at once).",
)
def worker(once: bool, poll_seconds: float, **options: Any) -> None:
    """Run the curator on the memorize jobs queued on the data (by servers started with --no-curation).

    Any number of workers may share one queue: each job is claimed by one of them under a lease,
    and applied exactly once (docs/architecture.md, "Memorize jobs").
    """
    settings = _settings(**options)
    if not settings.policy_on:
        raise click.BadParameter(
            "a worker runs the curator: name its model, 'default' or a GGUF file", param_hint="--policy"
        )
    _check_policy(settings, needs_llama=True)
    _logging(settings.log_level)
    _check_data_dir(settings)
    from mcp_memalpha.curation import run_worker

    with _sigterm_as_interrupt():
        error = run_worker(settings, poll_seconds=poll_seconds, until_idle=once)
    if error is not None:
        raise click.ClickException(f"the curator model {settings.policy!r} could not be loaded: {error}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a supervisor stopping the process) ends the block as Ctrl-C does, so what is running
    is handed back cleanly instead of waiting out its lease."""
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _existing_memory(data_dir: Path | None, **options: Any) -> Settings:
    """Settings for a command that works on a memory that must already exist (doctor, compact,
    export): one that does not is an error, never a new empty memory."""
    settings = _settings(data_dir=data_dir, **options)
    if settings.database_url is None and not settings.ledger_path.exists():
        raise click.ClickException(f"no memory at {settings.data_dir} (no memory.db)")
    _check_data_dir(settings)
    return settings


def _check_data_dir(settings: Settings) -> None:
    """Open the ledger once before serving: a data directory that cannot be created, read or
    written stops the command with one line saying why, not a traceback from inside the server."""
    from mcp_memalpha.errors import StorageError
    from mcp_memalpha.store import ledger_for

    try:
        ledger_for(settings).open().close()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


def _http_access(settings: Settings, host: str) -> AccessList | None:
    """The tokens of the auth file, checked now; refuses a non-loopback address without them."""
    from mcp_memalpha.access import AuthFileError, load_access_list

    if settings.auth_file is None:
        if not _is_loopback(host):
            raise click.BadParameter(
                f"{host} is not a loopback address, and serving one needs access tokens: make one with "
                "`mcp-memalpha token new`, put its entry in a token file and pass --auth-file "
                "(or MEMALPHA_AUTH_FILE); see README 'Security'",
                param_hint="--host",
            )
        return None
    try:
        return load_access_list(settings.auth_file)
    except AuthFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--auth-file") from None


def _serve_http(server: MCPServer[Any], settings: Settings, access: AccessList | None, host: str, port: int) -> None:
    from mcp_memalpha.connections import serve as serve_guarded
    from mcp_memalpha.http_security import secure_app

    app = secure_app(server, settings, access, host)
    who = (
        f"{len(access.grants)} access tokens"
        if access
        else f"no auth file: loopback only, namespace {settings.namespace!r}"
    )
    logging.getLogger(__name__).info("serving http://%s:%d/mcp (%s)", host, port, who)
    serve_guarded(app, settings, host, port)


def _check_policy_prompt(path: Path) -> None:
    """Read the texts once before serving, so a bad file stops the command with its reason."""
    from mcp_memalpha.curation import read_policy_prompt

    try:
        read_policy_prompt(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy-prompt") from None


def policy_runtime_installed() -> bool:
    """Whether llama.cpp's bindings are installed, found without importing them (that takes seconds)."""
    return importlib.util.find_spec("llama_cpp") is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.group()
def token() -> None:
    """Access tokens for the HTTP transport."""


@token.command("new")
@click.option("--name", required=True, help="Name of the token in the auth file (and in logs).")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    required=True,
    help="A namespace the token may read and write; repeat for more (the first is its default).",
)
@click.option("--rate-limit-per-minute", type=int, default=None, help="Its own rate [default: the server's].")
def token_new(name: str, namespaces: tuple[str, ...], rate_limit_per_minute: int | None) -> None:
    """Print a fresh token, and the entry (its SHA-256 only) to paste into the auth file."""
    from mcp_memalpha.access import AuthFileError, auth_file_entry, new_token

    secret = new_token()
    try:
        entry = auth_file_entry(name, secret, list(namespaces), rate_limit_per_minute)
    except AuthFileError as exc:
        field, _, reason = str(exc).partition(": ")
        option = {"namespaces": "--namespace"}.get(field, "--" + field.replace("_", "-"))
        raise click.BadParameter(reason, param_hint=option) from None
    click.echo(f"# the token: give it to the client (Authorization: Bearer <token>); it is stored nowhere\n{secret}\n")
    click.echo(f"# the entry for the auth file (TOML; it holds only the token's SHA-256)\n{entry}", nl=False)


@main.command("export")
@data_dir_option
@click.option("--namespace", default=None, help="Export only this namespace [default: all].")
@click.option("--include-deleted", is_flag=True, help="Also export deleted memories (tombstones).")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="File to write [stdout].")
def export_command(data_dir: Path | None, namespace: str | None, include_deleted: bool, output: Any) -> None:
    """Write the memory as JSON Lines (every field)."""
    from mcp_memalpha.memory import Memory
    from mcp_memalpha.transfer import export_jsonl

    settings = _existing_memory(data_dir, namespace=namespace)
    with Memory(settings) as memory:
        count = export_jsonl(memory, output, namespace, include_deleted)
    click.echo(f"exported {count} records from {settings.data_dir}", err=True)


@main.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@data_dir_option
@click.option(
    "--from",
    "peer",
    type=click.Choice(["mcp-memalpha", "server-memory", "mem0"]),
    default="mcp-memalpha",
    show_default=True,
    help="What wrote the file: our own export, the official memory server's memory.jsonl, or a mem0/OpenMemory "
    "export (zip, memories.json or a get_all() dump).",
)
@click.option("--namespace", default=None, help="--from a peer: the namespace to import into [default 'default'].")
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "skip", "replace"]),
    default=None,
    help="What to do with an id that already exists with different content [default: error; skip --from a peer, "
    "whose memories keep their ids, so importing its file again adds only what is new].",
)
def import_command(
    source: Path, data_dir: Path | None, peer: str, namespace: str | None, on_conflict: str | None
) -> None:
    """Load a JSON Lines export, or another memory server's file (all of it, or nothing on any error)."""
    from mcp_memalpha.errors import MemalphaError
    from mcp_memalpha.memory import Memory
    from mcp_memalpha.transfer import import_jsonl

    settings = _settings(data_dir=data_dir, namespace=namespace)
    conflict = on_conflict or ("error" if peer == "mcp-memalpha" else "skip")
    lines = _import_lines(source, peer, settings.namespace)
    with Memory(settings) as memory:
        try:
            report = import_jsonl(memory, lines, conflict)  # type: ignore[arg-type]
        except MemalphaError as exc:
            raise click.ClickException(f"nothing was imported: {exc}") from None
        memory.sync_index()
    click.echo(
        f"imported into {settings.data_dir}: {report.items_added} added, {report.items_replaced} replaced, "
        f"{report.items_unchanged} unchanged, {report.items_skipped} skipped, {report.cores_written} core",
        err=True,
    )


def _import_lines(source: Path, peer: str, namespace: str) -> list[str]:
    """The lines to import, read whole: a file that cannot be read is one line of error, not a traceback."""
    from mcp_memalpha.errors import InvalidArgument
    from mcp_memalpha.peers import peer_export_lines

    try:
        if peer != "mcp-memalpha":
            return peer_export_lines(peer, source, namespace)  # type: ignore[arg-type]
        return (sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")).splitlines()
    except InvalidArgument as exc:
        raise click.ClickException(f"nothing was imported: {source}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"nothing was imported: {source} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise click.ClickException(f"nothing was imported: cannot read {source} ({exc.strerror})") from None


@main.command()
@data_dir_option
@click.option("--repair", is_flag=True, help="Rebuild the search index if it disagrees with the ledger.")
def doctor(data_dir: Path | None, repair: bool) -> None:
    """Check a data directory (ledger integrity, index against ledger); exit 1 on problems."""
    from mcp_memalpha.doctor import diagnose
    from mcp_memalpha.memory import Memory

    settings = _existing_memory(data_dir)
    with Memory(settings) as memory:
        report = diagnose(memory, repair)
    click.echo(report.render())
    if not report.healthy and not report.repaired and not report.ledger_damaged:
        click.echo("run `mcp-memalpha doctor --repair` to rebuild the search index", err=True)
    sys.exit(0 if report.healthy else 1)


@main.command()
@data_dir_option
@click.option(
    "--history-versions",
    type=click.IntRange(min=1),
    default=None,
    help="Versions of each memory to keep in its history [default: MEMALPHA_HISTORY_VERSIONS; unset keeps all].",
)
@click.option(
    "--undo-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Keep finished memorize jobs (and their undo) this many days [default: MEMALPHA_UNDO_DAYS, 7].",
)
@click.option("--vacuum", is_flag=True, help="Then rewrite memory.db to give the freed space back to the disk.")
def compact(data_dir: Path | None, history_versions: int | None, undo_days: float | None, vacuum: bool) -> None:
    """Compact the operation log and drop old finished memorize jobs (see README 'Limits')."""
    from mcp_memalpha.memory import Memory

    settings = _existing_memory(data_dir)
    with Memory(settings) as memory:
        on_file = settings.database_url is None
        size = settings.ledger_path.stat().st_size if on_file else 0
        click.echo(memory.compact(history_versions, undo_days).render())
        if vacuum:
            memory.ledger.vacuum()
            if on_file:
                click.echo(f"memory.db: {size / 1e6:.1f} MB -> {settings.ledger_path.stat().st_size / 1e6:.1f} MB")


@main.command()
@click.option(
    "--from",
    "source",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Data folder whose SQLite ledger (memory.db) to copy.",
)
@click.option("--to", "target", required=True, help="PostgreSQL URL of an empty database (postgresql://…).")
def migrate(source: Path, target: str) -> None:
    """Copy a SQLite memory into PostgreSQL, losslessly (versions, history, jobs, the ledger's identity)."""
    from mcp_memalpha.errors import InvalidArgument, StorageError
    from mcp_memalpha.store import ledger_for
    from mcp_memalpha.store.copy import copy_ledger

    origin = _settings(data_dir=source).model_copy(update={"database_url": None})  # the file, whatever the env says
    if not origin.ledger_path.exists():
        raise click.ClickException(f"no memory at {source} (no memory.db)")
    destination = _settings(data_dir=source, database_url=target)
    try:
        with _opened(ledger_for(origin)) as sqlite, _opened(ledger_for(destination)) as postgres:
            click.echo(copy_ledger(sqlite, postgres).render())
    except InvalidArgument as exc:
        raise click.BadParameter(str(exc).removeprefix("to: "), param_hint="--to") from None
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serve it with --database-url (or MEMALPHA_DATABASE_URL); {source}/index stays valid for it")


@contextmanager
def _opened(ledger: Any) -> Iterator[Any]:
    ledger.open()
    try:
        yield ledger
    finally:
        ledger.close()


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo memory here [default: a temporary folder, removed afterwards].",
)
def demo(data_dir: Path | None) -> None:
    """Store a short conversation through the MCP tools, show the memory, answer questions."""
    from mcp_memalpha.demo import run_demo

    run_demo(data_dir)


@main.command("eval-retrieval")
@click.option(
    "--locomo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="LoCoMo JSON (a list of conversations), e.g. ../shared/data/locomo/locomo_dev.json.",
)
@click.option("--methods", default="hybrid,bm25,vector", show_default=True, help="search_method values to compare.")
@click.option("--ks", default="5,10,20", show_default=True, help="Cut-offs k to report.")
@click.option("--limit", type=int, default=None, help="Only the first N conversations (smoke runs).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
def eval_retrieval(locomo: Path, methods: str, ks: str, limit: int | None, output: Path | None) -> None:
    """Retrieval quality on LoCoMo through the MCP tools of a spawned server."""
    from mcp_memalpha.retrieval_eval import run_eval

    report = run_eval(locomo, methods.split(","), [int(k) for k in ks.split(",")], limit)
    click.echo(report)
    if output is not None:
        output.write_text(report + "\n")


@contextmanager
def _refusals_as_errors() -> Iterator[None]:
    """A refusal from the memory (a MemalphaError) as click's one-line error, not a traceback."""
    from mcp_memalpha.errors import MemalphaError

    try:
        yield
    except MemalphaError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def hooks() -> None:
    """Agent hooks: the memory at session start, the conversation into memory at its end."""


scope_option = click.option(
    "--user/--project",
    "user",
    default=True,
    help="The user's settings (~/.claude/settings.json, every project) or this project's (.claude/settings.json).",
)


def _claude_settings_file(user: bool) -> Path:
    return (Path.home() if user else Path.cwd()) / ".claude" / "settings.json"


@hooks.command("install")
@click.argument("agent", type=click.Choice(["claude-code"]))
@scope_option
@data_dir_option
@namespace_option
@click.option(
    "--memorize",
    is_flag=True,
    help="Forward the conversation to the curator's memorize queue (worked by a `serve --policy` on the same "
    "data folder) instead of storing it verbatim [default: verbatim, unless MEMALPHA_POLICY names a curator].",
)
def hooks_install(agent: str, user: bool, data_dir: Path | None, namespace: str | None, memorize: bool) -> None:
    """Add SessionStart, PreCompact and SessionEnd hooks to Claude Code's settings."""
    from mcp_memalpha.hooks import hook_command, install

    settings = _settings(data_dir=data_dir, namespace=namespace)
    # The hooks act on the memory named here, whatever the environment Claude Code runs them in.
    options = ["--data-dir", str(settings.data_dir.resolve()), "--namespace", settings.namespace]
    options += ["--memorize"] if memorize else []
    with _refusals_as_errors():
        click.echo(install(settings, _claude_settings_file(user), hook_command(launch_command(), options)))


@hooks.command("uninstall")
@click.argument("agent", type=click.Choice(["claude-code"]))
@scope_option
@data_dir_option
def hooks_uninstall(agent: str, user: bool, data_dir: Path | None) -> None:
    """Remove exactly the hook entries `hooks install` added."""
    from mcp_memalpha.hooks import uninstall

    with _refusals_as_errors():
        click.echo(uninstall(_settings(data_dir=data_dir), _claude_settings_file(user)))


@hooks.command("run")
@click.argument("agent", type=click.Choice(["claude-code"]))
@data_dir_option
@namespace_option
@click.option(
    "--memorize",
    is_flag=True,
    help="Forward the conversation to the curator's memorize queue (worked by a `serve --policy` on the same "
    "data folder) instead of storing it verbatim [default: verbatim, unless MEMALPHA_POLICY names a curator].",
)
def hooks_run(agent: str, data_dir: Path | None, namespace: str | None, memorize: bool) -> None:
    """What an installed hook runs: reads the hook's JSON payload on stdin."""
    from mcp_memalpha.hooks import run_hook

    settings = _settings(data_dir=data_dir, namespace=namespace)
    with _refusals_as_errors():
        output, note = run_hook(settings, sys.stdin.read(), memorize or settings.policy_on)
    if output:
        click.echo(output)
    if note:
        click.echo(note, err=True)


# Training commands live in training/cli.py (the `eval`/`train` extras). Each is forwarded only
# when invoked, so the server's CLI and its stdio handshake never import training or torch.
def _training_command(name: str, attribute: str, summary: str) -> None:
    @main.command(name, help=summary, context_settings={"ignore_unknown_options": True}, add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def forward(args: tuple[str, ...]) -> None:
        import importlib

        command = getattr(importlib.import_module("mcp_memalpha.training.cli"), attribute)
        command.main(list(args), prog_name=f"mcp-memalpha {name}")


_training_command("eval", "eval_command", "Evaluate curators against the paper's baselines (see docs/training.md).")
_training_command("train", "train_command", "GRPO training of a curator from a TOML config (train extra).")
_training_command("export-gguf", "export_gguf_command", "Export a trained curator to GGUF for --policy (train extra).")


if __name__ == "__main__":
    main()
