"""Every environment variable the worker reads, typed, with its default and meaning.

Nothing else in the package reads ``os.environ`` for configuration: ask :func:`get_settings`.
The README's configuration table is generated from this class (``higgs-worker settings --markdown``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_REPO = "bosonai/higgs-audio-v2-generation-3B-base"
DEFAULT_TOKENIZER_REPO = "bosonai/higgs-audio-v2-tokenizer"
DEFAULT_ASR_REPO = "openai/whisper-large-v3-turbo"
#: A pinned commit of DEFAULT_ASR_REPO, so every worker hears with the same weights.
DEFAULT_ASR_REVISION = "41f01f3fe87f28c78e2fbf8b568835947dd65ed9"
#: The speaker-verification (x-vector) model of the voice check, and a pinned commit of it.
DEFAULT_VOICE_CHECK_REPO = "microsoft/wavlm-base-plus-sv"
DEFAULT_VOICE_CHECK_REVISION = "feb593a6c23c1cc3d9510425c29b0a14d2b07b1e"


class Settings(BaseSettings):
    """The worker's configuration. Field names are the environment variable names, upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      protected_namespaces=())
    _volume_root_reason: str = PrivateAttr("")  # why VOLUME_ROOT is where it is (logged at start)

    # Where things live.
    volume_root: Path | None = Field(None, description="Network volume root; models and voices live below it. Default: `/runpod-volume` when it exists and is writable, else the user's cache folder (`$XDG_CACHE_HOME/higgs-worker`, `~/.cache/higgs-worker`).")
    model_path: Path | None = Field(None, description="Local folder of the LLM repo (default `$VOLUME_ROOT/models/<name of MODEL_REPO>`).")
    tokenizer_path: Path | None = Field(None, description="Local folder of the audio tokenizer repo (default `$VOLUME_ROOT/models/<name of TOKENIZER_REPO>`).")
    model_repo: str = Field(DEFAULT_MODEL_REPO, description="Hugging Face repo of the LLM, fetched into `MODEL_PATH`.")
    model_revision: str = Field("main", description="Revision (branch, tag or commit) of `MODEL_REPO`.")
    tokenizer_repo: str = Field(DEFAULT_TOKENIZER_REPO, description="Hugging Face repo of the audio tokenizer.")
    tokenizer_revision: str = Field("main", description="Revision of `TOKENIZER_REPO`.")
    voices_dir: Path | None = Field(None, description="Voice presets (`NAME.wav` + `NAME.txt`) and uploads (default `$VOLUME_ROOT/voices`).")
    voice_presets: str = Field("belinda,broom_salesman,chadwick,en_man,en_woman,mabel,vex,zh_man_sichuan", description="Upstream presets `fetch-voices` installs into `VOICES_DIR` (pinned URLs, sha256-checked); empty for none.")
    voice_presets_url: str | None = Field(None, description="Mirror to fetch the presets from instead of the pinned upstream commit.")
    voice_aliases: str = Field("", description="Voice names that stand for library voices, as `NAME=VOICE` pairs (`alloy=belinda,onyx=broom_salesman`; VOICE `default` is the model's own voice), over the built-in mapping of OpenAI's names (`alloy`, `ash`, `coral`, `echo`, `fable`, `nova`, `onyx`, `sage`, `shimmer`, ...) onto the presets (the model's own voice where a preset is not installed). Listed by `GET /v1/audio/voices`; a real voice of the same name wins.")
    log_dir: Path | None = Field(None, description="Folder for `bootstrap.log` and `server.log`. Default: `/app/logs` when `/app` is writable (the images), else `logs` in the user's cache folder.")
    higgs_demo: bool = Field(False, description="Offline demo: make (once) and serve the tiny random model instead of the real one.")
    demo_dir: Path | None = Field(None, description="Where the demo's tiny model is written (default `tiny-model` in the user's cache folder).")

    # Model runtime.
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="`auto` picks `cuda` when present, else `cpu`.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="`auto`: bfloat16 on GPU, float32 on CPU.")
    auto_fetch_models: bool = Field(True, description="Download the repos into an empty `MODEL_PATH` / `TOKENIZER_PATH` before loading.")
    preload_models: bool = Field(True, description="Load the model at start instead of on the first request.")
    max_batch_size: int = Field(8, ge=1, le=256, description="Most requests decoded together in one batch.")
    kv_cache_tokens: int = Field(2048, ge=256, description="Initial positions per row of the slot KV cache: it grows (doubling) while a longer prompt runs and goes back once the rows that needed it are done.")
    max_prompt_tokens: int = Field(6144, ge=256, description="Most prompt positions one chunk may take (reference audio, previous chunks, scene and text; 25 a second of audio): reference voices over it are refused (400 naming `ref_audio`), previous chunks are dropped oldest first to stay within it. With `MAX_NEW_TOKENS_LIMIT` it bounds the KV cache one row can hold.")
    decode_path: Literal["auto", "eager", "fast"] = Field("auto", description="The decode step. `eager`: on each batch's own shapes. `fast`: on fixed shapes (batch padded to 1, 2, 4, ... 64 rows), captured once per shape as a CUDA graph and replayed on a GPU, the host's work of a step overlapped with the next; the same greedy codes as `eager`, and the same seeded ones up to rounding (a long run may part at a draw on a boundary). `auto`: `eager` on the CPU; on a GPU, after loading and before the first job, a self-check (a few seconds) feeds the same prompts and forced codes through both paths and compares their logits within the dtype's rounding: `fast` when they agree, else `eager`, logged with the largest difference. The path in use and why are on `/health` and in `higgs-worker check`.")
    verify_max_frames_ratio: float = Field(3.0, ge=1.0, le=16.0, description="Frames a request's speech and voice checks may generate in all, first attempts and retries together, as a multiple of the frames its chunks may take once (their `max_new_tokens`, or their text's budget); past it no chunk is generated again and the best attempt so far is kept (reported as `budget_spent`).")
    strict_weights: bool = Field(True, description="Refuse to load a model or codec whose checkpoint leaves a weight uninitialised (random), holds one the class does not use, or has one of the wrong shape; the error names the first few. `false` loads it anyway with a warning.")
    compile_decode: bool = Field(False, description="GPU only, eager path: `torch.compile` the decode step (experimental).")
    warmup: bool = Field(True, description="Run one short generation at load so the first request pays no warm-up.")
    fitness_min_free_gpu_gb: float = Field(12.0, ge=0, description="Fitness check (`higgs-worker check`, and the RunPod worker before its first job): least GPU memory, in GiB, free or already held by this worker.")
    fitness_canary: Literal["auto", "on", "off"] = Field("auto", description="Fitness check: a spoken canary. One short fixed sentence is generated with a pinned voice (the `en_woman` preset when installed, else the model's own voice) and heard by the speech recognizer; a word error rate over `FITNESS_CANARY_MAX_WER` after `VERIFY_MAX_ATTEMPTS` seeds makes the worker unfit, with what was heard in the reason. `auto`: on where a recognizer is configured (`ASR`), except in demo mode and on a tiny model; `on` needs a recognizer.")
    fitness_canary_max_wer: float = Field(0.4, ge=0, le=5, description="Fitness check: the highest word error rate the spoken canary may be heard with.")
    self_bench: bool = Field(False, description="Run `higgs-worker bench` once at start, after loading and before the first job (about a minute), and log its table: frames/s at batch 1, 8 and 32 and time to first audio at 16 streams, eager and fast side by side.")

    # Speech recognition (Whisper beside the TTS model: speech checks, word timestamps, captions).
    asr: Literal["auto", "on", "off"] = Field("auto", description="Speech recognition model. `auto`: fetched by `fetch-models` when a GPU is present, loaded whenever `ASR_PATH` holds a model (GPU workers, demo mode); `on`: always fetched and loaded; `off`: never.")
    asr_repo: str = Field(DEFAULT_ASR_REPO, description="Hugging Face repo of the Whisper model, fetched into `ASR_PATH`.")
    asr_revision: str = Field(DEFAULT_ASR_REVISION, description="Revision of `ASR_REPO` (a pinned commit by default).")
    asr_path: Path | None = Field(None, description="Local folder of the ASR repo (default `$VOLUME_ROOT/models/<name of ASR_REPO>`; `DEMO_DIR/asr` in demo mode).")
    asr_batch_window_ms: float = Field(5.0, ge=0, le=1000, description="How long the recognizer waits after a first audio window for others to transcribe with it, in ms.")
    asr_max_batch_size: int = Field(16, ge=1, le=256, description="Most audio windows (up to 30 s each) transcribed in one batch.")
    voice_check: Literal["auto", "on", "off"] = Field("auto", description="Speaker-verification model of the voice check (`verify`: each chunk's voice against its speaker's reference). `auto`: fetched by `fetch-models` when a GPU is present, loaded whenever `VOICE_CHECK_PATH` holds a model (GPU workers, demo mode); `on`: always fetched and loaded; `off`: never.")
    voice_check_repo: str = Field(DEFAULT_VOICE_CHECK_REPO, description="Hugging Face repo of the speaker-verification model (a transformers x-vector model such as `WavLMForXVector`), fetched into `VOICE_CHECK_PATH`.")
    voice_check_revision: str = Field(DEFAULT_VOICE_CHECK_REVISION, description="Revision of `VOICE_CHECK_REPO` (a pinned commit by default).")
    voice_check_path: Path | None = Field(None, description="Local folder of the speaker-verification repo (default `$VOLUME_ROOT/models/<name of VOICE_CHECK_REPO>`; `DEMO_DIR/sv` in demo mode).")
    voice_check_min_similarity: float = Field(0.75, ge=-1, le=1, description="Voice check: a chunk whose cosine similarity to its own speaker's reference is under this is generated again (a request may set `verify.min_similarity`). Needs calibrating on real weights (see the README).")
    voice_check_margin: float = Field(0.0, ge=0, le=2, description="Voice check, dialogues: a chunk must be more similar to its own speaker's reference than to any other speaker's by more than this, else it is generated again.")
    voice_check_same_speaker: float = Field(0.86, ge=-1, le=1, description="Voice check, dialogues: the first chunk of a speaker without a reference (it becomes that speaker's reference) is generated again when it is this similar to another speaker's reference (the same-speaker threshold of `microsoft/wavlm-base-plus-sv`'s model card).")
    trim_silence_s: float = Field(0.5, ge=0, le=60, description="Longest silence kept at the end of an utterance, in seconds; longer silence is cut (a request may send `trim_silence: false`).")
    verify_max_wer: float = Field(0.3, ge=0, le=5, description="`verify: true`: a chunk whose word error rate against its text is above this is generated again.")
    verify_max_attempts: int = Field(3, ge=1, le=8, description="`verify: true`: most attempts at one chunk (the best is kept); a request may ask for fewer or, up to 8, more.")
    silence_threshold_db: float = Field(-45.0, ge=-120, le=0, description="Audio quieter than this, in dB below the loudest 20 ms of the utterance, counts as silence.")
    lexicon_path: Path | None = Field(None, description="JSON file of words and their respellings (`{\"Nguyen\": \"Win\"}`) applied to every request before the model; read again when it changes. A request's `pronunciations` win.")
    loudness_target_lufs: float | None = Field(None, ge=-70, le=-5, description="Integrated loudness (LUFS, ITU-R BS.1770) every result is normalised to unless a request sets `loudness`; unset: off.")
    loudness_true_peak_dbtp: float = Field(-1.0, ge=-20, le=0, description="True-peak ceiling (dBTP) of loudness normalisation.")

    # HTTP server.
    host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP server.")
    port_health: int | None = Field(None, ge=1, le=65535, description="Port where `/ping` is also served, as RunPod load-balancing endpoints check it (unset or equal to `PORT`: `/ping` on `PORT` only).")
    api_keys: SecretStr | None = Field(None, description="Comma-separated bearer keys; when set every route but `/ping`, `/health`, the page at `/` and its files under `/static/` needs one (checked from the headers, before the body).")
    public_docs: bool = Field(False, description="With `API_KEYS` set, still serve `/docs`, `/redoc` and `/openapi.json` without a key (they describe the API, not its data).")
    api_keys_share_jobs: bool = Field(False, description="With `API_KEYS` set, every key sees every `/run` job (keys are one tenant). Off: a job belongs to the key that submitted it; other keys get 404 for it and `/purge-queue` cancels only the caller's own.")
    max_connections: int = Field(1000, ge=8, le=1_000_000, description="Most open connections on `PORT` (`PORT_HEALTH` has 64 of its own); kept below the process's open-file limit. A new connection beyond it closes the one that has waited longest without sending a whole request head, else it is refused with 503.")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="Time a connection has to send a whole request head, counted from connecting or from its previous response; then it is closed.")
    body_timeout_s: float = Field(60.0, gt=0, le=3600, description="Time a request has to send its whole body once admitted (408 beyond).")
    max_concurrent_bodies: int = Field(32, ge=1, le=100_000, description="Most request bodies being received at once; more are refused with 503 before a byte is read.")
    max_body_bytes_in_flight: int = Field(128 * 1024 * 1024, ge=1024, description="Most bytes of request bodies held at once, from admission (the declared length is reserved before reading) until the request is answered; a body that does not fit is refused with 503 before it is read. At least `MAX_BODY_BYTES`.")
    speech_timeout_s: float = Field(600.0, gt=0, description="A `/v1/audio/speech` or `/v1/audio/speech/captioned` request running longer is cancelled: 504 for a whole file, an `error` event (SSE) or a cut stream (audio).")
    log_repeat_limit: int = Field(20, ge=1, description="Most log lines with the same message per minute; the rest are dropped, and the next one that passes says how many were.")

    # Request limits.
    max_text_chars: int = Field(20000, ge=1, description="Longest `transcript` accepted, in characters.")
    max_chunks: int = Field(64, ge=1, description="Most text chunks one request may be split into.")
    max_new_tokens_limit: int = Field(4096, ge=1, description="Largest `max_new_tokens` (audio frames per chunk, 25 per second) a request may ask for.")
    max_scene_chars: int = Field(4000, ge=1, description="Longest `scene_prompt` accepted, in characters.")
    max_ref_text_chars: int = Field(4000, ge=1, description="Longest reference transcript accepted, in characters: `ref_text`, and the `transcript` of a voice upload.")
    max_ref_audio_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest decoded reference audio accepted, in bytes.")
    max_ref_audio_seconds: float = Field(60.0, gt=0, description="Longest reference audio accepted, in seconds.")
    max_speakers: int = Field(8, ge=1, description="Most reference voices in one request.")
    allow_ref_audio_urls: bool = Field(False, description="Accept `ref_audio` as an https URL (fetched with SSRF guards).")
    ref_audio_url_allow_http: bool = Field(False, description="Also accept plain http URLs for `ref_audio`.")
    ref_audio_url_allow_loopback: bool = Field(False, description="Let `ref_audio` URLs reach loopback addresses (local development only).")
    ref_audio_url_timeout_s: float = Field(10.0, gt=0, le=120, description="Total time to fetch a `ref_audio` URL, redirects included.")
    max_concurrent_fetches: int = Field(4, ge=1, le=256, description="Most `ref_audio` URLs fetched at once; more wait, within their own `REF_AUDIO_URL_TIMEOUT_S`.")
    max_ref_channels: int = Field(8, ge=1, le=64, description="Most channels a reference audio may have (checked in its header and in every decoded block).")
    max_ref_sample_rate: int = Field(192000, ge=8000, le=768000, description="Highest sample rate of a reference audio, in Hz (checked in its header and in every decoded block).")
    max_concurrent_decodes: int = Field(2, ge=1, le=64, description="Most untrusted reference audios (base64, URL, uploads) decoded at once in the process; more wait.")
    max_uploaded_voices: int = Field(500, ge=0, description="Most voices `POST /v1/audio/voices` may keep in `VOICES_DIR/uploads`.")
    max_uploaded_voice_bytes: int = Field(512 * 1024 * 1024, ge=0, description="Most bytes all uploaded voices together may take on disk.")
    voice_cache_bytes: int = Field(128 * 1024 * 1024, ge=0, description="Memory for decoded voice waveforms kept between requests; the least recently used go first.")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest HTTP request body accepted (413 beyond).")
    max_concurrent_jobs: int = Field(64, ge=1, description="Most jobs queued or running, and speech requests in flight (429 beyond).")

    # Storage.
    aws_access_key_id: SecretStr | None = Field(None, description="S3 access key (standard AWS chain when unset).")
    aws_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    aws_default_region: str | None = Field(None, description="S3 region.")
    aws_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (R2, MinIO); unset for AWS.")
    s3_bucket: str | None = Field(None, description="Default bucket: results over `MAX_INLINE_BYTES` go there when a job names none.")
    s3_presign_expiry_s: int = Field(3600, ge=60, le=7 * 24 * 3600, description="Lifetime of presigned download URLs, in seconds.")
    s3_allowed_buckets: str | None = Field(None, description="Buckets a job may name (comma list, or `*` for any); unset: `S3_BUCKET` alone when set, else none (a job naming a bucket is refused).")
    s3_key_prefix: str = Field("", description="When set, every object key must start with it (default keys are put under it).")
    s3_overwrite: bool = Field(False, description="Allow replacing an existing object; off: a job naming a taken key fails (conditional put).")
    s3_multipart_threshold: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, description="Uploads above this many bytes use multipart upload.")
    max_inline_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest encoded audio returned inline as base64 (RunPod rejects results near 20 MB).")
    stream_chunk_bytes: int = Field(256 * 1024, ge=1024, le=768 * 1024, description="Largest encoded audio piece in one stream message (RunPod allows 1 MB).")
    stream_buffer_pieces: int = Field(16, ge=1, le=4096, description="Most encoded audio pieces waiting between generation and a slow stream client (HTTP streams and a job's unread `/stream` pieces); generation pauses while it is full.")
    stream_stall_timeout_s: float = Field(30.0, gt=0, description="A stream whose client has read nothing for this long while audio waits for it is cancelled and its slot freed (HTTP streams: less than 16 KiB read in this time, however large the pieces; for `stream: true` jobs, no `/stream` call while the buffer is full ends the job FAILED).")

    # Jobs.
    job_retention_s: float = Field(1800.0, gt=0, description="How long finished `/run` jobs stay readable by `/status` (RunPod keeps 30 min).")
    job_timeout_s: float = Field(600.0, gt=0, description="A job running longer ends TIMED_OUT.")
    job_retain_max: int = Field(1000, ge=1, description="Most finished jobs kept for `/status`; beyond it the oldest finished jobs are forgotten first (the newest is always kept).")
    job_retain_bytes: int = Field(256 * 1024 * 1024, ge=0, description="Most bytes of finished jobs' outputs, errors and unread stream pieces kept (inputs are dropped when a job ends); beyond it the oldest finished jobs are forgotten first (the newest is always kept).")
    job_store: str = Field("memory", description="Where `/run` jobs live: `memory` (this process only) or a `redis://` / `rediss://` URL (Redis 7 or Valkey), so replicas share jobs, queue, streams and cancels.")
    job_lease_s: float = Field(30.0, ge=1, le=3600, description="`JOB_STORE=redis://…`: a running job's lease, renewed by its replica's heartbeat; when it lapses (the replica died) another replica runs the job again.")
    job_max_attempts: int = Field(3, ge=1, le=100, description="`JOB_STORE=redis://…`: most times a job is started after replicas died running it; then it ends FAILED with the reason.")
    progress_interval_s: float = Field(2.0, ge=0.2, le=600, description="How often a running job says how far it has come (chunks done of the plan, audio seconds made): its `/status` output while IN_PROGRESS, RunPod's progress updates, and `synth --progress lines`. The first report comes as the first chunk ends (or after a second of it), then at most one per interval.")
    runsync_wait_s: float = Field(90.0, gt=0, description="Default time `/runsync` waits before answering IN_PROGRESS with the job id.")
    webhook_retries: int = Field(2, ge=0, le=10, description="Further attempts to deliver a job's `webhook` after an answer other than 200 (or no answer), as RunPod does.")
    webhook_retry_delay_s: float = Field(10.0, ge=0, le=600, description="Seconds between `webhook` delivery attempts.")
    webhook_timeout_s: float = Field(10.0, gt=0, le=120, description="Most seconds one `webhook` delivery attempt may take, connection included.")
    webhook_allow_http: bool = Field(False, description="Accept plain http `webhook` URLs (https only when off).")
    webhook_allow_private: bool = Field(False, description="Let `webhook` URLs reach loopback and private addresses (local development only; link-local and metadata addresses stay refused).")
    webhook_max_pending: int = Field(1000, ge=1, le=1_000_000, description="Most `webhook` deliveries waiting (first attempts and retries); beyond it a job's webhook is dropped with a warning. A waiting delivery holds the job's id and state, not its output (read from the job store when sent).")
    webhook_max_checks: int = Field(16, ge=1, le=1024, description="Most `webhook` URLs checked (their host resolved) at once when jobs are submitted, on threads of their own (never those serving requests); beyond it `/run` with a webhook answers 503.")
    runpod_stream_handler: bool = Field(False, description="RunPod worker: use the generator handler so `stream: true` jobs stream audio (outputs become lists).")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty turns CORS off.")

    # Realtime speech sessions (the `/v1/realtime/speech` WebSocket).
    realtime_max_sessions_per_key: int = Field(4, ge=1, le=10_000, description="Most `/v1/realtime/speech` sessions open at once per API key (per server without `API_KEYS`); one more is refused (closed with code 1008, the reason naming this setting). Each open session also holds one of the `MAX_CONCURRENT_JOBS` speech slots.")
    realtime_max_turn_chars: int = Field(4000, ge=1, le=1_000_000, description="Most text one turn of a realtime session may take (from its first `input_text_buffer.append` to its commit); an append beyond it is refused with an `error` event naming `text`, and the socket stays open.")
    realtime_idle_timeout_s: float = Field(120.0, gt=0, le=86400, description="A realtime session that sends no event and is sent no audio for this long is closed (code 1000, the reason naming this setting).")
    realtime_min_words: int = Field(4, ge=1, le=200, description="Words a realtime turn waits for before it starts speaking at the first clause or sentence boundary; later segments start at sentence boundaries as text arrives.")
    realtime_flush_idle_s: float = Field(1.0, gt=0, le=600, description="Text buffered in a realtime turn with no new text for this long is spoken without waiting for a boundary (the turn stays open).")

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if self.volume_root is None:
            self.volume_root, self._volume_root_reason = default_volume_root()
        else:
            self._volume_root_reason = "set by VOLUME_ROOT"
        self.log_dir = self.log_dir or (APP_LOGS if _writable(APP_LOGS.parent) else user_cache_dir() / "logs")
        self.demo_dir = self.demo_dir or user_cache_dir() / "tiny-model"
        if self.higgs_demo:
            self.model_path = self.model_path or self.demo_dir / "model"
            self.tokenizer_path = self.tokenizer_path or self.demo_dir / "tokenizer"
            self.asr_path = self.asr_path or self.demo_dir / "asr"
            self.voice_check_path = self.voice_check_path or self.demo_dir / "sv"
        models = self.volume_root / "models"
        self.model_path = self.model_path or models / self.model_repo.rstrip("/").split("/")[-1]
        self.tokenizer_path = self.tokenizer_path or models / self.tokenizer_repo.rstrip("/").split("/")[-1]
        self.asr_path = self.asr_path or models / self.asr_repo.rstrip("/").split("/")[-1]
        self.voice_check_path = self.voice_check_path or models / self.voice_check_repo.rstrip("/").split("/")[-1]
        self.voices_dir = self.voices_dir or self.volume_root / "voices"
        return self

    @field_validator("api_keys")
    @classmethod
    def _keys_present(cls, value: SecretStr | None) -> SecretStr | None:
        # "," or " , " would otherwise leave no key at all, and with no key every route is open
        text = "" if value is None else value.get_secret_value()
        if text.strip() and not [k for k in text.split(",") if k.strip()]:
            raise ValueError("is set but names no key (only commas and spaces); unset it to run without keys")
        return value

    @model_validator(mode="after")
    def _body_budget(self) -> Settings:
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError("MAX_BODY_BYTES_IN_FLIGHT is below MAX_BODY_BYTES: no body of the largest size could "
                             "ever be admitted")
        return self

    @property
    def volume_root_reason(self) -> str:
        return self._volume_root_reason

    @property
    def api_key_list(self) -> list[str]:
        if self.api_keys is None:
            return []
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]


RUNPOD_VOLUME = Path("/runpod-volume")
APP_LOGS = Path("/app/logs")


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/higgs-worker``, or ``~/.cache/higgs-worker``: where a workstation keeps models and voices."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / "higgs-worker"


def default_volume_root() -> tuple[Path, str]:
    """RunPod's volume when it is mounted and writable; otherwise the user's cache folder, never the filesystem
    root. Returns the folder and why it was chosen."""
    if _writable(RUNPOD_VOLUME):
        return RUNPOD_VOLUME, f"{RUNPOD_VOLUME} is mounted and writable"
    return user_cache_dir(), f"no writable {RUNPOD_VOLUME}: the user's cache folder"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()


def settings_table() -> str:
    """The README's configuration table, in Markdown."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default is None else str(default)
        if name in ("volume_root", "log_dir", "demo_dir"):
            shown = ""  # chosen at start (the description says how); `higgs-worker settings` shows the values
        rows.append(f"| `{name.upper()}` | `{shown}` | {field.description} |" if shown else
                    f"| `{name.upper()}` | | {field.description} |")
    return "\n".join(rows)
