"""The voice-agent bench in CI: realtime sessions fed at an LLM's pace against the real server on the tiny model.

``bench.voice_agent`` runs in this process; the server it starts is a process of its own. Only the books are
checked here (every session spoke, the figures exist, the two routes made the same audio), never the times.
"""

import json

from servers import off_the_event_loop

from bench.voice_agent import llm_tokens, main, underruns


def test_voice_agent_bench_runs_and_reports_its_figures(tmp_path, tiny_model_dir):
    out = tmp_path / "voice_agent.json"
    code = off_the_event_loop(main, ["--sessions", "2", "--repeats", "2", "--json", str(out), "--model",
                                     str(tiny_model_dir)])
    result = json.loads(out.read_text())
    assert code == 0, result
    assert result["completed"] == 2 and result["same_audio"]  # same text, same seed: the same frames both ways
    assert result["first_audio_after_boundary_ms_p50"] > 0 and result["server_first_audio_ms_p50"] > 0
    assert result["frames_per_s"] > 0 and result["audio_s"] > 0 and result["underruns"] >= 0
    for key in ("route_overhead_first_audio_ms", "route_overhead_total_ms", "ws_first_audio_ms_p50",
                "http_first_audio_ms_p50"):
        assert isinstance(result[key], float)


def test_tokens_and_underruns_are_counted_as_a_player_would():
    assert "".join(llm_tokens("Hello wonderful world.")) == "Hello wonderful world."
    assert llm_tokens("Hi there") == ["Hi", " ther", "e"]
    second = 48000  # bytes of one second of pcm
    assert underruns([(0.0, second), (0.5, second), (1.9, second)]) == (0, 0.0)  # each arrives before it is due
    count, gap = underruns([(0.0, second), (1.5, second)])  # the second second arrives half a second late
    assert count == 1 and abs(gap - 0.5) < 1e-9
