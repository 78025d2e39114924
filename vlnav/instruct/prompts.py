"""Prompts for LLM speakers, built from the files in ``assets/prompts``.

``instruction_system.txt`` / ``instruction_user.txt`` (``$summary``) and the few-shot pairs
of ``instruction_examples.yaml`` make the chat for one instruction; ``imagine_system.txt``
/ ``imagine_user.txt`` (``$count``, ``$examples``, ``$start_room``, ``$goal_room``,
``$steps``) the chat for one imagined trajectory. Templates use ``string.Template``
placeholders so that prompt text may contain braces. Which examples a prompt shows, and in
which order, follows the item's seed: a regenerated item gets a different prompt.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from vlnav import VlnavError
from vlnav.instruct.imagine import TextTrajectory
from vlnav.instruct.summary import PathSummary

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "prompts"
FILES = (
    "instruction_system.txt",
    "instruction_user.txt",
    "instruction_examples.yaml",
    "imagine_system.txt",
    "imagine_user.txt",
)

Messages = list[dict[str, str]]


def prompt_hash(messages: Messages) -> str:
    """A short stable hash of a chat (recorded as provenance)."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class PromptBook:
    """The prompt files of one folder, read once."""

    instruction_system: str
    instruction_user: string.Template
    examples: list[tuple[str, str]]  # (summary text, instruction)
    imagine_system: str
    imagine_user: string.Template
    folder: Path

    @classmethod
    def load(cls, folder: str | Path | None = None) -> PromptBook:
        folder = Path(folder) if folder else PROMPTS_DIR
        texts = {}
        for name in FILES:
            path = folder / name
            if not path.is_file():
                raise VlnavError(f"prompt file not found: {path} (set instruct.prompts_dir)")
            texts[name] = path.read_text().strip()
        try:
            raw = yaml.safe_load(texts["instruction_examples.yaml"]) or {}
            examples = [
                (str(e["summary"]).strip(), str(e["instruction"]).strip()) for e in raw["examples"]
            ]
        except (yaml.YAMLError, KeyError, TypeError) as e:
            raise VlnavError(
                f"{folder / 'instruction_examples.yaml'}: expected 'examples' with "
                f"'summary' and 'instruction' ({type(e).__name__})"
            ) from None
        return cls(
            texts["instruction_system.txt"],
            string.Template(texts["instruction_user.txt"]),
            examples,
            texts["imagine_system.txt"],
            string.Template(texts["imagine_user.txt"]),
            folder,
        )

    def instruction_messages(self, summary: PathSummary, seed: int, few_shot: int) -> Messages:
        """System prompt, ``few_shot`` example pairs (chosen by ``seed``), then the path."""
        rng = random.Random(seed)
        shots = rng.sample(self.examples, min(few_shot, len(self.examples)))
        msgs: Messages = [{"role": "system", "content": self.instruction_system}]
        for text, instruction in shots:
            msgs.append({"role": "user", "content": self.instruction_user.substitute(summary=text)})
            msgs.append({"role": "assistant", "content": instruction})
        msgs.append(
            {
                "role": "user",
                "content": self.instruction_user.substitute(summary=summary.to_prompt()),
            }
        )
        return msgs

    def imagine_messages(
        self,
        examples: Sequence[TextTrajectory],
        start_room: str,
        goal_room: str,
        steps: int,
    ) -> Messages:
        """System prompt, then the example trajectories and the request for a new one."""
        blocks = [f"Example {i}:\n{t.to_prompt()}" for i, t in enumerate(examples, 1)]
        user = self.imagine_user.substitute(
            count=len(examples),
            examples="\n\n".join(blocks),
            start_room=start_room,
            goal_room=goal_room,
            steps=steps,
        )
        return [
            {"role": "system", "content": self.imagine_system},
            {"role": "user", "content": user},
        ]
