"""The ``nbcore`` command line."""
import argparse
import json
import math
import os
import select
import sys
from pathlib import Path

from .. import __version__
from ..errors import NbcoreError, RemoteError, RemoteTraceback, UserError
from ..log import WARNING
from ..log import configure as configure_logging


def _common(parser, configs=False):
    if configs:
        parser.add_argument("-c", "--config", action="append", default=[], help="a configuration file whose "
                            "environments stay (repeatable; default: NBCORE_CONFIG, then ./nbcore.yaml)")
    else:
        parser.add_argument("-c", "--config", help="configuration file (default: NBCORE_CONFIG, then ./nbcore.yaml)")
    parser.add_argument("--backend", help="backend to use (overrides NBCORE_BACKEND and the config)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    return parser


def _json_flag(parser):
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parser


def _days(text):
    """A number of days for ``--older-than``: finite and not negative."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError("%r is not a number of days; use a number of 0 or more, e.g. 30" % text)
    return value


def build_parser():
    common = _common(argparse.ArgumentParser(add_help=False))
    parser = argparse.ArgumentParser(prog="nbcore", description="Run Python code in isolated environments.")
    parser.add_argument("--version", action="version", version="nbcore " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, help_text, options=common):
        return sub.add_parser(name, help=help_text, description=help_text, parents=[options])

    _json_flag(command("plugins", "list installed plugins and what they provide"))
    _json_flag(command("backends", "list backends and whether they are available here"))
    _json_flag(command("protocols", "list protocols and whether they are available here"))
    envs = _json_flag(command("envs", "list installed environments"))
    envs.add_argument("--all", action="store_true", help="also list unfinished environments")
    install = _json_flag(command("install", "create an environment (no-op when it is ready)"))
    install.add_argument("env")
    install.add_argument("--force", action="store_true", help="rebuild even if ready")
    install.add_argument("--rebuild", action="store_true",
                         help="choose the backend afresh, ignoring ready builds on other backends (e.g. after "
                              "installing a plugin), and build there")
    lock = command("lock", "write a lock file of an environment (installed first when needed)")
    lock.add_argument("env")
    lock.add_argument("-o", "--output", help="lock file to write (default: ./ENV.lock)")
    shell = command("shell", "open a shell (or run CMD) inside an environment")
    shell.add_argument("env")
    shell.epilog = "Everything after -- is the command to run (default: an interactive shell)."
    call = _json_flag(command("call", "call module:function inside an environment and print the result"))
    call.add_argument("env")
    call.add_argument("target", metavar="module:function")
    call.add_argument("--args", default="[]", help="positional arguments as a JSON list (@FILE: read it from FILE, "
                      "-: from standard input)")
    call.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object (@FILE or - as for --args)")
    call.add_argument("--protocol", help="protocol list (overrides NBCORE_PROTOCOL)")
    bench = _json_flag(command("bench", "measure latency, frame transfer and start time"))
    bench.add_argument("env", nargs="?", help="environment (default: an empty spec on the chosen backend)")
    bench.add_argument("--protocol", help="protocol list (overrides NBCORE_PROTOCOL)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (for smoke tests)")
    bench.add_argument("--sizes", action="store_true",
                       help="also sweep message sizes 1 KB .. 256 MB for the fallback protocol and each installed upgrade")
    bench.add_argument("--plot", metavar="FILE.png", help="draw the sweep's throughput against size (implies --sizes; "
                       "needs matplotlib)")
    _json_flag(command("doctor", "show what is installed, what is missing and how to fix it"))
    gc = _json_flag(command("gc", "remove environments the given configs made obsolete",
                            _common(argparse.ArgumentParser(add_help=False), configs=True)))
    gc.add_argument("--unreferenced", action="store_true",
                    help="also remove every environment no given config describes (other projects' too)")
    gc.add_argument("--older-than", type=_days, metavar="DAYS",
                    help="also remove every environment not opened for DAYS days")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed, with sizes")
    push = _json_flag(command("push", "build an environment's image when needed and push it to a registry"))
    push.add_argument("env", nargs="?", help="the environment (or --all)")
    push.add_argument("--all", action="store_true", help="every environment of the config")
    push.add_argument("--registry", help="the registry to push to (default: NBCORE_REGISTRY, the env's, the config's)")
    push.add_argument("--skip-existing", action="store_true", help="leave images the registry already has alone")
    return parser


def _print_table(rows, columns):
    widths = [max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths)).rstrip())


def _emit(args, data, rows=None, columns=None):
    if args.json:
        print(json.dumps(_json_ready(data), indent=2, allow_nan=False), file=args.document)
    elif rows is not None:
        _print_table(rows, columns)


def _json_ready(value):
    """``value`` as plain JSON data: NaN and infinities become null, keys strings, the rest lists or text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, dict):
        return {_json_key(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _json_ready(value.tolist())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return repr(value)


def _json_key(key):
    """A dict key as JSON has it: strings stay, numbers, booleans and None as JSON writes them, others as JSON text."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (int, float)):
        return json.dumps(_json_ready(key))
    return json.dumps(_json_ready(key), separators=(", ", ": "))


def cmd_plugins(args):
    from ..plugin.registry import get_registry

    registry = get_registry()
    data = [dict(vars(p), features={b: sorted(registry.backends[b].features) for b in p.backends})
            for p in registry.plugins.values()]
    rows = [dict(d, provides=", ".join(d["backends"] + d["protocols"]),
                 kind="built-in" if d["builtin"] else "plugin") for d in data]
    _emit(args, data, rows, ["name", "distribution", "version", "kind", "provides"])


def cmd_backends(args):
    from ..plugin.registry import get_registry

    registry = get_registry()
    data = []
    for name, provider in sorted(registry.backends.items()):
        reason = provider.check_available()
        plugin = registry.plugin_of("backend", name)
        data.append({"name": name, "plugin": plugin.distribution or plugin.name, "available": reason is None,
                     "reason": reason or "", "description": provider.description,
                     "features": sorted(provider.features)})
    for name in registry.absent("backend"):
        hint = registry.hint(name)
        data.append({"name": name, "plugin": None, "available": False, "reason": "not installed (%s)" % hint,
                     "hint": hint, "description": "", "features": []})
    _emit(args, data, data, ["name", "plugin", "available", "reason"])


def cmd_protocols(args):
    from ..plugin.registry import get_registry
    from ..host.selection import protocol_list

    registry = get_registry()
    order = protocol_list(registry)
    data = []
    for name, provider in sorted(registry.protocols.items()):
        reason = provider.check_available()
        plugin = registry.plugin_of("protocol", name)
        data.append({"name": name, "plugin": plugin.distribution or plugin.name, "available": reason is None,
                     "reason": reason or "", "in_list": name in order, "description": provider.description})
    if args.json:
        _emit(args, {"protocol_list": order, "protocols": data})
    else:
        print("protocol list: %s (first = fallback)" % ",".join(order))
        _print_table(data, ["name", "plugin", "available", "reason"])


def cmd_envs(args):
    records, columns = _listed_environments(args.backend)
    data = [e for e in records if e["ready"] or args.all]
    rows = [dict(e, size="%.1f MB" % (e["bytes"] / 1e6), hash=(e["hash"] or "")[:12]) for e in data]
    _emit(args, data, rows, columns + ["name", "backend", "hash", "ready", "size", "path"])


def _listed_environments(backend):
    """``(records, leading columns)``: the local store's environments; with ``--backend NAME`` that backend's
    own listing when it has one (the nodes of a cluster), else the local store's environments of it."""
    from ..home import nbcore_home
    from ..plugin.store import list_environments
    from ..plugin.registry import get_registry, missing_hint

    if not backend:
        return list_environments(nbcore_home()), []
    provider = get_registry().backends.get(backend)
    if provider is None:
        raise UserError("unknown backend %r%s; `nbcore backends` lists them" % (backend, missing_hint(backend)))
    listed = provider.list_environments()
    if listed is None:
        return [e for e in list_environments(nbcore_home()) if e["backend"] == backend], []
    return listed, list(provider.environment_columns)


def cmd_install(args):
    from ..host.launch import prepare
    from ..plugin.progress import Progress
    from ..plugin.store import ensure_installed

    on_event = None
    if args.json:  # JSON Lines: one event per line as it happens, the outcome last
        def on_event(event):
            print(json.dumps(event), file=args.document, flush=True)

    config, provider, env = prepare(args.env, args.config, args.backend, install=False, announce=_say,
                                    prefer_built=not args.rebuild)
    built = ensure_installed(provider, env, Progress(on_event=on_event), force=args.force)
    if on_event is not None:
        on_event({"event": "done", "env": env.name, "backend": provider.name, "path": str(env.path), "built": built})
    if not built:
        print("nbcore: environment %s (%s) is already installed at %s" % (env.name, provider.name, env.path), file=sys.stderr)


def cmd_lock(args):
    from ..host.launch import prepare
    from ..plugin.progress import Progress

    config, provider, env = prepare(args.env, args.config, args.backend, feature="lock")
    path = Path(args.output or "%s.lock" % env.name).resolve()
    provider.lock(env, path, Progress())


def cmd_shell(args):
    from ..plugin.backend import WorkerLaunch
    from ..host.launch import prepare, staged_worker_path

    config, provider, env = prepare(args.env, args.config, args.backend, feature="shell")
    command = args.command_after_dashes
    launch = WorkerLaunch(worker_path=staged_worker_path(), cwd=Path.cwd(), variables={})
    try:
        return provider.shell(env, command, launch)
    except (FileNotFoundError, PermissionError) as exc:
        program = command[0] if command else os.environ.get("SHELL") or "/bin/sh"  # BackendProvider.shell's default
        if exc.filename not in (program, None):  # not the command itself (the engine's own binary, say)
            raise
        found = isinstance(exc, PermissionError)
        print("nbcore: error: %s: %s in %s" % (program, "permission denied" if found else "command not found", env.name),
              file=sys.stderr)
        return 126 if found else 127


def _argument_text(text, what):
    """The text of ``--args``/``--kwargs``: the value itself, ``@FILE``'s content, or standard input for ``-``."""
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise UserError("%s %s: cannot read %s: %s" % (what, text, text[1:], exc.strerror)) from None
    return text


def _parse_json(text, what):
    try:
        return json.loads(_argument_text(text, what))
    except json.JSONDecodeError as exc:
        raise UserError("%s is not valid JSON: %s" % (what, exc)) from None


def _say(line):
    print("nbcore: " + line, file=sys.stderr)


def cmd_call(args):
    from ..host.launch import prepare, start

    if args.args == args.kwargs == "-":
        raise UserError("--args and --kwargs cannot both read standard input: give one of them as @FILE")
    call_args = _parse_json(args.args, "--args")
    call_kwargs = _parse_json(args.kwargs, "--kwargs")
    if not isinstance(call_args, list) or not isinstance(call_kwargs, dict):
        raise UserError("--args must be a JSON list and --kwargs a JSON object")
    config, provider, environment = prepare(args.env, args.config, args.backend, announce=_say, announce_news_only=True)
    with start(config, provider, environment, args.protocol) as env:
        result = env.call(args.target, *call_args, **call_kwargs)
        if args.json:
            _emit(args, {"result": result, "backend": env.backend, "protocol": env.protocol})
        else:
            print(result)


def cmd_bench(args):
    from .bench import run_bench

    result = run_bench(args.env, args.config, args.backend, args.protocol, quick=args.quick)
    if args.sizes or args.plot:
        from .bench import plot_sweep, run_sweep

        result["sweep"] = run_sweep(args.env, args.config, args.backend, quick=args.quick)
        if args.plot:
            plot_sweep(result["sweep"], args.plot, result)
    if args.json:
        _emit(args, result)
    else:
        from .bench import format_report, format_sweep

        print(format_report(result))
        if "sweep" in result:
            print(format_sweep(result["sweep"]))


def cmd_doctor(args):
    from .doctor import diagnose, format_diagnosis

    data = diagnose(args.config)
    if args.json:
        _emit(args, data)
    else:
        print(format_diagnosis(data))


def cmd_gc(args):
    from .gc import collect_garbage, format_bytes

    removed = collect_garbage(args.config, unreferenced=args.unreferenced, older_than_days=args.older_than,
                              dry_run=args.dry_run)
    if args.json:
        _emit(args, removed)
    else:
        verb = "would remove" if args.dry_run else "removed"
        for env in removed:
            print("%s %s (%s, %s, %s) %s" % (verb, env["name"], env["backend"], env["reason"],
                                              format_bytes(env["bytes"]), env["path"]))
        print("%d environment(s) %s (%s)" % (len(removed), "would be removed" if args.dry_run else "removed",
                                             format_bytes(sum(e["bytes"] for e in removed))))


def cmd_push(args):
    from ..host.launch import prepare, resolve_config
    from ..plugin.store import ensure_installed
    from ..plugin.progress import Progress
    from ..plugin.registry import get_registry

    if bool(args.env) == args.all:
        raise UserError("nbcore push needs an environment name or --all (not both)")
    config = resolve_config(args.config, get_registry())
    names = sorted(config.environments) if args.all else [args.env]
    pushed = []
    for name in names:
        _, provider, env = prepare(name, config, args.backend, install=False, feature="publish")
        progress = Progress()
        ensure_installed(provider, env, progress)
        pushed.append(provider.publish(env, args.registry, progress, skip_existing=args.skip_existing))
    if args.json:
        _emit(args, pushed)
    else:
        for item in pushed:
            print("%s %s %s (%s)" % ("skipped" if item["skipped"] else "pushed", item["name"], item["image"],
                                     item["digest"]))


COMMANDS = {name[4:]: fn for name, fn in globals().items() if name.startswith("cmd_")}


def _document_stream(args):
    """Where the command's JSON document goes: standard output.  With ``--json`` it carries the document alone:
    from here to the end of the program fd 1 is moved to a new descriptor for the document, and whatever else
    writes to standard output (``print``, an engine's log forwarding, a child process inheriting it) reaches stderr."""
    if not getattr(args, "json", False):
        return sys.stdout
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a capture): nothing below the stream to move
        return sys.stdout
    document = os.fdopen(os.dup(fd), "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors)
    os.dup2(sys.stderr.fileno(), fd)
    return document


def _reader_gone(stream):
    """Whether ``stream`` is a pipe whose reader has closed it (not some other broken pipe)."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _run_command(args):
    """Run the command; a reader that went away (``nbcore envs --json | head``) ends it quietly."""
    args.document = _document_stream(args)
    try:
        code = COMMANDS[args.command](args) or 0
        sys.stdout.flush()
        args.document.flush()
        return code
    except NotImplementedError as exc:  # a backend (or protocol) without the feature the command needs
        raise UserError("nbcore %s: %s" % (args.command, exc or "the backend cannot do this")) from None
    except BrokenPipeError:
        if not _reader_gone(args.document):
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)  # the flush at exit must not fail again
        os.dup2(devnull, args.document.fileno())
        os.close(devnull)
        return 128 + 13  # what a shell reports for a writer ended by SIGPIPE


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    after_dashes = []
    if "--" in argv:
        argv, after_dashes = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = build_parser().parse_args(argv)
    args.command_after_dashes = after_dashes
    configure_logging(level=WARNING - 10 * min(args.verbose, 2), format="nbcore: %(message)s", stream=sys.stderr)
    from .signals import TERMINATED_EXIT, Terminated, sigterm_raises

    try:
        with sigterm_raises():
            return _run_command(args)
    except UserError as exc:
        print("nbcore: error: %s" % exc, file=sys.stderr)
        return 2
    except RemoteError as exc:  # the worker's exception has no class here, or would end this program
        print("nbcore: error: the call raised %s" % exc, file=sys.stderr)
        return 1
    except NbcoreError as exc:
        print("nbcore: error: %s" % exc, file=sys.stderr)
        return 1
    except Terminated:
        print("nbcore: terminated", file=sys.stderr)
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        print("nbcore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(exc, "nbcore_target", None):  # the worker could not find the target: the user's typo or path
            print("nbcore: error: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
            return 2
        if isinstance(exc.__cause__, RemoteTraceback):
            print(exc.__cause__.text.rstrip(), file=sys.stderr)
            print("nbcore: error: the call raised %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
            return 1
        raise
