"""The studio at ``/`` in a real browser: Playwright drives Debian's ``chromium`` against the real server (a
subprocess on the tiny model), as a person would: labels, clicks, keys.

Without a browser these tests skip locally with the reason; with ``CI=true`` a missing browser fails them
(``.ci/run`` installs ``chromium`` with apt when it is missing). Screenshots (desktop and a phone's width) go to
``STUDIO_SCREENSHOTS`` when set, else to the test's temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from conftest import unavailable
from fixture_voices import encoded, write_voices
from servers import Server, wait_until

KEY = "studio-key-5e7a21"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # a fake microphone (a tone) that needs no permission prompt, for the recording test
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# Small generations: the tiny model runs on the CPU, and a chunk per few words gives a stream several pieces.
QUICK = {"Max new tokens": "40", "Chunking": "word", "Words per chunk": "3"}
TIMEOUT_MS = 120_000


def chromium() -> str | None:
    for candidate in (os.environ.get("STUDIO_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options, pointed at the system's chromium (Playwright's own download is not
    used). No browser: a skip with the reason locally, a failure in CI."""
    path = chromium()
    if path is None:
        unavailable("no chromium browser found (apt-get install chromium; or set STUDIO_CHROMIUM)")
    return {**browser_type_launch_args, "executable_path": path, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path_factory.mktemp("studio-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_server(tiny_model_dir: Path, root: Path, **env: str) -> Server:
    voices = write_voices(root / "voices", ["tenor", "alto"])
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"), **env},
                 root)
    srv.root = root
    try:
        srv.wait_ready(headers={"Authorization": f"Bearer {KEY}"})
    except BaseException:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    # the tiny model's random Whisper, for servers whose speech route offers word times and checks
    srv = start_server(tiny_model_dir, tmp_path_factory.mktemp("studio"), ASR_PATH=str(tiny_model_dir / "asr"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir, tmp_path_factory):
    srv = start_server(tiny_model_dir, tmp_path_factory.mktemp("studio-keyed"), API_KEYS=f"another-key,{KEY}")
    yield srv
    srv.stop()


class Studio:
    """The page, with the requests it sent to the speech route and any script errors."""

    def __init__(self, page, url: str) -> None:
        self.page = page
        self.url = url
        self.speech_bodies: list[dict] = []
        self.errors: list[str] = []
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", self._record)

    def _record(self, request) -> None:
        if request.method == "POST" and request.url.endswith("/v1/audio/speech"):
            self.speech_bodies.append(json.loads(request.post_data))

    def open(self) -> Studio:
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready=true]")
        return self

    def label(self, text: str):
        return self.page.get_by_label(text, exact=True)

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)

    def quick(self, **more: str) -> None:
        advanced = self.page.locator("#advanced")
        if not advanced.evaluate("d => d.open"):
            self.page.get_by_text("Advanced", exact=True).click()
        for label, value in {**QUICK, **more}.items():
            control = self.label(label)
            if control.evaluate("e => e.tagName") == "SELECT":
                control.select_option(value)
            else:
                control.fill(value)

    def generate(self) -> dict:
        """Clicks Generate and waits for the new take to finish; returns its facts."""
        before = self.page.locator(".take").count()
        self.button("Generate").click()
        take = self.page.locator(f"#take-{before + 1}")
        take.locator("audio[src]").wait_for(state="attached")
        return take.evaluate("e => ({...e.dataset})")

    def take_audio_duration(self, n: int) -> float:
        audio = self.page.locator(f"#take-{n} audio")
        self.page.wait_for_function("a => a.readyState >= 1 && isFinite(a.duration)", arg=audio.element_handle())
        return audio.evaluate("a => a.duration")

    def decoded_duration(self, data: bytes) -> float:
        """The length of an audio file as the browser's own decoder makes it, sample by sample.

        ``<audio>.duration`` is exact for formats that state their length, but for ADTS AAC (no length in the
        stream) the browser estimates it from the bitrate, which drifts with the content: decode instead."""
        return self.page.evaluate(
            """async b64 => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const ctx = new OfflineAudioContext(1, 1, 24000);
                return (await ctx.decodeAudioData(bytes.buffer)).duration;
            }""", base64.b64encode(data).decode())


@pytest.fixture()
def studio(page, server):
    s = Studio(page, server.url + "/").open()
    yield s
    assert s.errors == [], f"script errors on the page: {s.errors}"


# -- listening while it is generated -------------------------------------------------------------------------------

