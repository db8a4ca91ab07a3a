"""Deployment files and bootstrap.sh: linted elsewhere (scripts/lint.sh), exercised here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from conftest import REPO, SHARED_VOICES, shared_voices_or_skip
from fixture_voices import write_voices
from higgs_worker.jobs.request import JobRequest
from higgs_worker.core.errors import RequestError
from servers import free_port, serve_folder, wait_until


def run_lines(dockerfile: str) -> list[str]:
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_thin_image_installs_no_torch():
    runs = run_lines("Dockerfile.runpod.ultra")
    installs = [r for r in runs if "install" in r or "sync" in r]
    assert installs == ["RUN pip install --no-cache-dir uv==0.13.9"]
    text = (REPO / "Dockerfile.runpod.ultra").read_text()
    assert "torch" not in text.split("FROM", 1)[1].replace("No torch", "")
    assert 'CMD ["/app/bootstrap.sh"]' in text
    assert "FROM python:3.11-slim" in text


def test_full_image_bakes_the_locked_runtime():
    runs = " ".join(run_lines("Dockerfile"))
    assert "uv pip sync" in runs and "requirements.lock" in runs
    assert "--compile-bytecode" in runs  # a cold start does not compile PyTorch's modules
    assert "BAKE_WEIGHTS" in runs and "/models/model" in runs and "/runpod-volume" not in runs


def test_runtime_lock_pins_the_required_stack():
    lock = (REPO / "requirements.lock").read_text()
    for pin in ("torch==2.9.1", "torchaudio==2.9.1", "runpod==", "fastapi=="):
        assert re.search(rf"^{re.escape(pin)}", lock, re.M), pin
    assert re.search(r"^transformers==5\.", lock, re.M)
    assert "pytest" not in lock  # test tools stay in requirements-dev.lock


def test_endpoint_template_and_hub_tests():
    template = json.loads((REPO / "deploy/runpod-endpoint.json").read_text())
    assert template["imageName"] == "ghcr.io/OWNER/higgs-audio-runpod:TAG"  # the workflow substitutes this
    workflow = (REPO / ".github/workflows/build-runpod-container.yml").read_text()
    assert "ghcr.io/OWNER/higgs-audio-runpod:TAG" in workflow and "linux/amd64" in workflow
    assert template["env"]["VOLUME_ROOT"] == "/runpod-volume"
    tests = json.loads((REPO / ".runpod/tests.json").read_text())["tests"]
    JobRequest.parse(tests[0]["input"])
    with pytest.raises(RequestError):
        JobRequest.parse(tests[1]["input"])


def test_ci_workflow_tests_before_the_image_is_built():
    import yaml

    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    triggers = ci[True] if True in ci else ci["on"]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    steps = " ".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in ci["jobs"]["test"]["steps"])
    for needed in ("scripts/test.sh", "scripts/lint.sh", "astral-sh/setup-uv", "actions/setup-python"):
        assert needed in steps, needed
    image = ci["jobs"]["image"]
    assert image["needs"] == "test" and "refs/heads/main" in image["if"]
    assert image["uses"] == "./.github/workflows/build-runpod-container.yml"
    build = yaml.safe_load((REPO / ".github/workflows/build-runpod-container.yml").read_text())
    build_triggers = build[True] if True in build else build["on"]
    assert "push" not in build_triggers and "workflow_call" in build_triggers  # never builds untested code


def make_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal valid wheel, so the bootstrap's install step runs offline in tests."""
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                  "Tag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(data.encode())}" for path, data in files.items()]
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def bootstrap(env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    full = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "TOKENIZER_PATH", "VIRTUAL_ENV")}
    full.update(env)
    started = time.perf_counter()
    proc = subprocess.run(["bash", str(REPO / "bootstrap.sh")], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.perf_counter() - started


@pytest.fixture()
def offline_runtime(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels)
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"tinypkg==1.0 \\\n    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n")
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed")
    return {"LOCK_FILE": str(lock), "UV_OFFLINE": "1", "UV_NO_INDEX": "1", "UV_FIND_LINKS": str(wheels),
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "APP_DIR": str(REPO), "PYTHON_BIN": "python3",
            "FETCH_VOICES": "false", "FETCH_MODELS": "false", "MODE": "none",
            "PATH": f"{Path(uv).parent}:{os.environ['PATH']}"}


