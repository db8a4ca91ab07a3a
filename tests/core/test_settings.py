from pathlib import Path

from higgs_worker.core import settings as settings_module
from higgs_worker.core.settings import Settings, settings_table


def test_defaults_and_derived_paths(monkeypatch, tmp_path):
    for name in ("VOLUME_ROOT", "MODEL_PATH", "TOKENIZER_PATH", "VOICES_DIR", "HIGGS_DEMO", "PORT", "LOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    volume = tmp_path / "runpod-volume"
    volume.mkdir()
    (tmp_path / "app").mkdir()
    monkeypatch.setattr(settings_module, "RUNPOD_VOLUME", volume)  # as on a RunPod worker with a volume
    monkeypatch.setattr(settings_module, "APP_LOGS", tmp_path / "app" / "logs")
    s = Settings()
    assert s.volume_root == volume
    assert s.model_path == volume / "models/higgs-audio-v2-generation-3B-base"
    assert s.tokenizer_path == volume / "models/higgs-audio-v2-tokenizer"
    assert s.voices_dir == volume / "voices"
    assert (s.port, s.log_dir, s.device, s.dtype) == (8080, tmp_path / "app" / "logs", "auto", "auto")


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("VOLUME_ROOT", "/vol")
    monkeypatch.setenv("MODEL_PATH", "/m")
    monkeypatch.setenv("MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("API_KEYS", "a, b ,")
    s = Settings()
    assert s.model_path == Path("/m") and s.tokenizer_path == Path("/vol/models/higgs-audio-v2-tokenizer")
    assert s.max_batch_size == 4 and s.api_key_list == ["a", "b"]
    assert "a, b" not in repr(s)  # secrets stay hidden


def test_demo_mode_points_at_the_demo_model(monkeypatch, tmp_path):
    monkeypatch.delenv("MODEL_PATH", raising=False)
    monkeypatch.delenv("TOKENIZER_PATH", raising=False)
    monkeypatch.setenv("HIGGS_DEMO", "1")
    monkeypatch.setenv("DEMO_DIR", str(tmp_path))
    s = Settings()
    assert s.model_path == tmp_path / "model" and s.tokenizer_path == tmp_path / "tokenizer"


def test_table_lists_every_variable():
    table = settings_table()
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in table