def test_streamed_generation_with_a_preset_voice_plays(studio, shots):
    page = studio.page
    studio.label("Voice").select_option("tenor")
    studio.quick()
    facts = studio.generate()

    body = studio.speech_bodies[-1]
    assert body["voice"] == "tenor" and body["stream_format"] == "sse" and body["response_format"] == "pcm"
    assert body["max_new_tokens"] == 40 and body["chunk_method"] == "word"
    assert "temperature" not in body  # left at its default: not sent
    # the first audio played before the request ended, in several pieces
    assert int(facts["pieces"]) >= 2
    assert 0 < float(facts["firstAudio"]) < float(facts["total"])
    duration = float(facts["duration"])
    assert duration > 0 and int(facts["seed"]) >= 0
    assert studio.take_audio_duration(1) == pytest.approx(duration, abs=0.01)

    take = page.locator("#take-1")
    text = take.inner_text()
    assert "tenor" in text and f"seed {facts['seed']}" in text and "first audio after" in text
    assert "real-time factor" in text
    assert page.locator("#progress").inner_text().startswith("Done:")
    # the kept take plays (the page has had a click, so the browser lets it)
    played = take.locator("audio").evaluate(
        "a => a.play().then(() => new Promise(r => setTimeout(() => r(a.currentTime), 700)))")
    assert played > 0
    href = take.get_by_role("link", name="Download take 1").get_attribute("href")
    assert href.startswith("blob:")
    page.locator(".take audio").evaluate("a => a.pause()")
    page.screenshot(path=str(shots / "studio-desktop-full.png"), full_page=True)
    page.get_by_text("Advanced", exact=True).click()  # folded, as the page opens
    page.evaluate("() => window.scrollTo(0, 0)")
    bottom = take.evaluate("e => e.getBoundingClientRect().bottom + window.scrollY")
    page.screenshot(path=str(shots / "studio-desktop.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": bottom + 24})


def test_whole_file_and_again_with_this_seed(studio):
    page = studio.page
    studio.label("Playback").select_option("file")
    studio.label("File format").select_option("wav")
    studio.label("Voice").select_option("alto")
    studio.quick(Temperature="0.8")
    first = studio.generate()
    assert studio.speech_bodies[-1]["response_format"] == "wav" and "stream_format" not in studio.speech_bodies[-1]
    assert studio.take_audio_duration(1) == pytest.approx(float(first["duration"]), abs=0.01)

    # change the form, then ask for the take again: its settings and seed come back
    studio.label("Text").fill("Something else entirely.")
    studio.label("Temperature").fill("0.3")
    page.get_by_role("button", name="Again with this seed (take 1)").click()
    page.locator("#take-2 audio[src]").wait_for(state="attached")
    again = page.locator("#take-2").evaluate("e => ({...e.dataset})")
    body = studio.speech_bodies[-1]
    assert body["seed"] == int(first["seed"])  # exactly, though seeds go past what a JS number holds
    assert body["temperature"] == 0.8 and body["voice"] == "alto" and body["input"].startswith("Hello!")
    assert again["seed"] == first["seed"] and again["duration"] == first["duration"]
    assert take_bytes(page, 1) == take_bytes(page, 2)  # the same seed gives the same audio


def test_waiting_for_a_whole_file_shows_the_seconds_waited(studio):
    page = studio.page
    studio.label("Playback").select_option("file")
    studio.quick()

    def slow(route):  # the server's answer, held back as a long text's would be
        answer = route.fetch()
        time.sleep(2.5)
        route.fulfill(response=answer)

    page.route("**/v1/audio/speech", slow)
    page.evaluate("""() => {
        const progress = document.querySelector("#progress");
        window.seenProgress = [];
        new MutationObserver(() => window.seenProgress.push(progress.textContent))
            .observe(progress, { childList: true, subtree: true, characterData: true });
    }""")
    studio.generate()
    seen = page.evaluate("window.seenProgress")
    assert "Generating the whole wav file… 1 s" in seen and "Generating the whole wav file… 2 s" in seen, seen
    assert page.locator("#progress").inner_text().startswith("Done:")
    assert page.locator("#waited").count() == 0  # the clock stops with the wait


def start_long_generation(studio: Studio) -> None:
    """Generate a text long enough to be stopped on any machine, and wait until its first audio has come: a chunk's
    speech ends where the random model samples its end, so one chunk can be short (a single short chunk once
    ended before the click); fifty chunks cannot."""
    studio.label("Text").fill("Stop me if you can. " * 30)
    studio.quick(**{"Max new tokens": "200", "Chunking": "word", "Words per chunk": "3"})
    studio.button("Generate").click()
    studio.page.wait_for_function("() => /received/.test(document.querySelector('#progress').textContent)")


