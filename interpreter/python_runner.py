#!/usr/bin/env python3
"""cove's Python code-interpreter runner (docs/interpreter.md).

One process per context. fd 3 is the control socket (JSON lines), fds 1 and 2
carry the code's output live, fd 0 is /dev/null.

    python3 python_runner.py             a runner: ready -> init -> execute...
    python3 python_runner.py --zygote    a template that forks ready runners

Two rich modes: "ipython" (an IPython InteractiveShell, when IPython imports)
and "plain" (a faithful stdlib fallback); COVE_PYTHON_RICH=plain forces plain.

Python 3.9+, stdlib only (IPython and matplotlib are used when present).
"""

import ast
import asyncio
import base64
import builtins
import contextlib
import importlib
import io
import json
import linecache
import os
import platform
import re
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
import weakref

# What the runner's own control path calls, taken before any user code runs: the
# code shares this interpreter and may replace these modules' functions.
_json_dumps, _json_loads = json.dumps, json.loads
_getpid = os.getpid
_pthread_sigmask, _pthread_kill, _sigpending, _sigtimedwait = (  # None where missing
    getattr(signal, n, None) for n in ("pthread_sigmask", "pthread_kill", "sigpending", "sigtimedwait"))

_RUNNER_FILE = sys._getframe().f_code.co_filename
_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))
_HIDDEN_FILES = {_RUNNER_FILE}  # frames left out of the tracebacks users see
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CTRL_FD = 3

# mime type -> Cloudflare's result key
_MIME_KEYS = {
    "text/plain": "text",
    "text/html": "html",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/svg+xml": "svg",
    "text/latex": "latex",
    "text/markdown": "markdown",
    "application/javascript": "javascript",
    "text/javascript": "javascript",
    "application/json": "json",
}
_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
    ("_repr_javascript_", "application/javascript"),
)

_CTX = None  # the context being served (set in the runner process)


# ---------------------------------------------------------------------------
# stdout / stderr: unbuffered, every write reaches the pipe at once

class _FdWriter(io.RawIOBase):
    """Raw writer on a fd that always writes everything (partial writes, EAGAIN)."""

    def __init__(self, fd):
        super().__init__()
        self._fd = fd

    def writable(self):
        return True

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def write(self, b):
        try:
            view = memoryview(b).cast("B")
        except (TypeError, ValueError):  # not a flat buffer
            view = memoryview(bytes(b))
        done = 0
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:])
            except BlockingIOError:  # someone set the shared pipe O_NONBLOCK
                select.select([], [self._fd], [])
        return len(view)


def _make_stream(fd):
    return io.TextIOWrapper(_FdWriter(fd), encoding="utf-8", errors="backslashreplace",
                            write_through=True)


def _setup_std_streams():
    for fd in (0, 1, 2):  # make sure 0-2 exist so nothing else lands on them
        try:
            os.fstat(fd)
        except OSError:
            nul = os.open("/dev/null", os.O_RDWR)
            if nul != fd:
                os.dup2(nul, fd)
                os.close(nul)
    sys.stdout = sys.__stdout__ = _make_stream(1)
    sys.stderr = sys.__stderr__ = _make_stream(2)
    builtins.print = _print


def _flush_std():
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            s.flush()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# rich formatting

def _safe_method(obj, name):
    if isinstance(obj, type):
        return None
    try:
        if getattr(obj, "_ipython_canary_method_should_not_exist_", None) is not None:
            return None  # claims every attribute (mocks, proxies)
        m = getattr(obj, name, None)
    except Exception:
        return None
    return m if callable(m) else None


def _formatter_failed(name):
    sys.stderr.write(f"[{name} failed]\n" + "".join(traceback.format_exc(limit=-3)))


