"""The upstream voice presets, pinned: fetched at run time into ``VOICES_DIR`` and checked by sha256.

The files come from the Apache-2.0 ``boson-ai/higgs-audio`` repository (``examples/voice_prompts``) at a fixed
commit, so a deployment needs nothing but network access on its first start. Several names refer to fictional
or public characters: ``VOICE_PRESETS`` chooses which to install (empty installs none).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

COMMIT = "f04f5df76a6a7b14674e0d6d715b436c422883c6"
BASE_URL = f"https://raw.githubusercontent.com/boson-ai/higgs-audio/{COMMIT}/examples/voice_prompts"


@dataclass(frozen=True)
class Preset:
    name: str
    wav_sha256: str
    txt_sha256: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("belinda", "e663310bfe539efac3350fd6b277214dcddd65d5a46949180f11c719c8b9b769",
           "f7fa48f33b22b6ce75cb4d81e8411d555a43404307b303e6d45ee7f93c663ae0"),
    Preset("broom_salesman", "c9cb4f37dcac12227045845c07c8aef823519cbf7b62bcbc6223158f9d282e1a",
           "5e795c2a0be479fe2e53bce4db009600c23b1e8214f2c00291ff86512b694cb6"),
    Preset("chadwick", "166acd9a8d8bf3e205bf8217dfd47f8232437c0ea128c326bd1a9060c099e003",
           "4a5bca11bb88992322f678aff39cdeb6e1afec28cfe517200406c23698545396"),
    Preset("en_man", "1ca3df71ad1b6968765e69870220d34c6b2c2550a499cf59560d9d764d10b94e",
           "20c5e6b6fa38b9b24a58f203c17989c14ac22bd8093c4bf56d1a58d435a7ecc3"),
    Preset("en_woman", "e1d49dc69f3b0731ed7b10ddf51dfc8f73465d4323f45841d93583d8b1e4d3e6",
           "acffc42ea6c91ce8c58a608d8f9182c3916ecb6b9835c1f4301daf6cf34de2da"),
    Preset("mabel", "9e6c5e522c662c5d6b862d8b17e1618546666ce993dcd560f3bdd34a48bacd9f",
           "6d63c55bff30f6752cb4ea512bfd3a52d50ad6f63d9bf6dc6cb8298e71aca391"),
    Preset("vex", "d95c6dcf7265847edd76989ffb2d3f5a92aa3e2bbd3718317010b49842c98954",
           "affe5ab264710d0dcb8476b4394fe5cab20cd5bab0c577ef4ee1ff5f7edadfe0"),
    Preset("zh_man_sichuan", "53892ece071342958403bc5643f84169a30b89cc0fc79eb69508bfa11dd85e68",
           "de0841a4087d763daa2669e9f6036bc374b5871e02a31bc3509887a5c74dc7f5"),
)}


class PresetError(RuntimeError):
    pass


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def fetch_presets(voices_dir: Path, names: list[str], base_url: str = BASE_URL, timeout: float = 30.0,
                  catalogue: Mapping[str, Preset] = PRESETS) -> list[str]:
    """Install the named presets that are missing or wrong; returns the names installed now.

    ``catalogue`` is the pinned list the files are checked against (the upstream presets unless given).
    """
    import httpx

    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise PresetError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(catalogue)}")
    voices_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    with FileLock(str(voices_dir / ".presets.lock")), httpx.Client(timeout=timeout, follow_redirects=True) as http:
        for name in names:
            preset = catalogue[name]
            targets = [(voices_dir / f"{name}.wav", preset.wav_sha256), (voices_dir / f"{name}.txt", preset.txt_sha256)]
            if all(_sha256(path) == digest for path, digest in targets):
                continue
            for path, digest in targets:
                if _sha256(path) == digest:
                    continue
                response = http.get(f"{base_url}/{path.name}")
                response.raise_for_status()
                got = hashlib.sha256(response.content).hexdigest()
                if got != digest:
                    raise PresetError(f"{path.name}: sha256 {got} does not match the pinned {digest}")
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(response.content)
                tmp.replace(path)
            installed.append(name)
            log.info("voice preset %s installed in %s", name, voices_dir)
    return installed
