"""How far a running request has come: the report itself, its throttle and display, and what the service tells."""

from __future__ import annotations

import io

from higgs_worker.core.schema import SpeechRequest
from higgs_worker.speech.progress import Progress, ProgressDisplay, Throttled

LONG = " ".join(f"Sentence number {i} is here to make one more chunk of speech." for i in range(5))


def test_a_report_says_its_share_and_speed():
    p = Progress(chunks_done=2, chunks_total=8, chunk=3, audio_s=4.0, elapsed_s=2.0)
    assert p.fraction == 2.5 / 8  # the chunk under way counts half
    assert p.elapsed_over_audio == 0.5
    assert p.as_dict() == {"stage": "generating", "chunks_done": 2, "chunks_total": 8, "chunk": 3,
                           "audio_seconds": 4.0, "elapsed_s": 2.0, "elapsed_over_audio": 0.5}
    unplanned = Progress(chunks_done=0, chunks_total=None, chunk=1, audio_s=0.0, elapsed_s=1.0)
    assert unplanned.fraction is None and unplanned.elapsed_over_audio is None
    assert Progress(3, 3, 3, 1.0, 1.0).fraction == 1.0


def test_the_throttle_passes_the_first_report_then_one_per_interval():
    now = [100.0]
    seen: list[float] = []
    throttled = Throttled(lambda p: seen.append(p.elapsed_s), every_s=2.0, clock=lambda: now[0])
    for t in (0.0, 0.5, 1.9, 2.0, 2.1, 4.5):
        now[0] = 100.0 + t
        throttled(Progress(0, 4, 1, 0.0, t))
    assert seen == [0.0, 2.0, 4.5]


def test_the_display_writes_lines_or_a_bar():
    out = io.StringIO()
    lines = ProgressDisplay(bar=False, stream=out)
    lines(Progress(1, 4, 2, 3.25, 1.3))
    assert out.getvalue() == "chunk 2 of 4 (1 done), 3.2 s of audio, 0.40 s per second of it, 1.3 s\n"
    out = io.StringIO()
    bar = ProgressDisplay(bar=True, stream=out)
    bar(Progress(1, 4, 2, 3.25, 1.3))
    bar(Progress(3, 4, 4, 9.0, 3.0))
    bar.close()
    assert "3/4" in out.getvalue() and "9.0 s of audio, 0.33 s per second of it" in out.getvalue()


def test_synthesize_reports_every_chunk_and_the_audio_made(service):
    request = SpeechRequest(transcript=LONG, chunk_method="word", chunk_max_word_num=12, seed=3,
                            max_new_tokens=30)
    chunks = len(service.plan(request)[1])
    assert chunks >= 3
    seen: list[Progress] = []
    result = service.synthesize(request, progress=seen.append)
    ends = [p for p in seen if p.chunk == p.chunks_done]
    assert [p.chunks_done for p in ends] == list(range(1, chunks + 1))  # one report as each chunk ends
    assert {p.chunks_total for p in seen} == {chunks}
    audio = [p.audio_s for p in seen]
    assert audio == sorted(audio) and audio[-1] == result.frames / service.engine.frame_rate
    assert [p.elapsed_s for p in seen] == sorted(p.elapsed_s for p in seen)


def test_a_stream_says_how_far_it_has_come(service):
    request = SpeechRequest(transcript=LONG, chunk_method="word", chunk_max_word_num=12, seed=3,
                            max_new_tokens=30, format="pcm")
    stream = service.synthesize_stream(request)
    seen = []
    for _piece in stream:
        seen.append(stream.progress())
    chunks = stream.progress().chunks_total
    assert chunks == len(service.plan(request)[1]) and seen[-1].chunks_done == chunks
    assert [p.chunks_done for p in seen] == sorted(p.chunks_done for p in seen) and seen[0].chunks_done < chunks


def test_with_chunk_ends_the_throttle_passes_every_chunks_end():
    now = [0.0]
    seen: list[int] = []
    throttled = Throttled(lambda p: seen.append(p.chunks_done), every_s=5.0, clock=lambda: now[0], chunk_ends=True)
    for done, chunk in ((0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3)):
        now[0] += 0.1
        throttled(Progress(done, 3, chunk, 0.0, now[0]))
    assert seen == [0, 1, 2, 3]  # the first report, then each chunk's end; the mid-chunk ones wait their turn