def _plain_format(obj, include=None, exclude=None):
    """A mime bundle for obj, as IPython's display formatter would give."""
    data = {}
    m = _safe_method(obj, "_repr_mimebundle_")
    if m is not None:
        try:
            r = m(include=include, exclude=exclude)
            if isinstance(r, tuple):
                r = r[0]
            if isinstance(r, dict):
                data.update(r)
        except Exception:
            _formatter_failed("_repr_mimebundle_")
    for name, mime in _REPR_METHODS:
        if mime in data:
            continue
        m = _safe_method(obj, name)
        if m is None:
            continue
        try:
            r = m()
        except NotImplementedError:
            continue
        except Exception:
            _formatter_failed(name)
            continue
        if isinstance(r, tuple):
            r = r[0]
        if r is not None:
            data[mime] = r
    if "image/png" not in data and _is_figure(obj):
        data["image/png"] = _figure_png(obj)
        _close_figure(obj)
    if "text/plain" not in data:
        data["text/plain"] = repr(obj)
    if include:
        data = {k: v for k, v in data.items() if k in include}
    if exclude:
        data = {k: v for k, v in data.items() if k not in exclude}
    return data


def _add_json(data, value):
    """A dict or list value also gives `json` (Cloudflare's behaviour)."""
    if isinstance(value, (dict, list)) and "application/json" not in data:
        try:
            _json_dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return
        data["application/json"] = value


def _result_fields(data):
    out = {}
    for mime, value in data.items():
        key = _MIME_KEYS.get(mime)
        if key is None or key in out or value is None:
            continue
        try:
            if key in ("png", "jpeg"):
                if isinstance(value, (bytes, bytearray, memoryview)):
                    value = base64.b64encode(value).decode("ascii")
                elif isinstance(value, str):
                    value = value.replace("\n", "")
                else:
                    continue
            elif key == "json":
                if isinstance(value, (str, bytes)):
                    value = _json_loads(value)
                _json_dumps(value, allow_nan=False)
            elif isinstance(value, (bytes, bytearray)):
                value = bytes(value).decode("utf-8", "replace")
            elif not isinstance(value, str):
                value = str(value)
        except Exception:
            continue
        out[key] = value
    return out


# ---------------------------------------------------------------------------
# matplotlib: Agg, figures become results, plt.show() emits them

def _figure_png(fig):
    """The figure as PNG, exactly figsize x dpi pixels (no tight bbox)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi="figure")
    return buf.getvalue()


def _is_figure(obj):
    return any(c.__name__ == "Figure" and c.__module__ == "matplotlib.figure"
               for c in type(obj).__mro__)


def _close_figure(fig):
    """A figure already shown is not shown again at the end of the execution."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        try:
            plt.close(fig)
        except Exception:
            pass


def _figure_formatter(fig):
    png = _figure_png(fig)
    _close_figure(fig)
    return png