def test_bootstrap_twice_installs_once(offline_runtime, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    env = {**offline_runtime, "VOLUME_ROOT": str(volume), "LOG_DIR": str(tmp_path / "logs")}
    first, first_s = bootstrap(env, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    envs = list((volume / "runtime").glob("env-*"))
    assert len(envs) == 1 and (envs[0] / ".ready").exists()
    assert list(envs[0].glob("lib/python*/site-packages/tinypkg/__pycache__/*.pyc"))  # compiled at install
    check = subprocess.run([str(envs[0] / "bin/python"), "-c", "import tinypkg; print(tinypkg.VERSION)"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "1.0"
    stamp = (envs[0] / ".ready").stat().st_mtime_ns
    second, second_s = bootstrap(env, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reused, nothing installed" in second.stdout and "installing" not in second.stdout
    assert (envs[0] / ".ready").stat().st_mtime_ns == stamp
    log = (tmp_path / "logs" / "bootstrap.log").read_text()
    assert log.count("starting (mode=none") == 2
    print(json.dumps({"bootstrap_first_s": round(first_s, 2), "bootstrap_second_s": round(second_s, 2)}))


def test_bootstrap_refuses_a_package_whose_hash_is_not_the_locked_one(offline_runtime, tmp_path):
    lock = Path(offline_runtime["LOCK_FILE"])
    lock.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, lock.read_text()))
    volume = tmp_path / "volume"
    volume.mkdir()
    proc, _ = bootstrap({**offline_runtime, "VOLUME_ROOT": str(volume), "LOG_DIR": str(tmp_path / "logs")}, tmp_path)
    assert proc.returncode != 0
    assert "hash" in (proc.stdout + proc.stderr).lower()
    assert not list((volume / "runtime").glob("env-*/.ready"))


def test_bootstrap_removes_only_runtimes_unused_for_a_day(offline_runtime, tmp_path):
    volume = tmp_path / "volume"
    runtimes = volume / "runtime"
    now = time.time()
    for name, age_h in (("env-stale", 30), ("env-in-use", 2), ("env-no-stamp-old", 48)):
        (runtimes / name / "bin").mkdir(parents=True)
        (runtimes / name / ".ready").touch()
        if name != "env-no-stamp-old":
            (runtimes / name / ".last-used").touch()
            os.utime(runtimes / name / ".last-used", (now - age_h * 3600,) * 2)
        os.utime(runtimes / name, (now - age_h * 3600,) * 2)
    proc, _ = bootstrap({**offline_runtime, "VOLUME_ROOT": str(volume), "LOG_DIR": str(tmp_path / "logs")}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = sorted(p.name for p in runtimes.glob("env-*"))
    assert "env-in-use" in left and "env-stale" not in left and "env-no-stamp-old" not in left
    current = [name for name in left if name != "env-in-use"]
    assert len(current) == 1 and (runtimes / current[0] / ".last-used").exists()
    assert "removing the runtime" in proc.stdout


def test_bootstrap_without_a_volume_uses_a_local_folder(offline_runtime, tmp_path):
    env = {**offline_runtime, "VOLUME_ROOT": str(tmp_path / "absent"), "LOCAL_RUNTIME_ROOT": str(tmp_path / "local"),
           "LOG_DIR": str(tmp_path / "logs")}
    proc, _ = bootstrap(env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no writable volume" in proc.stdout
    assert list((tmp_path / "local").glob("env-*/.ready"))


def test_bootstrap_refuses_an_unknown_mode(offline_runtime, tmp_path):
    proc, _ = bootstrap({**offline_runtime, "VOLUME_ROOT": str(tmp_path), "LOG_DIR": str(tmp_path / "l"),
                         "MODE": "bogus"}, tmp_path)
    assert proc.returncode != 0 and "unknown MODE=bogus" in proc.stdout


def test_bootstrap_http_mode_serves_the_volume_voices(tiny_model_dir, tmp_path):
    volume = tmp_path / "volume"
    write_voices(volume / "voices", ["tenor", "alto"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "TOKENIZER_PATH")}
    env.update({"VOLUME_ROOT": str(volume), "LOG_DIR": str(tmp_path / "logs"), "APP_DIR": str(REPO),
                "RUNTIME_PYTHON": sys.executable, "MODE": "http", "PORT": str(port), "HOST": "127.0.0.1",
                "MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                "FETCH_VOICES": "false", "FETCH_MODELS": "false"})
    proc = subprocess.Popen(["bash", str(REPO / "bootstrap.sh")], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read())
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 180, "the server started by bootstrap.sh")
        voices = httpx.get(f"http://127.0.0.1:{port}/v1/audio/voices").json()["data"]
        assert {v["name"] for v in voices if v.get("kind") != "alias"} == {"tenor", "alto"}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "ready in" in (tmp_path / "logs" / "bootstrap.log").read_text()
    assert "serving on" in (tmp_path / "logs" / "server.log").read_text()


def test_bootstrap_fetches_the_pinned_upstream_presets(tmp_path):
    """The real presets, served over HTTP on 127.0.0.1 as their pinned upstream URLs serve them."""
    volume = tmp_path / "volume"
    volume.mkdir()
    env = {"VOLUME_ROOT": str(volume), "LOG_DIR": str(tmp_path / "logs"), "APP_DIR": str(REPO),
           "RUNTIME_PYTHON": sys.executable, "MODE": "none", "FETCH_MODELS": "false", "VOICE_PRESETS": "en_man,belinda"}
    with serve_folder(shared_voices_or_skip()) as mirror:
        proc, _ = bootstrap({**env, "VOICE_PRESETS_URL": mirror.url}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("en_man", "belinda"):
        for ext in (".wav", ".txt"):
            assert (volume / "voices" / f"{name}{ext}").read_bytes() == (SHARED_VOICES / f"{name}{ext}").read_bytes()
    assert not (volume / "voices" / "vex.wav").exists()
