from pathlib import Path

from higgs_worker.core.settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_is_current():
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("\n<!-- settings-table:end -->")
    assert text[start:end] == settings_table(), "regenerate the table with `higgs-worker settings`"


def test_readme_opens_with_the_two_commands():
    head = README.read_text(encoding="utf-8")[:1500]
    assert "scripts/test.sh" in head and "HIGGS_DEMO=1" in head


def test_every_response_header_the_server_sets_is_in_the_readme():
    import re

    src = README.parents[0] / "src" / "higgs_worker" / "http"
    set_in_code = {h for path in src.glob("*.py") for h in re.findall(r'"(X-[A-Za-z-]+)"', path.read_text("utf-8"))}
    assert {"X-Seed", "X-Generation-Time", "X-Engine-Time"} <= set_in_code  # the scan sees the headers
    text = README.read_text(encoding="utf-8")
    assert sorted(h for h in set_in_code if f"`{h}" not in text) == []


def test_the_first_commands_name_the_lock_file_the_setup_uses():
    import re

    head = README.read_text(encoding="utf-8")[:1500]
    named = re.search(r"creates \.venv from (requirements[\w-]*\.lock)", head)
    assert named, "the first command says which lock file it installs"
    setup = (README.parent / "scripts" / "setup-dev.sh").read_text(encoding="utf-8")
    assert re.search(rf"uv pip sync .*{re.escape(named.group(1))}", setup), named.group(1)
    assert (README.parent / named.group(1)).is_file()



def test_the_streaming_context_the_readme_states_is_the_codes():
    import re

    from higgs_worker.engine.streaming import LEFT_CONTEXT_FRAMES, RIGHT_CONTEXT_FRAMES

    stated = re.search(r"small windows with (\d+) frames of context on each\s+side", README.read_text("utf-8"))
    assert stated, "the README states the streaming decode's context"
    assert int(stated.group(1)) == LEFT_CONTEXT_FRAMES == RIGHT_CONTEXT_FRAMES


# -- what the README names against what the code has ----------------------------------------------------------------

def _lines_after(text: str, start: str) -> list[str]:
    """The lines after the first line that starts with ``start``, up to the next blank line (a table's rows)."""
    lines = text[text.index(start):].splitlines()
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def _first_cells(rows: list[str]) -> list[str]:
    """The first cell of each row of a Markdown table (its separator row skipped)."""
    return [row.split("|")[1] for row in rows if row.startswith("|") and not row.startswith("| ---")]


def test_every_command_the_readme_names_is_a_subcommand():
    import argparse
    import re

    from higgs_worker.cli import build_parser

    [subparsers] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = set(subparsers.choices)
    text = README.read_text(encoding="utf-8")
    layout = re.search(r"cli\.py +entry point: `higgs-worker` \(([^)]*)\)", text)
    assert layout, "the Layout names the commands of cli.py"
    in_layout = [n.strip() for n in layout.group(1).split(",") if n.strip() not in ("...", "…")]
    block = text[text.index("## Command line"):]
    block = block[block.index("```bash\n"):]
    block = block[:block.index("\n```")]
    in_block = re.findall(r"^higgs-worker ([a-z][a-z-]*)", block, re.MULTILINE)
    assert len(in_layout) >= 5 and len(in_block) >= 5  # the scans see the names
    assert sorted(n for n in in_layout + in_block if n not in commands) == []
    assert sorted(commands - set(in_block)) == [], "every subcommand has a line in the Command line block"


def _route_table() -> set[tuple[str, str]]:
    """(method, path) of every route the README's HTTP API table names; path parameters as ``{}``, no query."""
    import re

    text = README.read_text(encoding="utf-8")
    rows = _lines_after(text[text.index("## HTTP API"):], "| route | what |")
    named = set()
    for cell in _first_cells(rows):
        for methods, path in re.findall(r"`([A-Z]+(?:/[A-Z]+)*) (/[^`?\s]*)", cell):
            for method in methods.split("/"):
                named.add((method, re.sub(r"\{[^}]*\}", "{}", path)))
    return named