class _PyplotLoader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch_pyplot(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PyplotFinder:
    """Patches matplotlib.pyplot when the user's code imports it (never before)."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "matplotlib.pyplot" or self._busy:
            return None
        self._busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy = False
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PyplotLoader(spec.loader)
        return spec

    def invalidate_caches(self):
        pass


def _patch_pyplot(plt):
    if getattr(plt.show, "_cove", False):
        return

    def show(*args, **kwargs):
        """Shows every open figure as a result (cove), then closes them."""
        if _CTX is not None:
            _CTX.emit_figures()

    show._cove = True
    plt.show = show
    try:
        from matplotlib.figure import Figure

        def fig_show(self, warn=True):
            """Shows the figure as a result (cove)."""
            if _CTX is not None:
                _CTX.emit_figure(self)
                _close_figure(self)

        Figure.show = fig_show
    except Exception:
        pass


def _install_pyplot_hook():
    if not any(isinstance(f, _PyplotFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PyplotFinder())
    if "matplotlib.pyplot" in sys.modules:
        _patch_pyplot(sys.modules["matplotlib.pyplot"])


# ---------------------------------------------------------------------------
# IPython

# Modules IPython's package imports that an InteractiveShell never uses: the
# terminal front end (prompt_toolkit) and jedi (completion is off). Kept out
# while IPython loads, they cut its import time by about a third; the user's
# code can still import them (the real ones) later.
_IPYTHON_UNUSED = ("IPython.terminal.embed", "jedi")


def _import_ipython_core():
    import types
    saved = {name: sys.modules.get(name) for name in _IPYTHON_UNUSED}
    embed_stub = types.ModuleType("IPython.terminal.embed")

    def embed(*args, **kwargs):  # IPython.embed, loaded when called
        sys.modules.pop("IPython.terminal.embed", None)
        from IPython.terminal.embed import embed as real
        return real(*args, **kwargs)

    embed_stub.embed = embed
    sys.modules["IPython.terminal.embed"] = embed_stub
    sys.modules["jedi"] = None  # ImportError: IPython goes on without it
    try:
        import IPython  # noqa: F401
        from IPython.core.interactiveshell import InteractiveShell  # noqa: F401
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        terminal = sys.modules.get("IPython.terminal")
        if terminal is not None and getattr(terminal, "embed", None) is embed_stub:
            del terminal.embed


def _rich_mode():
    if os.environ.get("COVE_PYTHON_RICH", "").lower() == "plain":
        return "plain"
    try:
        _import_ipython_core()
    except Exception:
        return "plain"
    return "ipython"


def _exit_helper(name):
    class Exit:
        def __repr__(self):
            return f"Use {name}() to raise SystemExit"

        def __call__(self, code=None):
            raise SystemExit() if code is None else SystemExit(code)

    return Exit()


def _build_ipython_shell():
    """An InteractiveShell that reports through the runner and writes nothing."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type
    from traitlets.config import Config

    class CovePublisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False,
                    **kwargs):
            if _CTX is not None:
                _CTX.emit_result(data)

        def clear_output(self, wait=False):
            pass

    class CoveDisplayHook(DisplayHook):
        def start_displayhook(self):
            pass

        def write_output_prompt(self):
            pass

        def compute_format_data(self, result):
            format_dict, md_dict = super().compute_format_data(result)
            _add_json(format_dict, result)
            return format_dict, md_dict

        def write_format_data(self, format_dict, md_dict=None):
            if _CTX is not None:
                _CTX.emit_result(format_dict)

        def finish_displayhook(self):
            pass

    class CoveShell(InteractiveShell):
        displayhook_class = Type(CoveDisplayHook)
        display_pub_class = Type(CovePublisher)

        def _get_exc_info(self, exc_tuple=None):
            etype, value, tb = super()._get_exc_info(exc_tuple)
            return etype, value, _without_runner_frames(tb)

        # The code has stopped: formatting its error must not be interrupted
        # (IPython would print an interrupted traceback instead of reporting it).
        # Should IPython fail to format it, it is reported plainly: never lost.
        def showtraceback(self, exc_tuple=None, *args, **kwargs):
            with _sigint_blocked():
                sent = _CTX.errors_sent if _CTX is not None else 0
                exc = exc_tuple[1] if exc_tuple else sys.exc_info()[1]
                super().showtraceback(exc_tuple, *args, **kwargs)
                if _CTX is not None and _CTX.errors_sent == sent and exc is not None:
                    _CTX.emit_exception(exc)

        def showsyntaxerror(self, *args, **kwargs):
            with _sigint_blocked():
                return super().showsyntaxerror(*args, **kwargs)

        def _showtraceback(self, etype, evalue, stb):
            if _CTX is not None:
                text = self.InteractiveTB.stb2text(stb)
                _CTX.emit_error(getattr(etype, "__name__", str(etype)), str(evalue), text)

        def enable_gui(self, gui=None):
            pass

    warnings.filterwarnings("ignore", message="To exit: use 'exit'", category=UserWarning)
    # a SIGINT between IPython making a cell's coroutine and running it
    warnings.filterwarnings("ignore", message="coroutine 'InteractiveShell.run_cell_async' was never",
                            category=RuntimeWarning)
    cfg = Config()
    cfg.HistoryManager.enabled = False
    cfg.HistoryManager.hist_file = ":memory:"
    cfg.InteractiveShell.colors = "NoColor"
    cfg.InteractiveShell.autocall = 0
    cfg.InteractiveShell.xmode = "Context"
    cfg.Completer.use_jedi = False
    # IPython insists on a profile directory; give it a throwaway one and remove it
    try:
        tmp = tempfile.mkdtemp(prefix="cove-ipython-")
    except OSError:
        tmp = None  # IPython finds a directory of its own
    try:
        shell = CoveShell.instance(config=cfg, ipython_dir=tmp)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    for name in ("exit", "quit"):
        shell.user_ns[name] = _exit_helper(name)
    # a Figure displayed (or the last value) is a PNG; matplotlib is not imported for this
    shell.display_formatter.formatters["image/png"].for_type_by_name(
        "matplotlib.figure", "Figure", _figure_formatter)
    return shell