def wait_kept(page, n: int) -> None:
    """Wait until take ``n`` is written to the browser's store (a reload would find it)."""
    page.locator(f"#take-{n}[data-kept=true]").wait_for(state="attached")


def test_stop_keeps_the_audio_made_so_far_as_a_take(studio, server):
    page = studio.page
    start_long_generation(studio)
    # long text: the chunk being generated, of how many, in words and as a bar
    page.wait_for_function("() => /^Chunk \\d+ of 50\\. /.test(document.querySelector('#progress').textContent)")
    bar = page.locator("#chunk-bar")
    assert bar.is_visible() and bar.get_attribute("aria-valuetext").endswith("of 50")
    assert page.evaluate("document.querySelector('#chunk-bar').max") == 50
    studio.button("Stop").click()
    bar.wait_for(state="hidden")
    take = page.locator("#take-1")
    take.locator("audio[src]").wait_for(state="attached")
    assert take.get_attribute("data-status") == "stopped" and "stopped before the end" in take.inner_text()
    assert page.locator("#progress").inner_text() == "Stopped."
    assert studio.button("Generate").is_enabled()
    duration = float(take.get_attribute("data-duration"))
    assert duration > 0
    assert studio.take_audio_duration(1) == pytest.approx(duration, abs=0.01)  # the audio that came, as a WAV
    assert take.get_by_role("link", name="Download take 1").get_attribute("download").endswith(".wav")

    def stopped() -> bool:
        return httpx.get(f"{server.url}/health", timeout=10).json()["model"]["decoding"] == 0

    wait_until(stopped, 30, "the server to stop generating (the page closed the stream)")
    wait_kept(page, 1)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#take-1 audio[src]").wait_for(state="attached")
    assert page.locator("#take-1").get_attribute("data-status") == "stopped"
    assert studio.take_audio_duration(1) == pytest.approx(duration, abs=0.01)


def test_escape_stops_an_mp3_stream_and_keeps_what_came(studio, server):
    page = studio.page
    studio.label("File format").select_option("mp3")
    start_long_generation(studio)
    # a few kB of mp3 (the encoder's first piece may hold no whole frame yet), then Esc
    page.wait_for_function("() => Number((/(\\d+) kB of mp3 received/.exec("
                           "document.querySelector('#progress').textContent) || [0, 0])[1]) >= 4")
    page.keyboard.press("Escape")
    take = page.locator("#take-1")
    take.locator("audio[src]").wait_for(state="attached")
    assert take.get_attribute("data-status") == "stopped"
    name, data = download(page, 1)
    assert name.endswith(".mp3") and data.startswith(AUDIO_MAGIC["mp3"])
    assert studio.take_audio_duration(1) > 0  # the mp3 bytes that came play on their own
    assert page.locator("#progress").inner_text() == "Stopped."


AUDIO_MAGIC = {"mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xe3"), "opus": (b"OggS",),
               "aac": (b"\xff\xf1", b"\xff\xf9"), "flac": (b"fLaC",), "wav": (b"RIFF",)}


def download(page, n: int) -> tuple[str, bytes]:
    """Take ``n``'s download, as a person gets it (a click on its link): the file's name and bytes."""
    with page.expect_download() as info:
        page.get_by_role("link", name=f"Download take {n}").click()
    return info.value.suggested_filename, Path(info.value.path()).read_bytes()


def take_bytes(page, n: int) -> bytes:
    return download(page, n)[1]


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_streaming_in_each_format_plays_and_downloads_that_format(studio, fmt):
    page = studio.page
    studio.label("File format").select_option(fmt)
    studio.label("Voice").select_option("tenor")
    studio.quick()
    facts = studio.generate()
    body = studio.speech_bodies[-1]
    assert body["stream_format"] == "sse" and body["response_format"] == fmt
    assert int(facts["pieces"]) >= 2 and 0 < float(facts["firstAudio"]) < float(facts["total"])
    name, data = download(page, 1)
    assert name == f"higgs-take-1-seed-{facts['seed']}.{fmt}"
    assert data.startswith(AUDIO_MAGIC[fmt]), data[:8]
    assert studio.take_audio_duration(1) > 0  # the take plays in the page
    # the browser decodes the file: as long as the server said, give or take the codec's padding
    assert studio.decoded_duration(data) == pytest.approx(float(facts["duration"]), abs=0.15)
    assert page.locator("#progress").inner_text().startswith("Done:")


