"""The voice library: list presets and uploads, upload a voice (multipart), delete an upload.

A name that is no voice is answered 404 with the voice it was likely meant as (names are case-sensitive: ``Alto``
is not ``alto``), as speech requests are answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse

from ..core.errors import RequestError
from ..voices.library import VoiceLibrary

router = APIRouter(tags=["Voices"])


async def _no_voice(voices: VoiceLibrary, name: str) -> HTTPException:
    """404 for ``name``, which is no voice: with the voice it was likely meant as."""
    hint = await asyncio.to_thread(voices.did_you_mean, name)
    return HTTPException(status_code=404, detail=f"no voice {name!r}{hint}")


@router.get("/v1/audio/voices", summary="Presets and uploaded voices, with transcript and duration; then the aliases "
                                     "(OpenAI's voice names) with the voice each stands for")
async def list_voices(request: Request) -> dict[str, Any]:
    service = request.app.state.service
    voices = await asyncio.to_thread(service.voices.describe)
    aliases = service.aliases.describe({v["name"] for v in voices})  # `voice` null: the model's own voice
    return {"object": "list", "data": voices + aliases}


@router.post("/v1/audio/voices", status_code=201, summary="Upload a voice: audio + its transcript + a name")
async def upload_voice(request: Request, audio: UploadFile = File(..., description="Reference audio, any format"),
                       transcript: str = Form(..., description="What the audio says"),
                       name: str = Form(..., description="Voice name: letters, digits, '_' or '-'")) -> dict:
    service = request.app.state.service
    limit = service.settings.max_ref_audio_bytes
    raw = await audio.read(limit + 1)
    if len(raw) > limit:
        raise RequestError("audio", f"is over {limit} bytes (MAX_REF_AUDIO_BYTES)")
    try:
        ref = await asyncio.to_thread(service.voices.add_upload, name, raw, transcript)
    except RequestError as exc:
        if exc.field == "ref_audio":
            raise RequestError("audio", exc.message) from None
        raise
    return {"name": ref.name, "kind": "upload", "transcript": ref.transcript, "duration_s": round(ref.duration_s, 3)}


@router.get("/v1/audio/voices/{name}/audio", summary="A voice's reference recording (WAV), to hear it",
            response_class=FileResponse, responses={200: {"content": {"audio/wav": {}}}, 404: {}})
async def voice_audio(name: str, request: Request) -> FileResponse:
    voices = request.app.state.service.voices
    wav = await asyncio.to_thread(voices.reference_file, name)
    if wav is None:
        raise await _no_voice(voices, name)
    return FileResponse(wav, media_type="audio/wav", headers={"Cache-Control": "private, no-cache"})


@router.delete("/v1/audio/voices/{name}", summary="Delete an uploaded voice")
async def delete_voice(name: str, request: Request) -> dict[str, Any]:
    voices = request.app.state.service.voices
    deleted = await asyncio.to_thread(voices.delete_upload, name)
    if not deleted:
        raise await _no_voice(voices, name)
    return {"name": name, "deleted": True}