def _prepare():
    """Everything a context needs that does not depend on it (the zygote does this once)."""
    mode = _rich_mode()
    shell = None
    if mode == "ipython":
        try:
            shell = _build_ipython_shell()
        except Exception:
            sys.stderr.write("cove: IPython shell failed, using plain mode\n" + traceback.format_exc())
            mode = "plain"
    _install_pyplot_hook()
    return mode, shell


def _ready_message(mode):
    return {"type": "ready", "language": "python", "version": platform.python_version(),
            "rich": mode}


# ---------------------------------------------------------------------------
# the context

class _Context:
    def __init__(self, ctl, mode, shell):
        global _CTX
        self.ctl = ctl
        self.mode = mode
        self.shell = shell
        self.armed = False  # SIGINT raises KeyboardInterrupt only while set
        self.cell_task = None  # the asyncio task of the cell's top-level await, if any
        self.sigint_cancelled = False  # a SIGINT cancelled it
        self.interrupted = False  # a SIGINT raised or cancelled in this execution
        self.errors_sent = 0  # error events of this execution
        self.abandoned = weakref.WeakSet()  # cell tasks left unfinished by an interrupt
        self.loop_run = None  # the current run of the event loop, while there is one
        self.exec_id = None
        self.count = 1  # plain mode's execution count
        self.loop = None
        self.future_flags = 0
        self.rbuf = bytearray()
        self.pid = _getpid()
        self.send_lock = threading.Lock()
        if shell is None:
            main = types.ModuleType("__main__")
            main.__dict__["__builtins__"] = builtins
            sys.modules["__main__"] = main
            self.ns = main.__dict__
            builtins.display = self.display
            builtins.exit = _exit_helper("exit")
            builtins.quit = _exit_helper("quit")
        else:
            self.ns = shell.user_ns
            try:  # IPython's autoawait loop, made here rather than under a SIGINT
                from IPython.core.async_helpers import get_asyncio_loop
                get_asyncio_loop()
                shell.loop_runner = self._ipython_loop_runner
            except Exception:
                pass
        _CTX = self
        _sigint_mask(signal.SIG_BLOCK)
        signal.signal(signal.SIGINT, self._on_sigint)
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    # -- signals and fork --

    # SIGINT is blocked except while the user's code runs: while idle or in the
    # runner's own bookkeeping it stays pending, and is dropped when the next
    # execution starts; a SIGINT during a control write is delivered right after it.

    # While the event loop waits, a SIGINT cancels the cell's task (again, should
    # the code have caught the first cancellation), as asyncio.run() does, instead
    # of raising inside the loop's own code; while a task runs, it raises there.
    # A KeyboardInterrupt raised in another task ends the loop with the cell's task
    # unfinished: that task is cancelled and abandoned, its errors and results
    # dropped. Once an interrupt has been reported as the execution's error, more
    # SIGINTs (the agent repeats them until `done`) are ignored: one interrupt, one
    # error.

    def _on_sigint(self, signum, frame):
        if not self.armed:
            return
        if _sigint_is_blocked():
            # it arrived just before the runner blocked SIGINT (Python runs handlers
            # after the C signal handler, here right after pthread_sigmask): keep it
            # pending until the runner unblocks it
            _pthread_kill(threading.get_ident(), signal.SIGINT)
            return
        task = self.cell_task
        if task is not None:
            if task.done():
                return  # too late: the cell has ended, its loop is about to stop
            loop = task.get_loop()
            if asyncio.current_task(loop) is None:
                self.interrupted = self.sigint_cancelled = True
                task.cancel()
                loop.call_soon_threadsafe(_noop)  # wake the loop up
                return
        self.interrupted = True
        raise KeyboardInterrupt

    def _run_coroutine(self, make_coro, loop):
        """Runs a cell's coroutine as a task of loop; returns its value.

        The loop is stopped by this run's own callback: asyncio's
        run_until_complete leaves its stop queued when a KeyboardInterrupt leaves
        the loop just after the task ended, and that stop cut the next run short."""
        old = _sigint_mask(signal.SIG_BLOCK)  # no interrupt before the task exists
        try:
            coro = make_coro()
            self.cell_task = task = loop.create_task(coro)
            task._log_destroy_pending = False  # an abandoned task is not an error
            run = self.loop_run = object()
            task.add_done_callback(lambda _: loop.stop() if self.loop_run is run else None)
        finally:
            if old is not None and signal.SIGINT not in old:
                _sigint_mask(signal.SIG_UNBLOCK)
        try:
            loop.run_forever()
        finally:
            self.loop_run = self.cell_task = None
            if not task.done():
                task.cancel()  # it ends the next time the loop runs
                self.abandoned.add(task)
        try:
            return task.result()
        except asyncio.CancelledError as e:
            if self.sigint_cancelled:
                raise KeyboardInterrupt().with_traceback(e.__traceback__) from None
            raise
        except asyncio.InvalidStateError:  # the code stopped the loop itself
            raise RuntimeError("the event loop was stopped before the cell finished") from None

    def _in_abandoned_task(self):
        try:
            return asyncio.current_task() in self.abandoned
        except RuntimeError:  # no event loop runs
            return False

    def _ipython_loop_runner(self, coro):
        from IPython.core.async_helpers import get_asyncio_loop
        return self._run_coroutine(lambda: coro, get_asyncio_loop())

    def _user_code(self, fn, *args):
        """Runs fn(*args) with SIGINT deliverable; returns with SIGINT blocked."""
        self.armed = True
        try:
            _sigint_mask(signal.SIG_UNBLOCK)
            return fn(*args)
        finally:
            try:
                _sigint_mask(signal.SIG_BLOCK)  # may raise a KeyboardInterrupt still due
            finally:
                self.armed = False

    def _after_fork_in_child(self):
        # a process forked by the user's code (multiprocessing...) must not hold fd 3
        try:
            fd = self.ctl.detach()
            if fd >= 0:
                os.close(fd)
        except Exception:
            pass

    # -- control channel --

    def send(self, msg):
        if _getpid() != self.pid:
            return  # in a process forked by the user's code
        data = _json_dumps(msg, ensure_ascii=False).encode("utf-8", "replace") + b"\n"
        old = _sigint_mask(signal.SIG_BLOCK)  # a control line is never cut by an interrupt
        try:
            _flush_std()
            with self.send_lock:  # display() from the user's threads
                self.ctl.sendall(data)
        except OSError:
            _flush_std()
            os._exit(0)  # the agent is gone
        finally:
            if old is not None and signal.SIGINT not in old:
                _sigint_mask(signal.SIG_UNBLOCK)  # a pending SIGINT is raised here

    def _read_line(self):
        while True:
            i = self.rbuf.find(b"\n")
            if i >= 0:
                line = bytes(self.rbuf[:i])
                del self.rbuf[:i + 1]
                return line
            try:
                data = self.ctl.recv(1 << 20)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                return None
            self.rbuf += data

    def serve(self):
        self.send(_ready_message(self.mode))
        while True:
            line = self._read_line()
            if line is None:
                _flush_std()
                os._exit(0)
            if not line.strip():
                continue
            try:
                msg = _json_loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except Exception:
                continue  # not JSON: ignored
            kind = msg.get("type")
            if kind == "init":
                self.on_init(msg)
            elif kind == "execute":
                self.on_execute(msg)

    # -- init --

    def on_init(self, msg):
        cwd = msg.get("cwd")
        env = msg.get("env")
        try:
            if cwd:
                os.chdir(cwd)
            if env is not None and not isinstance(env, dict):
                raise ValueError("env must be an object")
        except Exception as e:
            self.send({"type": "fatal", "message": f"init: {e}"})
            _flush_std()
            os._exit(1)
        if env is not None:
            os.environ.clear()
            for k, v in env.items():
                if isinstance(k, str) and isinstance(v, str):
                    try:
                        os.environ[k] = v
                    except (ValueError, OSError):
                        pass  # names or values putenv refuses
        os.environ.setdefault("MPLBACKEND", "Agg")
        if hasattr(time, "tzset"):
            time.tzset()
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        keep = [p for p in sys.path if p not in ("", _RUNNER_DIR) and p not in paths]
        sys.path[:] = [""] + paths + keep
        importlib.invalidate_caches()
        if self.shell is not None:
            self.shell.user_ns["_dh"] = [os.getcwd()]
        self.send({"type": "initialized"})

    # -- execute --

    def on_execute(self, msg):
        self.exec_id = str(msg.get("id", ""))
        code = msg.get("code")
        if not isinstance(code, str):
            code = ""
        language = msg.get("language") or "python"
        count = self.shell.execution_count if self.shell is not None else self.count
        _drop_pending_sigint()  # sent while idle: ignored
        self.sigint_cancelled = False
        self.interrupted = False
        self.errors_sent = 0
        try:
            if language != "python":
                self.emit_error("ValueError", f"this context runs python, not {language}", "")
            else:
                importlib.invalidate_caches()
                if self.shell is not None:
                    count = self.run_ipython(code)
                else:
                    count = self.run_plain(code)
        except BaseException:  # the runner's own failure: report it, keep going
            _sigint_mask(signal.SIG_BLOCK)
            self.armed = False
            try:
                self.emit_error("InternalError", "cove runner failed", traceback.format_exc())
            except BaseException:
                pass
        self.armed = False
        try:
            self.emit_figures()
        except BaseException:
            pass
        self._repair()
        self.send({"type": "done", "id": self.exec_id, "execution_count": count})

    def _repair(self):
        """Undo what the user's code may have broken in the runner itself."""
        try:
            _sigint_mask(signal.SIG_BLOCK)
            if signal.getsignal(signal.SIGINT) != self._on_sigint:
                signal.signal(signal.SIGINT, self._on_sigint)
        except Exception:
            pass
        try:
            if sys.stdin is None or sys.stdin.closed:
                sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        except Exception:
            pass
        for name, fd in (("stdout", 1), ("stderr", 2)):  # closed or removed: output again
            try:
                stream = getattr(sys, name)
                if stream is None or stream.closed:
                    stream = _make_stream(fd)
                    setattr(sys, name, stream)
                    setattr(sys, f"__{name}__", stream)
            except Exception:
                pass

    def run_ipython(self, code):
        shell = self.shell
        count = shell.execution_count
        try:
            self._user_code(shell.run_cell, code, True)
        except BaseException as e:  # interrupted inside IPython's own code
            self.emit_exception(e)
        if shell.execution_count == count:  # empty cell, or interrupted before IPython counted
            shell.execution_count = count + 1
        return count

    def run_plain(self, code):
        count = self.count
        self.count += 1
        name = f"<cell {count}>"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        flags = self.future_flags | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        try:
            tree = compile(code, name, "exec", flags | ast.PyCF_ONLY_AST, dont_inherit=True)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, name, "exec", flags, dont_inherit=True)
            self.future_flags |= body.co_flags & _FUTURE_MASK
            flags = self.future_flags | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
            tail = compile(last, name, "eval", flags, dont_inherit=True) if last else None
        except BaseException as e:
            self.emit_exception(e)
            return count
        if (body.co_flags | (tail.co_flags if tail else 0)) & _CO_COROUTINE:
            self._event_loop()  # made before SIGINT can cut its construction short
        try:
            self._user_code(self._run_cell, body, tail)
        except BaseException as e:
            self.emit_exception(e)
        return count

    def _event_loop(self):
        """The context's one asyncio loop (plain mode's top-level await)."""
        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop

    def _run_cell(self, body, tail):
        self._run_code(body)
        if tail is not None:
            value = self._run_code(tail)
            if value is not None:
                self.ns["_"] = value
                data = _plain_format(value)
                _add_json(data, value)
                self.emit_result(data)

    def _run_code(self, code):
        if not code.co_flags & _CO_COROUTINE:
            return eval(code, self.ns)
        return self._run_coroutine(lambda: eval(code, self.ns), self._event_loop())

    # -- events --

    def display(self, *objs, include=None, exclude=None, metadata=None, transient=None,
                display_id=None, raw=False, clear=False, **kwargs):
        """Shows each object as a rich result (cove's display())."""
        for obj in objs:
            data = obj if raw and isinstance(obj, dict) else _plain_format(obj, include, exclude)
            self.emit_result(data)

    def emit_result(self, data):
        if self._in_abandoned_task():
            return
        fields = _result_fields(data or {})
        if fields:
            msg = {"type": "result", "id": self.exec_id}
            msg.update(fields)
            self.send(msg)

    def emit_error(self, ename, evalue, text):
        if self._in_abandoned_task():
            return
        lines = _ANSI.sub("", text or "").rstrip("\n").split("\n") if text else []
        if ename == "CancelledError" and self.sigint_cancelled:  # IPython saw the cancellation
            ename, evalue = "KeyboardInterrupt", ""
            if lines and lines[-1].startswith("CancelledError"):
                lines[-1] = "KeyboardInterrupt"
        if self.interrupted:
            self.armed = False  # the interrupt has its error
        self.errors_sent += 1
        self.send({"type": "error", "id": self.exec_id, "ename": ename,
                   "evalue": _ANSI.sub("", evalue), "traceback": lines})

    def emit_exception(self, e):
        tb = _user_traceback(e.__traceback__)
        seen, chained = {id(e)}, [e.__cause__, e.__context__]
        while chained:  # chained exceptions: no runner frames either
            c = chained.pop()
            if c is not None and id(c) not in seen:
                seen.add(id(c))
                c.__traceback__ = _without_runner_frames(c.__traceback__)
                chained += [c.__cause__, c.__context__]
        try:
            text = "".join(traceback.format_exception(type(e), e, tb))
        except BaseException:
            text = f"{type(e).__name__}: {e}"
        try:
            evalue = str(e)
        except BaseException:
            evalue = "<unprintable>"
        self.emit_error(type(e).__name__, evalue, text)

    def emit_figure(self, fig):
        try:
            png = _figure_png(fig)
        except Exception:
            sys.stderr.write("cove: could not render a figure\n" + traceback.format_exc())
            return
        self.emit_result({"image/png": png, "text/plain": repr(fig)})

    def emit_figures(self):
        """Every open figure becomes a result; then they are all closed."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            from matplotlib._pylab_helpers import Gcf
            figs = [m.canvas.figure for m in Gcf.get_all_fig_managers()]
        except Exception:
            figs = [plt.figure(n) for n in plt.get_fignums()]
        try:
            for fig in figs:
                self.emit_figure(fig)
        finally:
            plt.close("all")


def _user_traceback(tb):
    """The traceback from the first cell frame on, without the runner's frames."""
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell "):
        tb = tb.tb_next
    return _without_runner_frames(tb)