def test_a_take_survives_a_reload_and_can_be_deleted(studio):
    page = studio.page
    studio.label("Voice").select_option("alto")
    studio.label("Text").fill("Keep me after a reload.")
    studio.quick(Seed="1234", Temperature="0.7")
    facts = studio.generate()
    wait_kept(page, 1)
    before = page.locator("#take-1").inner_text()
    audio = take_bytes(page, 1)

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    take = page.locator("#take-1")
    take.locator("audio[src]").wait_for(state="attached")
    assert take.inner_text() == before  # text, voice, seed, settings and timings
    assert take_bytes(page, 1) == audio
    assert take.get_attribute("data-seed") == facts["seed"] == "1234"
    # "again with this seed" still knows the settings it was made with
    studio.label("Text").fill("Something else.")
    page.get_by_role("button", name="Again with this seed (take 1)").click()
    page.locator("#take-2 audio[src]").wait_for(state="attached")
    body = studio.speech_bodies[-1]
    assert body["input"] == "Keep me after a reload." and body["seed"] == 1234 and body["temperature"] == 0.7
    assert take_bytes(page, 2) == audio  # same seed, same settings: the same audio
    wait_kept(page, 2)

    # deleted: gone now and after a reload (two presses, so a stray one deletes nothing)
    take.get_by_role("button", name="Delete take 1").click()
    take.get_by_role("button", name="Press again to delete take 1").click()
    take.wait_for(state="detached")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#take-2 audio[src]").wait_for(state="attached")
    assert page.locator(".take").count() == 1
    studio.button("Delete all takes").click()
    studio.button("Press again to delete all takes").click()
    page.locator("#take-2").wait_for(state="detached")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator(".take").count() == 0


def test_character_counter_shows_the_limit_and_refuses_more(studio, server):
    page = studio.page
    limit = httpx.get(f"{server.url}/health", timeout=10).json()["limits"]["max_text_chars"]
    counter = page.locator("#char-count")
    studio.label("Text").fill("Hello.")
    page.wait_for_function("() => / of /.test(document.querySelector('#char-count').textContent)")
    assert counter.inner_text() == f"6 of {limit:,} characters"
    studio.label("Text").fill("a" * (limit + 1))
    assert counter.get_attribute("data-over") == "true"
    studio.button("Generate").click()
    message = error_beside(studio, "Text")
    assert f"{limit + 1:,}" in message and f"{limit:,}" in message
    assert studio.speech_bodies == []  # refused in the page, before the server


def test_a_txt_file_opens_as_the_text(studio, tmp_path):
    script = tmp_path / "speech.txt"
    script.write_text("\ufeffA text from a file.\r\nWith a second line.\r\n", encoding="utf-8")
    studio.page.get_by_label("Open a .txt file as the text").set_input_files(str(script))
    studio.page.wait_for_function("() => document.querySelector('#text').value.startsWith('A text')")
    assert studio.label("Text").input_value() == "A text from a file.\nWith a second line.\n"
    studio.quick()
    studio.generate()
    assert studio.speech_bodies[-1]["input"] == "A text from a file.\nWith a second line.\n"


def test_demo_note_shows_for_the_tiny_random_model(studio, server):
    assert httpx.get(f"{server.url}/health", timeout=10).json()["model"]["demo"] is True
    note = studio.page.locator("#demo-note")
    note.wait_for(state="visible")
    assert "noise" in note.inner_text()


def test_model_download_progress_is_shown(page, server):
    """While the model downloads, /health carries the download's progress (tests/weights/test_fetch.py checks the
    server's side against a slow hub); the page shows it instead of "Model loading…"."""
    def downloading(route):
        body = route.fetch().json()
        body["model"] = {"state": "loading", "demo": False, "download": {
            "repo": "bosonai/higgs-audio-v2-generation-3B-base", "file": "model-00002-of-00003.safetensors",
            "file_bytes_done": 1_000_000_000, "file_bytes": 4_000_000_000, "files_done": 4, "files": 14,
            "bytes_done": 2_500_000_000, "bytes": 11_000_000_000, "rate_bytes_s": 50_000_000, "eta_s": 170.0}}
        route.fulfill(json=body)

    page.route("**/health", downloading)
    studio = Studio(page, server.url + "/").open()
    state = page.locator("#model-state")
    page.wait_for_function("() => /Downloading/.test(document.querySelector('#model-state').textContent)")
    assert state.inner_text() == ("Downloading the model: 2.5 GB of 11.0 GB (22%) · file 5 of 14 · 50.0 MB/s · "
                                  "2 min 50 s left")
    assert page.locator("#download-bar").evaluate("b => b.value") == pytest.approx(2.5 / 11)
    assert studio.errors == []