def _served_routes() -> tuple[set[tuple[str, str]], set[str]]:
    """What the server serves: (method, path) of the routes in its API description (the four routers app.py
    includes, and its own ``/metrics``), and the paths it serves outside that description (the studio page, its
    static files, the API description's pages), which the README names in its text instead of the table."""
    import re

    from fastapi.routing import APIRoute, APIWebSocketRoute

    from higgs_worker.http import routes_jobs, routes_openai, routes_realtime, routes_voices

    app_source = (README.parent / "src" / "higgs_worker" / "http" / "app.py").read_text(encoding="utf-8")
    included = re.search(r"routers = \(([^)]*)\)", app_source)
    assert included, "app.py includes its routers from one tuple"
    modules = {"routes_jobs": routes_jobs, "routes_openai": routes_openai, "routes_voices": routes_voices,
               "routes_realtime": routes_realtime}
    assert sorted(m.strip().split(".")[0] for m in included.group(1).split(",") if m.strip()) == sorted(modules)
    listed: set[tuple[str, str]] = set()
    for module in modules.values():
        for route in module.router.routes:
            path = re.sub(r"\{[^}]*\}", "{}", route.path)
            if isinstance(route, APIWebSocketRoute):
                listed.add(("WS", path))
            elif isinstance(route, APIRoute):
                assert route.include_in_schema, route.path
                listed |= {(m, path) for m in route.methods - {"HEAD"}}
    # app.py's own routes: /metrics is in the API description; the rest (include_in_schema=False, a mount) are pages
    own = re.findall(r'@app\.(get|post)\("([^"]+)"(, include_in_schema=False)?', app_source)
    listed |= {(m.upper(), p) for m, p, hidden in own if not hidden}
    unlisted = {p for _, p, hidden in own if hidden} | set(re.findall(r'app\.mount\("([^"]+)"', app_source))
    return listed, unlisted


def test_every_route_the_server_serves_is_in_the_readme():
    listed, unlisted = _served_routes()
    table = _route_table()
    assert ("POST", "/v1/audio/speech") in listed and ("WS", "/v1/realtime/speech") in listed  # the scan sees them
    assert ("GET", "/metrics") in listed and {"/", "/docs", "/static"} <= unlisted
    assert sorted(listed - table) == [], "a route missing from the README's HTTP API table"
    assert sorted(table - listed) == [], "a route in the README's table that the server does not serve"
    text = README.read_text(encoding="utf-8")
    assert sorted(p for p in unlisted if f"`{p}" not in text and f"({p}" not in text) == []


def _event_names(header: str) -> set[str]:
    import re

    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Voice agents"):]
    names = set()
    for cell in _first_cells(_lines_after(section, header)):
        names |= set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+|error)`", cell))
    return names


def _sent_event_types() -> set[str]:
    """Every ``"type"`` of an event the realtime route builds (a dict literal with a constant type), not counting
    the ``type`` inside an event's ``error`` object."""
    import ast

    from higgs_worker.http import routes_realtime

    tree = ast.parse(Path(routes_realtime.__file__).read_text(encoding="utf-8"))
    dicts = [n for n in ast.walk(tree) if isinstance(n, ast.Dict)]
    inner = {id(v) for d in dicts for k, v in zip(d.keys, d.values, strict=True)
             if isinstance(k, ast.Constant) and k.value == "error"}
    return {v.value for d in dicts if id(d) not in inner for k, v in zip(d.keys, d.values, strict=True)
            if isinstance(k, ast.Constant) and k.value == "type" and isinstance(v, ast.Constant)}


def test_the_realtime_event_tables_are_the_events_of_the_route():
    from higgs_worker.http.routes_realtime import CLIENT_EVENTS

    assert _event_names("| client → server |") == set(CLIENT_EVENTS)
    sent = _sent_event_types()
    assert {"session.created", "speech.audio.delta", "speech.audio.done", "error"} <= sent  # the scan sees them
    assert _event_names("| server → client |") == sent


def test_the_voice_names_aliases_and_models_are_the_codes():
    import re

    from higgs_worker.http.routes_openai import MODEL_IDS
    from higgs_worker.voices.aliases import DEFAULT_ALIASES, OPENAI_VOICES

    text = README.read_text(encoding="utf-8")
    http = text[text.index("## HTTP API"):]
    names = re.search(r"OpenAI's names \(([^)]*)\) are\s+aliases", http)
    assert names, "the HTTP API section lists OpenAI's voice names"
    assert re.findall(r"`([a-z]+)`", names.group(1)) == list(OPENAI_VOICES)
    mapping = re.search(r"by default one of the pinned presets \(([^)]*)\), or the model's own voice", text)
    assert mapping, "the voice agents section gives the default alias mapping"
    assert dict(re.findall(r"`([a-z_]+)`\s*→\s*`([a-z_]+)`", mapping.group(1))) == DEFAULT_ALIASES
    [models_row] = [r for r in _lines_after(http, "| route | what |") if r.startswith("| `GET /v1/models` |")]
    assert re.findall(r"`([^`]+)`", models_row.split("|")[2]) == list(MODEL_IDS)
