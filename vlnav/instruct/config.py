"""Configuration of ``vlnav instruct``: the speaker, its backend settings, validation.

Loaded like every vlnav config (``vlnav.config.load_config``): from YAML with dotted
overrides; on the command line ``--set instruct.openai.timeout=30``.

Example (a YAML file for ``vlnav instruct --config``)::

    speaker: openai:Qwen2.5-7B-Instruct
    concurrency: 8
    openai: {base_url: http://127.0.0.1:8000/v1, timeout: 60, max_retries: 5}
    validate: {min_words: 10, max_words: 60}
"""

from __future__ import annotations

import dataclasses

from vlnav.config import ConfigError, check_choice, check_range
from vlnav.instruct.summary import SummaryConfig

MODES = ("instruction", "imagine")


@dataclasses.dataclass
class OpenAIConfig:
    """An OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp, hosted APIs)."""

    base_url: str = ""  # empty: $VLNAV_OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (unset: no key sent)
    timeout: float = 60.0  # seconds per request (connect + reply)
    max_retries: int = 5  # further tries after a 429 / 5xx / timeout / broken connection
    backoff_base: float = 1.0  # seconds; try n waits base * 2^n (x 0.5..1 jitter)
    backoff_max: float = 60.0  # cap of one wait, Retry-After included
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 200  # per instruction
    imagine_max_tokens: int = 1500  # per imagined trajectory
    send_seed: bool = True  # pass each item's seed (vLLM and OpenAI honour it)

    def __post_init__(self) -> None:
        check_range("timeout", self.timeout, 0.01, 3600)
        check_range("max_retries", self.max_retries, 0, 100)
        check_range("backoff_base", self.backoff_base, 0.0, 600)
        check_range("backoff_max", self.backoff_max, 0.0, 3600)
        check_range("temperature", self.temperature, 0.0, 2.0)
        check_range("top_p", self.top_p, 0.0, 1.0)
        check_range("max_tokens", self.max_tokens, 1, 100000)
        check_range("imagine_max_tokens", self.imagine_max_tokens, 1, 100000)


@dataclasses.dataclass
class HFConfig:
    """A local transformers causal LM, from a checkpoint folder or the Hugging Face cache."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    batch_size: int = 8
    max_new_tokens: int = 96
    imagine_max_new_tokens: int = 1024
    temperature: float = 0.0  # 0: greedy (reproducible across batchings); > 0 samples
    top_p: float = 1.0
    allow_download: bool = False  # False: a hub id must already be in the local cache

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        check_range("batch_size", self.batch_size, 1, 4096)
        check_range("max_new_tokens", self.max_new_tokens, 1, 100000)
        check_range("imagine_max_new_tokens", self.imagine_max_new_tokens, 1, 100000)
        check_range("temperature", self.temperature, 0.0, 2.0)
        check_range("top_p", self.top_p, 0.0, 1.0)


@dataclasses.dataclass
class ValidateConfig:
    """Checks every generated instruction must pass (see ``vlnav.instruct.validate``)."""

    min_words: int = 8
    max_words: int = 80
    require_landmark: bool = True  # names at least one landmark of its path
    check_objects: bool = True  # names no object category absent from the path's rooms
    check_colours: bool = True  # "red sofa" when the path's sofa is brown
    check_rooms: bool = True  # names no room type that is not on the path
    dedupe: bool = True
    max_steps: int = 40  # imagined trajectories

    def __post_init__(self) -> None:
        check_range("min_words", self.min_words, 1, 1000)
        check_range("max_words", self.max_words, self.min_words, 1000)
        check_range("max_steps", self.max_steps, 2, 1000)


@dataclasses.dataclass
class InstructConfig:
    """``vlnav instruct``: which speaker writes what, and how outputs are checked."""

    speaker: str = "template"  # template | openai:<model> | hf:<id or path>
    mode: str = "instruction"  # instruction | imagine
    seed: int = 0
    max_attempts: int = 4  # generations per item before it is dropped
    concurrency: int = 4  # requests in flight (openai)
    few_shot: int = 3  # example instructions in each prompt
    imagine_examples: int = 2  # simulator trajectories shown per imagined one
    prompts_dir: str = ""  # empty: the shipped assets/prompts
    cache_dir: str = ""  # empty: <out>/cache
    summary: SummaryConfig = dataclasses.field(default_factory=SummaryConfig)
    validate: ValidateConfig = dataclasses.field(default_factory=ValidateConfig)
    openai: OpenAIConfig = dataclasses.field(default_factory=OpenAIConfig)
    hf: HFConfig = dataclasses.field(default_factory=HFConfig)

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_range("max_attempts", self.max_attempts, 1, 100)
        check_range("concurrency", self.concurrency, 1, 1024)
        check_range("few_shot", self.few_shot, 0, 20)
        check_range("imagine_examples", self.imagine_examples, 1, 10)
        from vlnav.instruct.speakers import SPEAKERS

        if self.speaker.partition(":")[0] not in SPEAKERS:
            raise ConfigError(
                f"speaker={self.speaker!r} is not one of template, openai:<model>, hf:<id or path>"
            )