def test_a_failing_sink_never_fails_the_speech(service, caplog):
    calls = []

    def broken(progress: Progress) -> None:
        calls.append(progress)
        raise BrokenPipeError("stderr went away")

    request = SpeechRequest(transcript=LONG, chunk_method="word", chunk_max_word_num=12, seed=3, max_new_tokens=30)
    result = service.synthesize(request, progress=broken)
    assert result.chunks >= 3 and len(result.audio) > 0
    assert len(calls) == 1  # dropped after its first failure
    assert "progress reports stopped for this request: BrokenPipeError" in caplog.text


def test_audio_made_is_counted_at_the_requested_speed(service):
    request = SpeechRequest(transcript="Fast words here.", seed=3, max_new_tokens=30, speed=2.0)
    seen: list[Progress] = []
    result = service.synthesize(request, progress=seen.append)
    assert seen[-1].audio_s == result.frames / service.engine.frame_rate / 2.0


def test_a_chunk_checked_and_made_again_reports_while_each_attempt_runs(service, monkeypatch):
    """With ``verify`` every attempt, retries included, is waited on with reports; an attempt that may yet be
    refused counts no audio, so audio made never goes back when a runaway attempt loses."""
    from types import SimpleNamespace

    from higgs_worker.asr.types import Transcript
    from higgs_worker.speech import service as service_module

    service._recognizer = SimpleNamespace(transcribe=lambda wave, language=None, **kw: Transcript("nothing alike", []))
    monkeypatch.setattr(service, "_check_asr", lambda request: None)
    monkeypatch.setattr(service.engine.scheduler, "stream_eos", -1)  # every attempt runs to its 40 frames
    monkeypatch.setattr(service_module, "PROGRESS_EVERY_S", 0.0)  # a report at every look while an attempt runs
    starts = []
    real_start = service.engine.start
    monkeypatch.setattr(service.engine, "start", lambda *a, **kw: starts.append(1) or real_start(*a, **kw))
    seen: list[Progress] = []
    attempt_of_report: list[int] = []

    def sink(progress: Progress) -> None:
        seen.append(progress)
        attempt_of_report.append(len(starts))

    service.settings.verify_max_frames_ratio = 3.0
    result = service.synthesize(SpeechRequest.parse({"transcript": "Hello there.", "max_new_tokens": 40, "seed": 2,
                                                     "verify": {"max_attempts": 3}}), progress=sink)
    assert result.metadata()["quality"]["chunks"][0]["attempts"] == len(starts) == 3
    during = [(n, p) for n, p in zip(attempt_of_report, seen, strict=True) if p.chunks_done == 0]
    assert {n for n, _ in during} == {1, 2, 3}  # reports while each attempt ran, the two retries included
    assert all(p.audio_s == 0 for _, p in during)
    assert seen[-1].chunks_done == 1 and seen[-1].audio_s == result.frames / service.engine.frame_rate


def test_a_streamed_job_reports_the_audio_sent_while_its_only_chunk_is_made(service, monkeypatch, caplog):
    """A one-chunk stream sends audio before the chunk ends: its reports count what was sent, and a store that
    fails to take a report never fails the job."""
    from higgs_worker.jobs.runner import JobRunner

    monkeypatch.setattr(service.settings, "progress_interval_s", 0.0)
    monkeypatch.setattr(service.engine.scheduler, "stream_eos", -1)  # the chunk runs to its 60 frames
    reports: list[dict] = []
    pieces: list[dict] = []
    out = JobRunner(service).run_job({"transcript": "One chunk, streamed.", "stream": True, "format": "pcm",
                                      "max_new_tokens": 60, "seed": 5}, emit=pieces.append,
                                     progress=reports.append)
    assert "error" not in out and out["chunks"] == 1 and len(pieces) >= 2
    assert reports and all(r["chunks_done"] == 0 and r["chunks_total"] == 1 for r in reports)
    assert reports[-1]["audio_seconds"] > 0  # counted as it was sent, not once the chunk had ended
    assert [r["audio_seconds"] for r in reports] == sorted(r["audio_seconds"] for r in reports)

    def refused(report: dict) -> None:
        raise ConnectionError("the job store went away")

    out = JobRunner(service).run_job({"transcript": "One chunk, streamed.", "stream": True, "format": "pcm",
                                      "max_new_tokens": 20, "seed": 5}, emit=pieces.append, progress=refused)
    assert "error" not in out and out["chunks"] == 1
    assert "progress reports stopped for this request: ConnectionError" in caplog.text
