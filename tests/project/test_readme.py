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