def _without_runner_frames(tb):
    entries = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename not in _HIDDEN_FILES:
            entries.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(entries):
        out = types.TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _noop():
    pass


def _sigint_mask(how):
    """Blocks or unblocks SIGINT in this thread; returns the previous mask."""
    try:
        return _pthread_sigmask(how, {signal.SIGINT})
    except (AttributeError, OSError, TypeError):  # not on this platform
        return None


def _sigint_is_blocked():
    try:
        return signal.SIGINT in _pthread_sigmask(signal.SIG_BLOCK, ())
    except (AttributeError, OSError, TypeError):  # not on this platform
        return False


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT held pending inside the block (delivered after it, if it was deliverable before)."""
    old = _sigint_mask(signal.SIG_BLOCK)
    try:
        yield
    finally:
        if old is not None and signal.SIGINT not in old:
            _sigint_mask(signal.SIG_UNBLOCK)


def _drop_pending_sigint():
    try:
        while signal.SIGINT in _sigpending():
            _sigtimedwait({signal.SIGINT}, 0)
    except (AttributeError, OSError, TypeError):  # not on this platform
        pass


_orig_print = builtins.print


def _print(*args, sep=" ", end="\n", file=None, flush=False):
    """print() that hands each call's text to the stream in one write."""
    if file is None:
        file = sys.stdout
        if file is None:
            return
    if not (sep is None or isinstance(sep, str)) or not (end is None or isinstance(end, str)):
        return _orig_print(*args, sep=sep, end=end, file=file, flush=flush)
    file.write((" " if sep is None else sep).join(map(str, args)) + ("\n" if end is None else end))
    if flush:
        file.flush()