# -- voices --------------------------------------------------------------------------------------------------------

def test_a_preset_plays_its_reference_recording(studio, server):
    page = studio.page
    fetched = []
    page.on("response", lambda r: fetched.append(r) if "/v1/audio/voices/tenor/audio" in r.url else None)
    page.locator(".voice-item[data-voice=tenor]").get_by_role("button", name="Play tenor").click()
    page.wait_for_function("() => [...document.querySelectorAll('.voice-item button')].some("
                           "b => b.textContent === 'Stop')")
    assert studio.speech_bodies == []  # the recording itself, not a sample generated in the voice
    assert [r.status for r in fetched] == [200]
    wav = server.root / "voices" / "tenor.wav"
    assert fetched[0].headers["content-type"] == "audio/wav"
    assert int(fetched[0].headers["content-length"]) == wav.stat().st_size


def test_voice_audio_route_needs_the_key(keyed_server):
    url = f"{keyed_server.url}/v1/audio/voices/tenor/audio"
    assert httpx.get(url, timeout=10).status_code == 401
    good = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert good.status_code == 200 and good.headers["content-type"] == "audio/wav"
    assert good.content == (keyed_server.root / "voices" / "tenor.wav").read_bytes()
    missing = httpx.get(f"{keyed_server.url}/v1/audio/voices/nobody/audio", headers={"Authorization": f"Bearer {KEY}"},
                        timeout=10)
    assert missing.status_code == 404


def test_voice_uploaded_through_the_page_then_used_and_deleted(studio, tmp_path):
    page = studio.page
    wav = tmp_path / "mine.wav"
    wav.write_bytes(encoded("wav", seconds=1.5))
    studio.label("Name").fill("studio_upload")
    studio.label("Audio file").set_input_files(str(wav))
    studio.label("Transcript").fill("A voice uploaded from the studio page.")
    studio.button("Add voice").click()
    item = page.locator(".voice-item[data-voice=studio_upload]")
    item.wait_for()
    assert "upload" in item.inner_text()
    assert studio.label("Voice").input_value() == "studio_upload"  # the new voice is picked
    # its play button plays the reference the page uploaded
    item.get_by_role("button", name="Play studio_upload").click()
    page.wait_for_function("() => [...document.querySelectorAll('.voice-item button')].some("
                           "b => b.textContent === 'Stop')")

    studio.quick()
    facts = studio.generate()
    assert studio.speech_bodies[-1]["voice"] == "studio_upload"
    assert float(facts["duration"]) > 0
    assert "studio_upload" in page.locator("#take-1 .take-title").inner_text()

    # "keep this voice" on the take uploads the take's audio with its text
    page.get_by_role("button", name="Keep this voice (take 1)").click()
    page.get_by_label("Name for the voice").fill("kept_take")
    page.get_by_role("button", name="Save voice").click()
    page.locator(".voice-item[data-voice=kept_take]").wait_for()
    assert "Hello!" in page.locator(".voice-item[data-voice=kept_take] .transcript").inner_text()

    # uploads can be deleted (two presses), presets cannot
    item.get_by_role("button", name="Delete studio_upload").click()
    item.get_by_role("button", name="Press again to delete studio_upload").click()
    item.wait_for(state="detached")
    assert page.locator(".voice-item[data-voice=tenor]").get_by_role("button", name="Delete tenor").count() == 0


def test_save_voice_field_keeps_the_generation(studio):
    page = studio.page
    studio.label("Voice description").fill("feminine; warm; British accent")
    studio.label("Also keep as voice").fill("designed_voice")
    studio.quick()
    studio.generate()
    body = studio.speech_bodies[-1]
    assert body["save_voice"] == "designed_voice" and body["speaker_descriptions"] == {
        "SPEAKER0": "feminine; warm; British accent"}
    page.locator(".voice-item[data-voice=designed_voice]").wait_for()
    assert page.locator("#take-1 .keep").inner_text() == "Kept as designed_voice"


