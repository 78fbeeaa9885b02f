# The in-sandbox Python interpreter of a code context (E2B's code interpreter, spec section 4).
# The server starts one per context with a tiny bootstrap that reads this file from stdin, then
# sends one JSON line per execution: {"id": n, "code": "...", "env": {...}}.
#
# Framing: user output goes to the real fd 1 and fd 2 untouched (so subprocesses and C
# extensions print normally). Everything else (results, errors, counters, end) is written as
# "<marker><id> <json>\n" on fd 1, and the end of an execution is also marked on fd 2, so the
# server knows both pipes are drained up to that point. The marker is a per-process secret given
# in the environment; bytes outside frames are user output.
import ast
import base64
import builtins
import importlib.abc
import importlib.util
import io
import json
import linecache
import os
import sys
import traceback

MARKER = os.environ.pop("AIRLOCK_CI_MARKER")
for _name in [k for k in os.environ if k.startswith("AIRLOCK_CI_")]:
    del os.environ[_name]

# Protocol input keeps the stdin pipe; user code and subprocesses get /dev/null instead, so an
# input() or a `cat` cannot swallow the next execution.
_proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)
sys.stdin = open(0, "r", closefd=False)
# Line buffering keeps print("x") in one write, like Jupyter's batched streams.
sys.stdout.reconfigure(line_buffering=True)
sys.stderr.reconfigure(line_buffering=True)

_current = 0


def _frame(fd, payload):
    os.write(fd, (MARKER + str(_current) + " " + payload + "\n").encode("utf-8"))


def _emit(obj):
    sys.stdout.flush()
    sys.stderr.flush()
    _frame(1, json.dumps(obj, default=str))


def _bundle(value):
    """A Jupyter-style MIME bundle mapped to E2B's result fields."""
    out = {}
    for method, key in (
        ("_repr_html_", "html"),
        ("_repr_markdown_", "markdown"),
        ("_repr_svg_", "svg"),
        ("_repr_png_", "png"),
        ("_repr_jpeg_", "jpeg"),
        ("_repr_latex_", "latex"),
        ("_repr_json_", "json"),
        ("_repr_javascript_", "javascript"),
        ("_repr_pdf_", "pdf"),
    ):
        fn = getattr(type(value), method, None)
        if fn is None:
            continue
        try:
            data = fn(value)
        except Exception:
            continue
        if isinstance(data, tuple):
            data = data[0]
        if data is None:
            continue
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        out[key] = data
    fig_type = _figure_type()
    if fig_type is not None and isinstance(value, fig_type) and "png" not in out:
        out["png"] = _figure_png(value)
    text = repr(value)
    # E2B's server strips the quotes of a string's repr: 'abc' comes out as abc.
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        text = text[1:-1]
    out["text"] = text
    return out


def _figure_type():
    mod = sys.modules.get("matplotlib.figure")
    return getattr(mod, "Figure", None) if mod is not None else None


def _figure_png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _show_figures(*args, **kwargs):
    """The inline backend: every open figure becomes a PNG result, then is closed."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        _emit({"type": "result", "is_main_result": False, "text": repr(fig), "png": _figure_png(fig)})
    plt.close("all")


def display(*values, **kwargs):
    for value in values:
        line = {"type": "result", "is_main_result": False}
        line.update(_bundle(value))
        _emit(line)


class _PyplotHook(importlib.abc.MetaPathFinder):
    """Replaces pyplot.show the moment pyplot is imported, so plt.show() displays like Jupyter."""

    def find_spec(self, name, path, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            module.show = _show_figures

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PyplotHook())
os.environ.setdefault("MPLBACKEND", "Agg")

_globals = {"__name__": "__main__", "__builtins__": builtins, "display": display}
_count = 0


def _user_traceback(exc):
    # Drop the driver's own frames: the traceback starts at the user's cell.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<cell>":
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        tb = None
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _run(code):
    # Source lines in tracebacks, as Jupyter shows them.
    linecache.cache["<cell>"] = (len(code), None, code.splitlines(True), "<cell>")
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), _globals)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), _globals)
        if value is not None:
            _globals["_"] = value
            line = {"type": "result", "is_main_result": True}
            line.update(_bundle(value))
            _emit(line)


def _execute(request):
    global _count
    _count += 1
    _emit({"type": "number_of_executions", "execution_count": _count})
    saved = {}
    for key, value in (request.get("env") or {}).items():
        saved[key] = os.environ.get(key)
        os.environ[key] = value
    try:
        _run(request.get("code", ""))
        _show_figures()
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are errors of the cell too
        try:
            _show_figures()
        except Exception:
            pass
        _emit({"type": "error", "name": type(exc).__name__, "value": str(exc), "traceback": _user_traceback(exc)})
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


while True:
    try:
        raw = _proto_in.readline()
    except KeyboardInterrupt:  # an interrupt that arrived after its cell ended
        continue
    if not raw:
        break
    request = json.loads(raw)
    _current = request["id"]
    try:
        _execute(request)
    except BaseException as exc:  # an interrupt between cells must not end the context
        try:
            _emit({"type": "error", "name": type(exc).__name__, "value": str(exc), "traceback": ""})
        except BaseException:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    _frame(2, "end")
    _frame(1, "end")
