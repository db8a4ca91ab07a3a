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