def test_recording_from_the_microphone(studio):
    page = studio.page
    record = studio.button("Record from microphone")
    assert record.is_enabled()
    record.click()
    stop = studio.button("Stop recording")
    stop.wait_for()  # recording starts once the browser grants the microphone, which may take a while
    page.wait_for_timeout(1500)
    stop.click()
    page.locator("#recording[src]").wait_for(state="attached")
    assert page.locator("#record-state").inner_text().startswith("Recorded")
    studio.label("Name").fill("from_the_mic")
    studio.label("Transcript").fill("A tone from the fake microphone.")
    studio.button("Add voice").click()
    page.locator(".voice-item[data-voice=from_the_mic]").wait_for()
    seconds = float(page.locator(".voice-item[data-voice=from_the_mic] .voice-head .muted").inner_text().split()[0])
    assert 0.8 < seconds < 3


# -- dialogue ------------------------------------------------------------------------------------------------------

def test_two_speaker_dialogue(studio, shots):
    page = studio.page
    page.get_by_label("Dialogue", exact=True).check()
    assert not studio.label("Text").is_visible()
    studio.label("Speaker 1 voice").select_option("tenor")
    studio.label("Speaker 2 voice").select_option("alto")
    studio.label("Line 1 text").fill("Are we on the air?")
    studio.label("Line 2 text").fill("We are, and everyone can hear us.")
    studio.label("Line 2 text").press("Enter")  # Enter starts the next line, for the other speaker
    assert studio.label("Line 3 speaker").input_value() == "0"
    studio.label("Line 3 text").fill("Then say hello.")
    studio.quick()
    facts = studio.generate()
    body = studio.speech_bodies[-1]
    assert body["input"] == ("[SPEAKER0] Are we on the air?\n[SPEAKER1] We are, and everyone can hear us.\n"
                             "[SPEAKER0] Then say hello.")
    assert body["voice"] == "tenor,alto" and "speaker_descriptions" not in body
    assert float(facts["duration"]) > 0
    assert "dialogue" in page.locator("#take-1 .take-title").inner_text()

    # a description instead of a voice for the second speaker
    studio.label("Speaker 2 voice").select_option("")
    studio.label("Speaker 2 description").fill("masculine; deep; slow")
    studio.generate()
    body = studio.speech_bodies[-1]
    assert body["voice"] == "tenor" and body["speaker_descriptions"] == {"SPEAKER1": "masculine; deep; slow"}
    page.locator(".compose").screenshot(path=str(shots / "studio-dialogue.png"))


def test_a_pasted_script_becomes_named_speakers(studio):
    page = studio.page
    page.get_by_label("Dialogue", exact=True).check()
    page.get_by_text("Paste a script", exact=True).click()
    studio.label("Script").fill("Alice: Are we on the air?\nBob: We are,\nand everyone can hear us.\n\nAlice: Then say "
                                "hello.\n")
    studio.button("Use this script").click()
    assert studio.label("Speaker 1 name").input_value() == "Alice"
    assert studio.label("Speaker 2 name").input_value() == "Bob"
    assert page.locator("#speaker-list > li").count() == 2 and page.locator("#line-list > li").count() == 3
    assert studio.label("Line 2 text").input_value() == "We are, and everyone can hear us."
    assert studio.label("Line 3 speaker").evaluate("s => s.selectedOptions[0].textContent") == "Alice"
    # a speaker renamed on the page is renamed in the line pickers
    studio.label("Speaker 2 name").fill("Bobby")
    studio.label("Speaker 2 name").press("Tab")
    assert studio.label("Line 2 speaker").evaluate("s => s.selectedOptions[0].textContent") == "Bobby"
    studio.label("Speaker 1 voice").select_option("tenor")
    studio.label("Speaker 2 voice").select_option("alto")
    studio.quick()
    studio.generate()
    body = studio.speech_bodies[-1]
    assert body["input"] == ("[SPEAKER0] Are we on the air?\n[SPEAKER1] We are, and everyone can hear us.\n"
                             "[SPEAKER0] Then say hello.")
    assert body["voice"] == "tenor,alto"
    assert "Alice: tenor" in page.locator("#take-1 .take-title").inner_text()

    # [SPEAKERn] lines keep their numbers; a script whose first line names nobody is refused beside the box
    page.get_by_text("Paste a script", exact=True).click()
    studio.label("Script").fill("[speaker1] I speak first.\n[SPEAKER0] And I answer.")
    studio.button("Use this script").click()
    assert studio.label("Line 1 speaker").input_value() == "1" and studio.label("Line 2 speaker").input_value() == "0"
    page.get_by_text("Paste a script", exact=True).click()
    studio.label("Script").fill("no speaker here\nAlice: hi")
    studio.button("Use this script").click()
    assert "names no speaker" in error_beside(studio, "Script")


