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