_print.__doc__ = _orig_print.__doc__
_print.__name__ = _print.__qualname__ = "print"


def _future_mask():
    import __future__
    mask = 0
    for name in __future__.all_feature_names:
        mask |= getattr(__future__, name).compiler_flag
    return mask


_FUTURE_MASK = _future_mask()
_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE


def _control_socket(who="runner"):
    try:
        sock = socket.socket(fileno=_CTRL_FD)
    except OSError as e:
        sys.stderr.write(f"cove python {who}: fd {_CTRL_FD} is not a socket: {e}\n")
        sys.exit(2)
    os.set_inheritable(_CTRL_FD, False)
    return sock


def _run_context(mode, shell):
    ctx = _Context(_control_socket(), mode, shell)
    try:
        ctx.serve()
    finally:
        _flush_std()
        os._exit(0)


# ---------------------------------------------------------------------------
# zygote

def _close_fds_above(keep):
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd > keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _become_context(zsock, fds, mode, shell):
    """In the forked child: take the received fds, then run as a normal runner."""
    try:
        os.setsid()
        zsock.detach()  # its fd 3 is replaced below
        ctl, out, err = fds
        os.dup2(ctl, 3, inheritable=False)
        os.dup2(out, 1)
        os.dup2(err, 2)
        nul = os.open("/dev/null", os.O_RDONLY)
        if nul != 0:
            os.dup2(nul, 0)
        _close_fds_above(3)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the context installs its own
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _run_context(mode, shell)
    except BaseException:
        try:
            traceback.print_exc()
            _flush_std()
        finally:
            os._exit(1)