# -- errors --------------------------------------------------------------------------------------------------------

def error_beside(studio: Studio, label: str) -> str:
    """The error shown next to the control labelled ``label`` (linked to it with aria-describedby)."""
    control = studio.label(label)
    control.and_(studio.page.locator("[aria-invalid=true]")).wait_for()
    described = next(i for i in control.get_attribute("aria-describedby").split() if i.endswith("-error"))
    box = studio.page.locator(f"#{described}")
    assert box.is_visible()
    # beside it: the error follows the control in its field
    assert control.evaluate("(c, id) => c.nextElementSibling && c.nextElementSibling.id === id", described)
    return box.inner_text()


def test_bad_input_shown_next_to_its_field(studio, shots):
    page = studio.page
    studio.quick(Temperature="9")
    studio.button("Generate").click()
    message = error_beside(studio, "Temperature")
    assert "5" in message  # the server's reason: at most 5
    assert page.locator(".take").count() == 0
    assert studio.label("Temperature").evaluate("e => e === document.activeElement")
    page.locator("#advanced").screenshot(path=str(shots / "studio-error.png"))

    # editing the field clears its error; the page stays usable
    studio.label("Temperature").fill("0.5")
    assert studio.label("Temperature").get_attribute("aria-invalid") is None
    studio.label("Also keep as voice").fill("not a name!")
    studio.button("Generate").click()
    assert "voice name" in error_beside(studio, "Also keep as voice")
    studio.label("Also keep as voice").fill("")
    studio.label("Text").fill("   ")
    studio.button("Generate").click()
    assert "empty" in error_beside(studio, "Text")
    studio.label("Text").fill("Fixed now.")
    facts = studio.generate()
    assert float(facts["duration"]) > 0
    assert page.locator("[aria-invalid=true]").count() == 0


# -- the API key ---------------------------------------------------------------------------------------------------

def test_api_key_asked_once_and_kept_for_the_tab(page, keyed_server, context):
    studio = Studio(page, keyed_server.url + "/")
    page.goto(studio.url)
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    # closed without a key: the page stays usable and offers the key again
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_selector("body[data-ready=true]")
    assert "not available" in page.locator("#voices-status").inner_text()
    studio.button("Enter API key").click()
    dialog.wait_for()
    key_box = page.get_by_label("API key", exact=True)
    key_box.fill("a-wrong-key")
    page.get_by_role("button", name="Use this key").click()
    dialog.wait_for()
    assert "refused" in dialog.inner_text()
    key_box.fill(KEY)
    key_box.press("Enter")
    page.locator(".voice-item[data-voice=tenor]").wait_for()
    assert page.evaluate("() => sessionStorage.getItem('higgs-studio-api-key')") == KEY
    studio.label("Voice").select_option("tenor")
    studio.quick()
    facts = studio.generate()
    assert float(facts["duration"]) > 0

    # a reload keeps the key (this tab), and nothing asks again
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator(".voice-item[data-voice=tenor]").wait_for()
    assert not dialog.is_visible()
    assert studio.button("Change API key").is_visible()
    # another tab has its own session: it asks
    other = context.new_page()
    other.goto(studio.url)
    other.get_by_role("dialog").wait_for()
    other.close()
    assert studio.errors == []


# -- plain and accessible ------------------------------------------------------------------------------------------

def test_every_control_is_labelled_and_the_keyboard_generates(studio):
    page = studio.page
    for mode in ("One voice", "Dialogue"):
        page.get_by_label(mode, exact=True).check()
        page.locator("#advanced").evaluate("d => d.open = true")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
            .filter(e => e.type !== 'hidden' && e.getClientRects().length)
            .filter(e => !(e.labels && [...e.labels].some(l => l.textContent.trim())) && !e.getAttribute('aria-label')
                         && !e.textContent.trim())
            .map(e => e.outerHTML.slice(0, 80))""")
        assert unlabelled == []
    page.get_by_label("One voice", exact=True).check()
    for name in ("Text", "Voice", "Scene preset", "Scene", "Temperature", "Top-p", "Top-k", "Seed", "Max new tokens",
                 "Chunking", "Words per chunk", "Speed", "Playback", "Name", "Audio file", "Transcript"):
        assert studio.label(name).count() == 1, name
    assert studio.button("Record from microphone").count() == 1

    # keyboard only: type the text, Ctrl+Enter generates
    studio.quick()
    studio.label("Text").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("Typed and sent with the keyboard.")
    page.keyboard.press("Control+Enter")
    page.locator("#take-1 audio[src]").wait_for(state="attached")
    assert studio.speech_bodies[-1]["input"] == "Typed and sent with the keyboard."
    # the scene presets fill the scene box; "No scene" sends an explicit empty scene
    studio.label("Scene preset").select_option(label="Phone call")
    assert "phone line" in studio.label("Scene").input_value()
    studio.label("Scene preset").select_option(label="No scene")
    studio.generate()
    assert studio.speech_bodies[-1]["scene_prompt"] == ""


def test_server_state_is_shown(studio):
    state = studio.page.locator("#server-state")
    studio.page.wait_for_function("() => document.querySelector('#server-state').dataset.state === 'ready'")
    assert re.search(r"Model ready\s*· queue 0 waiting, \d+ generating", state.inner_text())


def test_words_are_highlighted_when_the_server_sends_timings(studio):
    """Word timings are not sent by the server yet: the page's handling is checked by adding a
    `speech.audio.words` event to a real streamed answer."""
    page = studio.page
    words = [{"word": "Hello!", "start": 0.0, "end": 0.4}, {"word": "This", "start": 0.4, "end": 0.7},
             {"word": "is", "start": 0.7, "end": 0.9}, {"word": "Higgs", "start": 0.9, "end": 60.0}]

    def add_words(route):
        response = route.fetch()
        body = re.sub(r'data: \{"type": "speech\.audio\.words".*?\n\n', "", response.text())  # only these
        event = f"data: {json.dumps({'type': 'speech.audio.words', 'words': words})}\n\n"
        cut = body.index('data: {"type": "speech.audio.done"')
        route.fulfill(response=response, body=body[:cut] + event + body[cut:])

    page.route("**/v1/audio/speech", add_words)
    studio.quick()
    studio.generate()
    spans = page.locator("#take-1 .take-words .word")
    assert spans.all_inner_texts() == ["Hello!", "This", "is", "Higgs"]
    page.locator("#take-1 audio").evaluate("a => { a.currentTime = 0.95; return a.play(); }")
    page.locator("#take-1 .take-words .word.spoken").wait_for()
    assert page.locator("#take-1 .take-words .word.spoken").inner_text() == "Higgs"
    page.locator("#take-1 audio").evaluate("a => a.pause()")


def test_speech_recognition_options_follow_the_server(studio, server):
    """Word times, checks and captions are offered when the server's speech route takes them (its OpenAPI
    document says so); the page then shows the words heard and a captions download on the take."""
    page = studio.page
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["components"]["schemas"]["OpenAISpeech"]
    offered = {"timestamps", "verify", "captions"} & set(schema["properties"])
    studio.quick()
    assert page.locator("#recognition").is_visible() == bool(offered)
    if "timestamps" not in offered:
        return
    page.get_by_label("Highlight words as they are heard").check()
    if "captions" in offered:
        studio.label("Captions").select_option("vtt")
    studio.generate()
    body = studio.speech_bodies[-1]
    assert body["timestamps"] == "word" and body.get("captions", "vtt") == "vtt"
    assert page.locator("#take-1 .take-words .word").count() > 0  # the words the server heard
    if "captions" in offered:
        with page.expect_download() as info:
            page.get_by_role("link", name="Download captions of take 1").click()
        assert info.value.suggested_filename.endswith(".vtt")
        assert Path(info.value.path()).read_text().startswith("WEBVTT")
    # word times come with the stream: the whole-file mode turns the option off
    studio.label("Playback").select_option("file")
    assert page.get_by_label("Highlight words as they are heard").is_disabled()


# -- a phone's width -----------------------------------------------------------------------------------------------

@pytest.fixture()
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    yield context.new_page()
    context.close()


def test_phone_width_fits_and_works(server, phone, shots):
    page = phone
    studio = Studio(page, server.url + "/").open()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    # Generate is on the first screen, unscrolled, and nothing covers it
    assert page.evaluate("() => window.scrollY") == 0
    reachable = page.evaluate("""() => {
        const r = document.querySelector('#generate').getBoundingClientRect();
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return r.bottom <= window.innerHeight && r.top >= 0 && hit && hit.id === 'generate';
    }""")
    assert reachable
    studio.label("Voice").select_option("alto")
    studio.quick()
    page.locator("#advanced").evaluate("d => d.open = false")
    facts = studio.generate()
    assert float(facts["duration"]) > 0
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(shots / "studio-phone.png"))
    page.screenshot(path=str(shots / "studio-phone-full.png"), full_page=True)
    assert studio.errors == []