def _thread_count():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _fork_context(zsock, fds, mode, shell):
    if threading.active_count() > 1 or _thread_count() > 1:
        return {"type": "error",
                "message": f"the zygote has {_thread_count()} threads; refusing to fork"}
    try:
        pid = os.fork()
    except OSError as e:
        return {"type": "error", "message": f"fork: {e}"}
    if pid == 0:
        _become_context(zsock, fds, mode, shell)
    return {"type": "forked", "pid": pid}


def _report_exits(zsock):
    """SIGCHLD in the zygote: reaps its contexts and reports each exit status."""
    def handler(signum, frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            try:
                zsock.send(_json_dumps({"type": "exited", "pid": pid, "status": status}).encode())
            except OSError:
                pass
    signal.signal(signal.SIGCHLD, handler)


def _zygote_main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    zsock = _control_socket("zygote")
    mode, shell = _prepare()
    if shell is not None:
        try:  # first-run work (lazy imports, compiler caches) done once, here
            shell.run_cell("1", store_history=False)
            shell.displayhook.flush()  # forget the warm-up's output (_, _1, Out)
        except Exception:
            pass
    import gc
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()  # keep the prepared heap shared between contexts
    _report_exits(zsock)
    zsock.send(_json_dumps(_ready_message(mode)).encode())
    fdsize = 4  # sizeof(int)
    while True:
        try:
            data, anc, flags, _ = zsock.recvmsg(65536, socket.CMSG_SPACE(16 * fdsize))
        except InterruptedError:
            continue
        except OSError:
            break
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(payload) - len(payload) % fdsize
                fds += list(memoryview(payload[:n]).cast("i"))
        if not data and not fds:
            break  # end of file
        try:
            msg = _json_loads(data)
        except Exception:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "fork":
            reply = {"type": "error", "message": "expected {\"type\":\"fork\"}"}
        elif len(fds) != 3 or flags & socket.MSG_CTRUNC:
            reply = {"type": "error", "message": f"fork needs exactly 3 fds, got {len(fds)}"}
        else:
            reply = _fork_context(zsock, fds, mode, shell)
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            zsock.send(_json_dumps(reply).encode())
        except OSError:
            break
    os._exit(0)


def main(argv):
    _setup_std_streams()
    if _RUNNER_DIR in sys.path:
        sys.path.remove(_RUNNER_DIR)
    if "--zygote" in argv[1:]:
        _zygote_main()
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        mode, shell = _prepare()
        _run_context(mode, shell)


if __name__ == "__main__":
    main(sys.argv)
